"""Every built-in law fits the same runs in any unit: inputs multiplied by 1e4 or 1e-4 give the
same exponents (finding: kaplan_c at C ~ 1e20 FLOPs stuck at alpha_C 0, C_c on its start grid,
R²(log) -82, while C / 1e4 fitted). The starts a law places from the data (`fitting.law_starts`)
follow the units; a fixed grid alone does not."""

from __future__ import annotations

import numpy as np
import pytest

from fitting.fit import fit_law
from fitting.data import FitData
from fitting.laws import KAPLAN_PAPER, get_law

RNG = np.random.default_rng(7)
N = np.geomspace(1e7, 1e9, 5).repeat(4)
D = N * np.tile([5.0, 10.0, 20.0, 80.0], 5)
LOSS_LAW = dict(E=1.8, A=400.0, alpha=0.34, B=2000.0, beta=0.37)

# law -> (true parameters, input columns at real LLM scale)
CASES = {
    "kaplan_n": (KAPLAN_PAPER["kaplan_n"], {"N": N}),
    "kaplan_d": (KAPLAN_PAPER["kaplan_d"], {"D": D}),
    "kaplan_c": (KAPLAN_PAPER["kaplan_c"], {"C": 6 * N * D}),  # C 3e15..5e20 FLOPs, the report's
    "kaplan_c+E": ({"E": 1.5, "C_c": 3e10, "alpha_C": 0.1}, {"C": 6 * N * D}),
    "kaplan": (KAPLAN_PAPER["kaplan"], {"N": N, "D": D}),
    "kaplan_ns": (KAPLAN_PAPER["kaplan_ns"], {"N": N, "S": D / 5e5}),
    "chinchilla": (LOSS_LAW, {"N": N, "D": D}),
    "data_constrained": ({**LOSS_LAW, "R_D_star": 15.0, "R_N_star": 5.0},
                         {"N": N, "D": D, "U": D / np.tile([1.0, 2.0, 8.0, 30.0], 5)}),
    "critical_batch": (KAPLAN_PAPER["critical_batch"], {"L": np.geomspace(2.0, 5.0, 20)}),
}


def _exponents(law, params):
    return {k: v for k, v in params.items() if k.startswith(("alpha", "beta"))}


def _fit(law, X, y):
    """The fitter's own starts (`Law.initial_z`: the fixed grid, then the data's), the fixed grid
    thinned to at most 32 rows and the best 16 after screening, so the test stays fast
    (Hoffmann's grid alone is 4,500)."""
    data = FitData(X={c: np.asarray(v, float) for c, v in X.items()}, y=y, columns={c: c for c in X}, source="test")
    fixed = law.initial_z(np.random.default_rng(0))
    starts = np.vstack([fixed[:: -(-len(fixed) // 32)], law.data_starts(data.X, y)])
    return fit_law(law, data, starts=starts, screen=16, n_bootstrap=0).params


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_builtin_law_gives_the_same_exponents_in_any_unit(name):
    law = get_law(name)
    truth, X = CASES[name]
    y = law.predict(truth, X) * np.exp(0.005 * RNG.standard_normal(len(N)))
    small, large = (_exponents(law, _fit(law, {c: v * factor for c, v in X.items()}, y)) for factor in (1e-4, 1e4))
    assert small == pytest.approx(_exponents(law, truth), rel=0.1)  # the fit found the law at all
    assert large == pytest.approx(small, rel=1e-3, abs=1e-4)  # and the same one 8 decades apart


def test_a_fit_worse_than_a_constant_is_called_a_misfit_not_a_weak_design():
    law = get_law("kaplan_c").with_(data_init=None)  # the fixed grid alone: stops at C_c 1e14
    truth, X = CASES["kaplan_c"]
    data = FitData(X=dict(X), y=law.predict(truth, X), columns={"C": "C"}, source="test")
    fit = fit_law(law, data, n_bootstrap=0)
    assert fit.gof()["r2_log"] < 0
    assert "fits worse than a constant" in fit.warnings[0]
    assert not any("vary tokens-per-parameter" in w for w in fit.warnings)  # the data is not what failed
