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


def test_the_same_design_as_the_best_baseline_meets_the_goal_within_noise():
    rng = np.random.default_rng(0)
    d, v = _r2(rng), _r2(rng)
    r = bench.goal_verdict({"active": d + 1e-13, "d_optimal": d, "v_optimal": v - 50})
    assert r["verdict"] == "meets, within noise" and r["mean_diff"] == 0.0 and r["best_mean"] == "d_optimal"
    assert r["mean_diff_ci95"] == (0.0, 0.0)


def test_a_design_better_on_every_seed_is_ahead_and_worse_misses():
    rng = np.random.default_rng(1)
    d = _r2(rng)
    # (a baseline worse on every seed never becomes the best in a resample; one drawn apart can:
    # the best baseline is re-chosen per resample)
    r = bench.goal_verdict({"active": d + 1.0, "d_optimal": d, "random": d - 200})
    assert r["verdict"] == "ahead" and r["mean_diff"] == pytest.approx(1.0)
    assert r["mean_diff_ci95"][0] == pytest.approx(1.0) and r["worst_diff_ci95"][0] == pytest.approx(1.0)
    r = bench.goal_verdict({"active": d - 1.0, "d_optimal": d, "random": d - 200})
    assert r["verdict"] == "misses" and r["mean_diff"] == pytest.approx(-1.0)
    assert r["mean_diff_ci95"][1] < 0


def test_a_gap_the_seeds_cannot_resolve_is_within_noise_either_way():
    rng = np.random.default_rng(2)
    a, b = _r2(rng), _r2(rng)  # two designs drawn alike: any gap is the seeds'
    gap = a.mean() - b.mean()
    behind = bench.goal_verdict({"active": a - max(0.0, gap) - 0.05, "d_optimal": b})
    assert behind["mean_diff"] < 0 and behind["verdict"] == "behind, within noise", behind
    lo, hi = behind["mean_diff_ci95"]
    assert lo < 0 < hi
    # a small lead on the point estimate is no lead beyond the noise: "meets, within noise", not "ahead"
    b_worst = bench.worst_decile(b)
    lead = bench.goal_verdict({"active": np.where(a < b_worst, b_worst, a) - min(0.0, gap) + 0.05, "d_optimal": b})
    assert lead["mean_diff"] > 0 and lead["worst_diff"] >= 0 and lead["verdict"] == "meets, within noise", lead


def test_failed_designs_count_as_minus_infinity_and_more_failures_are_worse():
    ok = np.zeros(20)
    failed = ok.copy()
    failed[3] = -np.inf  # a seed that bought too few runs to fit
    # one failed seed in 20 is no lead beyond the noise (a third of the resamples leave it out)
    assert bench.goal_verdict({"active": ok, "random": failed})["verdict"] == "meets, within noise"
    assert bench.goal_verdict({"active": failed, "random": ok})["verdict"] in ("misses", "behind, within noise")
    assert bench.goal_verdict({"active": failed, "random": failed})["verdict"] == "meets, within noise"
    # −∞ − (−∞) is no tie: active failing 32 of 40 seeds against a baseline failing 8 (a new
    # user's case, which read "meets")
    many = np.array([-np.inf, -np.inf, -np.inf, -np.inf, 0.1] * 8)
    few = np.array([-np.inf, 0.9, 0.9, 0.9, 0.9] * 8)
    r = bench.goal_verdict({"active": many, "random": few})
    assert r["mean_diff"] == -np.inf and r["verdict"] == "misses", r
    # a NaN R² is no fit either, not a tie
    assert bench.goal_verdict({"active": np.r_[np.nan, ok[1:]], "v": ok})["mean_diff"] == -np.inf


def test_every_design_failing_everywhere_is_no_verdict():
    none = np.full(12, -np.inf)
    assert bench.goal_verdict({"active": none, "random": none})["verdict"] == "no fits"
    assert bench.goal_verdict({"active": np.full(12, np.nan), "random": none})["verdict"] == "no fits"


def test_a_rounding_level_difference_on_large_r2_is_the_same_design():
    d = -np.geomspace(1, 1000, 20)  # R² down to −1000: float noise of 1e-11 relative is ~1e-8 absolute
    r = bench.goal_verdict({"active": d * (1 + 1e-11), "d_optimal": d})
    assert r["mean_diff"] == 0.0 and r["verdict"] == "meets, within noise", r


def test_too_few_seeds_give_no_verdict():
    r = bench.goal_verdict({"active": np.array([0.1, 0.2]), "d_optimal": np.array([0.5, 0.6])})
    assert r["verdict"] == "too few seeds" and r["mean_diff"] == pytest.approx(-0.4)


def test_unequal_or_empty_seed_lists_are_refused():
    with pytest.raises(ValueError):
        bench.goal_verdict({"active": np.zeros(3), "d_optimal": np.zeros(4)})
    with pytest.raises(ValueError):
        bench.goal_verdict({"active": np.zeros(0), "d_optimal": np.zeros(0)})
    with pytest.raises(ValueError):
        bench.goal_verdict({"active": np.zeros(3)})
