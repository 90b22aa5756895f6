"""Issue 15 items 1 and 2: every parameter interval is as wide as the data allow and inside the
law's bounds. A bootstrap replicate can leave the optimum's basin; profile-likelihood intervals
show a side the data leave open; a bootstrap interval much narrower than the profile is flagged
and replaced; Wald (sandwich) intervals are taken in the law's transformed space and never leave
its bounds."""

import json
import warnings

import numpy as np
import pytest
from scipy import stats

from fitting.fit import fit_law
from fitting.law import Law
from fitting.laws import CHINCHILLA_EPOCH, get_law
from fitting.objective import params_at_bounds
from fitting.param_intervals import narrow_bootstrap, wald_intervals
from fitting.uncertainty import bootstrap

CHIN = get_law("chinchilla")


def runs(law, truth, n, seed, n_max=1e9, ratios=(3, 100), noise=0.03):
    """``n`` runs with N log-uniform in [1e7, n_max], D/N log-uniform in ``ratios``, losses from
    ``law`` at ``truth`` with log-normal noise: → (inputs with the loss column)."""
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(1e7), np.log(n_max), n))
    D = N * np.exp(rng.uniform(np.log(ratios[0]), np.log(ratios[1]), n))
    return {"N": N, "D": D, "loss": law.predict(truth, {"N": N, "D": D}) * np.exp(noise * rng.standard_normal(n))}


def flat_e_data(seed: int = 1, n: int = 68, noise: float = 0.026):
    """The issue's example, synthetic: 68 runs, ~2.6 % scatter, a truth without an irreducible
    term, so the best fit drives E = exp(e) toward 0, where the gradient in e vanishes."""
    truth = {"E": 1e-12, "A": 400.0, "alpha": 0.3, "B": 400.0, "beta": 0.3}
    return runs(CHIN, truth, n, seed, n_max=3e9, ratios=(2, 100), noise=noise)


@pytest.fixture(scope="module")
def flat_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_law("chinchilla", flat_e_data(), n_bootstrap=200)


def test_flat_e_interval_spans_orders_of_magnitude(flat_fit):
    assert flat_fit.params["E"] < 1e-6  # the fit ran off toward 0
    lo, hi = flat_fit.ci()["E"]
    assert hi >= 10 * lo and hi > 1e-3, (lo, hi)  # an interval, not a point at 1e-67
    prof = flat_fit.profile["E"]
    assert prof.lo_open and prof.lo == 0.0 and not prof.hi_open and 1e-3 < prof.hi < 1.0  # one-sided: E ≤ ~0.06
    assert "E" in flat_fit.diagnostics["params_at_bounds"]


def test_a_warm_started_bootstrap_is_flagged_and_replaced_by_the_profile(flat_fit):
    # what the bootstrap did before: every replicate warm-started at the optimum, never moving
    fit = flat_fit
    stuck = bootstrap(fit, 100, seed=0, n_perturb=0, attach=False)
    lo, hi = stuck.ci()["E"]
    assert hi < 100 * lo  # the collapse the issue reports
    names, note = narrow_bootstrap(stuck.ci(), fit.profile, fit.law)
    assert "E" in names and "E bootstrap [" in note and "profile" in note
    assert "alpha" not in names and "beta" not in names  # the pinned exponents agree
    saved = fit.bootstrap, dict(fit.diagnostics), list(fit.warnings)
    try:
        fit.bootstrap = stuck
        fit.diagnostics["narrow_bootstrap"] = names
        iv = fit.intervals()["E"]
        assert iv.lo_open and iv.lo == 0.0 and iv.hi == pytest.approx(fit.profile["E"].hi)
    finally:
        fit.bootstrap, fit.diagnostics, fit.warnings = saved


def test_profile_cli_prints_the_open_side(tmp_path, capsys):
    from scalesweep.cli import main

    d = flat_e_data()
    path = tmp_path / "runs.csv"
    path.write_text("N,D,loss\n" + "".join(f"{a:.6g},{b:.6g},{c:.6g}\n" for a, b, c in zip(d["N"], d["D"], d["loss"])))
    assert main(["fit", str(path), "--intervals", "profile", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "uncertainty: profile likelihood" in out
    row = next(line for line in out.splitlines() if line.startswith("E "))
    # open down to its bound, and so not identified (fitting.checks.parameter_verdicts)
    assert "0 (open)" in row and row.rstrip().endswith("one-sided, not identified"), row
    assert main(["fit", str(path), "--intervals", "profile", "--bootstrap", "0", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["uncertainty"] == "profile" and obj["ci90_open"]["E"] == [True, False]
    assert obj["not_identified"]["E"].startswith("at a bound: E = ") and obj["not_identified"]["alpha"] is None
    assert obj["ci90"]["E"][0] == 0.0 and obj["ci90"]["E"][1] > 1e-3


def test_well_posed_bootstrap_and_profile_agree():
    data = runs(CHIN, CHINCHILLA_EPOCH, 120, seed=3, n_max=3e9, ratios=(2, 300), noise=0.01)
    fit = fit_law("chinchilla", data, n_bootstrap=400, loss="ls")
    boot, prof = fit.bootstrap.ci(), fit.profile
    assert "narrow_bootstrap" not in fit.diagnostics
    for k in CHIN.param_names:
        t = CHIN.transforms[CHIN.param_names.index(k)]
        f = np.log if t == "log" else (lambda v: v)
        wb, wp = f(boot[k][1]) - f(boot[k][0]), f(prof[k].hi) - f(prof[k].lo)
        assert not (prof[k].lo_open or prof[k].hi_open)
        assert abs(wb / wp - 1) < 0.2, (k, boot[k], prof[k])


def test_demo_e_pinned_near_zero_is_flagged():
    # the demo sweep's chinchilla fit: E = 1.4e-5 on losses near 2.3 (E/L ≈ 6e-6), unflagged before
    X = {"N": np.geomspace(2e4, 5e5, 9), "D": np.geomspace(2e6, 8e6, 9)}
    theta = {"E": 1.4e-5, "A": 30.0, "alpha": 0.2, "B": 40.0, "beta": 0.15}
    assert 1.5 < CHIN.predict(theta, X).min()
    found = params_at_bounds(CHIN, CHIN.to_z(CHIN.as_array(theta)), X)
    assert set(found) == {"E"}
    assert params_at_bounds(CHIN, CHIN.to_z(CHIN.as_array(dict(theta, E=0.05))), X) == {}  # 2 % of loss: it moves the runs


# ---------------------------------------------------------------------------- item 2: inside the bounds
def _nine(p, X):
    x = np.log(X["N"] / 1e8)
    alpha, beta = p["a0"] + p["a1"] * x, p["b0"] + p["b1"] * x
    B = p["B"] * np.exp(p["c1"] * x + p["c2"] * x * x)
    return p["E"] + p["A"] * np.exp(-alpha * np.log(X["N"])) + B * np.exp(-beta * np.log(X["D"]))


NINE = Law(  # a user's 9-parameter law, E bounded to (1, 6) on its natural scale
    name="nine", param_names=("E", "A", "a0", "a1", "B", "b0", "b1", "c1", "c2"), fn=_nine,
    transforms=("identity", "log", "identity", "identity", "log", "identity", "identity", "identity", "identity"),
    bounds=((1, 6), (0, np.inf), (0, 2), (-0.1, 0.1), (0, np.inf), (0, 2), (-0.1, 0.1), (-1, 1), (-0.2, 0.2)),
    init_box=((1.2, 3.0), (4.0, 8.0), (0.2, 0.5), (-0.02, 0.02), (5.0, 9.0), (0.2, 0.5), (-0.02, 0.02), (-0.1, 0.1),
              (-0.02, 0.02)),
    n_init=128,
)
NINE_TRUTH = {"E": 1.8, "A": 500.0, "a0": 0.35, "a1": 0.01, "B": 2000.0, "b0": 0.33, "b1": -0.01, "c1": 0.05, "c2": -0.005}


def _inside(law, ivs):
    for k, (lo, hi) in zip(law.param_names, law.bounds):
        assert lo <= ivs[k].lo <= ivs[k].hi <= hi, (k, ivs[k], (lo, hi))


@pytest.mark.parametrize("seed", range(3))
def test_every_interval_stays_inside_the_bounds(seed):
    """A property over random small, noisy fits of the 9-parameter law and of chinchilla: the
    sandwich, profile and bootstrap intervals all lie inside each parameter's bounds. (Local fits
    from the truth: the intervals, not the multi-start, are under test.)"""
    for law, truth in ((NINE, NINE_TRUTH), (CHIN, CHINCHILLA_EPOCH)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_law(law, runs(law, truth, 24, seed), starts=(), init=truth, n_bootstrap=20, seed=seed)
        _inside(law, fit.ci_laplace_intervals())
        _inside(law, fit.intervals())
        _inside(law, fit.profile)  # fit_law computes it beside a bootstrap
        for k, (lo, hi) in fit.ci_laplace().items():
            assert law.bounds[law.param_names.index(k)][0] <= lo <= hi <= law.bounds[law.param_names.index(k)][1]


def test_nine_parameter_e_interval_was_outside_its_bounds_and_now_is_not():
    # the example: `fit --bootstrap 0` printed E in [-2.45, 10.29] with E bounded to (1, 6)
    n = 30
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_law(NINE, runs(NINE, NINE_TRUTH, n, seed=0))
    q = stats.t.ppf(0.95, n - NINE.n_params)
    se_e = float(np.sqrt(fit.cov_z[0, 0]))
    plain = (fit.z[0] - q * se_e, fit.z[0] + q * se_e)
    assert plain[0] < 1 or plain[1] > 6, plain  # the data leave E loose enough to escape (1, 6)
    iv = fit.ci_laplace_intervals()["E"]
    assert 1 <= iv.lo < fit.params["E"] < iv.hi <= 6
    assert iv == wald_intervals(NINE, fit.z, fit.cov_z, q)["E"]
    lo, hi = fit.ci()["E"]
    assert 1 <= lo and hi <= 6 and f"{lo:.6g}" in fit.summary()


def test_a_wald_interval_that_saturates_to_the_bound_is_open():
    """A Wald interval on log E with se 1000 ends at exp(-1645) = 0 and exp(+1645) = inf, neither
    transformed end at its (infinite) transformed bound: both sides are still open, because the
    natural ends are the law's bounds (0, inf)."""
    z = CHIN.to_z([CHINCHILLA_EPOCH[k] for k in CHIN.param_names])
    cov = np.diag([1000.0**2, 0.01, 1e-4, 0.01, 1e-4])
    iv = wald_intervals(CHIN, z, cov, 1.645)
    assert iv["E"].lo == 0.0 and iv["E"].hi == np.inf
    assert iv["E"].lo_open and iv["E"].hi_open and iv["E"].unidentified
    assert not (iv["A"].lo_open or iv["A"].hi_open)


def test_epoch_fit_below_1e19_flags_every_end_at_a_bound_as_open(capsys):
    """A new user's finding: `fit epoch_chinchilla.csv --fit-max-compute 1e19 --bootstrap 0 --json`
    printed E's interval [0.0, null] with ci90_open [false, false], an unbounded side shown as
    closed. Every interval end at the law's natural bound (0 or inf, here null) is open."""
    from pathlib import Path

    from scalesweep.cli import main

    csv = Path(__file__).resolve().parents[1] / "fitting" / "reference" / "epoch_chinchilla.csv"
    assert main(["fit", str(csv), "--fit-max-compute", "1e19", "--bootstrap", "0", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    for k, (bound_lo, bound_hi) in zip(CHIN.param_names, CHIN.bounds):
        (lo, hi), (lo_open, hi_open) = obj["ci90"][k], obj["ci90_open"][k]
        assert lo_open or (lo is not None and lo > bound_lo), (k, lo, lo_open)
        assert hi_open or (hi is not None and hi < bound_hi), (k, hi, hi_open)
    # E sits at its bound, so its interval is the profile's whatever the method: open down to 0, and
    # closed above where the data close it (the Wald interval's [0, inf] read as if nothing did)
    assert obj["ci90_open"]["E"] == [True, False] and obj["not_identified"]["E"]
    assert 1.0 < obj["ci90"]["E"][1] < 1.3, obj["ci90"]["E"]
    # and the JSON's headline flag agrees (it said "identified": true beside a non-null not_identified.E)
    assert obj["identified"] is False and obj["split_identified"] is True
    assert obj["unidentified_reason"] == "not identified by these runs: E (not_identified says why)"
