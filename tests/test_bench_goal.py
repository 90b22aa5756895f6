"""Issue 15 item 6's verdict (bench/active_vs_grid.py ``goal_verdict``): active meets the goal
when its mean and worst-decile target R² are at least the best baseline's; when they are not, the
seeds' noise decides between "misses" and "within noise" (one seed in a wrong optimum moves a
40-seed mean by units of R², so a bare comparison of means flips with the seed set)."""

import importlib.util
import pathlib
import sys

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_active_vs_grid", pathlib.Path(__file__).resolve().parents[1] / "bench" / "active_vs_grid.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # its dataclasses look their module up there
_spec.loader.exec_module(bench)


def _r2(rng, n=60):
    """Per-seed R² like the nine table's: mostly near 0, a heavy tail of collapsed seeds."""
    return np.where(rng.random(n) < 0.1, -rng.exponential(20, n), rng.normal(0.2, 0.5, n))


def test_the_same_design_as_the_best_baseline_meets_the_goal():
    rng = np.random.default_rng(0)
    d, v = _r2(rng), _r2(rng)
    r = bench.goal_verdict({"active": d + 1e-13, "d_optimal": d, "v_optimal": v - 50})
    assert r["verdict"] == "meets" and r["mean_diff"] == 0.0 and r["best_mean"] == "d_optimal"


def test_a_design_worse_on_every_seed_misses():
    rng = np.random.default_rng(1)
    d = _r2(rng)
    r = bench.goal_verdict({"active": d - 1.0, "d_optimal": d, "random": _r2(rng) - 30})
    assert r["verdict"] == "misses" and r["mean_diff"] == pytest.approx(-1.0)
    assert r["mean_diff_ci95"][1] < 0


def test_a_gap_the_seeds_cannot_resolve_is_within_noise_not_a_miss():
    rng = np.random.default_rng(2)
    a, b = _r2(rng), _r2(rng)  # two designs drawn alike: any gap is the seeds'
    shift = max(0.0, a.mean() - b.mean()) + 0.05  # make active's mean the lower one
    r = bench.goal_verdict({"active": a - shift, "d_optimal": b})
    assert r["mean_diff"] < 0 and r["verdict"] == "within noise", r
    lo, hi = r["mean_diff_ci95"]
    assert lo < 0 < hi


def test_a_failed_design_counts_as_minus_infinity():
    ok = np.zeros(20)
    failed = ok.copy()
    failed[3] = -np.inf  # a seed that bought too few runs to fit
    assert bench.goal_verdict({"active": ok, "random": failed})["verdict"] == "meets"
    assert bench.goal_verdict({"active": failed, "random": ok})["verdict"] in ("misses", "within noise")
    assert bench.goal_verdict({"active": failed, "random": failed})["verdict"] == "meets"  # failed alike


def test_unequal_or_empty_seed_lists_are_refused():
    with pytest.raises(ValueError):
        bench.goal_verdict({"active": np.zeros(3), "d_optimal": np.zeros(4)})
    with pytest.raises(ValueError):
        bench.goal_verdict({"active": np.zeros(0), "d_optimal": np.zeros(0)})
    with pytest.raises(ValueError):
        bench.goal_verdict({"active": np.zeros(3)})
