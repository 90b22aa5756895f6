"""Laws: formulas, vectorisation, registry, bring-your-own law, generic derivatives."""

import textwrap

import numpy as np
import pytest

from fitting.objective import log_jacobian, mu_jacobian
from fitting.laws import (
    CHINCHILLA_HOFFMANN, KAPLAN_PAPER, chinchilla, critical_batch, data_constrained, effective_data,
    get_law, kaplan_c, kaplan_d, kaplan_n, kaplan_nd, kaplan_ns, list_laws,
)
from fitting.law import Law

N = np.array([1e7, 1e8, 1e9, 1e10])
D = np.array([2e8, 2e9, 2e10, 2e11])


def test_chinchilla_formula_and_vectorisation():
    p = CHINCHILLA_HOFFMANN
    want = p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]
    np.testing.assert_allclose(chinchilla.predict(p, {"N": N, "D": D}), want, rtol=1e-12)
    th = chinchilla.as_array(p)
    many = np.stack([th, th * 1.01])
    out = chinchilla.predict(many, np.column_stack([N, D]))
    assert out.shape == (2, 4)
    np.testing.assert_allclose(out[0], want, rtol=1e-12)


def test_kaplan_formulas():
    X = {"N": N, "D": D, "C": 6 * N * D, "S": np.array([1e3, 1e4, 1e5, 1e6])}
    p = KAPLAN_PAPER["kaplan_n"]
    np.testing.assert_allclose(kaplan_n().predict(p, X), (p["N_c"] / N) ** p["alpha_N"])
    p = KAPLAN_PAPER["kaplan_d"]
    np.testing.assert_allclose(kaplan_d().predict(p, X), (p["D_c"] / D) ** p["alpha_D"])
    p = {"C_c": 3.1e8, "alpha_C": 0.050}
    np.testing.assert_allclose(kaplan_c().predict(p, X), (p["C_c"] / X["C"]) ** p["alpha_C"])
    p = KAPLAN_PAPER["kaplan"]
    want = ((p["N_c"] / N) ** (p["alpha_N"] / p["alpha_D"]) + p["D_c"] / D) ** p["alpha_D"]
    np.testing.assert_allclose(kaplan_nd().predict(p, X), want)
    p = KAPLAN_PAPER["kaplan_ns"]
    want = (p["N_c"] / N) ** p["alpha_N"] + (p["S_c"] / X["S"]) ** p["alpha_S"]
    np.testing.assert_allclose(kaplan_ns().predict(p, X), want)
    p = KAPLAN_PAPER["critical_batch"]
    np.testing.assert_allclose(critical_batch.predict(p, {"L": np.array([2.0, 3.0])}),
                               2e8 / np.array([2.0, 3.0]) ** (1 / 0.21))


def test_irreducible_flag():
    law = get_law("kaplan+E")
    assert law.param_names[0] == "E" and law.n_params == 5
    p = dict(KAPLAN_PAPER["kaplan"], E=1.5)
    np.testing.assert_allclose(law.predict(p, {"N": N, "D": D}) - 1.5,
                               kaplan_nd().predict(KAPLAN_PAPER["kaplan"], {"N": N, "D": D}))
    assert kaplan_n(irreducible=True).name == "kaplan_n+E"


def test_data_constrained_effective_data():
    U = 1e9
    assert effective_data(np.array([U]), U, 15.4)[0] == pytest.approx(U)  # one epoch: no discount
    # many repetitions saturate at U (1 + R*)
    assert effective_data(np.array([1e6 * U]), U, 15.4)[0] == pytest.approx(U * 16.4, rel=1e-6)
    # few repetitions are almost as good as fresh data
    assert effective_data(np.array([2 * U]), U, 15.4)[0] == pytest.approx(2 * U, rel=0.04)
    # unique data and a model no bigger than compute-optimal for it (U_N = N): plain Chinchilla
    p = dict(CHINCHILLA_HOFFMANN, R_D_star=15.4, R_N_star=5.3)
    X = {"N": N, "D": N * 1000, "U": N * 1e4}
    np.testing.assert_allclose(data_constrained.predict(p, X), chinchilla.predict(CHINCHILLA_HOFFMANN, X), rtol=1e-12)
    # repeating data hurts
    Xr = {"N": N, "D": N * 1000, "U": N * 1000 / 40}
    assert np.all(data_constrained.predict(p, Xr) > chinchilla.predict(CHINCHILLA_HOFFMANN, X))


def test_registry_and_errors():
    for name in ["chinchilla", "kaplan", "kaplan_n", "kaplan_d", "kaplan_c", "kaplan_ns", "data_constrained",
                 "critical_batch", "kaplan_n+E"]:
        assert isinstance(get_law(name), Law)
        assert name in list_laws()
    with pytest.raises(ValueError, match="unknown law"):
        get_law("nope")
    with pytest.raises(FileNotFoundError):
        get_law("/does/not/exist.py:LAW")
    with pytest.raises(ValueError, match="has no attribute"):
        get_law("fitting.laws:NOPE")
    assert get_law("fitting.laws:chinchilla") is chinchilla
    with pytest.raises(ValueError):
        chinchilla.predict({"E": 1.0}, {"N": N, "D": D})
    with pytest.raises(ValueError, match="missing"):
        chinchilla.predict(CHINCHILLA_HOFFMANN, {"N": N})


def test_law_from_file(tmp_path):
    f = tmp_path / "mylaw.py"
    f.write_text(textwrap.dedent('''
        import numpy as np
        from fitting.law import Law
        LAW = Law(name="mine", param_names=("E", "A", "a"), inputs=("N",),
                  fn=lambda p, X: p["E"] + p["A"] * X["N"] ** (-p["a"]),
                  transforms=("log", "log", "identity"))
        def factory():
            return LAW
    '''))
    law = get_law(f"{f}:LAW")
    assert law.name == "mine"
    assert get_law(f"{f}:factory") is law
    assert law.initial_z().shape[1] == 3  # Sobol starts when no grid is given


def test_generic_jacobian_matches_analytic():
    z = chinchilla.to_z(chinchilla.as_array(CHINCHILLA_HOFFMANN))
    X = {"N": N, "D": D}
    Ja = mu_jacobian(chinchilla, z, X, method="analytic")
    Jc = mu_jacobian(chinchilla, z, X, method="complex")
    Jd = mu_jacobian(chinchilla, z, X, method="central")
    np.testing.assert_allclose(Jc, Ja, rtol=1e-10)
    np.testing.assert_allclose(Jd, Ja, rtol=1e-6, atol=1e-9)
    G = log_jacobian(chinchilla, np.stack([z, z]), X)
    assert G.shape == (2, 4, 5)
    np.testing.assert_allclose(G[0], Ja / chinchilla.predict(CHINCHILLA_HOFFMANN, X)[:, None], rtol=1e-10)
    # a law with a non-analytic op (abs) falls back to central differences and still works
    law = Law(name="absy", param_names=("A", "a"), inputs=("N",), fn=lambda p, X: np.abs(p["A"]) * X["N"] ** (-p["a"]),
              transforms=("log", "identity"))
    J = log_jacobian(law, np.array([np.log(3.0), 0.3]), {"N": N})
    np.testing.assert_allclose(J[:, 1], -np.log(N), rtol=1e-6)
    np.testing.assert_allclose(J[:, 0], 1.0, rtol=1e-6)


def test_law_validation():
    with pytest.raises(ValueError, match="duplicate"):
        Law(name="x", param_names=("a", "a"), fn=lambda p, X: 1)
    with pytest.raises(ValueError, match="transforms"):
        Law(name="x", param_names=("a",), fn=lambda p, X: 1, transforms=("exp",))
