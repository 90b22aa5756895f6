"""The joint learning-curve law with LR annealing (fitting.schedule_law, Tissue et al. 2024)."""

import numpy as np
import pytest

from fitting.schedule_law import Curve, fit_joint, joint_prediction, schedule_areas
from trainers.config import lr_multiplier

TRUE = dict(L0=1.8, A=2.5, alpha=0.45, C=0.0004, lam=0.97)


def schedule(total):
    return np.array([lr_multiplier(i, total, 0.05, 0.1) for i in range(total)])


def law_curve(total, rng, sd=0.002, every=8, shift=0.0):
    lr = schedule(total)
    s1, s2 = schedule_areas(lr, TRUE["lam"])
    steps = np.arange(every, total + 1, every)
    clean = TRUE["L0"] + shift + TRUE["A"] * s1[steps - 1] ** -TRUE["alpha"] - TRUE["C"] * s2[steps - 1]
    return Curve(steps.astype(float), clean * np.exp(sd * rng.standard_normal(steps.size)), lr), clean[-1]


def test_areas_follow_the_definitions():
    lr = np.array([0.5, 1.0, 1.0, 0.5, 0.25])
    s1, s2 = schedule_areas(lr, 0.0)
    assert np.allclose(s1, [0.5, 1.5, 2.5, 3.0, 3.25])
    # λ = 0: S2 is the LR's total drop since its peak (the warmup's rise counts negative)
    assert np.allclose(s2, [0.0, -0.5, -0.5, 0.0, 0.25])
    _, s2m = schedule_areas(lr, 0.5)
    # m_i = λ·m_{i−1} + drop_i: drops (0, −0.5, 0, 0.5, 0.25) → m (0, −0.5, −0.25, 0.375, 0.4375)
    assert np.allclose(s2m, [0.0, -0.5, -0.75, -0.375, 0.0625])


def test_a_stopped_long_run_borrows_the_annealing_from_finished_shorter_ones():
    rng = np.random.default_rng(0)
    finished = [law_curve(t, rng)[0] for t in (200, 400, 800)]
    long_run, truth = law_curve(1600, rng, shift=0.01)
    seen = long_run.upto(0.5 * 1600)
    pred = joint_prediction(seen, finished)
    assert abs(np.log(pred.loss / truth)) < 0.01
    assert pred.lo < pred.loss < pred.hi
    fit = fit_joint([seen, *finished])
    assert abs(fit.alpha - TRUE["alpha"]) < 0.15
    assert fit.L0[0] - fit.L0[1] == pytest.approx(0.01, abs=0.01)  # its own offset, not the others'


def test_no_stop_without_finished_runs_to_calibrate_on():
    rng = np.random.default_rng(1)
    long_run, _ = law_curve(1600, rng)
    with pytest.raises(ValueError, match="finished runs among the others"):
        joint_prediction(long_run.upto(600), [law_curve(200, rng)[0]])
