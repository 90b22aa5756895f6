"""Profile-likelihood intervals of predictions (fitting.prediction_profile): the noise-only delta
interval where the objective is quadratic, wider than it where the data leave a direction open."""

import warnings

import numpy as np
import pytest
from scipy import stats

from fitting.design import TargetRegion
from fitting.extrapolation import (PROFILE_BELOW_RUNS_PER_PARAMETER, calibrate_misfit, default_parameter_part,
                                   extrapolation_interval, noise_parts, parameter_interval)
from fitting.fit import fit_law
from fitting.laws import CHINCHILLA_EPOCH
from fitting.prediction_profile import prediction_profile
from fitting.replay import SimulatedOracle
from fitting.uncertainty import bootstrap
from tests.test_extrapolation import _grid
from tests.test_intervals import flat_e_data

TARGETS = TargetRegion.compute_frontier("chinchilla", CHINCHILLA_EPOCH, 1e22).X


def _exact_law_fit(loss, seed=0, every=1):
    """The law fitted to noisy draws of itself on the 7 x 7 grid (``every``: each that-many-th run only)."""
    X = {c: v[::every] for c, v in _grid().X.items()}
    y = SimulatedOracle("chinchilla", CHINCHILLA_EPOCH, noise=0.01, seed=seed).observe(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_law("chinchilla", dict(X) | {"loss": y}, starts=(), init=CHINCHILLA_EPOCH, loss=loss)


def _delta_half_width(fit, X):
    q = stats.t.ppf(0.95, fit.n_points - fit.law.n_params)
    return q * np.sqrt(noise_parts(fit, fit.law.columns(X)).param_var)


def test_where_the_objective_is_quadratic_the_profile_is_the_noise_only_delta_interval():
    """Least squares on the exact law: the objective is quadratic over the interval, so the profile
    is the delta method's, side by side."""
    fit = _exact_law_fit("ls")
    prof = prediction_profile(fit, TARGETS, 0.9)
    delta = _delta_half_width(fit, TARGETS)
    assert not prof.open_lo.any() and not prof.open_hi.any()
    np.testing.assert_allclose(prof.h_lo, delta, rtol=0.1)
    np.testing.assert_allclose(prof.h_hi, delta, rtol=0.1)


def test_a_huber_fit_s_profile_is_the_noise_model_s_not_its_nearly_l1_objective_s():
    """Huber (δ = 1e-3 at 1 % noise, nearly least absolute deviations): the profile is traced on the
    Huber loss at 1.345 σ (fitting.prediction_profile, "Which objective"), so on the exact law it is
    the least-squares fit's profile (0.96-1.12 of it on seeds 0-3), about 0.8x the nearly-L1 fit's
    own noise-only delta interval (0.80-0.88; 2/π in variance), where the fit's own objective's
    profile was about as wide as that interval."""
    huber, ls = _exact_law_fit("huber"), _exact_law_fit("ls")
    h = prediction_profile(huber, TARGETS, 0.9)
    h = np.r_[h.h_lo, h.h_hi]
    ls_profile = prediction_profile(ls, TARGETS, 0.9)
    assert 0.9 < (h / np.r_[ls_profile.h_lo, ls_profile.h_hi]).mean() < 1.15
    assert 0.7 < (h / np.tile(_delta_half_width(huber, TARGETS), 2)).mean() < 0.9


def test_a_parameter_whose_gradient_vanishes_at_the_optimum_is_still_moved():
    """The issue's flat-E data: the fit drives E = exp(e) toward 0, where ∂f/∂e vanishes, so
    neither the optimum nor the quadratic path can raise E, and the far prediction (loss ≈ E + a
    little) looked pinned from above. The start grid's points move it: the upper side at the
    farthest target is several times what the optimum and the path alone find, and never narrower
    anywhere (a start is only added)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_law("chinchilla", flat_e_data())
    assert fit.params["E"] < 1e-6
    far = {"N": np.array([1e9, 1e13]), "D": np.array([2e10, 2e14])}
    explored = prediction_profile(fit, far, 0.9)
    stuck = prediction_profile(fit, far, 0.9, explore=False)
    assert np.all(explored.h_hi >= stuck.h_hi * (1 - 1e-6))
    assert explored.h_hi[1] > 3 * stuck.h_hi[1]


def test_the_extrapolation_interval_takes_its_parameter_part_from_the_profile_when_asked():
    fit = _exact_law_fit("huber")
    prof = prediction_profile(fit, TARGETS, 0.9)
    iv = extrapolation_interval(fit, TARGETS, level=0.9, parameter_part="profile")
    assert iv.method.startswith("profile+extrapolation_error")
    log_mean = np.log(iv.mean)
    # each side holds at least the profile's parameter part, and the misfit and scatter on top
    assert np.all(log_mean - np.log(iv.lo) >= prof.h_lo * (1 - 1e-9))
    assert np.all(np.log(iv.hi) - log_mean >= prof.h_hi * (1 - 1e-9))
    with pytest.raises(ValueError, match="parameter_part"):
        extrapolation_interval(fit, TARGETS, parameter_part="jackknife")
    with pytest.raises(ValueError, match="needs a bootstrap"):
        extrapolation_interval(fit, TARGETS, parameter_part="bootstrap")


def test_a_fit_with_few_runs_per_parameter_takes_the_profile_by_default_and_never_the_bootstrap():
    """Below PROFILE_BELOW_RUNS_PER_PARAMETER runs per parameter every extrapolation interval (and its
    misfit calibration, and the "parameters only" interval printed beside it) takes the profile's
    parameter part; above, the delta method's, even where the fit carries a bootstrap (which over- and
    under-covers, fitting.extrapolation's module doc)."""
    small = _exact_law_fit("huber", every=3)  # 17 runs for 5 parameters
    assert small.n_points < PROFILE_BELOW_RUNS_PER_PARAMETER * small.law.n_params
    assert default_parameter_part(small) == "profile"
    calibration = calibrate_misfit(small)
    assert calibration.parameter_part == "profile" and calibration.calibrated
    prof = prediction_profile(small, TARGETS, 0.9)
    iv = extrapolation_interval(small, TARGETS, level=0.9, calibration=calibration, profile=prof)
    assert iv.method.startswith("profile+extrapolation_error")
    alone = parameter_interval(small, TARGETS, 0.9, profile=prof)
    assert alone.method.startswith("profile")
    np.testing.assert_allclose(np.log(iv.mean / alone.lo), prof.h_lo)
    assert np.all(iv.lo <= alone.lo) and np.all(iv.hi >= alone.hi) and np.all(iv.hi > alone.hi)

    full = _exact_law_fit("huber")  # 49 runs
    bootstrap(full, n_boot=16, seed=0)
    assert default_parameter_part(full) == "delta"
    assert calibrate_misfit(full).parameter_part == "delta"
    assert extrapolation_interval(full, TARGETS, level=0.9).method.startswith("delta+extrapolation_error")
    assert extrapolation_interval(full, TARGETS, level=0.9, parameter_part="bootstrap").method.startswith("bootstrap")
    assert calibrate_misfit(full, parameter_part="bootstrap").parameter_part == "delta"  # no bootstrap per refit
    with pytest.raises(ValueError, match="parameter_part"):
        calibrate_misfit(full, parameter_part="jackknife")
