"""The shared-curve rule (fitting.reference_curves): a run's final loss from its sweep's finished runs."""

import numpy as np
import pytest

from fitting.reference_curves import MIN_CALIBRATION, POINTS, ReferenceCurve, reference_prediction

T = 400
STEPS = np.arange(8, T + 1, 8)


def shape(steps, drop=0.08):
    """A warmup + cosine-like curve's shape: a power law times a late drop (the part a run
    cannot see before it happens)."""
    u = steps / T
    return 3.0 * (steps / 8.0) ** -0.12 * np.exp(-drop * u ** 2)


def finished(scale, N, rng, sd=0.002, drop=0.08):
    losses = scale * shape(STEPS, drop) * np.exp(sd * rng.standard_normal(STEPS.size))
    return ReferenceCurve(N, T, STEPS.astype(float), losses, float(losses.min()))


def test_a_run_sharing_the_references_shape_is_predicted_within_its_interval():
    rng = np.random.default_rng(0)
    refs = [finished(s, n, rng) for s, n in ((1.10, 1e4), (1.05, 2e4), (1.02, 4e4))]
    truth = 0.97 * shape(np.array([T]))[0]
    seen = STEPS <= 0.4 * T
    losses = 0.97 * shape(STEPS[seen]) * np.exp(0.002 * rng.standard_normal(seen.sum()))
    pred = reference_prediction(STEPS[seen], losses, T, 8e4, refs)
    assert pred.method == "reference" and pred.level == 0.9
    assert pred.lo <= truth <= pred.hi
    assert abs(pred.loss / truth - 1) < 0.01
    # the late drop is borrowed: the run's own last loss is far above its final one
    assert losses[-1] / truth - 1 > 0.05


def test_the_nearest_reference_in_log_n_is_used():
    rng = np.random.default_rng(1)
    refs = [finished(1.1, 1e4, rng), finished(1.0, 6e4, rng), finished(1.05, 3e4, rng)]
    losses = 0.9 * shape(STEPS[:20])
    pred = reference_prediction(STEPS[:20], losses, T, 5e4, refs)
    near = refs[1]
    offset = np.mean(np.log(losses[-POINTS:]) - np.log(near.losses[20 - POINTS:20]))
    assert pred.loss == pytest.approx(near.final_loss * np.exp(offset), rel=1e-12)


def test_the_interval_widens_with_the_references_disagreement():
    """Calibrated on the references: where their late drops differ, the rule's error on them is
    larger and so is the interval."""
    widths = []
    for spread in (0.0, 0.04):
        rng = np.random.default_rng(2)
        refs = [finished(1.0 + 0.03 * k, 1e4 * 2 ** k, rng, drop=0.08 + spread * (k - 1.5)) for k in range(4)]
        pred = reference_prediction(STEPS[:25], shape(STEPS[:25]), T, 3e5, refs)
        widths.append(pred.rel_half_width)
    assert widths[1] > 3 * widths[0]


def test_refuses_without_a_same_schedule_reference_or_calibration():
    rng = np.random.default_rng(3)
    other = ReferenceCurve(1e4, 2 * T, np.arange(8, 2 * T + 1, 8.0), shape(np.arange(8, 2 * T + 1, 8.0)), 2.0)
    with pytest.raises(ValueError, match="same 400 planned steps"):
        reference_prediction(STEPS[:20], shape(STEPS[:20]), T, 1e5, [other])
    lone = [finished(1.0, 1e4, rng), other]  # one same-schedule run: no pair to calibrate on
    with pytest.raises(ValueError, match=f"need at least {MIN_CALIBRATION}"):
        reference_prediction(STEPS[:20], shape(STEPS[:20]), T, 1e5, lone)
