"""Learning-curve prediction (fitting/curve_prediction.py): calibrated intervals from the first
30 % of a curve, both routes, and the errors a caller can hit."""

import numpy as np
import pytest

from fitting.allocate import critical_batch, s_min
from fitting.curve_prediction import MIN_CURVE_POINTS, SweepCurveLaw, predict_final_loss

LAW = {"N_c": 1e6 * 2.5 ** (1 / 0.076), "alpha_N": 0.076, "S_c": 2000.0, "alpha_S": 0.7}  # L_N = 2.5 at N = 1e6


def _steps(n_evals: int = 40, total: int = 4000) -> np.ndarray:
    return np.linspace(total / n_evals, total, n_evals)


def _coverage(predict, replicates: int = 200) -> tuple[float, float]:
    """Share of seeded synthetic curves whose observed final loss lies in the 90 % interval
    predicted from their first 30 %, and the median relative half-width."""
    hits, widths = 0, []
    for seed in range(replicates):
        rng = np.random.default_rng(seed)
        observed, prediction = predict(rng)
        hits += prediction.lo <= observed[-1] <= prediction.hi
        widths.append(prediction.rel_half_width)
    return hits / replicates, float(np.median(widths))


def test_a_runs_own_power_law_covers_its_final_loss_about_90_percent():
    steps = _steps()
    k = int(0.3 * steps.size)

    def predict(rng):
        # Kaplan's form at fixed N, with run-to-run spread in the floor, scale and exponent, and
        # 0.5 % evaluation noise.
        truth = rng.uniform(2.0, 4.0) + (rng.uniform(500, 5000) / steps) ** rng.uniform(0.4, 1.0)
        observed = truth * np.exp(0.005 * rng.standard_normal(steps.size))
        return observed, predict_final_loss(steps[:k], observed[:k], steps[-1])

    coverage, width = _coverage(predict)
    assert 0.85 <= coverage <= 0.98, coverage  # intervals that never miss are too wide
    assert width < 0.05, width


def test_the_sweep_law_route_covers_its_final_loss_about_90_percent():
    steps = _steps()
    k = int(0.3 * steps.size)
    law = SweepCurveLaw(LAW, non_embedding_params=1e6, batch_tokens=1e4)

    def predict(rng):
        truth = law.loss_at(steps) * np.exp(rng.normal(0, 0.02))  # the run sits off the sweep's law
        observed = truth * np.exp(0.005 * rng.standard_normal(steps.size))
        return observed, predict_final_loss(steps[:k], observed[:k], steps[-1], sweep_law=law)

    coverage, width = _coverage(predict)
    assert 0.85 <= coverage <= 0.98, coverage
    assert width < 0.02, width


def test_noise_free_curves_are_extrapolated_exactly():
    steps = _steps()
    truth = 3.0 + (2000.0 / steps) ** 0.76
    p = predict_final_loss(steps[:12], truth[:12], steps[-1])
    assert p.method == "power_law" and p.n_points == 12
    assert p.loss == pytest.approx(truth[-1], rel=1e-4) and p.rel_half_width < 0.001
    # With B_crit(L): S_min = S/(1 + B_crit(L)/B) inside the law, solved at the target's own loss.
    b = {"B_star": 2e5, "alpha_B": 0.21}
    law = SweepCurveLaw(LAW, non_embedding_params=1e6, batch_tokens=2e4, critical_batch_params=b)
    final = law.loss_at(steps[-1:])[0]
    s_minimum = s_min(steps[-1], 2e4, critical_batch(final, **b))
    assert final == pytest.approx((LAW["N_c"] / 1e6) ** LAW["alpha_N"] + (LAW["S_c"] / s_minimum) ** LAW["alpha_S"],
                                  rel=1e-3)
    observed = law.loss_at(steps)
    p = predict_final_loss(steps[:12], observed[:12], steps[-1], sweep_law=law)
    assert p.method == "kaplan_ns" and p.loss == pytest.approx(observed[-1], rel=1e-3)


@pytest.mark.parametrize("steps, losses, match", [
    ([1, 2, 3], [3.0, 2.9, 2.8], f"3 finite curve points; a prediction needs at least {MIN_CURVE_POINTS}"),
    ([1, 2, 3, 4], [3.0, np.nan, 2.8, 2.7], "3 finite curve points"),
    ([1, 3, 2, 4], [3.0, 2.9, 2.8, 2.7], "steps must be positive and increasing"),
    ([1, 2, 3], [3.0, 2.9], "steps and losses differ in length"),
])
def test_unusable_curves_are_refused_with_the_reason(steps, losses, match):
    with pytest.raises(ValueError, match=match):
        predict_final_loss(steps, losses, 100)
