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


def _noise_only_interval(fit, X, level=0.9):
    """The 90 % interval from the parameters and run-to-run scatter alone, the misfit taken out of the
    residuals (fitting.extrapolation.noise_parts): what the misfit interval widens."""
    from types import SimpleNamespace

    from fitting.extrapolation import noise_parts

    parts = noise_parts(fit, fit.law.columns(X))
    mean = fit.predict(X)
    h = stats.t.ppf(0.5 + level / 2, fit.n_points - fit.law.n_params) * np.sqrt(parts.param_var + parts.noise_sd**2)
    return SimpleNamespace(mean=mean, lo=mean * np.exp(-h), hi=mean * np.exp(h))


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
            iv0 = _noise_only_interval(fit, target.X)
            iv1 = extrapolation_interval(fit, target.X, level=0.9, calibration=cal)
            assert np.all(iv1.lo <= iv0.lo * (1 + 1e-12)) and np.all(iv1.hi >= iv0.hi * (1 - 1e-12))
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
    iv0, iv1 = _noise_only_interval(fit, far), extrapolation_interval(fit, far, calibration=cal)
    assert iv1.lo[0] < iv0.lo[0] and iv1.hi[0] > iv0.hi[0]  # the prior widens, it is not a silent 0
    assert iv1.method.endswith(f"+extrapolation_error(sd={PRIOR_MISFIT_SD:.3g})")
    with pytest.raises(Exception):
        extrapolation_interval(fit, {"N": np.array([1e9])}, calibration=cal)  # D missing: an error, not a guess


def test_a_calibration_whose_held_out_runs_fit_well_is_never_silently_zero():
    # issue 15 item 5: the method-of-moments amplitude is 0 whenever the held-out errors fall
    # within the plain predictive variance; the prior (the residuals' own smooth misfit, by REML,
    # weighted as PRIOR_WEIGHT runs) keeps it from vanishing where the residuals show one, and
    # describe() gives both numbers
    from fitting.extrapolation import PRIOR_WEIGHT
    from fitting.uncertainty import residual_split

    _, fit = _fit_on_grid(noise=0.015, seed=3)
    zeros = 0
    for held_out in (0.15, 0.2, 0.25, 0.3):
        raw = calibrate_misfit(fit, held_out=held_out, prior_weight=0)
        cal = calibrate_misfit(fit, held_out=held_out)
        k = cal.n_held_out
        assert cal.calibrated and cal.estimate == pytest.approx(raw.amplitude)
        assert cal.prior == pytest.approx(residual_split(fit, cal.length)[1]) and cal.prior > 0
        floor = cal.prior * np.sqrt(PRIOR_WEIGHT / (k + PRIOR_WEIGHT))
        assert cal.amplitude >= floor * (1 - 1e-12) and cal.amplitude > 0
        assert cal.amplitude == pytest.approx(np.sqrt((k * raw.amplitude**2 + PRIOR_WEIGHT * cal.prior**2)
                                                      / (k + PRIOR_WEIGHT)))
        assert f"their own estimate {raw.amplitude:.3g}" in cal.describe()
        assert f"shrunk toward the residuals' own misfit {cal.prior:.3g}" in cal.describe()
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
    assert cal.amplitude == pytest.approx(np.sqrt((k * cal.estimate**2 + PRIOR_WEIGHT * cal.prior**2)
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
    assert np.allclose(sd[far] ** 2 * (k + w), k * cal.estimate**2 * u[far] ** 2 + w * cal.prior**2 * cal.unit_held_out**2)
    # the interval adds it in quadrature to the noise-only plain interval's log half-width, with the t quantile
    iv0, iv1 = _noise_only_interval(fit, X), extrapolation_interval(fit, X, level=0.9, calibration=cal)
    q = stats.t.ppf(0.95, fit.n_points - fit.law.n_params)
    assert np.allclose(np.log(iv1.hi / iv1.mean) ** 2, np.log(iv0.hi / iv0.mean) ** 2 + (q * sd) ** 2)
    assert np.allclose(np.log(iv1.mean / iv1.lo), np.log(iv1.hi / iv1.mean))  # symmetric in log (delta method)
    # without the prior it is the data's own estimate times u everywhere
    raw = calibrate_misfit(fit, prior_weight=0)
    assert np.allclose(misfit_sd(fit, X, raw), raw.estimate * u)


def test_the_noise_split_reads_the_run_to_run_scatter_without_the_misfit():
    # issue 15 item 5 (a, b): the fit's MAD scale and sandwich read a smooth misfit in the residuals as
    # noise, and the misfit term then counted it again; the REML split takes the misfit out, and its
    # degrees-of-freedom correction keeps the noise sd from reading low with 49 runs for 5 parameters
    from fitting.extrapolation import noise_parts
    from fitting.uncertainty import m_estimator_factor, residual_split

    noise = 0.01
    split = {m: np.array([residual_split(_fit_on_grid(noise, seed, misfit)[1]) for seed in range(10)])
             for m, misfit in (("misfit", undertraining_misfit(0.04)), ("exact", None))}
    for name, s in split.items():
        assert 0.85 * noise <= s[:, 0].mean() <= 1.15 * noise, (name, s[:, 0])
        assert np.all(s[:, 2] == 49 - 5)
    assert split["misfit"][:, 1].mean() > 3 * split["exact"][:, 1].mean()  # the misfit shows as misfit, not noise
    # the parameter part is the M-estimator's at that noise: Huber with δ → 0 is least absolute
    # deviations (π/2 σ²), δ → ∞ least squares (σ²)
    assert m_estimator_factor(0.01, "huber", 1e-6) == pytest.approx(np.pi / 2 * 1e-4, rel=1e-3)
    assert m_estimator_factor(0.01, "huber", 1.0) == pytest.approx(1e-4, rel=1e-6)
    assert m_estimator_factor(0.01, "ls", 1e-3) == pytest.approx(1e-4)
    _, fit = _fit_on_grid(noise, 0, undertraining_misfit(0.04))
    X = {"N": np.array([3e10]), "D": np.array([6e11])}
    parts = noise_parts(fit, X)
    assert parts.noise_sd == pytest.approx(residual_split(fit)[0]) and parts.param_var[0] > 0
