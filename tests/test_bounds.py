"""Issue 15 item 3: parameters at their bounds are named by one function
(fitting.objective.params_at_bounds) and reported by fit, replay, plan, the online fitter and the
active summary, not only by fit. The example: a replay of 7 cheap Epoch runs ends with E → 1e-41
and beta at its upper bound 5 (R² −7 on the targets) and used to say nothing."""

import re
import warnings

import numpy as np
import pytest

from fitting import reference
from fitting.allocate import compute_optimal_allocation
from fitting.fit import fit_law
from fitting.laws import CHINCHILLA_EPOCH, get_law
from fitting.objective import params_at_bounds
from fitting.online import OnlineFitConfig, OnlineFitter

LAW = get_law("chinchilla")
# The replay's end state (E -> 0, beta at 5) came from Hoffmann's grid; the starts placed from the
# data (`Law.data_init`) stop elsewhere in the same flat valley of these 7 runs (beta 3.8, E -> 0).
GRID_ONLY = LAW.with_(data_init=None)


@pytest.fixture(scope="module")
def cheap7():
    """The 7 cheapest Epoch runs: what `replay --budget-fraction 0.0005 --strategy cheapest` buys."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = reference.load("epoch-chinchilla", law="chinchilla")
    d = d.subset(d.compute() <= 1e21)
    idx = np.argsort(d.compute(), kind="stable")[:7]
    return {"N": d.X["N"][idx], "D": d.X["D"][idx]}, d.y[idx]


def test_params_at_bounds_names_a_finite_bound_and_a_parameter_heading_to_zero():
    X = {"N": np.geomspace(1e7, 1e9, 6), "D": np.geomspace(1e9, 1e11, 6)[::-1]}
    theta = dict(CHINCHILLA_EPOCH, E=1e-40, beta=5.0)
    found = params_at_bounds(LAW, LAW.to_z(LAW.as_array(theta)), X)
    # B too: with beta at 5, B/D^5 vanishes on every run, so B no longer moves a prediction
    assert set(found) == {"E", "B", "beta"}
    assert "upper bound" in found["beta"] and found["E"] == "= 1e-40 (no effect on any run)"
    assert params_at_bounds(LAW, LAW.to_z(LAW.as_array(CHINCHILLA_EPOCH)), X) == {}  # an interior fit: none


def test_fit_plan_and_online_fitter_report_the_bounds(cheap7):
    X, y = cheap7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_law(GRID_ONLY, X | {"loss": y})
    assert {"E", "beta"} <= set(fit.diagnostics["params_at_bounds"])
    assert any(w.startswith("parameters at a bound: E = ") for w in fit.warnings)
    assert fit.bounds_note in fit.summary()  # fit (and plan, which prints the summary)
    assert fit.identifiability.identified
    plan = compute_optimal_allocation(fit, 1e21, n_samples=50)
    # beta at its bound moves N_opt: no allocation at all (fitting.allocate.allocation_drivers),
    # where this used to be a note beside an allocation it distorts
    # (A too since the profile refits from the multi-start's other basins: 7 runs leave it open to a bound)
    assert not plan.identified and plan.unidentified_reason.startswith("N_opt depends on "), plan.unidentified_reason
    driving = plan.unidentified_reason.removeprefix("N_opt depends on ").split(", which")[0].split(", ")
    assert "beta" in driving and "E" not in driving, driving  # E, at its bound too, does not move N_opt
    fitter = OnlineFitter(GRID_ONLY, OnlineFitConfig(full_every=16, max_starts=256, screen=8))
    fitter.add_many(X, y, run_ids=[str(i) for i in range(7)])
    assert fitter.fit.bounds_note is not None and "beta" in fitter.fit.bounds_note


def test_a_well_posed_fit_has_no_bounds_note():
    N, D = np.meshgrid(np.geomspace(1e7, 1e9, 5), np.geomspace(3e8, 1e11, 5), indexing="ij")
    X = {"N": N.ravel(), "D": D.ravel()}
    y = LAW.predict(CHINCHILLA_EPOCH, X) * np.exp(0.005 * np.random.default_rng(0).standard_normal(25))
    fit = fit_law("chinchilla", X | {"loss": y})
    assert fit.bounds_note is None and fit.diagnostics["params_at_bounds"] == {}


def test_active_summary_reports_the_bounds(cheap7):
    from test_design_degenerate import _grid, _searcher  # the sweep's searcher on a 3 x 3 grid, no Ray

    searcher = _searcher(_grid(3, 3, 1e13), 1e13)
    X, y = cheap7
    searcher.fitter.add_many(X, y, run_ids=[f"r{i}" for i in range(7)])  # the runs a sweep would have reported
    lines = searcher.summary_lines()
    assert any(line.startswith("  warning: parameters at a bound: E = ") for line in lines), lines
    # the target interval of such a fit is printed with the caveat, not as a bare number
    law_line = next(line for line in lines if line.startswith("  law chinchilla"))
    assert "target rel. CI half-width" in law_line
    # fit's and replay's tags, from the one verdict (FitResult.param_tags), and each interval's source named
    assert re.search(r"\bE=\S+ \[[^]]*\] \((one-sided, )?not identified\)", law_line), law_line
    assert "(90% CI from the sandwich covariance)" in law_line and "(parameters only, sandwich covariance" in law_line
    assert law_line.endswith("(parameters at their bounds: not to be trusted)"), law_line
