"""`scalesweep fit` / `scalesweep plan`: tables in, parameter tables or JSON out, clear errors."""

import json
import textwrap
import warnings

import numpy as np
import pytest

from fitting import reference
from fitting.laws import chinchilla, kaplan_nd
from scalesweep.cli import main

EPOCH = reference.path("epoch-chinchilla")  # shipped with the package (fitting/reference/)


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def write_csv(path, cols):
    names = list(cols)
    with open(path, "w") as fh:
        fh.write(",".join(names) + "\n")
        for row in zip(*cols.values()):
            fh.write(",".join(repr(float(v)) for v in row) + "\n")
    return path


def synthetic(law, truth, n=80, seed=0, sd=0.005):
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(1e7), np.log(3e9), n))
    D = N * np.exp(rng.uniform(np.log(2), np.log(200), n))
    y = law.predict(truth, {"N": N, "D": D}) * np.exp(sd * rng.standard_normal(n))
    return N, D, y


def test_fit_json_epoch(capsys):
    rc, out, _ = run(capsys, "fit", EPOCH, "--law", "chinchilla", "--c-col", "Training FLOP", "--n-col", "Model Size",
                     "--loss-col", "loss", "--drop-top-loss", 5, "--bootstrap", 0, "--json")
    assert rc == 0
    obj = json.loads(out)
    assert obj["law"] == "chinchilla" and obj["n_points"] == 240
    assert set(obj["params"]) == {"E", "A", "B", "alpha", "beta"}
    assert set(obj["stderr"]) == set(obj["params"]) == set(obj["ci90"])
    assert obj["params"]["E"] == pytest.approx(1.8172, rel=0.01)
    assert obj["params"]["beta"] == pytest.approx(0.3672, rel=0.01)
    lo, hi = obj["ci90"]["alpha"]
    assert lo < obj["params"]["alpha"] < hi
    assert obj["loss"] == "huber" and "gof" in obj


def test_fit_kaplan_custom_columns_and_plan(tmp_path, capsys):
    truth = {"N_c": 6.4e13, "alpha_N": 0.076, "D_c": 1.8e13, "alpha_D": 0.103}
    N, D, y = synthetic(kaplan_nd(), truth)
    csv = write_csv(tmp_path / "runs.csv", {"params": N, "toks": D, "val": y})
    rc, out, _ = run(capsys, "fit", csv, "--law", "kaplan", "--n-col", "params", "--d-col", "toks",
                     "--loss-col", "val", "--bootstrap", 50, "--json")
    assert rc == 0
    obj = json.loads(out)
    assert set(obj["params"]) == {"N_c", "alpha_N", "D_c", "alpha_D"}
    assert obj["params"]["alpha_N"] == pytest.approx(0.076, rel=0.1)
    assert obj["uncertainty"] == "bootstrap" and obj["n_bootstrap"] == 50
    fitfile = tmp_path / "fit.json"
    fitfile.write_text(out)
    rc, out, _ = run(capsys, "plan", "--law", "kaplan", "--params", fitfile, "--compute", "1e21", "--json")
    assert rc == 0
    p = json.loads(out)
    assert p["law"] == "kaplan" and p["N_opt"] > 0 and p["D_opt"] * p["N_opt"] * 6 == pytest.approx(1e21)
    # human-readable table
    rc, out, _ = run(capsys, "fit", csv, "--law", "kaplan", "--n-col", "params", "--d-col", "toks",
                     "--loss-col", "val", "--bootstrap", 0)
    assert rc == 0 and "alpha_N" in out and "rmse(log)" in out


def test_plan_from_runs_and_params_json(tmp_path, capsys):
    truth = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 1500.0, "beta": 0.30}
    N, D, y = synthetic(chinchilla, truth, n=100)
    import pyarrow.parquet as pq
    import pyarrow as pa

    path = tmp_path / "runs.parquet"
    pq.write_table(pa.table({"N": N, "D": D, "loss": y}), path)
    rc, out, _ = run(capsys, "plan", path, "--compute", "1e21", "--bootstrap", 100)
    assert rc == 0
    assert "N_opt" in out and "a (N_opt" in out and "prediction interval" in out
    rc, out, _ = run(capsys, "plan", path, "--compute", "1e21", "--bootstrap", 0, "--json")
    obj = json.loads(out)
    lo, hi = obj["ci90"]["exponent_a"]
    assert lo < obj["exponent_a"] < hi
    assert obj["fit"]["params"]["alpha"] == pytest.approx(0.34, abs=0.05)
    rc, out, _ = run(capsys, "plan", "--params", json.dumps(truth), "--compute", "1e21", "--json")
    assert json.loads(out)["exponent_a"] == pytest.approx(0.30 / 0.64)


def test_cli_errors(tmp_path, capsys):
    N, D, y = synthetic(chinchilla, {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 1500.0, "beta": 0.30}, n=30)
    csv = write_csv(tmp_path / "runs.csv", {"N": N, "loss": y})
    rc, _, err = run(capsys, "fit", csv, "--bootstrap", 0)
    assert rc == 2 and "missing column for D" in err and "available columns" in err
    rc, _, err = run(capsys, "fit", tmp_path / "nope.csv")
    assert rc == 2 and "not found" in err
    csv = write_csv(tmp_path / "few.csv", {"N": N[:4], "D": D[:4], "loss": y[:4]})
    rc, _, err = run(capsys, "fit", csv, "--bootstrap", 0)
    assert rc == 2 and "too few points" in err
    rc, _, err = run(capsys, "fit", csv, "--law", "nolaw")
    assert rc == 2 and "unknown law" in err
    rc, _, err = run(capsys, "plan", "--compute", "1e21")
    assert rc == 2 and "needs RUNS" in err
    bad = write_csv(tmp_path / "bad.csv", {"N": np.r_[N, -1.0], "D": np.r_[D, 1e9], "loss": np.r_[y, 2.0]})
    rc, out, _ = run(capsys, "fit", bad, "--bootstrap", 0, "--json")
    assert rc == 0
    assert any("dropped 1 of 31 rows" in w and "non-positive N" in w for w in json.loads(out)["warnings"])


def test_cli_user_law_file(tmp_path, capsys):
    lawfile = tmp_path / "mylaw.py"
    lawfile.write_text(textwrap.dedent('''
        from fitting.law import Law
        LAW = Law(name="simple", param_names=("E", "A", "a"), inputs=("N",),
                  fn=lambda p, X: p["E"] + p["A"] * X["N"] ** (-p["a"]),
                  transforms=("log", "log", "identity"), init_box=((-1, 1), (0, 8), (0.1, 0.6)), n_init=64)
    '''))
    rng = np.random.default_rng(1)
    N = np.exp(rng.uniform(np.log(1e6), np.log(1e10), 40))
    y = (1.5 + 300 * N ** -0.3) * np.exp(0.003 * rng.standard_normal(40))
    csv = write_csv(tmp_path / "runs.csv", {"N": N, "loss": y})
    rc, out, _ = run(capsys, "fit", csv, "--law", f"{lawfile}:LAW", "--bootstrap", 100, "--json")
    assert rc == 0
    obj = json.loads(out)
    assert obj["law"] == "simple" and obj["params"]["a"] == pytest.approx(0.3, abs=0.05)


def test_fit_sweep_metrics_directory(tmp_path, capsys):
    import metrics as store
    truth = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 1500.0, "beta": 0.30}
    N, D, y = synthetic(chinchilla, truth, n=24)
    sweep = tmp_path / "sweep"
    for i, (n_, d_, l_) in enumerate(zip(N, D, y)):
        w = store.TrialWriter(str(tmp_path), "sweep", f"t{i}")
        status = "failed" if i == 0 else "completed"
        w.write_run({"status": status, "n_layer": 2, "d_model": 64, "n_heads": 2, "d_ff": 256, "n_ctx": 64,
                     "vocab_size": 256, "non_embedding_params": int(n_), "dataset_tokens": int(d_),
                     "regime": "tokens", "batch_tokens": 4096, "lr": 1e-3, "seed": 0, "tokens_seen": int(d_),
                     "steps": 10, "flops": float(6 * n_ * d_), "wall_s": 1.0, "best_val_loss": float(l_),
                     "final_val_loss": float(l_)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc, out, err = run(capsys, "fit", sweep, "--bootstrap", 0, "--json")
    assert rc == 0, err
    obj = json.loads(out)
    assert obj["n_points"] == 23  # the failed run is left out
    assert obj["columns"]["N"] == "non_embedding_params" and obj["columns"]["loss"] == "best_val_loss"
    assert any("status" in w for w in obj["warnings"])


# ---------------------------------------------------------------------------- inputs that mislead
TRUTH_CH = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 1500.0, "beta": 0.30}


def test_other_units_are_warned_about_and_say_what_was_assumed(tmp_path, capsys):
    # the example: N in millions and D in billions used to pass without a word
    N, D, y = synthetic(chinchilla, TRUTH_CH, n=60)
    csv = write_csv(tmp_path / "units.csv", {"N": N / 1e6, "D": D / 1e9, "loss": y})
    rc, out, _ = run(capsys, "plan", csv, "--compute", "1e21", "--bootstrap", 0, "--json")
    assert rc == 0
    obj = json.loads(out)
    warn = obj["fit"]["warnings"]
    assert any("N (column 'N') has values below 1e3" in w and "read as a count of parameters" in w for w in warn)
    assert any("D (column 'D') is below N in 60 of 60 rows" in w and "count of training tokens" in w for w in warn)
    assert any("tokens per parameter lies more than 10× outside the fitted runs'" in n for n in obj["notes"])
    # only D in other units (millions of tokens): the D warning alone
    csv = write_csv(tmp_path / "d_units.csv", {"N": N, "D": D / 1e6, "loss": y})
    rc, out, _ = run(capsys, "fit", csv, "--bootstrap", 0, "--json")
    warn = json.loads(out)["warnings"]
    assert rc == 0 and len(warn) == 1 and "D (column 'D') is below N in 60 of 60 rows" in warn[0]
    # the same runs in counts: none of these warnings
    csv = write_csv(tmp_path / "counts.csv", {"N": N, "D": D, "loss": y})
    rc, out, _ = run(capsys, "plan", csv, "--compute", "1e21", "--bootstrap", 0, "--json")
    obj = json.loads(out)
    assert rc == 0 and obj["fit"]["warnings"] == [] and obj["notes"] == []


def test_repeated_configurations_are_warned_about_or_reduced(tmp_path, capsys):
    # a learning-rate sweep: 3 rows per (N, D), the worse learning rates 3 % and 8 % higher
    N, D, y = synthetic(chinchilla, TRUTH_CH, n=20)
    cols = {"N": np.repeat(N, 3), "D": np.repeat(D, 3), "lr": np.tile([1e-3, 3e-3, 1e-2], 20),
            "loss": np.repeat(y, 3) * np.tile([1.03, 1.0, 1.08], 20)}
    csv = write_csv(tmp_path / "lr.csv", cols)
    rc, out, _ = run(capsys, "fit", csv, "--bootstrap", 0, "--json")
    obj = json.loads(out)
    assert rc == 0 and obj["n_points"] == 60
    assert any("40 of 60 rows repeat the (N, D) of another row (20 distinct (N, D))" in w for w in obj["warnings"])
    rc, out, _ = run(capsys, "fit", csv, "--bootstrap", 0, "--best-per-config", "--json")
    obj = json.loads(out)
    assert rc == 0 and obj["n_points"] == 20 and obj["n_dropped"] == 0  # aggregated into cells, not dropped
    assert obj["aggregation"] == "60 rows → 20 cells, best row of each (N, D)"
    assert obj["params"]["alpha"] == pytest.approx(0.34, abs=0.05)  # the best rows are the law's own


@pytest.mark.parametrize("column", ["loss", "N", "D"])
def test_non_numeric_cells_drop_their_rows_with_a_count(tmp_path, capsys, column):
    N, D, y = synthetic(chinchilla, TRUTH_CH, n=40)
    cols = {k: [repr(float(v)) for v in a] for k, a in (("N", N), ("D", D), ("loss", y))}
    cols[column][3], cols[column][5], cols[column][7] = "", "nan", "diverged"
    path = tmp_path / "cells.csv"
    with open(path, "w") as fh:
        fh.write("N,D,loss\n" + "".join(f"{a},{b},{c}\n" for a, b, c in zip(*cols.values())))
    rc, out, err = run(capsys, "fit", path, "--bootstrap", 0, "--json")
    assert rc == 0, err
    obj = json.loads(out)
    assert obj["n_points"] == 37 and obj["n_dropped"] == 3
    (w,) = [w for w in obj["warnings"] if w.startswith("dropped")]
    assert "dropped 3 of 40 rows" in w and f"non-numeric {column} (e.g. '', 'diverged')" in w
    assert f"1 for NaN/inf in {column}" in w


def test_compute_column_cells_too(tmp_path, capsys):
    N, D, y = synthetic(chinchilla, TRUTH_CH, n=30)
    C = [repr(float(v)) for v in 6 * N * D]
    C[0] = "n/a?"
    path = tmp_path / "c.csv"
    with open(path, "w") as fh:
        fh.write("params,flops,loss\n" + "".join(f"{float(a)!r},{b},{float(c)!r}\n" for a, b, c in zip(N, C, y)))
    rc, out, _ = run(capsys, "fit", path, "--bootstrap", 0, "--json")
    obj = json.loads(out)
    assert rc == 0 and obj["n_points"] == 29 and obj["columns"]["C"] == "flops"
    assert any("1 for non-numeric flops (e.g. 'n/a?')" in w for w in obj["warnings"])
    path.write_text("N,D,loss\n" + "".join(f"{float(a)!r},{float(b)!r},x\n" for a, b in zip(N, D)))
    rc, _, err = run(capsys, "fit", path, "--bootstrap", 0)
    assert rc == 2 and "column 'loss' in" in err and "is not numeric (e.g. 'x')" in err


def test_replay_finds_columns_by_the_aliases_fit_uses(tmp_path, capsys):
    N, D, y = synthetic(chinchilla, TRUTH_CH, n=40)
    small = 6 * N * D < np.quantile(6 * N * D, 0.8)
    pool = write_csv(tmp_path / "pool.csv", {"params": N[small], "tokens": D[small], "loss": y[small]})
    targets = write_csv(tmp_path / "targets.csv", {"params": N[~small], "tokens": D[~small]})  # no loss: not scored
    out = tmp_path / "pred.csv"
    rc, text, err = run(capsys, "replay", pool, "--targets", targets, "--strategy", "random", "--budget-fraction",
                        0.5, "--out", out)
    assert rc == 0, err
    assert "bought" in text and "targets (" not in text
    # the prediction intervals' parameter part follows the runs bought per parameter (fitting.extrapolation.
    # default_parameter_part): on Epoch (seed 0, 10 %: 13 runs for 5 parameters) the delta method's covered
    # 61 % of the targets, the bootstrap's 91 %, the profile's 87 %
    bought = int(text.split("bought ")[1].split(" of")[0])
    expected = "profile likelihood" if bought < 4 * chinchilla.n_params else "delta method"
    assert f"intervals: parameter part by the {expected}" in text and "bootstrap resamples" not in text
    rows = list(__import__("csv").DictReader(open(out)))
    assert len(rows) == (~small).sum() and set(rows[0]) == {"params", "tokens", "predicted_loss", "lower", "upper",
                                                            "level", "interval"}
    truth = chinchilla.predict(TRUTH_CH, {"N": N[~small], "D": D[~small]})
    np.testing.assert_allclose([float(r["predicted_loss"]) for r in rows], truth, rtol=0.05)
    rc, text, err = run(capsys, "replay", pool, "--targets", targets, "--strategy", "random", "--budget-fraction",
                        0.5, "--out", tmp_path / "delta.csv", "--bootstrap", 0, "--parameter-part", "delta")
    asked = "" if expected == "delta method" else "; asked for"  # the rule's reason only where the rule chose it
    assert rc == 0 and f"parameter part by the delta method ({bought} runs for 5 parameters{asked})" in text, err
    rc, text, err = run(capsys, "replay", pool, "--targets", targets, "--strategy", "random", "--budget-fraction",
                        0.5, "--out", tmp_path / "boot.csv", "--bootstrap", 0, "--parameter-part", "bootstrap")
    assert rc == 2 and err.strip().splitlines()[-1].endswith("--parameter-part bootstrap needs --bootstrap B > 0"), err
    assert not (tmp_path / "boot.csv").exists()
    delta = list(__import__("csv").DictReader(open(tmp_path / "delta.csv")))
    assert [r["predicted_loss"] for r in delta] == [r["predicted_loss"] for r in rows]  # same fit, other interval
    assert [r["lower"] for r in delta] != [r["lower"] for r in rows]


def test_replay_cost_cells_and_unreadable_tables(tmp_path, capsys):
    N, D, y = synthetic(chinchilla, TRUTH_CH, n=40)
    cost = [repr(float(v)) for v in 6 * N * D]
    cost[0], cost[1] = "", "-1"
    pool = tmp_path / "pool.csv"
    pool.write_text("N,D,loss,cost\n" + "".join(f"{float(a)!r},{float(b)!r},{float(c)!r},{k}\n"
                                               for a, b, c, k in zip(N, D, y, cost)))
    targets = write_csv(tmp_path / "targets.csv", {"N": [1e10], "D": [2e11]})
    rc, out, err = run(capsys, "replay", pool, "--targets", targets, "--cost-col", "cost", "--strategy", "random",
                       "--budget-fraction", 0.5, "--bootstrap", 0, "--out", tmp_path / "p.csv")
    assert rc == 0, err
    assert "warning: dropped 2 pool rows whose cost is not a positive number" in out and "of 38 pool rows" in out
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("N,D,loss\n1e8,1e9,3.0\n1e8,1e9\n")
    for argv in (["fit", ragged], ["replay", ragged, "--targets", targets, "--out", tmp_path / "q.csv"]):
        rc, _, err = run(capsys, *argv)
        assert rc == 2 and f"cannot read {ragged} as a CSV table: CSV parse error" in err
    assert not (tmp_path / "q.csv").exists()


# The 13 Epoch runs `replay --example epoch-chinchilla --budget-fraction 0.1` buys (seed 0), as
# indices into the example's 240 usable rows.
REPLAY_BOUGHT = [198, 47, 188, 78, 25, 229, 29, 120, 205, 215, 213, 76, 42]


def _epoch_rows(path, index):
    from fitting.data import load_fit_data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = load_fit_data(EPOCH, law=chinchilla, drop_top_loss=5)
    return write_csv(path, {"N": d.X["N"][index], "D": d.X["D"][index], "loss": d.y[index]})


def test_the_verdicts_do_not_depend_on_whether_a_bootstrap_was_run():
    # `replay --bootstrap 200` tagged B "(not identified)" on these runs and `--bootstrap 0` tagged
    # nothing: the tags read the bootstrap's interval (B [151, 23052], over 2 decades) or the
    # sandwich's. Now FitResult.verdicts reads the profile likelihood, whichever was run; here the
    # bootstrap is attached after the fit, as replay does it.
    from fitting.data import load_fit_data
    from fitting.fit import fit_law
    from fitting.uncertainty import bootstrap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = load_fit_data(EPOCH, law=chinchilla, drop_top_loss=5)
        fit = fit_law(chinchilla, d.subset(np.isin(np.arange(len(d)), REPLAY_BOUGHT)))
    before = fit.param_tags(0.9), fit.to_dict()["not_identified"], fit.notes()
    bootstrap(fit, n_boot=100, seed=0)
    assert fit.uncertainty == "bootstrap"
    after = fit.param_tags(0.9), fit.to_dict()["not_identified"], fit.notes()
    assert before == after, (before, after)


def test_plan_prints_every_loss_interval_from_the_part_it_names(tmp_path, capsys):
    # At 8 runs `plan --json` gave loss_prediction_interval (the sandwich's plain interval)
    # [2.255, 2.312] while ci90.loss (the profile's parameter part alone) was [2.177, 2.366], under
    # a heading "90% intervals from sandwich covariance". Every loss interval now takes the one
    # chosen part, nested: parameter part ⊂ without the misfit ⊂ with it; the heading names each source.
    path = _epoch_rows(tmp_path / "eight.csv", [3, 40, 77, 110, 150, 185, 200, 215])
    rc, out, _ = run(capsys, "plan", path, "--compute", "1e21", "--bootstrap", 0, "--json")
    plan = json.loads(out)
    assert rc == 0 and plan["parameter_method"] == "profile"  # 8 runs: under 4 per parameter
    (plo, phi), (lo, hi), (wlo, whi) = plan["ci90"]["loss"], plan["loss_prediction_interval"], plan["loss_interval"]
    assert wlo <= lo <= plo < plan["loss"] < phi <= hi <= whi, plan
    assert plan["loss_prediction_interval_kind"] == ("prediction interval (parameters by the profile likelihood, and "
                                                     "run scatter; no law misfit: the law taken as exact)")
    assert plan["interval_sources"] == ("N_opt, D_opt, tokens/param and a from sandwich covariance (2000 draws); the "
                                        "loss's parameter part by the profile likelihood")
    rc, out, err = run(capsys, "plan", path, "--compute", "1e21", "--bootstrap", 0, "--parameter-part", "delta")
    assert rc == 0, err
    head = next(line for line in out.splitlines() if line.startswith("compute 1e+21 FLOPs"))
    assert head.endswith("; 90% intervals: N_opt, D_opt, tokens/param and a from sandwich covariance (2000 draws); "
                         "the loss's parameter part by the delta method)"), head
    assert "(parameter part by the delta method (8 runs for 5 parameters; asked for))" in out, out
    # ...and the N_opt interval drawn from that same curvature says it may be too narrow (it was 4x
    # narrower than the bootstrap's: [2.48e9, 3.74e9] against [1.27e9, 1.12e10] on 8 runs)
    warned = [n for n in plan["notes"] if n.startswith("N_opt, D_opt, tokens/param and a come from draws of the "
                                                        "sandwich covariance: with 8 runs for 5 parameters")]
    assert len(warned) == 1 and "--bootstrap B" in warned[0], plan["notes"]
    assert f"warning: {warned[0]}" in out or warned[0] in out, out
    rc, out, _ = run(capsys, "plan", path, "--compute", "1e21", "--bootstrap", 30, "--json")
    assert rc == 0 and not any("sandwich covariance: with" in n for n in json.loads(out)["notes"])


def test_plan_parameter_part_refusals_come_before_any_fitting(tmp_path, capsys):
    path = _epoch_rows(tmp_path / "eight.csv", [3, 40, 77, 110, 150, 185, 200, 215])
    rc, _, err = run(capsys, "plan", path, "--compute", "1e21", "--bootstrap", 0, "--parameter-part", "bootstrap")
    assert rc == 2 and err.strip() == "scalesweep plan: error: --parameter-part bootstrap needs --bootstrap B > 0"
    params = json.dumps({"law": "chinchilla", "params": {"E": 1.8, "A": 480.0, "alpha": 0.35, "B": 2085.0,
                                                          "beta": 0.37}})
    rc, _, err = run(capsys, "plan", "--params", params, "--compute", "1e21", "--parameter-part", "profile")
    assert rc == 2 and "--parameter-part" in err and "--params plans without intervals" in err, err
    rc, out, err = run(capsys, "plan", "--params", params, "--compute", "1e21")
    assert rc == 0 and "(chinchilla; no intervals: parameters given)" in out, out


def test_flags_that_nothing_would_read_are_refused_before_any_fitting(capsys):
    """A new user's `fit --col X=Y` (no input X) and `plan --unique-tokens` for a law without U
    exited 0, the flag silently dropped."""
    rc, _, err = run(capsys, "fit", "--example", "epoch-chinchilla", "--col", "X=Y", "--bootstrap", 0)
    assert rc == 2 and err.strip() == ("scalesweep fit: error: --col X=Y: 'X' is not an input of law 'chinchilla' "
                                       "(its inputs: N, D)"), err
    rc, _, err = run(capsys, "plan", "--example", "epoch-chinchilla", "--compute", "1e24", "--unique-tokens", "1e9")
    assert rc == 2 and err.strip().endswith("--unique-tokens fixes U, an input of the data_constrained law; law "
                                            "'chinchilla' has no U"), err
    params = json.dumps({"law": "chinchilla", "params": {"E": 1.8, "A": 480.0, "alpha": 0.35, "B": 2085.0,
                                                          "beta": 0.37}})
    rc, _, err = run(capsys, "plan", "--params", params, "--compute", "1e21", "--unique-tokens", "1e9")
    assert rc == 2 and "law 'chinchilla' has no U" in err, err
    for command in (["fit"], ["plan", "--compute", "1e21"], ["predict", "--train", "C <= 1e21"]):
        rc, _, err = run(capsys, *command, "--example", "epoch-chinchilla", "--loss", "ls", "--delta", 0.1,
                         "--bootstrap", 0)
        assert rc == 2 and err.strip() == (f"scalesweep {command[0]}: error: --delta 0.1 sets the Huber threshold; "
                                           "--loss ls has none"), err
    rc, out, err = run(capsys, "fit", "--example", "epoch-chinchilla", "--delta", 0.01, "--bootstrap", 0)
    assert rc == 0 and "huber(δ=0.01)" in out, err
    rc, out, err = run(capsys, "fit", "--example", "epoch-chinchilla", "--bootstrap", 0)
    assert rc == 0 and "huber(δ=0.001)" in out, err  # the default, not given
