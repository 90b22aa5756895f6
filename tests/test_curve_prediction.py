"""Learning-curve prediction (fitting.curve_prediction): calibrated intervals on synthetic curves
from known parameters, both paths, and the errors of too short a curve. Pure numpy, no Ray."""

import numpy as np
import pytest

from fitting.curve_prediction import MIN_CURVE_POINTS, CurvePrediction, SweepCurveLaw, predict_final_loss
from fitting.data import FitData
from fitting.dynamics import b_crit, min_steps
from fitting.fit import fit_law
from fitting.laws import kaplan_ns

# Kaplan et al. 2020's L(N, S_min) and B_crit(L) (eqs. 1.6, 5.1), at laptop-sized N
TRUE = {"N_c": 6.5e13, "alpha_N": 0.076, "S_c": 2.1e3, "alpha_S": 0.76}
BCRIT = {"B_star": 2e8, "alpha_B": 0.21}
BATCH = 2**16  # tokens per step: below B_crit (~1.5e5 at L 4.5), so S/S_min ≈ 3
EVAL_SD = 0.005  # evaluation noise, relative (a few-M-token validation set)
RUN_SD = 0.005  # run-to-run offset from the sweep's surface (seed, data order), relative
FRACTION = 0.3  # predict from the first 30 % of the steps
REPLICATES = 200


def kaplan_curve(N, rng, n_points=60):
    """(steps, losses) of a synthetic run evaluated every ``total/n_points`` steps: losses from
    L(N, S_min) on a fine S_min grid, steps mapped back by S = S_min·(1 + B_crit(L)/B) (the
    inverse of Kaplan eq. 5.4, so the curve comes from the law independently of the code under
    test), interpolated onto the evaluation steps, then a run offset and evaluation noise."""
    smin = np.geomspace(10, 4000, 2000)
    loss = kaplan_ns().predict(TRUE, {"N": np.full(smin.size, N), "S": smin})
    fine = smin * (1 + b_crit(loss, **BCRIT) / BATCH)
    every = int(fine[-1] // n_points)
    steps = np.arange(every, every * n_points + 1, every)
    expected = np.exp(np.interp(np.log(steps), np.log(fine), np.log(loss)) + RUN_SD * rng.standard_normal())
    return steps, expected * np.exp(EVAL_SD * rng.standard_normal(n_points)), expected


def power_curve(rng, n_points=100):
    """A single run on L(S) = E + (S_c/S)^α_S, evaluated every 100 steps to 10,000."""
    steps = np.arange(100, 100 * n_points + 1, 100)
    loss = 4.0 + (2.1e3 / steps) ** 0.76
    return steps, loss * np.exp(EVAL_SD * rng.standard_normal(n_points))


def early(steps, losses):
    k = steps <= FRACTION * steps[-1]
    return steps[k], losses[k]


def test_power_law_interval_covers_the_final_loss_in_85_to_98_percent():
    hits, widths = 0, []
    for seed in range(REPLICATES):
        steps, losses = power_curve(np.random.default_rng(seed))
        p = predict_final_loss(*early(steps, losses), steps[-1], level=0.9)
        assert p.method == "power_law" and p.n_points == 30 and p.lo < p.loss < p.hi
        hits += p.lo <= losses[-1] <= p.hi
        widths.append(p.rel_half_width)
    assert 0.85 <= hits / REPLICATES <= 0.98, hits / REPLICATES
    assert np.median(widths) < 0.03  # informative, not a catch-all


@pytest.fixture(scope="module")
def sweep_fit():
    """kaplan_ns fitted on a synthetic sweep (5 sizes, whole curves) mapped to S_min with B_crit."""
    rng = np.random.default_rng(1234)
    N, S, L = [], [], []
    for n in (1e5, 3e5, 1e6, 3e6, 1e7):
        steps, losses, _ = kaplan_curve(n, rng)
        N.append(np.full(steps.size, n))
        S.append(min_steps(steps, BATCH, b_crit(losses, **BCRIT)))
        L.append(losses)
    return fit_law(kaplan_ns(), FitData({"N": np.concatenate(N), "S": np.concatenate(S)}, np.concatenate(L)))


def test_sweep_law_interval_covers_the_final_loss_in_85_to_98_percent(sweep_fit):
    hits, widths = 0, []
    for seed in range(REPLICATES):
        rng = np.random.default_rng(10_000 + seed)
        N = float(rng.choice([2e5, 1e6, 5e6]))  # held-out runs, between and at the sweep's sizes
        steps, losses, _ = kaplan_curve(N, rng)
        law = SweepCurveLaw.from_fit(sweep_fit, N, BATCH, BCRIT)
        p = predict_final_loss(*early(steps, losses), steps[-1], level=0.9, sweep_law=law)
        assert p.method == "kaplan_ns"
        hits += p.lo <= losses[-1] <= p.hi
        widths.append(p.rel_half_width)
    assert 0.85 <= hits / REPLICATES <= 0.98, hits / REPLICATES
    assert np.median(widths) < 0.03


def test_sweep_law_uses_s_min_not_s():
    """The same curve predicted with and without B_crit differs: the mapping is applied."""
    steps, losses, expected = kaplan_curve(1e6, np.random.default_rng(0))
    s, y = early(steps, losses)
    with_b = predict_final_loss(s, y, steps[-1], sweep_law=SweepCurveLaw(TRUE, 1e6, BATCH, BCRIT))
    without = predict_final_loss(s, y, steps[-1], sweep_law=SweepCurveLaw(TRUE, 1e6, BATCH, None))
    truth = expected[-1]
    assert abs(with_b.loss / truth - 1) < 0.01
    assert abs(without.loss / truth - 1) > 2 * abs(with_b.loss / truth - 1)


def test_too_few_points_names_the_minimum():
    steps, losses = power_curve(np.random.default_rng(0))
    with pytest.raises(ValueError, match=f"need at least {MIN_CURVE_POINTS}"):
        predict_final_loss(steps[: MIN_CURVE_POINTS - 1], losses[: MIN_CURVE_POINTS - 1], 10_000)
    # step 0 and NaN losses are not points
    s = np.r_[0, steps[:MIN_CURVE_POINTS - 1]]
    y = np.r_[10.0, losses[:MIN_CURVE_POINTS - 2], np.nan]
    with pytest.raises(ValueError, match=f"{MIN_CURVE_POINTS - 2} usable"):
        predict_final_loss(s, y, 10_000)
    with pytest.raises(ValueError, match="level"):
        predict_final_loss(steps, losses, 10_000, level=90)
    with pytest.raises(ValueError, match="target_step"):
        predict_final_loss(steps, losses, 0)


def test_rel_half_width():
    assert CurvePrediction(2.0, 1.9, 2.3, 0.9, "power_law", 5).rel_half_width == pytest.approx(0.1)


def test_a_noise_free_power_law_is_extrapolated_exactly():
    steps = np.linspace(100, 4000, 40)
    truth = 3.0 + (2000.0 / steps) ** 0.76
    p = predict_final_loss(steps[:12], truth[:12], steps[-1])
    assert p.method == "power_law" and p.n_points == 12
    assert p.loss == pytest.approx(truth[-1], rel=1e-4) and p.rel_half_width < 0.001


def cosine_schedule(total, warmup_frac=0.05, min_ratio=0.1):
    """LR multipliers of steps 0..total-1: linear warmup, cosine decay to min_ratio (written here,
    not imported, so the curve below does not share code with trainers/ or the predictor)."""
    warmup = round(warmup_frac * total)
    i = np.arange(total)
    progress = np.clip((i - warmup) / (total - warmup), 0, 1)
    return np.where(i < warmup, (i + 1) / warmup, min_ratio + (1 - min_ratio) * 0.5 * (1 + np.cos(np.pi * progress)))


def annealing_curve(rng, total=1000, momentum=0.5, every=10):
    """A warmup + cosine run from Tissue et al. 2024's law L = L0 + A·S1^-α − C·S2: S1 the summed
    LR, S2 the annealing area with their momentum (decay `momentum`; the predictor assumes 0).
    The cosine lowers the loss by 0.09 nats at the end beyond what S1 alone gives."""
    eta = cosine_schedule(total)
    s1 = np.cumsum(eta)
    m, s2, area = 0.0, np.empty(total), 0.0
    for i in range(total):
        m = momentum * m + max(eta[i - 1] - eta[i], 0.0) if i else 0.0
        area += m
        s2[i] = area
    loss = 1.8 + 2.0 * s1 ** -0.5 - 0.09 * s2 / s2[-1]
    steps = np.arange(every, total + 1, every)
    return steps, loss[steps - 1] * np.exp(0.003 * rng.standard_normal(steps.size)), eta


@pytest.mark.parametrize("fraction, bound", [(0.3, 0.02), (0.5, 0.01)])
def test_lr_schedule_prediction_is_unbiased_on_warmup_cosine_curves(fraction, bound):
    """The schedule-aware law's mean relative error of the final loss, over 40 seeded runs, stays
    within `bound`; the power law in steps, blind to the decay's final drop, misses by more."""
    with_lr, steps_only = [], []
    for seed in range(40):
        steps, losses, eta = annealing_curve(np.random.default_rng(seed))
        seen = steps <= fraction * steps[-1]
        p = predict_final_loss(steps[seen], losses[seen], steps[-1], lr_schedule=eta)
        assert p.method == "lr_schedule" and p.lo <= p.loss <= p.hi
        assert p.n_points == np.sum(seen & (steps >= 50))  # the points after warmup
        with_lr.append(p.loss / losses[-1] - 1)
        steps_only.append(predict_final_loss(steps[seen], losses[seen], steps[-1]).loss / losses[-1] - 1)
    assert abs(np.mean(with_lr)) <= bound, np.mean(with_lr)
    assert abs(np.mean(steps_only)) > 2 * abs(np.mean(with_lr)) and abs(np.mean(steps_only)) > bound


def test_lr_schedule_errors_name_what_is_missing():
    steps, losses, eta = annealing_curve(np.random.default_rng(0))
    with pytest.raises(ValueError, match="lr_schedule must hold a positive LR multiplier for each of the 1000"):
        predict_final_loss(steps[:30], losses[:30], 1000, lr_schedule=eta[:500])
    with pytest.raises(ValueError, match="after warmup"):  # 5 points, but the first 4 are in warmup
        predict_final_loss(steps[:5], losses[:5], 1000, lr_schedule=eta)
    constant = np.ones(1000)  # a constant LR: the power law in S1 = steps
    p = predict_final_loss(steps[:30], losses[:30], 1000, lr_schedule=constant)
    assert p.method == "lr_schedule" and np.isfinite(p.loss)


def test_eval_log_sd_measures_the_curve_s_own_evaluation_scatter():
    """Each path reports the sd of one evaluation about its fitted curve in log space: on curves
    with known lognormal evaluation noise it lands near that noise (median over seeds within
    15 %), and a noisier run reports a larger scatter."""
    per_run, schedule = [], []
    for seed in range(20):
        steps, losses = power_curve(np.random.default_rng(seed))
        per_run.append(predict_final_loss(*early(steps, losses), steps[-1]).eval_log_sd)
        steps, losses, eta = annealing_curve(np.random.default_rng(seed))
        schedule.append(predict_final_loss(steps[:50], losses[:50], steps[-1], lr_schedule=eta).eval_log_sd)
    assert np.median(per_run) == pytest.approx(EVAL_SD, rel=0.15)
    assert np.median(schedule) == pytest.approx(0.003, rel=0.15)  # annealing_curve's noise
    steps, losses = power_curve(np.random.default_rng(0))
    noisier = losses * np.exp(0.02 * np.random.default_rng(1).standard_normal(losses.size))
    assert predict_final_loss(*early(steps, noisier), steps[-1]).eval_log_sd > 2 * per_run[0]


def test_sweep_law_eval_log_sd_is_the_residual_scatter(sweep_fit):
    steps, losses, _ = kaplan_curve(1e6, np.random.default_rng(3))
    law = SweepCurveLaw.from_fit(sweep_fit, 1e6, BATCH, BCRIT)
    p = predict_final_loss(*early(steps, losses), steps[-1], sweep_law=law)
    assert p.method == "kaplan_ns" and p.eval_log_sd == pytest.approx(EVAL_SD, rel=0.5)
