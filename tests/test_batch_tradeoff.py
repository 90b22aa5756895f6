"""Issue 12 item 5: the steps-vs-batch trade-off S/S_min - 1 = (E/E_min - 1)^-1 (McCandlish et al.
2018 eq. 2.11) recovered from synthetic curves with known S_min, E_min and B_crit."""

import numpy as np
import pytest

from fitting.batch_tradeoff import fit_batch_tradeoff, steps_to_loss, tradeoff_from_curves


def _curves(b_crit, batches, noise, seed=0, evals=200):
    """Curves whose loss depends on progress in S_min units: L = 2 + 3·(s / (1 + b_crit/B))^-0.5,
    so the steps to any loss scale exactly as S_min·(1 + b_crit/B); multiplicative eval noise."""
    rng = np.random.default_rng(seed)
    curves = {}
    for b in batches:
        steps = np.arange(1, evals + 1) * 20
        clean = 2.0 + 3.0 * (steps / (1 + b_crit / b)) ** -0.5
        curves[b] = (steps, clean * (1 + noise * rng.standard_normal(evals)))
    return curves


def test_steps_to_loss_interpolates_the_first_crossing_in_log_step():
    assert steps_to_loss([10, 20, 40], [3.0, 2.0, 1.5], 2.0) == pytest.approx(20.0)
    assert steps_to_loss([10, 40], [3.0, 1.0], 2.0) == pytest.approx(20.0)  # halfway in log step
    # noise that rises again is pooled (isotonic fit 3.0, 2.1, 1.95, 1.95, 1.0): one crossing
    assert 20 < steps_to_loss([10, 20, 30, 40, 50], [3.0, 2.1, 1.9, 2.0, 1.0], 2.0) < 30
    assert np.isnan(steps_to_loss([10, 20], [3.0, 2.5], 2.0))
    assert steps_to_loss([10, 20], [1.0, 0.9], 2.0) == 10.0


@pytest.mark.parametrize("b_crit", [2e3, 2e4])
def test_the_trade_off_recovers_b_crit_s_min_and_e_min_from_synthetic_curves(b_crit):
    batches = [512, 1024, 2048, 4096, 8192, 16384, 65536]
    target = 2.2
    s_min_true = ((target - 2.0) / 3.0) ** -2  # L(s_eff) = target at s_eff = S_min
    fit = tradeoff_from_curves(_curves(b_crit, batches, noise=0.0), target)
    assert fit.b_crit == pytest.approx(b_crit, rel=0.03)
    assert fit.s_min == pytest.approx(s_min_true, rel=0.03)
    assert fit.e_min == pytest.approx(s_min_true * b_crit, rel=0.03)
    # the relation itself: S/S_min - 1 = (E/E_min - 1)^-1 for every run
    E = fit.batch_tokens * fit.steps
    assert fit.steps / fit.s_min - 1 == pytest.approx(1 / (E / fit.e_min - 1), rel=0.1)
    assert fit.predicted_steps(fit.batch_tokens) == pytest.approx(fit.steps, rel=0.03)
    assert fit.batch_tokens.size + fit.n_unreached == len(batches) and fit.batch_tokens.size >= 3


def test_with_evaluation_noise_b_crit_is_unbiased_and_within_20_percent_over_seeds():
    errors = [tradeoff_from_curves(_curves(4e3, [256, 1024, 4096, 16384, 65536], noise=0.005, seed=s), 2.2).b_crit
              / 4e3 - 1 for s in range(10)]
    assert np.max(np.abs(errors)) < 0.2 and abs(np.mean(errors)) < 0.05, errors


def test_no_trade_off_or_one_batch_size_is_an_error_naming_why():
    with pytest.raises(ValueError, match="1 distinct batch_tokens reached the target loss"):
        fit_batch_tradeoff([1024, 1024], [100, 110], 2.0)
    with pytest.raises(ValueError, match="not a trade-off"):
        fit_batch_tradeoff([512, 1024, 2048], [100, 200, 400], 2.0)  # steps grow with the batch
    with pytest.raises(ValueError, match="1 distinct"):  # the other run never reached the target
        tradeoff_from_curves({512: ([10, 20], [3.0, 2.0]), 1024: ([10, 20], [3.0, 2.9])}, 2.0)
