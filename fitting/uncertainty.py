"""Uncertainty of a fit: sandwich covariance, bootstrap over runs, prediction intervals.

* :func:`estimate_covariance`: the M-estimator sandwich (or "Laplace") covariance of the transformed
  parameters at the optimum, with a kernel-smoothed Huber slope; :func:`fitting.fit.fit_law`
  stores it on every :class:`~fitting.fit.FitResult`.
* :func:`bootstrap`: nonparametric bootstrap over runs (batched, seeded, warm-started).
* :func:`prediction_interval`: prediction and confidence intervals for any inputs (delta method
  or bootstrap percentiles).

Everything here is re-exported by :mod:`fitting.fit`; this module needs nothing from it at
import time (``FitResult`` appears in annotations only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from fitting.law import LOG
from fitting.multistart import single_threaded_blas
from fitting.objective import log_jacobian, make_objective, rho_psi
from fitting.optim import batched_lbfgs

if TYPE_CHECKING:  # annotations only: fitting.fit imports this module
    from fitting.fit import FitResult

__all__ = ["Interval", "BootstrapResult", "bootstrap", "prediction_interval"]


# ====================================================================== results
@dataclass
class Interval:
    """Point prediction with a central interval (natural loss units)."""

    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    level: float
    kind: str
    method: str
    se_log: np.ndarray | None = None


@dataclass
class BootstrapResult:
    samples: np.ndarray  # (B, P) natural parameters
    z_samples: np.ndarray  # (B, P) transformed
    objective: np.ndarray  # (B,)
    converged: np.ndarray
    seed: int | None
    param_names: tuple[str, ...]
    level: float = 0.9

    @property
    def n(self) -> int:
        return int(self.samples.shape[0])

    @property
    def stderr(self) -> dict[str, float]:
        return {k: float(v) for k, v in zip(self.param_names, self.samples.std(axis=0, ddof=1))}

    def ci(self, level: float | None = None) -> dict[str, tuple[float, float]]:
        level = self.level if level is None else level
        a = (1 - level) / 2
        lo, hi = np.quantile(self.samples, [a, 1 - a], axis=0)
        return {k: (float(l), float(h)) for k, l, h in zip(self.param_names, lo, hi)}


# ====================================================================== covariance
def _scales(r: np.ndarray, psi: np.ndarray, loss: str, delta: float, p: int):
    """(kappa = E ψ', E ψ², robust sigma) with a kernel-smoothed E ψ' for Huber."""
    n = r.size
    dof_corr = n / max(n - p, 1)
    mad = 1.4826 * np.median(np.abs(r - np.median(r)))
    sd = float(np.std(r, ddof=min(p, n - 1)))
    sigma = mad if mad > 0 else sd
    if loss == "huber":
        iqr = np.subtract(*np.percentile(r, [75, 25]))
        spread = min(sd, iqr / 1.349) if iqr > 0 else sd
        h = max(0.9 * spread * n ** (-0.2), 1e-12)
        kappa = float(np.mean(stats.norm.cdf((delta - r) / h) - stats.norm.cdf((-delta - r) / h)))
    else:
        kappa = 1.0
    epsi2 = float(np.mean(psi * psi)) * dof_corr
    return max(kappa, 1e-12), epsi2, float(sigma)


def estimate_covariance(J, r, psi, loss, delta, p, kind="sandwich"):
    """(covariance of the transformed parameters, effective residual scale sqrt(E ψ²)/E ψ', robust
    residual scale) at the optimum: ``J`` the residual Jacobian (n x p), ``r`` the residuals,
    ``psi`` the loss's ψ(r), ``kind`` "sandwich" (M-estimator) or "laplace"; another kind raises
    ValueError. Used by `fitting.fit`."""
    kappa, epsi2, sigma = _scales(r, psi, loss, delta, p)
    n = r.size
    JtJ = J.T @ J
    # pseudo-inverse on the column-scaled matrix for stability
    sc = np.sqrt(np.clip(np.diag(JtJ), 1e-300, None))
    Jn = JtJ / np.outer(sc, sc)
    inv = np.linalg.pinv(Jn, rcond=1e-13) / np.outer(sc, sc)
    sigma_eff2 = epsi2 / kappa**2
    if kind == "laplace":
        cov = sigma_eff2 * inv
    elif kind == "sandwich":
        meat = (J * (psi * psi)[:, None]).T @ J * (n / max(n - p, 1))
        cov = inv @ meat @ inv / kappa**2
    else:
        raise ValueError(f"unknown covariance {kind!r}: 'sandwich' or 'laplace'")
    return cov, float(np.sqrt(sigma_eff2)), sigma


# ====================================================================== bootstrap
def _candidate_starts(fit: FitResult, rng: np.random.Generator, n_boot: int, n_candidates: int,
                      scale: float) -> np.ndarray:
    """(n_boot, n_candidates, P) starts for the replicates, in z: each replicate's row 0 is the
    full-data optimum, the others come from the law's own start grid (each coordinate taken from a
    random grid row with probability ½, else the optimum's, plus a ``scale`` × sandwich-se jitter).
    Starts away from the optimum are what let a replicate leave its basin: where the gradient
    vanishes (E = exp(e) → 0 makes ∂f/∂e → 0) a replicate warm-started at the optimum never moves."""
    law = fit.law
    P = law.n_params
    grid = law.initial_z(rng)
    se = np.sqrt(np.clip(np.diag(fit.cov_z), 0, None))
    se = np.where(np.isfinite(se), np.minimum(se, 5.0), 0.5)
    k = n_candidates - 1
    rows = grid[rng.integers(0, grid.shape[0], size=(n_boot, k))]
    mix = rng.random((n_boot, k, P)) < 0.5
    starts = np.where(mix, rows, fit.z) + scale * se * rng.standard_normal((n_boot, k, P))
    lo, hi = law.z_bounds.T
    return np.clip(np.concatenate([np.broadcast_to(fit.z, (n_boot, 1, P)), starts], axis=1), lo, hi)


def bootstrap(fit: FitResult, n_boot: int = 1000, *, seed: int | None = 0, n_perturb: int = 1,
              n_screen: int = 16, scale: float = 0.5, starts=None, level: float | None = None, chunk: int = 4096,
              attach: bool = True, maxiter: int = 150, gtol: float = 1e-6, ftol: float = 1e-10) -> BootstrapResult:
    """Nonparametric bootstrap over runs (rows resampled with replacement), seeded.

    Each replicate is a small screened multi-start: ``n_screen`` candidate starts (the full-data
    optimum and points drawn from the law's start grid, :func:`_candidate_starts`) are scored on
    the replicate's rows, and the optimum plus the ``n_perturb`` best others (plus any extra
    ``starts``) are refit; all replicates run batched in one vectorised L-BFGS (chunks of
    ``chunk`` problems) and the best start per replicate wins. ``n_perturb=0`` warm-starts at the
    optimum only. With ``attach`` the result is stored on ``fit`` so its ``stderr``/``ci`` use it."""
    law, data = fit.law, fit.data
    n, P = len(data), law.n_params
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)
    lo, hi = law.z_bounds.T
    if n_perturb:
        cand = _candidate_starts(fit, rng, n_boot, max(n_screen, n_perturb + 1), scale)
        C = cand.shape[1]
        fg0 = make_objective(law, data.X, data.y, loss=fit.loss, delta=fit.delta, weights=counts)
        with np.errstate(all="ignore"):
            f0 = fg0(cand.reshape(-1, P), np.repeat(np.arange(n_boot), C))[0].reshape(n_boot, C)
        f0 = np.where(np.isfinite(f0), f0, np.inf)
        f0[:, 0] = -np.inf  # the optimum always stays
        keep = np.argsort(f0, axis=1, kind="stable")[:, : n_perturb + 1]
        S0 = np.take_along_axis(cand, keep[:, :, None], axis=1)
    else:
        S0 = np.broadcast_to(fit.z, (n_boot, 1, P))
    if starts is not None:
        extra = np.clip(np.atleast_2d(np.asarray(starts, dtype=float)), lo, hi)
        S0 = np.concatenate([S0, np.broadcast_to(extra, (n_boot,) + extra.shape)], axis=1)
    k = S0.shape[1]
    Zall = np.empty((n_boot, P))
    Fall = np.empty(n_boot)
    Call = np.empty(n_boot, dtype=bool)
    per = max(1, chunk // k)
    for b0 in range(0, n_boot, per):
        b1 = min(n_boot, b0 + per)
        W = np.repeat(counts[b0:b1], k, axis=0)
        Z0 = S0[b0:b1].reshape(-1, P)
        fg = make_objective(law, data.X, data.y, loss=fit.loss, delta=fit.delta, weights=W)
        with single_threaded_blas():
            Z, F, _, conv = batched_lbfgs(fg, Z0, lo, hi, maxiter=maxiter, gtol=gtol, ftol=ftol)
        F = np.where(np.isfinite(F), F, np.inf).reshape(b1 - b0, k)
        j = np.argmin(F, axis=1)
        rows = np.arange(b1 - b0) * k + j
        Zall[b0:b1], Fall[b0:b1], Call[b0:b1] = Z[rows], F[np.arange(b1 - b0), j], conv[rows]
    res = BootstrapResult(samples=law.from_z(Zall), z_samples=Zall, objective=Fall, converged=Call, seed=seed,
                          param_names=law.param_names, level=fit.level if level is None else level)
    if attach:
        fit.bootstrap = res
    return res


# ====================================================================== intervals
def prediction_interval(fit: FitResult, X, level: float = 0.9, kind: str = "prediction", method: str = "auto") -> Interval:
    """Interval for the loss at inputs ``X`` (mapping of columns or ``(n, n_inputs)`` array).

    ``kind="confidence"``: uncertainty of the fitted curve; ``"prediction"``: plus the run-to-run
    scatter (robust scale of the log residuals). ``method``: ``"delta"`` (sandwich covariance,
    computed in log space), ``"bootstrap"`` (percentiles of bootstrap predictions; needs
    :func:`bootstrap`), or ``"auto"`` (bootstrap when available)."""
    law = fit.law
    cols = law.columns(X)
    mean = law.predict(fit.theta, cols)
    a = (1 - level) / 2
    noise = fit.sigma if kind == "prediction" else 0.0
    if kind not in ("prediction", "confidence"):
        raise ValueError("kind must be 'prediction' or 'confidence'")
    if method == "auto":
        method = "bootstrap" if fit.bootstrap is not None else "delta"
    if method == "bootstrap":
        if fit.bootstrap is None:
            raise ValueError("no bootstrap on this fit: call fitting.fit.bootstrap(fit) first")
        with np.errstate(all="ignore"):
            lp = np.log(law.predict(fit.bootstrap.samples, cols))
        lp = lp[np.all(np.isfinite(lp), axis=1)]
        if noise > 0:
            rng = np.random.default_rng(0)
            lp = lp + noise * rng.standard_normal(lp.shape)
        lo, hi = np.quantile(lp, [a, 1 - a], axis=0)
        se = lp.std(axis=0, ddof=1)
        return Interval(mean, np.exp(lo), np.exp(hi), level, kind, method, se)
    if method != "delta":
        raise ValueError("method must be 'delta', 'bootstrap' or 'auto'")
    G = log_jacobian(law, fit.z, cols)
    var = np.einsum("np,pq,nq->n", G, fit.cov_z, G) + noise**2
    se = np.sqrt(np.clip(var, 0, None))
    dof = max(fit.n_points - law.n_params, 1)
    q = stats.t.ppf(1 - a, dof)
    lm = np.log(mean)
    return Interval(mean, np.exp(lm - q * se), np.exp(lm + q * se), level, kind, method, se)


# ====================================================================== parameter intervals
@dataclass(frozen=True)
class ParamInterval:
    """A parameter's interval in natural units. ``lo_open``/``hi_open``: the data do not close that
    side, the interval runs to the law's bound there (0 or ±inf for an unbounded parameter):
    one-sided when one side is open, unidentified when both are."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False

    @property
    def one_sided(self) -> bool:
        return self.lo_open != self.hi_open

    @property
    def unidentified(self) -> bool:
        return self.lo_open and self.hi_open

    def describe(self, fmt: str = ".4g") -> str:
        """``[lo, hi]``, with an open side written as ``(≤ hi; lower side open to the bound 0)``."""
        if self.unidentified:
            return f"unidentified (open to both bounds [{self.lo:{fmt}}, {self.hi:{fmt}}])"
        if self.lo_open:
            return f"≤ {self.hi:{fmt}} (one-sided: open down to the bound {self.lo:{fmt}})"
        if self.hi_open:
            return f"≥ {self.lo:{fmt}} (one-sided: open up to the bound {self.hi:{fmt}})"
        return f"[{self.lo:{fmt}}, {self.hi:{fmt}}]"


def _open_coordinates(z: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Each coordinate of ``z`` mapped to an unbounded one: logit between two finite bounds, log of
    the distance to a single finite bound, identity without bounds. Returns (u, du/dz)."""
    with np.errstate(all="ignore"):
        both, low, high = np.isfinite(lo) & np.isfinite(hi), np.isfinite(lo) & ~np.isfinite(hi), ~np.isfinite(lo) & np.isfinite(hi)
        u = np.where(both, np.log(z - lo) - np.log(hi - z), np.where(low, np.log(z - lo), np.where(high, -np.log(hi - z), z)))
        du = np.where(both, 1 / (z - lo) + 1 / (hi - z), np.where(low, 1 / (z - lo), np.where(high, 1 / (hi - z), 1.0)))
    return u, du


def _closed_coordinates(u: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_open_coordinates` (u = ±inf lands on the bound)."""
    with np.errstate(all="ignore"):
        both, low, high = np.isfinite(lo) & np.isfinite(hi), np.isfinite(lo) & ~np.isfinite(hi), ~np.isfinite(lo) & np.isfinite(hi)
        return np.where(both, lo + (hi - lo) / (1 + np.exp(-u)), np.where(low, lo + np.exp(u), np.where(high, hi - np.exp(-u), u)))


def wald_intervals(law, z: np.ndarray, cov_z: np.ndarray, q: float) -> dict[str, ParamInterval]:
    """Wald intervals ẑ ± q·se that never leave the law's bounds: each parameter's transformed value
    z (``law.transforms``: log for scales) is mapped once more to an unbounded coordinate
    (:func:`_open_coordinates`: logit between finite bounds, log of the distance to one), the
    interval is taken there with the delta-method se and mapped back to natural units. A side that
    reaches its bound (a parameter at the bound, or a non-finite se) is open."""
    zb = law.z_bounds
    lo, hi = zb[:, 0], zb[:, 1]
    se = np.sqrt(np.clip(np.diag(cov_z), 0, None))
    u, du = _open_coordinates(np.asarray(z, dtype=float), lo, hi)
    with np.errstate(all="ignore"):
        half = np.where(np.isfinite(se * du), q * se * du, np.inf)
        zl = _closed_coordinates(np.where(np.isfinite(u), u - half, u), lo, hi)
        zh = _closed_coordinates(np.where(np.isfinite(u), u + half, u), lo, hi)
    at_lo = ~np.isfinite(u) & (u < 0) | ~np.isfinite(half)
    at_hi = ~np.isfinite(u) & (u > 0) | ~np.isfinite(half)
    zl = np.where(at_lo, lo, np.where(~np.isfinite(u), np.clip(z - q * se, lo, hi), zl))  # at a bound: clipped
    zh = np.where(at_hi, hi, np.where(~np.isfinite(u), np.clip(z + q * se, lo, hi), zh))
    with np.errstate(over="ignore"):
        tl, th = law.from_z(zl), law.from_z(zh)
    return {k: ParamInterval(float(tl[i]), float(th[i]), bool(np.isclose(zl[i], lo[i]) or zl[i] == lo[i]),
                             bool(np.isclose(zh[i], hi[i]) or zh[i] == hi[i]))
            for i, k in enumerate(law.param_names)}


#: Multiples of the step (q × the sandwich se, clipped) at which the profile is evaluated on each side.
PROFILE_LADDER = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 32.0, 64.0])
#: Further points, geometrically spaced from the ladder's end to the side's end.
PROFILE_FAR = 6
#: How far (in the transformed space: a factor e^40 for a log-scaled parameter) the profile walks
#: toward an infinite bound, beyond the law's start grid, before calling that side open.
PROFILE_REACH = 40.0


def _natural(law, z: np.ndarray, k: int, zk: float) -> float:
    """Parameter ``k`` in natural units when its transformed value is ``zk``."""
    v = np.array(z, dtype=float)
    v[k] = zk
    with np.errstate(over="ignore"):
        return float(law.from_z(v)[k])


def profile_threshold(fit: FitResult, level: float) -> tuple[float, float]:
    """(q, c): a profile point is inside the ``level`` interval when ``√(2·Δf·c) ≤ q``, with Δf the
    rise of the fit's objective, q the Student-t quantile of :meth:`FitResult.ci_laplace` (so
    2Δf·c ≤ q² is the F(1, n − P) test) and c = E ψ' / E ψ² (:func:`_scales`): for least squares
    1/s², for Huber the M-estimator's drop-in-dispersion scaling, which makes the test agree with
    the sandwich interval where the objective is quadratic."""
    law = fit.law
    _, psi = rho_psi(fit.residuals, fit.loss, fit.delta)
    kappa, epsi2, _ = _scales(fit.residuals, psi, fit.loss, fit.delta, law.n_params)
    dof = max(fit.n_points - law.n_params, 1)
    return float(stats.t.ppf(0.5 + level / 2, dof)), kappa / max(epsi2, 1e-300)


def _profile_stat(fit: FitResult, K: np.ndarray, Zk: np.ndarray, c: float, maxiter: int) -> np.ndarray:
    """√(2·Δf·c) with parameter ``K[i]`` fixed at transformed value ``Zk[i]`` and the others
    refitted, all points in one batched L-BFGS (the fixed coordinate's gradient is zeroed, so
    L-BFGS never moves it). Each point is refitted from two starts, the better one kept: the
    optimum with z_k replaced, and the sandwich's linear profile path (the others moved by
    cov[:, k]/cov[k, k] per unit of z_k, the conditional mean of the Gaussian approximation);
    a Huber objective is not smooth, and a refit stuck short of the constrained optimum would
    make the interval too narrow. Δf below 0 (a better optimum than the fit's) counts as 0."""
    law, data = fit.law, fit.data
    zb = law.z_bounds
    rows = np.arange(K.size)
    cov = fit.cov_z
    with np.errstate(all="ignore"):
        slope = cov[:, K].T / np.diag(cov)[K][:, None]  # (rows, P)
    slope = np.where(np.isfinite(slope) & (np.abs(slope) < 1e6), slope, 0.0)
    Z0 = np.vstack([np.clip(fit.z + slope * (Zk - fit.z[K])[:, None], zb[:, 0], zb[:, 1]), np.tile(fit.z, (K.size, 1))])
    Z0[np.r_[rows, rows + K.size], np.r_[K, K]] = np.clip(np.r_[Zk, Zk], zb[np.r_[K, K], 0], zb[np.r_[K, K], 1])
    free = np.ones_like(Z0)
    free[np.r_[rows, rows + K.size], np.r_[K, K]] = 0.0
    fg = make_objective(law, data.X, data.y, loss=fit.loss, delta=fit.delta, weights=data.weights)

    def fg_fixed(z, r):
        f, g = fg(z, r)
        return f, g * free[r]

    with single_threaded_blas():
        _, F, _, _ = batched_lbfgs(fg_fixed, Z0, zb[:, 0], zb[:, 1], maxiter=maxiter, gtol=1e-7, ftol=1e-12)
    F = np.where(np.isfinite(F), F, np.inf).reshape(2, K.size).min(axis=0)
    with np.errstate(all="ignore"):
        return np.sqrt(2 * np.clip(np.where(np.isfinite(F), F, np.inf) - fit.objective, 0, None) * c)


def profile_intervals(fit: FitResult, level: float | None = None, *, reach: float = PROFILE_REACH,
                      refine: int = 3, maxiter: int = 150) -> dict[str, ParamInterval]:
    """Profile-likelihood intervals: for each parameter, the range of its values over which the
    objective, refitted over the other parameters, stays within :func:`profile_threshold`.

    Each parameter is fixed at ẑ ± ``PROFILE_LADDER`` × step (step = q × its sandwich se, clipped
    to [1e-3, 1] in the transformed space) plus ``PROFILE_FAR`` points spaced geometrically out to
    the side's end: its finite bound, or ``reach`` beyond the law's start grid. Every point of
    every parameter is refitted in one batched L-BFGS (:func:`_profile_stat`). A crossing wider
    than a step is bracketed again ``refine`` times (8 points each), then interpolated linearly
    in √(2Δf·c). A side never crossed is open (:class:`ParamInterval`), its end the law's bound.
    Pure: the fit is not changed."""
    level = fit.level if level is None else level
    law = fit.law
    P = law.n_params
    q, c = profile_threshold(fit, level)
    zb = law.z_bounds
    se = np.sqrt(np.clip(np.diag(fit.cov_z), 0, None))
    step = np.clip(np.where(np.isfinite(se), q * se, 1.0), 1e-3, 1.0)
    grid = law.initial_z(np.random.default_rng(0))
    # distances from ẑ, per (parameter k, side s): a fit that ran off to E = 1e-60 is walked back
    # across every value the law's starts consider, and past them
    dist = []
    for k in range(P):
        for s, sign in enumerate((-1.0, 1.0)):
            edge = grid[:, k].min() if sign < 0 else grid[:, k].max()
            end = abs(zb[k, s] - fit.z[k]) if np.isfinite(zb[k, s]) else reach + max(0.0, sign * (edge - fit.z[k]))
            near = PROFILE_LADDER * step[k]
            far = np.geomspace(max(min(near[-1], end), 1e-12), max(end, 1e-12), PROFILE_FAR)
            dist.append(np.r_[0.0, np.minimum(np.sort(np.r_[near, far]), end)])
    sides = [(k, sign) for k in range(P) for sign in (-1.0, 1.0)]
    K = np.repeat(np.arange(P), 2 * (dist[0].size - 1))
    Zk = np.concatenate([fit.z[k] + sign * d[1:] for (k, sign), d in zip(sides, dist)])
    stat = np.split(_profile_stat(fit, K, Zk, c, maxiter), len(sides))
    curves = [(d, np.r_[0.0, t]) for d, t in zip(dist, stat)]
    for _ in range(refine):  # narrow wide brackets around each crossing
        todo = []
        for i, ((k, sign), (d, t)) in enumerate(zip(sides, curves)):
            over = np.flatnonzero(t > q)
            if over.size and d[over[0]] - d[over[0] - 1] > step[k]:
                todo.append((i, np.linspace(d[over[0] - 1], d[over[0]], 10)[1:-1]))
        if not todo:
            break
        Kr = np.concatenate([np.full(pts.size, sides[i][0]) for i, pts in todo])
        Zr = np.concatenate([fit.z[sides[i][0]] + sides[i][1] * pts for i, pts in todo])
        new = np.split(_profile_stat(fit, Kr, Zr, c, maxiter), len(todo))
        for (i, pts), t_new in zip(todo, new):
            d, t = curves[i]
            order = np.argsort(np.r_[d, pts], kind="stable")
            curves[i] = (np.r_[d, pts][order], np.r_[t, t_new][order])
    out = {}
    for k, name in enumerate(law.param_names):
        ends = []
        for s, sign in enumerate((-1.0, 1.0)):
            d, t = curves[2 * k + s]
            over = np.flatnonzero(t > q)
            if over.size == 0:  # never crossed: open up to the bound
                ends.append((zb[k, s], True))
                continue
            j = over[0]
            frac = (q - t[j - 1]) / (t[j] - t[j - 1]) if np.isfinite(t[j]) else 0.0
            ends.append((fit.z[k] + sign * (d[j - 1] + frac * (d[j] - d[j - 1])), False))
        (zl, lo_open), (zh, hi_open) = ends
        out[name] = ParamInterval(_natural(law, fit.z, k, zl), _natural(law, fit.z, k, zh), lo_open, hi_open)
    return out


#: A bootstrap interval narrower than this fraction of the profile's (widths in the transformed
#: space) is flagged: its replicates missed a direction the data leave open.
NARROW = 0.5


def narrow_bootstrap(boot_ci: dict[str, tuple[float, float]], profile: dict[str, ParamInterval],
                     law, reach: float = PROFILE_REACH) -> tuple[list[str], str | None]:
    """The parameters whose bootstrap interval is much narrower (< ``NARROW`` × width, in the law's
    transformed space) than their profile interval, and the warning naming them (None when none).
    An open profile side at an infinite bound counts ``reach`` beyond the bootstrap's end on that
    side (the profile walked at least that far without the objective rising)."""
    names = []
    for k, name in enumerate(law.param_names):
        iv = profile[name]
        with np.errstate(divide="ignore"):
            zb, zp = (np.log(v) if law.transforms[k] == LOG else v for v in (np.array(boot_ci[name]), np.array([iv.lo, iv.hi])))
        zl = zp[0] if np.isfinite(zp[0]) else min(zb[0], zp[1]) - reach
        zh = zp[1] if np.isfinite(zp[1]) else max(zb[1], zp[0]) + reach
        if zb[1] - zb[0] < NARROW * (zh - zl):
            names.append(name)
    if not names:
        return [], None
    which = "; ".join(f"{k} bootstrap [{boot_ci[k][0]:.4g}, {boot_ci[k][1]:.4g}] vs profile {profile[k].describe()}"
                      for k in names)
    return names, (f"bootstrap intervals much narrower than the profile likelihood's: {which}; the resamples did not "
                   f"explore a direction the data leave open, so the profile interval is reported for "
                   f"{', '.join(names)}")
