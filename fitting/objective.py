"""Objective and derivatives shared by every law: Huber / least squares on log-loss residuals,
and Jacobians of the law's log-prediction with respect to its transformed parameters.

Derivatives come from the law itself: its ``grad`` if it has one, otherwise complex-step
differentiation of ``fn`` (exact to rounding), or central differences when ``fn`` is not
complex-safe. Nothing is hand-written per law.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from fitting.data import load_fit_data
from fitting.law import Law
from fitting.laws import get_law


# ====================================================================== loss functions
def rho_psi(r, loss: str, delta: float):
    if loss == "huber":
        psi = np.clip(r, -delta, delta)
        return psi * (r - 0.5 * psi), psi  # = r²/2 inside ±δ, δ(|r| − δ/2) outside
    if loss in ("ls", "l2", "least_squares", "mse"):
        return 0.5 * r * r, r
    raise ValueError(f"unknown loss {loss!r}: use 'huber' or 'ls'")


# ====================================================================== derivatives
_DIFF_METHOD: dict[tuple, str] = {}


def _complex_ok(law: Law, z: np.ndarray, X) -> bool:
    """Does complex-step differentiation of ``law.fn`` agree with central differences?"""
    try:
        with np.errstate(all="ignore"):
            jc = _jac_complex(law, z[None, :], X)[0]
            jd = _jac_central(law, z[None, :], X)[0]
    except Exception:  # noqa: BLE001 - any failure means "not complex-safe"
        return False
    if not (np.all(np.isfinite(jc)) and np.all(np.isfinite(jd))):
        return bool(np.all(np.isfinite(jc)))
    scale = np.maximum(np.abs(jd), 1e-6 * (np.abs(jd).max() + 1e-300))
    return bool(np.all(np.abs(jc - jd) <= 1e-3 * scale + 1e-7))


def _jac_complex(law: Law, z: np.ndarray, X) -> np.ndarray:
    """d μ / d z via complex step, shape (S, n, P)."""
    S, P = z.shape
    h = 1e-20
    out = None
    for k in range(P):
        zc = z.astype(complex)
        zc[:, k] += 1j * h
        th = law.from_z(zc)
        mu = law.fn(law._pdict(th), X)
        col = np.imag(mu) / h
        if out is None:
            n = len(next(iter(X.values())))
            out = np.empty((S, n, P))
        out[:, :, k] = np.broadcast_to(col, (S, out.shape[1]))
    return out


def _jac_central(law: Law, z: np.ndarray, X) -> np.ndarray:
    S, P = z.shape
    n = len(next(iter(X.values())))
    out = np.empty((S, n, P))
    for k in range(P):
        h = 6e-6 * np.maximum(1.0, np.abs(z[:, k]))
        zp, zm = z.copy(), z.copy()
        zp[:, k] += h
        zm[:, k] -= h
        fp = np.broadcast_to(law.fn(law._pdict(law.from_z(zp)), X), (S, n))
        fm = np.broadcast_to(law.fn(law._pdict(law.from_z(zm)), X), (S, n))
        out[:, :, k] = (fp - fm) / (2 * h[:, None])
    return out


def _jac_analytic(law: Law, z: np.ndarray, X) -> np.ndarray:
    S, P = z.shape
    n = len(next(iter(X.values())))
    th = law.from_z(z)
    cols = law.grad(law._pdict(th), X)
    dz = law.dtheta_dz(z)
    out = np.empty((S, n, P))
    for k in range(P):
        out[:, :, k] = np.broadcast_to(cols[k], (S, n)) * dz[:, k : k + 1]
    return out


def _diff_method(law: Law, z: np.ndarray, X) -> str:
    key = (law.fn, law.grad)  # the functions themselves: no stale ids after a law is collected
    if key not in _DIFF_METHOD:
        if law.grad is not None:
            _DIFF_METHOD[key] = "analytic"
        else:
            Z = np.asarray(z, dtype=float).reshape(-1, law.n_params)
            probe = Z[0]
            with np.errstate(all="ignore"):
                for row in Z[:64]:  # probe at a start where the law is finite
                    mu = np.asarray(law.fn(law._pdict(law.from_z(row)), X), dtype=float)
                    if np.all(np.isfinite(mu)) and np.all(mu > 0):
                        probe = row
                        break
            _DIFF_METHOD[key] = "complex" if _complex_ok(law, probe, X) else "central"
    return _DIFF_METHOD[key]


def mu_jacobian(law: Law, z, X, method: str = "auto") -> np.ndarray:
    """d prediction / d z (transformed params): ``(n, P)`` for ``z`` of shape ``(P,)``, else ``(S, n, P)``."""
    z = np.asarray(z, dtype=float)
    X = law.columns(X)
    z2 = z.reshape(-1, law.n_params)
    if method == "auto":
        method = _diff_method(law, z2, X)
    fn = {"analytic": _jac_analytic, "complex": _jac_complex, "central": _jac_central}[method]
    with np.errstate(all="ignore"):
        J = fn(law, z2, X)
    return J[0] if z.ndim == 1 else J.reshape(z.shape[:-1] + J.shape[1:])


def log_jacobian(law, z, X, method: str = "auto") -> np.ndarray:
    """Jacobian of **log** prediction w.r.t. the transformed parameters ``z``.

    Generic for any law (its ``grad``, else complex step, else central differences). Shape
    ``(n, P)`` for ``z`` of shape ``(P,)``; ``(S, n, P)`` for ``(S, P)``. Use
    ``law.to_z(theta)`` to get ``z`` from natural parameters."""
    law = get_law(law)
    z = np.asarray(z, dtype=float)
    mu = law.predict(law.from_z(z), X)
    return mu_jacobian(law, z, X, method) / mu[..., None]


# ====================================================================== objective
def make_objective(law: Law, X, y, *, loss: str = "huber", delta: float = 1e-3, weights=None,
                   method: str = "auto") -> Callable:
    """Batched objective ``fg(z (S,P), rows) -> (f (S,), g (S,P))``.

    ``weights``: None, ``(n,)`` or ``(R, n)`` (one weight vector per problem; ``rows`` index it)."""
    X = law.columns(X)
    logy = np.log(np.asarray(y, dtype=float))
    n = logy.shape[0]
    W = None if weights is None else np.asarray(weights, dtype=float)
    P = law.n_params
    zb = np.zeros((1, P))
    mode = [method]

    def fg(z, rows):
        z = np.asarray(z, dtype=float)
        if mode[0] == "auto":
            mode[0] = _diff_method(law, z if z.size else zb, X)
        S = z.shape[0]
        with np.errstate(all="ignore"):
            th = law.from_z(z)
            p = law._pdict(th)
            if mode[0] == "analytic" and law.value_and_grad is not None:
                mu, cols = law.value_and_grad(p, X)
            else:
                mu, cols = law.fn(p, X), None
            mu = np.broadcast_to(mu, (S, n))
            r = np.log(mu) - logy
            rho, psi = rho_psi(r, loss, delta)
            if W is not None:
                w = W if W.ndim == 1 else W[rows]
                rho = rho * w
                psi = psi * w
            f = rho.sum(axis=1)
            c = psi / mu  # d rho / d mu
            g = np.empty((S, P))
            if mode[0] == "analytic":
                cols = law.grad(p, X) if cols is None else cols
                dz = law.dtheta_dz(z)
                for k in range(P):
                    ck = cols[k]
                    gk = c.sum(axis=1) if np.ndim(ck) == 0 and ck == 1.0 else (c * ck).sum(axis=1)
                    g[:, k] = gk * dz[:, k]
            else:
                J = (_jac_complex if mode[0] == "complex" else _jac_central)(law, z, X)
                g = np.einsum("sn,snp->sp", c, J)
        bad = ~np.isfinite(f)
        f = np.where(bad, np.inf, f)
        return f, g

    return fg


def objective(law, params, data, *, loss: str = "huber", delta: float = 1e-3) -> float:
    """Objective value at natural parameters (for comparisons with other optimisers)."""
    law = get_law(law)
    data = load_fit_data(data, law=law)
    z = law.to_z(law.as_array(params))
    f, _ = make_objective(law, data.X, data.y, loss=loss, delta=delta)(z[None, :], np.arange(1))
    return float(f[0])


# ====================================================================== bounds
# |∂ log L/∂z| below this on every run: the parameter no longer moves the predictions. 1e-4 is
# 0.01 % of loss per e-fold of a log-scaled parameter, far below any run-to-run scatter; the demo
# sweep's chinchilla fit put E at 1.4e-5 (E/L ≈ 6e-6, an interval with no lower end) and the
# former 1e-6 let it pass unflagged
FLAT = 1e-4


def params_at_bounds(law, z, X) -> dict[str, str]:
    """The parameters a fit has pushed to their bounds, each with where: ``{"beta": "= 5 (upper
    bound)", "E": "= 7.5e-42 (no effect on any run)"}``; empty when none.

    A parameter is at a finite bound when its transformed value equals it (np.isclose). A
    log-scaled parameter bounded by 0 or ∞ never reaches the bound, it heads there: it counts
    when no fitted run's log prediction moves with it (|∂ log L/∂z| < ``FLAT``, e.g. E → 1e-41),
    the state in which its interval and every extrapolation through it are unreliable (so is a
    term another bound switched off: B once beta sits at 5 and B/D^5 vanishes). The one
    owner of this check: fit, replay, plan, the online fitter and the active summary all read it
    (through ``FitResult.at_bounds``)."""
    law = get_law(law)
    z = np.asarray(z, dtype=float)
    theta = law.from_z(z)
    out: dict[str, str] = {}
    flat = None
    for k, (name, zk, (lo, hi)) in enumerate(zip(law.param_names, z, law.z_bounds)):
        for bound, side in ((lo, "lower"), (hi, "upper")):
            if np.isfinite(bound) and np.isclose(zk, bound):
                out[name] = f"= {theta[k]:.4g} ({side} bound)"
        if name not in out and not (np.isfinite(lo) and np.isfinite(hi)):
            if flat is None:
                with np.errstate(all="ignore"):
                    flat = np.all(np.abs(log_jacobian(law, z, X)) < FLAT, axis=0)
            if flat[k]:
                out[name] = f"= {theta[k]:.3g} (no effect on any run)"
    return out


def bounds_note(at_bounds: dict[str, str]) -> str | None:
    """The one warning line for :func:`params_at_bounds`' result (None when empty)."""
    if not at_bounds:
        return None
    where = ", ".join(f"{k} {v}" for k, v in at_bounds.items())
    return (f"parameters at a bound: {where}; the fit is pinned by its bounds, so its intervals and "
            f"extrapolations are unreliable")
