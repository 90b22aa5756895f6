"""Compute-optimal allocation: closed form vs numeric, exponent with CI, Kaplan adjustments."""

import numpy as np
import pytest

from fitting.allocate import (
    allocation_exponent,
    chinchilla_optimal,
    compute_optimal_allocation,
    optimal_allocation,
    tokens_per_param,
)
from fitting.dynamics import b_crit, min_compute, min_steps
from fitting.fit import fit_law
from fitting.law import grid
from fitting.laws import CHINCHILLA_HOFFMANN, KAPLAN_PAPER, chinchilla, data_constrained
from fitting.uncertainty import bootstrap


def test_closed_form_exponent_hoffmann():
    N, D, a, b = chinchilla_optimal(CHINCHILLA_HOFFMANN, 1e21)
    assert a == pytest.approx(0.452, abs=5e-4)  # beta/(alpha+beta) = 0.28/0.62
    assert a + b == pytest.approx(1.0)
    assert 6 * N * D == pytest.approx(1e21, rel=1e-12)
    assert allocation_exponent("chinchilla", CHINCHILLA_HOFFMANN, 1e21) == pytest.approx(0.28 / 0.62)


@pytest.mark.parametrize("C", [1e18, 1e21, 1e24])
def test_numeric_matches_closed_form(C):
    closed = optimal_allocation("chinchilla", CHINCHILLA_HOFFMANN, C)
    numeric = optimal_allocation("chinchilla", CHINCHILLA_HOFFMANN, C, closed_form=False)
    assert numeric["N_opt"][0] == pytest.approx(closed["N_opt"][0], rel=1e-5)
    assert numeric["D_opt"][0] == pytest.approx(closed["D_opt"][0], rel=1e-5)
    assert numeric["loss"][0] == pytest.approx(closed["loss"][0], rel=1e-10)
    # the generic exponent (any law) agrees with beta/(alpha+beta)
    twin = chinchilla.with_(name="chinchilla_copy")
    assert allocation_exponent(twin, CHINCHILLA_HOFFMANN, C) == pytest.approx(0.28 / 0.62, rel=1e-4)


def test_kaplan_allocation_is_interior_and_growing():
    p = KAPLAN_PAPER["kaplan"]
    r = optimal_allocation("kaplan", p, [1e19, 1e21, 1e23])
    assert not r["at_edge"].any()
    assert np.all(np.diff(r["N_opt"]) > 0) and np.all(np.diff(r["D_opt"]) > 0)
    a = allocation_exponent("kaplan", p, 1e21)
    assert 0.3 < a < 1.0
    np.testing.assert_allclose(r["tokens_per_param"], tokens_per_param(r["N_opt"], r["D_opt"]))


def test_kaplan_batch_adjustments():
    L = np.array([2.0, 3.0])
    bc = b_crit(L)
    np.testing.assert_allclose(bc, 2e8 / L ** (1 / 0.21))
    assert min_steps(1000.0, 2 * bc[0], bc[0]) == pytest.approx(1000 / 1.5)
    assert min_compute(1e20, bc[0], bc[0]) == pytest.approx(0.5e20)


def test_data_constrained_needs_unique_tokens():
    p = dict(CHINCHILLA_HOFFMANN, R_D_star=15.4, R_N_star=5.3)
    with pytest.raises(ValueError, match="U"):
        optimal_allocation(data_constrained, p, 1e21)
    scarce = optimal_allocation(data_constrained, p, 1e22, fixed={"U": 1e10})
    plenty = optimal_allocation(data_constrained, p, 1e22, fixed={"U": 1e14})
    # Muennighoff et al.: excess parameters decay faster than repeated data (R_N* < R_D*), so
    # with scarce unique data the optimum takes more epochs rather than more parameters
    assert scarce["tokens_per_param"][0] > plenty["tokens_per_param"][0]
    assert scarce["loss"][0] > plenty["loss"][0]


def test_plan_with_uncertainty():
    rng = np.random.default_rng(0)
    n = 120
    N = np.exp(rng.uniform(np.log(1e7), np.log(3e9), n))
    D = N * np.exp(rng.uniform(np.log(2), np.log(200), n))
    truth = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 1500.0, "beta": 0.30}
    y = chinchilla.predict(truth, {"N": N, "D": D}) * np.exp(0.01 * rng.standard_normal(n))
    fit = fit_law(chinchilla, {"N": N, "D": D, "loss": y}, starts=grid([0, 0.5], [3, 6], [0.3], [3, 7], [0.3]))
    p = compute_optimal_allocation(fit, 1e21)
    for k in ("N_opt", "D_opt", "tokens_per_param", "exponent_a"):
        lo, hi = p.intervals[k]
        assert lo < getattr(p, k) < hi, k
    a_true = 0.30 / 0.64
    assert p.intervals["exponent_a"][0] - 0.02 < a_true < p.intervals["exponent_a"][1] + 0.02
    assert p.loss_prediction_interval[0] < p.loss < p.loss_prediction_interval[1]
    # the misfit-aware interval (calibrated on held-out largest runs) only ever widens it
    assert p.misfit_sd is not None and p.misfit_sd >= 0
    lo, hi = p.loss_prediction_interval
    assert p.loss_misfit_interval[0] <= lo * (1 + 1e-12) and hi <= p.loss_misfit_interval[1] * (1 + 1e-12)
    assert p.to_dict()["loss_misfit_interval"] == list(p.loss_misfit_interval)
    assert p.N_opt * p.D_opt * 6 == pytest.approx(1e21)
    bootstrap(fit, n_boot=200, seed=0)
    pb = compute_optimal_allocation(fit, 1e21)
    assert pb.uncertainty.startswith("bootstrap")
    d = pb.to_dict()
    assert set(d["ci90"]) >= {"N_opt", "D_opt", "loss", "exponent_a"}
    # bare parameters: point estimates only
    q = compute_optimal_allocation(law="chinchilla", params=CHINCHILLA_HOFFMANN, compute=1e21)
    assert q.exponent_a == pytest.approx(0.4516, abs=1e-4) and q.intervals == {}


def test_a_fit_with_a_non_positive_exponent_has_no_allocation_and_says_why():
    """alpha <= 0 (loss does not fall with N: a tiny isoFLOP sweep whose smallest model wins every
    budget fitted this) has no interior optimum: the allocation is unidentified with the reason,
    never NaN numbers presented as an answer (nor a RuntimeWarning from the closed form)."""
    import warnings as _warnings

    from fitting.allocate import compute_optimal_allocation

    params = {"E": 0.44, "A": 1.49, "alpha": -6.07e-05, "B": 2513.6, "beta": 0.715}
    with _warnings.catch_warnings():
        _warnings.simplefilter("error")
        allocation = compute_optimal_allocation(law="chinchilla", params=params, compute=6e10)
    assert not allocation.identified and "alpha = -6.07e-05 is not > 0" in allocation.unidentified_reason


def test_an_allocation_that_leans_on_a_parameter_at_its_bound_is_not_identified():
    """A new user's active sweep (7 runs at 5 (N, D) points, two lrs at two of them): the
    Chinchilla fit put beta at its bound 5 and E at 1e-217, its bootstrap explored nothing, and
    `plan` printed N_opt [1.27e6, 2.60e6]. N_opt leans on beta, so there is no allocation; a
    parameter that cannot move N_opt (E, additive) does not count."""
    import warnings

    from fitting.allocate import allocation_drivers

    N = np.array([24576, 24576, 196608, 82944, 82944, 82944, 82944], dtype=float)
    D = np.array([1e5, 5e4, 5e4, 1e5, 1e5, 5e4, 5e4])
    loss = np.array([3.306877, 4.001286, 3.369922, 3.081283, 3.126286, 3.567851, 3.291400])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_law(chinchilla, {"N": N, "D": D, "loss": loss}, n_bootstrap=100, seed=0)
        verdicts = fit.verdicts(0.9)
        assert verdicts["beta"].bounded and verdicts["E"].bounded  # the user's fit: both pinned
        drivers = allocation_drivers(fit, 1e12)
        # E is additive: N_opt does not move with it; 5 points for 5 parameters also leave a null
        # direction (fit.null_params), and which others the fit leaves at or open to a bound depends on
        # the optimum the starts reach: each counts where it moves N_opt, and only such parameters do
        assert "beta" in drivers and "E" not in drivers and all(verdicts[k].bounded for k in drivers)
        allocation = compute_optimal_allocation(fit, 1e12)
    assert not allocation.identified and np.isnan(allocation.N_opt)
    assert allocation.unidentified_reason.startswith("N_opt depends on ") and "beta" in allocation.unidentified_reason


def test_a_parameter_draw_beyond_exp_s_range_is_inf_without_a_numpy_warning():
    """`plan --bootstrap 0` on the demo's 9 runs (E at its bound) printed numpy's "overflow
    encountered in exp" from a sandwich draw of log A past 709: the draw is inf, and dropped."""
    import warnings

    z = np.zeros((2, chinchilla.n_params))
    z[1, chinchilla.param_names.index("A")] = 800.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any RuntimeWarning fails the test
        theta = chinchilla.from_z(z)
    assert np.isinf(theta[1, chinchilla.param_names.index("A")]) and np.isfinite(theta[0]).all()
