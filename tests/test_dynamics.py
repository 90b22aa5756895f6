"""From curves to laws (fitting.dynamics): B_crit(L) and L(N, S_min) recovered from synthetic
curves written with the real TrialWriter, the compute frontier, and `scalesweep fit STORE` on
curves (rows used, the no-noise-scale fallback, exit 2 on bad input). Pure numpy + Parquet."""

import json
import warnings

import numpy as np
import pytest

import metrics
from fitting.data import load_fit_data
from fitting.dynamics import b_crit, curve_rows, fit_critical_batch, frontier, min_compute, min_steps
from fitting.fit import fit_law
from fitting.laws import kaplan_ns
from scalesweep.cli import main

TRUE = {"N_c": 6.5e13, "alpha_N": 0.076, "S_c": 2.1e3, "alpha_S": 0.76}  # Kaplan eq. 1.6
BCRIT = {"B_star": 2e8, "alpha_B": 0.21}  # Kaplan eq. 5.1
BATCH = 2**16  # tokens per step
SIZES = (1e5, 3e5, 1e6, 3e6, 1e7)


def synthetic_run(N, rng, loss_sd=0.003, noise_sd=0.1, n_points=25):
    """One run's curve built from S_min: L = L(N, S_min), S = S_min·(1 + B_crit(L)/B) (Kaplan eq.
    5.4 inverted), the noise scale B_crit(L) with multiplicative scatter. Columns as TrialWriter takes."""
    smin = np.geomspace(30, 3000, n_points)
    loss = kaplan_ns().predict(TRUE, {"N": np.full(n_points, N), "S": smin})
    steps = np.round(smin * (1 + b_crit(loss, **BCRIT) / BATCH)).astype(int)
    return {"step": steps, "val_loss": loss * np.exp(loss_sd * rng.standard_normal(n_points)),
            "grad_noise_scale": b_crit(loss, **BCRIT) * np.exp(noise_sd * rng.standard_normal(n_points)),
            "clean_loss": loss}


def write_store(root, sizes=SIZES, no_noise=(), seed=0, sweep="dyn"):
    """A sweep store with one completed run per size; runs in ``no_noise`` log no noise scale."""
    rng = np.random.default_rng(seed)
    for i, N in enumerate(sizes):
        run = synthetic_run(N, rng)
        w = metrics.TrialWriter(str(root), sweep, f"t{i}")
        w.append_curves([{"step": int(s), "tokens_seen": int(s) * BATCH, "flops": 6.0 * N * BATCH * int(s),
                          "val_loss": float(l), "grad_noise_scale": None if i in no_noise else float(g)}
                         for s, l, g in zip(run["step"], run["val_loss"], run["grad_noise_scale"])])
        last = int(run["step"][-1])
        w.write_run({"status": "completed", "n_layer": 2, "d_model": 64, "n_heads": 2, "d_ff": 256, "n_ctx": 64,
                     "vocab_size": 256, "non_embedding_params": int(N), "dataset_tokens": last * BATCH,
                     "regime": "tokens", "batch_tokens": BATCH, "lr": 1e-3, "seed": 0, "tokens_seen": last * BATCH,
                     "steps": last, "flops": 6.0 * N * BATCH * last, "wall_s": 1.0,
                     "best_val_loss": float(run["val_loss"].min()), "final_val_loss": float(run["val_loss"][-1])})
    return root / sweep


def test_kaplan_adjustments_match_the_paper_numbers():
    # at B = B_crit a run needs twice the minimum steps and twice the minimum compute (eqs. 5.4, 5.5)
    assert min_steps(2000, 1e5, 1e5) == pytest.approx(1000)
    assert min_compute(4e18, 1e5, 1e5) == pytest.approx(2e18)
    # far below B_crit: S_min ≈ S·B/B_crit; far above: C_min ≈ C·B_crit/B
    assert min_steps(1e6, 1e3, 1e6) == pytest.approx(1e6 * 1e3 / (1e6 + 1e3))
    assert min_compute(1e20, 1e8, 1e5) == pytest.approx(1e20 * 1e5 / (1e8 + 1e5))
    assert b_crit(3.0, **BCRIT) == pytest.approx(2e8 / 3.0 ** (1 / 0.21))  # ≈ 1.1e6 tokens at L = 3


def test_critical_batch_recovered_from_noise_scale_points():
    rng = np.random.default_rng(1)
    L = rng.uniform(3.0, 6.0, 300)
    noise = b_crit(L, **BCRIT) * np.exp(0.1 * rng.standard_normal(L.size))
    fit = fit_critical_batch(L, noise)
    assert fit.params["alpha_B"] == pytest.approx(0.21, rel=0.05)
    assert fit.params["B_star"] == pytest.approx(2e8, rel=0.25)


def test_kaplan_ns_recovered_from_a_store_s_curves(tmp_path):
    """Through the functions the CLI uses: curves → B_crit fit → S_min → load_fit_data → fit."""
    store = write_store(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = curve_rows(str(store), "kaplan_ns")
        fit = fit_law(kaplan_ns(), load_fit_data(rows.columns, law=kaplan_ns()))
    assert rows.note.startswith("kaplan_ns: 125 curve points from 5 runs; S_min and C_min via B_crit fitted on 125")
    assert not rows.warnings
    assert rows.critical_batch["alpha_B"] == pytest.approx(0.21, rel=0.05)
    assert fit.params["alpha_S"] == pytest.approx(0.76, rel=0.05)
    assert fit.params["alpha_N"] == pytest.approx(0.076, rel=0.05)
    assert fit.params["S_c"] == pytest.approx(2.1e3, rel=0.15)
    # the law's loss at a held-in point agrees with the truth to 0.5 %
    X = {"N": np.array([1e6]), "S": np.array([1000.0])}
    assert fit.predict(X)[0] == pytest.approx(kaplan_ns().predict(TRUE, X)[0], rel=0.005)


def test_frontier_is_the_lowest_loss_at_each_compute():
    C = np.array([1e15, 1e16, 1e17, 1e16, 1e17, 1e18])
    L = np.array([5.0, 4.0, 3.5, 4.5, 3.0, 2.5])
    run = np.array(["a", "a", "a", "b", "b", "b"])
    fc, fl = frontier(C, L, run, points_per_decade=1)
    np.testing.assert_allclose(fc, [1e15, 1e16, 1e17, 1e18])
    np.testing.assert_allclose(fl, [5.0, 4.0, 3.0, 2.5])


def test_frontier_never_rises_where_a_cheaper_run_reached_a_lower_loss():
    """A small run ends at 1e16 FLOPs with loss 3.3; the large run covers 1e17 at 3.55 only: that
    level is not on the frontier (3.3 costs less), so it is dropped, not drawn above the
    cheaper point (a new user's report: the envelope went up as well as down)."""
    C = np.array([1e14, 1e15, 1e16, 1e15, 1e16, 1e17, 1e18])
    L = np.array([4.5, 3.8, 3.3, 4.9, 4.0, 3.55, 3.1])
    run = np.array(["small"] * 3 + ["large"] * 4)
    fc, fl = frontier(C, L, run, points_per_decade=1)
    np.testing.assert_allclose(fc, [1e14, 1e15, 1e16, 1e18])
    np.testing.assert_allclose(fl, [4.5, 3.8, 3.3, 3.1])
    assert np.all(np.diff(fl) < 0)


def run_cli(capsys, *argv):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_fit_store_curves_prints_rows_and_the_fallback(tmp_path, capsys):
    store = write_store(tmp_path, no_noise=(4,))
    rc, out, err = run_cli(capsys, "fit", store, "--law", "kaplan_ns", "--bootstrap", 0)
    assert rc == 0, err
    assert "kaplan_ns: 125 curve points from 5 runs; S_min and C_min via B_crit fitted on 100 noise-scale points" in out
    assert "1 of 5 runs have no grad_noise_scale: their curves use S and C as S_min and C_min" in out
    rc, out, err = run_cli(capsys, "fit", store, "--law", "critical_batch", "--bootstrap", 0, "--json")
    assert rc == 0, err
    obj = json.loads(out)
    assert obj["rows"] == "critical_batch: 100 noise-scale points from 4 runs" and obj["n_points"] == 100
    assert obj["params"]["alpha_B"] == pytest.approx(0.21, rel=0.1)
    rc, out, err = run_cli(capsys, "fit", store, "--law", "kaplan_c", "--bootstrap", 0)
    assert rc == 0, err
    assert "kaplan_c: frontier at " in out and "from 125 curve points of 5 runs" in out


def test_fit_store_curves_bad_input_exits_2(tmp_path, capsys):
    no_noise = write_store(tmp_path / "a", no_noise=range(len(SIZES)))
    rc, out, err = run_cli(capsys, "fit", no_noise, "--law", "critical_batch", "--bootstrap", 0)
    assert rc == 2 and "grad_noise_scale is missing in all 125 curve rows" in err
    one = write_store(tmp_path / "b", sizes=(1e6,))
    rc, out, err = run_cli(capsys, "fit", one, "--law", "kaplan_ns", "--bootstrap", 0)
    assert rc == 2 and "curves from one run only (t0)" in err
    w = metrics.TrialWriter(str(tmp_path / "c"), "empty", "t0")  # a run row, no curve
    w.write_run({"status": "completed", "n_layer": 2, "d_model": 64, "n_heads": 2, "d_ff": 256, "n_ctx": 64,
                 "vocab_size": 256, "non_embedding_params": 10**6, "dataset_tokens": 10**8, "regime": "tokens",
                 "batch_tokens": BATCH, "lr": 1e-3, "seed": 0, "tokens_seen": 10**8, "steps": 100,
                 "flops": 1e15, "wall_s": 1.0})
    rc, out, err = run_cli(capsys, "fit", tmp_path / "c" / "empty", "--law", "kaplan_ns", "--bootstrap", 0)
    assert rc == 2 and "no curves of usable runs" in err
    assert len(err.strip().splitlines()) == 1


def test_repeated_curve_points_are_not_called_an_unaggregated_hyperparameter_sweep(tmp_path, capsys):
    """Two runs per size log their curves at the same steps (no noise scale: S_min = S), so (N, S)
    rows repeat; they are curve points, not a learning-rate sweep, so neither `fit` nor the report's
    L(N, S_min) section tells the user to aggregate each cell."""
    from orchestrator.report import build_report

    store = write_store(tmp_path, sizes=(1e5, 1e5, 1e6, 1e6, 1e7), no_noise=range(5))
    rows = curve_rows(str(store), "kaplan_ns")
    keys = set(zip(rows.columns["N"].tolist(), rows.columns["S"].tolist()))
    assert len(keys) < rows.columns["N"].size  # the repeats this test is about
    rc, out, err = run_cli(capsys, "fit", store, "--law", "kaplan_ns", "--bootstrap", 0)
    assert rc == 0 and "kaplan_ns: 125 curve points from 5 runs" in out, err
    assert "repeat the" not in out + err and "--best-over" not in out + err
    build_report(str(tmp_path), "dyn", str(tmp_path / "out"), n_bootstrap=0)
    page = (tmp_path / "out" / "report.html").read_text()
    curves = page[page.index('id="learning-curves"'):page.index('id="model-shape"')]
    assert "L(N, S_min)" in curves and "aggregate each" not in curves and "repeat the" not in curves
