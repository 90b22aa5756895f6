"""Issue 15 item 1, found by a new user auditing every printed interval: on Epoch's runs below
1e19 FLOPs the fit drives E = exp(e) to its bound 0, where the gradient in e vanishes. The
parameter profile refitted each point from the optimum's basin only, so alpha's and A's profile
intervals stopped short of values the data allow; the bootstrap-vs-profile check then passed a
narrow bootstrap, and ``plan`` drew N_opt's interval from it. Also here: an open side of a loss
interval printed as a closed "0.0000", and ``plan --json`` saying nothing of the fit's verdict."""

import json
from pathlib import Path

import numpy as np
import pytest

from fitting.fit import fit_law
from fitting.laws import get_law
from fitting.objective import make_objective
from fitting.param_intervals import profile_exit, profile_threshold
from fitting.uncertainty import interval_text, open_sides
from scalesweep.cli import main

CHIN = get_law("chinchilla")
EPOCH = Path(__file__).resolve().parents[1] / "fitting" / "reference" / "epoch_chinchilla.csv"
# fits inside the 90 % threshold that the old profile excluded (the audit's, checked below)
INSIDE = {"E": 1.0, "A": 21.03, "alpha": 0.1305, "B": 7.80e6, "beta": 0.766}


@pytest.fixture(scope="module")
def below_1e19_csv(tmp_path_factory):
    """Epoch's runs of at most 1e19 FLOPs, as a file (``plan`` has no ``--fit-max-compute``)."""
    import csv

    with open(EPOCH, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = tmp_path_factory.mktemp("epoch") / "below_1e19.csv"
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if float(r["Training FLOP"]) <= 1e19)
    return out


@pytest.fixture(scope="module")
def below_1e19():
    from fitting import reference

    data = reference.load("epoch-chinchilla", drop_top_loss=0)  # as `fit epoch_chinchilla.csv` reads it
    return fit_law(CHIN, data, train={"max_compute": 1e19}, intervals="profile")  # `--fit-max-compute 1e19`


@pytest.fixture(scope="module")
def allowed(below_1e19):
    """The best fit with A held at 21, found independently (scipy, from the audit's point with E = 1):
    natural parameters, inside the 90 % threshold though not in the best fit's basin."""
    from scipy.optimize import minimize

    fit = below_1e19
    fg = make_objective(CHIN, fit.data.X, fit.data.y, loss=fit.loss, delta=fit.delta, weights=fit.data.weights)
    z0 = CHIN.to_z(CHIN.as_array(INSIDE))
    others = [0, 2, 3, 4]

    def f(v):
        z = z0.copy()
        z[others] = v
        return float(fg(z[None], np.array([0]))[0][0])

    res = minimize(f, z0[others], method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 4000})
    z = z0.copy()
    z[others] = res.x
    q, c = profile_threshold(fit, 0.9)
    assert np.sqrt(2 * max(res.fun - fit.objective, 0) * c) < q  # the data allow this fit...
    return CHIN.as_dict(CHIN.from_z(z[None])[0])


def test_profile_reaches_the_basin_a_vanishing_gradient_hid(below_1e19, allowed):
    fit = below_1e19
    assert fit.params["E"] < 1e-3 < allowed["E"]  # ...in another basin than the best one, E at its bound
    iv = fit.intervals()
    for k in ("A", "alpha"):  # so the profile intervals hold its values (were [11.9, 14.7], [0.076, 0.091])
        assert iv[k].lo <= allowed[k] <= iv[k].hi, (k, allowed[k], iv[k])


def test_a_refit_stuck_short_does_not_end_the_interval():
    # √(2Δf·c) along one side, q = 1.68: a stuck refit at the second point reads 4.2, the next ones are inside
    stat = np.array([0.0, 0.5, 4.2, 1.4, 2.0, 9.0])
    assert profile_exit(stat, 1.68) == 4  # the interval runs past the stuck point to the last inside one
    assert profile_exit(np.array([0.0, 0.5, 1.0]), 1.68) is None  # never leaves: open
    assert profile_exit(np.array([0.0, 3.0, 4.0]), 1.68) == 1


def test_plan_n_opt_interval_holds_what_the_data_allow(below_1e19_csv, allowed, capsys):
    """`plan --bootstrap 200` printed N_opt 1.03e13 [7.97e12, 1.38e13] and a [0.884, 0.922] at 1e24
    FLOPs, all from resamples that kept E at 0; a fit the data allow put N_opt at 6e12 (a 0.855).
    Where the bootstrap is much narrower than the profile along a parameter that moves N_opt, the
    intervals span the sandwich covariance's too, and say so."""
    from fitting.allocate import allocation_exponent, optimal_allocation

    assert main(["plan", str(below_1e19_csv), "--compute", "1e24", "--bootstrap", "200", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    theta = CHIN.as_array(allowed)
    n_opt = float(optimal_allocation(CHIN, theta, 1e24)["N_opt"][0])
    a = allocation_exponent(CHIN, theta, 1e24)
    lo, hi = obj["ci90"]["N_opt"]
    assert lo <= n_opt <= hi, (n_opt, lo, hi)
    assert obj["ci90"]["exponent_a"][0] <= a <= obj["ci90"]["exponent_a"][1]
    assert any("much narrower than their profile" in note and "alpha" in note for note in obj["notes"])
    assert "spanning both" in obj["uncertainty"]


def test_plan_json_carries_the_fits_verdict(below_1e19_csv, capsys):
    """`plan --json` said "identified": true and nothing else, where `fit --json` on the same runs said
    false: the allocation's flag is about N_opt; the parameters' verdict now rides along."""
    assert main(["plan", str(below_1e19_csv), "--compute", "1e22", "--bootstrap", "0", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["identified"] is True  # E, at its bound, does not move N_opt
    assert obj["not_identified"] == obj["fit"]["not_identified"] and obj["not_identified"]["E"]
    assert obj["plans"][0]["not_identified"] == obj["not_identified"]


def test_a_side_the_ladder_left_just_open_is_closed_further_out(capsys):
    """`predict --example epoch-chinchilla --train "C <= 5e18" --test "C > 3e21"` printed
    "90% [0.0000, 2.7877]" for two targets: the profile's ladder ended with the rise at 0.298 against
    a threshold of 0.303, and a direct minimisation closes those sides at 1.61-1.67. Open sides are
    now traced further (fitting.prediction_profile.FAR_LADDER)."""
    args = ["predict", "--example", "epoch-chinchilla", "--train", "C <= 5e18", "--test", "C > 3e21", "--bootstrap",
            "0", "--json"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)["targets"]
    assert len(rows) == 4
    for r in rows:
        assert r["open"] == [False, False] and 1.45 < r["lower"] < r["predicted"] < r["upper"], r


def test_an_open_loss_side_is_printed_open(capsys):
    """An open side printed as a closed "0.0000" read as an interval reaching zero loss. Six runs at
    two model sizes leave every target's prediction open both ways (a null direction of the fit)."""
    args = ["predict", str(EPOCH), "--train", "N < 8e7", "--test", "C > 3e21", "--bootstrap", "0"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert main(args + ["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["targets"]
    assert rows and all(r["open"] == [True, True] for r in rows)
    assert text.count("(open)") == 2 * len(rows)
    assert "[0.0000, " not in text and "[0.0000 (open), inf (open)]" in text


def test_interval_text_marks_only_open_sides():
    assert interval_text(1.5, 2.25) == "[1.5, 2.25]"
    assert interval_text(0.0, 2.25) == "[0 (open), 2.25]"
    assert interval_text(1.5, float("inf"), ".3g") == "[1.5, inf (open)]"
    assert open_sides(float("nan"), float("nan")) == [False, False]  # unknown is not open


def test_a_prediction_profile_side_ends_after_its_last_point_inside():
    """The prediction profile's sides follow the same rule (fitting.prediction_profile._crossings):
    a refit that stopped short (the 9.0 between two inside points) does not end the interval."""
    from fitting.prediction_profile import _crossings

    dist = np.tile([0.1, 0.2, 0.3, 0.4], (1, 2, 1))  # (targets, sides, ladder): |Δ log f|
    rise = np.tile([0.0, 9.0, 0.5, 9.0], (1, 2, 1))  # ΔF, threshold 1
    h, is_open = _crossings(dist, rise, 1.0)
    assert np.all((h > 0.3) & (h < 0.4)) and not is_open.any()


@pytest.mark.parametrize("bootstrap", ["0", "200"])
def test_a_parameter_at_its_bound_gets_the_profile_interval_whatever_the_method(below_1e19_csv, bootstrap, capsys):
    """`fit --bootstrap 200` printed E [1.59e-22, 0.152], closed, for an E at its bound whose profile
    is [0 (open), 1.12]: resamples (like the curvature) cannot show a spread the bound cuts."""
    assert main(["fit", str(below_1e19_csv), "--bootstrap", bootstrap, "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["ci90_open"]["E"] == [True, False] and obj["ci90"]["E"][0] == 0.0
    assert 1.0 < obj["ci90"]["E"][1] < 1.3, obj["ci90"]["E"]
    assert obj["not_identified"]["E"].startswith("at a bound")


def test_plan_json_flags_open_sides():
    from fitting.allocate import Allocation

    inf = float("inf")
    a = Allocation(law="chinchilla", compute=1e22, N_opt=1e10, D_opt=1e11, tokens_per_param=10.0, loss=2.0,
                   exponent_a=0.5, level=0.9, intervals={"N_opt": (5e9, 2e10), "loss": (0.0, inf), "exponent_a": (0.4, 0.6)},
                   loss_prediction_interval=(0.0, 3.0))
    d = a.to_dict()
    assert d["ci90_open"] == {"N_opt": [False, False], "loss": [True, True]}
    assert d["loss_interval_open"] == [True, False]


def test_a_sandwich_interval_shifted_off_the_profile_prints_the_profiles(tmp_path, capsys):
    """On the 15 cheapest Epoch runs `fit --bootstrap 0` printed B [0.171, 1905] while the same output's
    "not identified" reason quoted B's profile interval [14.5, 2.89e6]: the curvature's interval was
    not narrow but shifted off what the runs allow. One covering less than half the profile's is
    replaced by it, as a narrow bootstrap's is."""
    import csv

    with open(EPOCH, newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: float(r["Training FLOP"]))[:15]
    path = tmp_path / "cheapest15.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main(["fit", str(path), "--bootstrap", "0"]) == 0
    text = capsys.readouterr().out
    assert main(["fit", str(path), "--bootstrap", "0", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    lo, hi = obj["ci90"]["B"]
    assert lo > 5 and hi > 1e5, (lo, hi)  # the profile's [14.5, 2.89e6], not [0.171, 1905]
    assert "B: the sandwich interval covers less than half of the profile likelihood's" in text
