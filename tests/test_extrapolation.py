"""Extrapolation intervals: the law's misfit, calibrated by held-out extrapolation within the
fitted runs, widens the intervals where the law is wrong and leaves them alone where it is
right (simulated oracles with known truth)."""

import warnings

import numpy as np
import pytest
from scipy import stats

from fitting.design import Candidates, TargetRegion
from fitting.extrapolation import PRIOR_MISFIT_SD, calibrate_misfit, extrapolation_interval
from fitting.fit import fit_law
from fitting.laws import CHINCHILLA_EPOCH
from fitting.replay import SimulatedOracle, undertraining_misfit


def _grid():
    N, D = np.meshgrid(np.geomspace(1e7, 1e9, 7), np.geomspace(3e8, 1e11, 7), indexing="ij")
    return Candidates.from_columns({"N": N.ravel(), "D": D.ravel()})


def _fit_on_grid(noise, seed, misfit=None):
    """→ (the 7 x 7 grid, Chinchilla fitted from the truth on a simulated oracle's losses there)."""
    cands = _grid()
    orc = SimulatedOracle("chinchilla", CHINCHILLA_EPOCH, noise=noise, seed=seed, misfit=misfit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_law("chinchilla", dict(cands.X) | {"loss": orc.observe(cands.X)}, starts=(), init=CHINCHILLA_EPOCH)
    return cands, fit


def _coverage(misfit, noise, seeds=range(8)):
    cands = _grid()
    target = TargetRegion.compute_frontier("chinchilla", CHINCHILLA_EPOCH, 1e22)
    plain, widened, amps = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in seeds:
            orc = SimulatedOracle("chinchilla", CHINCHILLA_EPOCH, noise=noise, seed=seed, misfit=misfit)
            y, truth = orc.observe(cands.X), orc.truth(target.X)
            fit = fit_law("chinchilla", dict(cands.X) | {"loss": y}, starts=(), init=CHINCHILLA_EPOCH)
            cal = calibrate_misfit(fit)
            amps.append(cal.amplitude)
            iv0 = fit.interval(target.X, level=0.9, method="delta")
            iv1 = extrapolation_interval(fit, target.X, level=0.9, calibration=cal)
            assert np.all(iv1.lo <= iv0.lo + 1e-12) and np.all(iv1.hi >= iv0.hi - 1e-12)
            plain.append(np.mean((truth >= iv0.lo) & (truth <= iv0.hi)))
            widened.append(np.mean((truth >= iv1.lo) & (truth <= iv1.hi)))
    return float(np.mean(plain)), float(np.mean(widened)), float(np.mean(amps))


def test_misfit_interval_restores_coverage_where_the_law_is_wrong():
    # undertrained runs read high (as in the Epoch data): the plain 90 % interval misses targets
    plain, widened, amplitude = _coverage(undertraining_misfit(), noise=0.005)
    assert plain < 0.75 and widened >= 0.8 and widened > plain + 0.1, (plain, widened)
    assert amplitude > 0.002


def test_misfit_interval_is_near_plain_where_the_law_is_right():
    plain, widened, amplitude = _coverage(None, noise=0.015)
    assert plain >= 0.75 and widened >= plain and widened <= 1.0
    assert amplitude < 0.02


def test_too_few_runs_to_hold_out_use_the_stated_prior_and_say_so():
    # issue 15 item 4: 6 runs printed "law misfit sd 0 ... calibrated by refitting 6 runs and
    # predicting the 0 largest" although no refit happened
    X = {"N": np.array([1e7, 3e7, 1e8, 3e8, 1e9, 1e9]), "D": np.array([1e9, 3e9, 1e9, 3e10, 1e10, 1e11])}
    y = SimulatedOracle("chinchilla", CHINCHILLA_EPOCH, noise=0.01).observe(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_law("chinchilla", X | {"loss": y}, starts=(), init=CHINCHILLA_EPOCH)
    cal = calibrate_misfit(fit)
    assert not cal.calibrated and cal.n_held_out == 0 and cal.n_fit == 6
    assert cal.amplitude == PRIOR_MISFIT_SD > 0
    text = cal.describe()
    assert "PRIOR, not calibrated" in text and "6 runs are too few" in text and "predicting the 0" not in text
    assert f"({fit.law.n_params + 2 + 2} needed)" in text
    far = {"N": np.array([1e11]), "D": np.array([2e12])}
    iv0, iv1 = fit.interval(far, level=0.9, method="delta"), extrapolation_interval(fit, far, calibration=cal)
    assert iv1.lo[0] < iv0.lo[0] and iv1.hi[0] > iv0.hi[0]  # the prior widens, it is not a silent 0
    assert iv1.method.endswith(f"+misfit(a={PRIOR_MISFIT_SD:.3g})")
    with pytest.raises(Exception):
        extrapolation_interval(fit, {"N": np.array([1e9])}, calibration=cal)  # D missing: an error, not a guess


def test_a_calibration_whose_held_out_runs_fit_well_is_never_silently_zero():
    # issue 15 item 5: the method-of-moments amplitude is 0 whenever the held-out errors fall
    # within the plain predictive variance; the prior (weighted as PRIOR_WEIGHT runs) keeps it
    # from vanishing, and describe() gives both numbers
    from fitting.extrapolation import PRIOR_WEIGHT

    _, fit = _fit_on_grid(noise=0.015, seed=3)
    zeros = 0
    for held_out in (0.15, 0.2, 0.25, 0.3):
        raw = calibrate_misfit(fit, held_out=held_out, prior_weight=0)
        cal = calibrate_misfit(fit, held_out=held_out)
        k = cal.n_held_out
        assert cal.calibrated and cal.estimate == pytest.approx(raw.amplitude)
        floor = PRIOR_MISFIT_SD * np.sqrt(PRIOR_WEIGHT / (k + PRIOR_WEIGHT))
        assert cal.amplitude >= floor * (1 - 1e-12) and cal.amplitude >= raw.amplitude
        assert cal.amplitude == pytest.approx(np.sqrt((k * raw.amplitude**2 + PRIOR_WEIGHT * PRIOR_MISFIT_SD**2)
                                                      / (k + PRIOR_WEIGHT)))
        assert f"their own estimate {raw.amplitude:.3g}" in cal.describe()
        zeros += raw.amplitude == 0
    assert zeros >= 1  # the data's own estimate does come out exactly 0 here: the kind this guards


def test_a_calibration_pools_the_held_out_splits_it_is_given_and_weighs_the_prior_as_one_prediction():
    # issue 15 item 5: each split is one refit predicting the top h of the runs by compute; the
    # splits' squared errors pool into one estimate, and the prior counts as one prediction
    from fitting.extrapolation import HELD_OUT, PRIOR_WEIGHT

    _, fit = _fit_on_grid(noise=0.01, seed=1, misfit=undertraining_misfit())
    one = calibrate_misfit(fit)  # the default: the top quarter
    assert HELD_OUT == (0.25,) and one.splits == (12,) and one.n_held_out == 12 and one.n_fit == 37
    assert "calibrated by refitting 37 runs and predicting the 12 largest by compute" in one.describe()
    cal = calibrate_misfit(fit, held_out=(0.1, 0.3, 0.5))
    assert cal.calibrated and cal.splits == (5, 15, 24) and cal.n_held_out == 44
    assert cal.n_fit == 49 - 24  # the smallest refit: all but the largest split
    k = cal.n_held_out
    assert cal.amplitude == pytest.approx(np.sqrt((k * cal.estimate**2 + PRIOR_WEIGHT * PRIOR_MISFIT_SD**2)
                                                  / (k + PRIOR_WEIGHT)))
    assert "3 refits predicting the 5, 15 and 24 largest" in cal.describe()
    assert f"({k} held-out predictions; their own estimate {cal.estimate:.3g}" in cal.describe()
    # the pooled estimate is the splits' squared errors over their misfit variances, not a mean of estimates
    parts = [calibrate_misfit(fit, held_out=h, prior_weight=0) for h in (0.1, 0.3, 0.5)]
    assert min(p.estimate for p in parts) <= cal.estimate <= max(p.estimate for p in parts)


def test_the_prior_part_of_a_calibrated_misfit_never_grows_beyond_the_held_out_runs():
    # issue 15 item 5: the GP's distance factor u_t/ū_h (1.8 for Kaplan's L(N, D), 2.5 for the
    # 9-parameter law at targets 1-2 decades out) multiplied the prior's floor, most of the misfit
    # sd, and those laws' intervals covered 98-100 %; now only the held-out data's part grows with it
    from fitting.extrapolation import misfit_sd, unit_misfit_sd

    cands, fit = _fit_on_grid(noise=0.01, seed=1, misfit=undertraining_misfit())
    cal = calibrate_misfit(fit)
    far_targets = TargetRegion.compute_frontier("chinchilla", CHINCHILLA_EPOCH, 1e24).X  # 3 decades beyond the runs
    X = {c: np.concatenate([cands.X[c], far_targets[c]]) for c in ("N", "D")}
    u, sd = unit_misfit_sd(fit, X, cal.length), misfit_sd(fit, X, cal)
    far = u > cal.unit_held_out
    assert far.any() and (~far).any()
    # nearer than the held-out runs: the GP's amplitude times u, as before
    assert np.allclose(sd[~far], cal.amplitude * u[~far])
    # beyond them: less than that, and the prior's part stays at its value at the held-out runs
    k, w = cal.n_held_out, cal.prior_weight
    assert np.all(sd[far] < cal.amplitude * u[far])
    assert np.allclose(sd[far] ** 2 * (k + w), k * cal.estimate**2 * u[far] ** 2 + w * PRIOR_MISFIT_SD**2 * cal.unit_held_out**2)
    # the interval adds it in quadrature to the plain interval's log half-width, with the delta interval's t quantile
    iv0, iv1 = fit.interval(X, level=0.9, method="delta"), extrapolation_interval(fit, X, level=0.9, calibration=cal)
    q = stats.t.ppf(0.95, fit.n_points - fit.law.n_params)
    assert np.allclose(np.log(iv1.hi / iv1.mean) ** 2, np.log(iv0.hi / iv0.mean) ** 2 + (q * sd) ** 2)
    # without the prior it is the data's own estimate times u everywhere
    raw = calibrate_misfit(fit, prior_weight=0)
    assert np.allclose(misfit_sd(fit, X, raw), raw.estimate * u)
