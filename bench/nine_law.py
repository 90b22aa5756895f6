"""The 9-parameter user law the benchmarks share (tests/test_fit.py's Farseer-like law, with an
analytic gradient so its fits cost what Chinchilla's do) and the truth it is simulated at:
bench/active_vs_grid.py (the designer on many-parameter laws) and bench/coverage.py (interval
coverage), issue 15."""

import numpy as np

from fitting.law import Law


def _nine_vg(p, X):
    lN, lD = np.log(X["N"]), np.log(X["D"])
    x = lN - np.log(1e8)
    alpha, beta = p["a0"] + p["a1"] * x, p["b0"] + p["b1"] * x  # N-dependent exponents
    tn = np.exp(-alpha * lN)
    td = np.exp(p["c1"] * x + p["c2"] * x * x - beta * lD)  # N-dependent data coefficient B·e^(c1 x + c2 x²)
    atn, btd = p["A"] * tn, p["B"] * td
    # d/d(E, A, a0, a1, B, b0, b1, c1, c2): analytic, so the bench's fits cost what Chinchilla's do
    return p["E"] + atn + btd, [1.0, tn, -atn * lN, -atn * lN * x, td, -btd * lD, -btd * lD * x, btd * x, btd * x * x]


NINE = Law(
    name="nine", param_names=("E", "A", "a0", "a1", "B", "b0", "b1", "c1", "c2"),
    fn=lambda p, X: _nine_vg(p, X)[0], grad=lambda p, X: _nine_vg(p, X)[1],
    transforms=("log", "log", "identity", "identity", "log", "identity", "identity", "identity", "identity"),
    bounds=((0, np.inf), (0, np.inf), (0, 2), (-0.1, 0.1), (0, np.inf), (0, 2), (-0.1, 0.1), (-1, 1), (-0.2, 0.2)),
    init_box=((0.0, 1.0), (4.0, 8.0), (0.2, 0.5), (-0.02, 0.02), (5.0, 9.0), (0.2, 0.5), (-0.02, 0.02), (-0.1, 0.1),
              (-0.02, 0.02)),
    n_init=256,
)
NINE_TRUTH = {"E": 1.8, "A": 500.0, "a0": 0.35, "a1": 0.01, "B": 2000.0, "b0": 0.33, "b1": -0.01, "c1": 0.05,
              "c2": -0.005}
