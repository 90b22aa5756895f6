"""The compute-optimal frontier three ways (fitting.frontier, `scalesweep frontier`): approach 2
recovers a known Chinchilla allocation exponent from noisy isoFLOP runs, approach 1 from curves
written by the real TrialWriter, the three agree on exact-law data and the command says so, and
data that cannot support an approach is named with the reason (exit 0 if another answered, 2 if
none could). Pure numpy + Parquet; no Ray, no DeepSpeed."""

import csv
import json

import numpy as np
import pytest

import metrics
from fitting.frontier import (FrontierResult, compare_frontiers, envelope_frontier, group_by_compute,
                              isoflop_frontier)
from fitting.laws import chinchilla
from scalesweep.cli import main

TRUE = {"E": 1.82, "A": 482.0, "alpha": 0.3478, "B": 2085.0, "beta": 0.3658}  # Epoch's refit (Besiroglu 2024)
A_TRUE = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])  # 0.5126
B_TRUE = 1 - A_TRUE
G = (TRUE["alpha"] * TRUE["A"] / (TRUE["beta"] * TRUE["B"])) ** (1 / (TRUE["alpha"] + TRUE["beta"]))
BATCH = 2**14  # tokens per step in the synthetic store


def law(N, D):
    return chinchilla.predict(TRUE, {"N": np.atleast_1d(np.asarray(N, float)), "D": np.atleast_1d(np.asarray(D, float))})


def n_opt(C):
    return G * (C / 6.0) ** A_TRUE


def isoflop_runs(budgets, sizes=7, span=1.5, offset=1.3, noise=0.0, seed=0, jitter=0.0):
    """Runs on isoFLOP budgets: per budget ``sizes`` log-spaced N over ``span`` decades centred on
    ``offset`` × the true N_opt, D = C/(6N), loss from the law × (1 + noise·ε). ``jitter``: the
    recorded compute scattered by that many decades (a figure's read-off error)."""
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        for N in offset * n_opt(C) * np.logspace(-span / 2, span / 2, sizes):
            D = C / (6 * N)
            loss = float(law(N, D)[0]) * (1 + noise * rng.standard_normal())
            rows.append({"N": N, "D": D, "C": C * 10 ** (jitter * rng.uniform(-1, 1)), "loss": loss, "budget": C})
    return rows


def test_group_by_compute_finds_noisy_budgets():
    budgets = [6e18, 1e19, 3e19, 1e20]  # Hoffmann's closest budgets are 0.22 decades apart
    rows = isoflop_runs(budgets, jitter=0.03, seed=3)
    label = group_by_compute([r["C"] for r in rows], tolerance=0.05)
    truth = np.array([budgets.index(r["budget"]) for r in rows])
    assert label.max() + 1 == len(budgets)
    for g in range(len(budgets)):  # each group is exactly one budget's runs
        assert np.unique(truth[label == g]).size == 1 and (label == g).sum() == 7
    with pytest.raises(ValueError, match="--tolerance"):
        group_by_compute([1e18, 2e18], 0)


def test_isoflop_recovers_the_allocation_exponent_from_noisy_runs():
    rows = isoflop_runs([1e18, 3e18, 1e19, 3e19, 1e20, 3e20], noise=0.003, seed=1, jitter=0.02)
    r = isoflop_frontier([x["N"] for x in rows], [x["loss"] for x in rows], [x["C"] for x in rows], 1e24,
                         n_bootstrap=300, seed=0)
    assert r.supported and r.a_ci[0] <= A_TRUE <= r.a_ci[1], (r.a, r.a_ci)
    assert r.b_ci[0] <= B_TRUE <= r.b_ci[1]
    assert r.a_ci[1] - r.a_ci[0] < 0.15  # an interval that says something
    assert r.n_opt_ci[0] <= n_opt(1e24) * 1.3 <= r.n_opt_ci[1] or r.n_opt_ci[0] <= n_opt(1e24) <= r.n_opt_ci[1]
    assert sum(p["used"] for p in r.profiles) == 6


def test_isoflop_flags_a_vertex_outside_the_sampled_sizes_and_skips_thin_budgets():
    rows = isoflop_runs([1e18, 1e19, 1e20])
    rows += [dict(r, budget=1e21) for r in isoflop_runs([1e21], offset=30.0)]  # all sizes far above N_opt
    rows += isoflop_runs([1e22], sizes=2)  # two sizes: no parabola
    r = isoflop_frontier([x["N"] for x in rows], [x["loss"] for x in rows], [x["C"] for x in rows], 1e24,
                         budget=[x["budget"] for x in rows], n_bootstrap=50)
    status = {p["compute"]: p["status"] for p in r.profiles}
    assert status[1e21].startswith("flagged: vertex N") and "outside the sampled N" in status[1e21]
    assert status[1e22] == "skipped: 2 distinct N (a parabola needs 3)"
    assert r.supported and r.points["C"] == [1e18, 1e19, 1e20]  # neither is used
    assert any("1e+21 FLOPs (7 runs): flagged" in n for n in r.notes)
    thin = isoflop_frontier([x["N"] for x in rows[:7]], [x["loss"] for x in rows[:7]], [x["C"] for x in rows[:7]],
                            1e24, n_bootstrap=20)
    assert not thin.supported and "1 usable isoFLOP budget(s) of 1" in thin.reason


def write_store(root, budgets=(1e16, 1e17, 1e18), sizes=7, points=30, noise=0.0, seed=0, sweep="iso", curves=True):
    """A sweep store (real TrialWriter) of isoFLOP runs whose curves follow the law with D = tokens
    seen: each run evaluated on ``points`` log-spaced steps up to its budget (no curve files
    without ``curves``)."""
    rng = np.random.default_rng(seed)
    i = 0
    for C in budgets:
        for N in n_opt(C) * np.logspace(-0.75, 0.75, sizes):
            last = int(C / (6 * N) / BATCH)
            steps = np.unique(np.geomspace(max(last // 200, 1), last, points).astype(int))
            loss = law(np.full(steps.size, N), steps * BATCH) * (1 + noise * rng.standard_normal(steps.size))
            w = metrics.TrialWriter(str(root), sweep, f"t{i}")
            if curves:
                w.append_curves([{"step": int(s), "tokens_seen": int(s) * BATCH, "flops": 6.0 * N * BATCH * int(s),
                                  "val_loss": float(v)} for s, v in zip(steps, loss)])
            w.write_run({"status": "completed", "n_layer": 2, "d_model": 64, "n_heads": 2, "d_ff": 256, "n_ctx": 64,
                         "vocab_size": 256, "non_embedding_params": int(N), "dataset_tokens": last * BATCH,
                         "regime": "tokens", "batch_tokens": BATCH, "lr": 1e-3, "seed": 0,
                         "tokens_seen": last * BATCH, "steps": last, "flops": 6.0 * N * BATCH * last, "wall_s": 1.0,
                         "best_val_loss": float(loss.min()), "final_val_loss": float(loss[-1])})
            i += 1
    return root / sweep


def test_envelope_recovers_the_exponents_from_a_store_s_curves(tmp_path):
    from fitting.dynamics import read_curves

    store = write_store(tmp_path, budgets=(1e15, 1e16, 1e17, 1e18, 1e19), sizes=9, noise=0.002, seed=2)
    r = envelope_frontier(read_curves(str(store)), 1e22, n_bootstrap=100)
    assert r.supported, r.reason
    assert r.a_ci[0] <= A_TRUE <= r.a_ci[1], (r.a, r.a_ci)
    assert r.b_ci[0] <= B_TRUE <= r.b_ci[1], (r.b, r.b_ci)
    assert r.a_ci[1] - r.a_ci[0] < 0.2


def test_the_three_agree_on_exact_law_data_and_the_command_says_so(tmp_path, capsys):
    store = write_store(tmp_path, budgets=(1e15, 1e16, 1e17, 1e18))
    png = tmp_path / "frontier.png"
    rc = main(["frontier", str(store), "--compute", "1e21", "--bootstrap", "0", "--plot", str(png), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    by = {r["approach"]: r for r in out["approaches"]}
    assert all(r["supported"] for r in by.values()), [r["reason"] for r in by.values()]
    for r in by.values():
        assert r["a"] == pytest.approx(A_TRUE, abs=0.03), r["approach"]
        assert r["n_opt"] == pytest.approx(n_opt(1e21), rel=0.5), r["approach"]
    assert by["parametric"]["a"] == pytest.approx(A_TRUE, abs=1e-3)
    true_loss = float(law(n_opt(1e21), 1e21 / (6 * n_opt(1e21)))[0])  # L = E + A'·C^-γ along the frontier
    assert [r["loss"] for r in by.values()] == pytest.approx([true_loss] * 3, rel=0.02)
    assert out["verdict"].startswith("verdict: envelope, isoflop, parametric agree")
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def write_csv(path, rows, budget=False):
    keys = ["N", "C", "loss"] + (["isoflop_budget"] if budget else [])
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(keys)
        for r in rows:
            w.writerow([r["N"], r["C"], r["loss"]] + ([r["budget"]] if budget else []))


def test_isoflop_budget_column_groups_runs_a_tolerance_would_not(tmp_path, capsys):
    rows = isoflop_runs([1e18, 1e19, 1e20], jitter=0.2, seed=4)  # C scattered over ±0.2 decades
    write_csv(tmp_path / "runs.csv", rows, budget=True)
    rc = main(["frontier", str(tmp_path / "runs.csv"), "--bootstrap", "0", "--tolerance", "0.01"])
    out = capsys.readouterr().out
    assert rc == 0 and "3 of 3 budgets used (grouped by isoflop_budget column)" in out


def test_runs_that_cannot_be_grouped_name_the_unsupported_approaches(tmp_path, capsys):
    # a grid of N × D: every run its own compute, so no isoFLOP profile; no curves either
    rows = [{"N": N, "C": 6 * N * D, "loss": float(law(N, D)[0])}
            for N in (1e7, 3e7, 1e8, 3e8) for D in (2e8, 2e9, 2e10)]
    write_csv(tmp_path / "grid.csv", rows)
    rc = main(["frontier", str(tmp_path / "grid.csv"), "--bootstrap", "0", "--tolerance", "0.01"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "envelope: unsupported (no curves: a table of final runs, not a sweep's store)" in out
    assert "isoflop: unsupported (" in out and "parametric" in out.splitlines()[1]
    assert "verdict: only parametric answered; nothing to compare" in out


def test_a_store_without_curves_leaves_the_envelope_unsupported(tmp_path, capsys):
    store = write_store(tmp_path, sizes=5, curves=False)
    rc = main(["frontier", str(store), "--bootstrap", "0"])
    out = capsys.readouterr().out
    assert rc == 0 and "envelope: unsupported (no curves: " in out and "no curves of usable runs" in out
    assert "isoflop" in out.splitlines()[1] and "3 of 3 budgets used" in out


def test_no_approach_answers_exit_2_naming_each(tmp_path, capsys):
    rows = [{"N": 1e8, "C": 6e8 * D, "loss": float(law(1e8, D)[0])} for D in (1e9, 2e9, 4e9, 8e9, 1.6e10, 3.2e10)]
    write_csv(tmp_path / "one_size.csv", rows)
    png = tmp_path / "never.png"
    rc = main(["frontier", str(tmp_path / "one_size.csv"), "--bootstrap", "0", "--plot", str(png)])
    err = capsys.readouterr().err
    assert rc == 2 and not png.exists()
    assert "no approach could answer: envelope: no curves: a table of final runs" in err
    assert "isoflop: " in err and "parametric: the fit is not identified" in err


@pytest.mark.parametrize("argv, message", [
    (["--tolerance", "0"], "argument --tolerance: expected a positive number, got 0"),
    (["--compute", "-1"], "argument --compute: expected a positive number, got -1"),
    (["--law", "kaplan_n"], "frontier needs a law of N and D"),
    (["--plot", "/nonexistent/dir/x.png"], "--plot: directory /nonexistent/dir does not exist"),
    # refused before the fits, not by matplotlib after them (11.8 s for a new user)
    (["--plot", "frontier.txt"], "--plot: 'frontier.txt' needs the suffix of an image format (avif, eps"),
    # was swallowed as the parametric approach's failure: "only isoflop answered", exit 0
    (["--loss", "ls", "--delta", "0.1"], "--delta 0.1 sets the Huber threshold; --loss ls has none"),
])
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    rc = main(["frontier", "--example", "epoch-chinchilla", "--bootstrap", "0"] + argv)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_compare_frontiers_defines_agreement():
    mk = lambda name, a, ci, n: FrontierResult(name, True, compute=1e24, a=a, a_ci=ci, n_opt=n)
    assert "agree" in compare_frontiers([mk("x", 0.5, (0.45, 0.55), 1e11), mk("y", 0.52, (0.5, 0.6), 1.9e11)])
    v = compare_frontiers([mk("x", 0.5, (0.45, 0.5), 1e11), mk("y", 0.6, (0.55, 0.65), 3e11)])
    assert "DISAGREE" in v and "a intervals disjoint for x vs y" in v and "spans ×3.00 > ×2" in v


def test_the_verdict_says_what_agrees_and_flags_a_loss_below_the_laws_floor():
    """The user report's 1e24 numbers: exponents and N_opt agree, losses do not, and the isoFLOP
    loss is below the parametric law's own E; the verdict said "isoflop, parametric agree"."""
    iso = FrontierResult("isoflop", True, compute=1e24, a=0.511, a_ci=(0.39, 0.56), n_opt=9.3e10,
                         loss=1.593, loss_ci=(1.519, 1.923))
    par = FrontierResult("parametric", True, compute=1e24, a=0.514, a_ci=(0.485, 0.549), n_opt=9.7e10,
                         loss=1.959, loss_ci=(1.939, 1.983), floor=1.817)
    v = compare_frontiers([iso, par])
    bad, _, good = v.partition("; agree on: ")
    assert "DISAGREE" in bad and "loss intervals (parameters only) at 1e+24 FLOPs disjoint" in bad and "1.593 [1.519, 1.923]" in bad
    assert "isoflop's loss 1.593 is below parametric's fitted floor E = 1.817" in bad
    assert "a intervals overlap" in good and "N_opt at 1e+24 FLOPs within ×1.04" in good
    # overlapping losses above the floor: every check passes
    iso.loss, iso.loss_ci = 1.95, (1.90, 2.0)
    v = compare_frontiers([iso, par])
    assert v.startswith("verdict: isoflop, parametric agree") and "loss intervals (parameters only) overlap" in v
    # a point below the floor is flagged even when the intervals overlap
    iso.loss = 1.80
    assert "below parametric's fitted floor" in compare_frontiers([iso, par])
