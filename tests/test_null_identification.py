"""A quantity the runs cannot identify is reported unidentified, never with a confident interval.

A new user's findings (2026-12-01): the sandwich (``--bootstrap 0``) gave a parameter with no
effect, R_D_star without repeated data, and A, K of a law where only A·K matters zero-width or
split-product intervals with no tag; 6 runs for 5 parameters gave alpha [1.51, 1.96] (truth 0.34)
and ``plan`` went ahead; the degenerate-design warning named E and A beside R_D_star with generic
advice; "law misfit sd" was printed for an exactly true law."""

import warnings

import numpy as np

from fitting.extrapolation import MisfitCalibration
from fitting.fit import fit_law
from fitting.law import IDENTITY, LOG, Law
from fitting.laws import chinchilla
from scalesweep.cli import main

TRUTH = {"E": 1.8, "A": 400.0, "alpha": 0.34, "B": 2000.0, "beta": 0.37}
BOX = ((0.5, 3), (10, 1e5), (0.1, 1), (10, 1e5), (0.1, 1))
BOUNDS = ((0, 10), (0, 1e8), (0, 2), (0, 1e8), (0, 2))


def _runs(n_sizes=4, ratios=(5, 20, 80), sd=0.015, seed=0):
    N = np.repeat(np.geomspace(1e7, 1e9, n_sizes), len(ratios))
    D = N * np.tile(ratios, n_sizes)
    y = chinchilla.predict(TRUTH, {"N": N, "D": D}) * np.exp(sd * np.random.default_rng(seed).standard_normal(N.size))
    return {"N": N, "D": D, "loss": y}


def _fit(law, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_law(law, data, **kw)


def _law(name, names, fn, transforms, bounds, box):
    return Law(name=name, param_names=names, fn=fn, transforms=transforms, bounds=bounds, init_box=box, n_init=64)


UNUSED = _law("unused", ("E", "A", "alpha", "B", "beta", "gamma"),
              lambda p, X: chinchilla.fn(p, X) + 0 * p["gamma"], (LOG, LOG, IDENTITY, LOG, IDENTITY, IDENTITY),
              BOUNDS + ((-5, 5),), BOX + ((-1, 1),))
PRODUCT = _law("product", ("E", "A", "K", "alpha", "B", "beta"),
               lambda p, X: p["E"] + p["A"] * p["K"] / X["N"] ** p["alpha"] + p["B"] / X["D"] ** p["beta"],
               (LOG, LOG, LOG, IDENTITY, LOG, IDENTITY), BOUNDS[:2] + ((1e-3, 1e3),) + BOUNDS[2:],
               BOX[:2] + ((0.1, 10),) + BOX[2:])


def test_sandwich_marks_a_parameter_without_effect_unidentified():
    fit = _fit(UNUSED, _runs())  # no bootstrap: the sandwich, whose pseudo-inverse gave gamma zero width
    iv = fit.intervals()
    assert iv["gamma"].unidentified and iv["gamma"].hi - iv["gamma"].lo == 10  # open to both bounds
    assert not np.isfinite(fit.stderr["gamma"])
    v = fit.verdicts()
    assert not v["gamma"].identified and v["gamma"].kind == "null" and v["gamma"].bounded
    assert all(v[k].identified for k in ("E", "alpha", "beta"))  # the rest stay identified
    row = next(line for line in fit.summary().splitlines() if line.startswith("gamma"))
    assert row.endswith("not identified") and "(open)" in row


def test_only_a_product_identified_marks_both_and_keeps_predictions_of_the_product():
    fit = _fit(PRODUCT, _runs())
    v = fit.verdicts()
    assert {k for k in v if not v[k].identified} == {"A", "K"}
    assert all(v[k].kind == "null" for k in ("A", "K"))
    assert fit.intervals()["K"].unidentified and fit.intervals()["A"].unidentified
    # a prediction depends on A·K only, which the runs fix: its interval stays finite, far out too
    far = {"N": np.array([1e11]), "D": np.array([2e12])}
    iv = fit.interval(far, method="delta")
    assert 0 < iv.lo[0] < iv.mean[0] < iv.hi[0] < np.inf
    assert "A, K" in fit.warnings[0] or "K, A" in fit.warnings[0]


def test_data_constrained_without_repeats_names_r_d_star_and_the_design_fix():
    d = _runs()
    d["U"] = d["D"]  # no run repeats its data: R_D_star has no effect on any loss
    fit = _fit("data_constrained", d)
    assert fit.intervals()["R_D_star"].unidentified and fit.verdicts()["R_D_star"].kind == "null"
    note = next(w for w in fit.warnings if w.startswith("degenerate design"))
    named = note.split("the runs do not constrain ")[1].split(";")[0]
    assert "R_D_star" in named and "E" not in named.replace("R_D_star", "") and " A" not in named
    assert "repeated data (U < D" in note
    # a prediction at repeated data leans on R_D_star: not a confident interval, sandwich or misfit-widened
    rep = {"N": np.array([1e9]), "D": np.array([8e10]), "U": np.array([1e10])}
    iv = fit.interval(rep, method="delta")
    assert iv.lo[0] == 0 and iv.hi[0] == np.inf
    from fitting.extrapolation import extrapolation_interval

    assert extrapolation_interval(fit, rep).hi[0] == np.inf


FEW = "N,D,loss\n" + "\n".join(["1e7,5e7,6.313447", "1e7,2e8,5.214198", "1e7,8e8,4.447581",
                                "1e9,5e9,2.667862", "1e9,2e10,2.423427", "1e9,8e10,2.340983"]) + "\n"


def test_six_runs_at_two_sizes_leave_alpha_unidentified_and_plan_refuses(tmp_path, capsys):
    path = tmp_path / "few.csv"
    path.write_text(FEW)
    fit = _fit("chinchilla", str(path))
    v = fit.verdicts()
    assert v["alpha"].kind == "null" and v["A"].kind == "null"  # two sizes: only a trade-off of alpha and A is fixed
    assert fit.intervals()["alpha"].unidentified  # was [1.51, 1.96] with truth 0.34
    rc = main(["plan", str(path), "--compute", "1e22", "--bootstrap", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "no compute-optimal allocation" in err and "alpha" in err


def test_a_well_posed_design_stays_identified():
    fit = _fit("chinchilla", _runs(n_sizes=3))  # 9 runs, 3 sizes x 3 ratios: as small as the demo
    assert fit.null_params == [] and all(x.identified or x.kind == "interval" for x in fit.verdicts().values())
    assert not any(x.kind == "null" for x in fit.verdicts().values())


def test_the_extrapolation_error_is_not_called_a_law_misfit():
    cal = MisfitCalibration(amplitude=0.0792, length=2.0, n_fit=15, n_held_out=5, estimate=0.08, prior_weight=1.0,
                            splits=(5,), prior=0.01)
    text = cal.describe()
    assert text.startswith("extrapolation error sd 0.0792") and "law misfit" not in text
    assert "beyond their own parameter and noise parts" in text and "parameter error those parts miss included" in text
