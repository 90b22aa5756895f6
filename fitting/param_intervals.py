"""Parameter intervals that are as wide as the data allow and never leave the law's bounds.

* :class:`ParamInterval`: lo, hi in natural units and whether each side is *open* (the data do
  not close it; it runs to the law's bound): one-sided, or not identified when both are.
* :func:`wald_intervals`: sandwich (Wald) intervals in the law's transformed space, mapped once
  more to an unbounded coordinate, so none leaves the bounds.
* :func:`profile_intervals`: profile likelihood, each parameter fixed on a ladder and the others
  refitted, batched.
* :func:`narrow_bootstrap`: a bootstrap interval much narrower than the profile's (replicates that
  never left the optimum's basin) named, so :meth:`fitting.fit.FitResult.intervals` can replace it.

``FitResult`` appears in annotations only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from fitting.law import LOG
from fitting.multistart import single_threaded_blas
from fitting.objective import make_objective, rho_psi
from fitting.optim import batched_lbfgs
from fitting.uncertainty import residual_scales

if TYPE_CHECKING:  # annotations only: fitting.fit imports this module
    from fitting.fit import FitResult

__all__ = ["ParamInterval", "bounded_interval", "open_interval", "wald_intervals", "profile_intervals", "profile_threshold", "profile_exit",
           "narrow_bootstrap"]


# ====================================================================== parameter intervals
@dataclass(frozen=True)
class ParamInterval:
    """A parameter's interval in natural units. ``lo_open``/``hi_open``: the data do not close that
    side, the interval runs to the law's bound there (0 or ±inf for an unbounded parameter):
    one-sided when one side is open, not identified when both are."""

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
        """``[lo, hi]``; one open side as ``≤ hi (one-sided: open down to the bound 0)``."""
        if self.unidentified:
            return f"not identified (open to both bounds [{self.lo:{fmt}}, {self.hi:{fmt}}])"
        if self.lo_open:
            return f"≤ {self.hi:{fmt}} (one-sided: open down to the bound {self.lo:{fmt}})"
        if self.hi_open:
            return f"≥ {self.lo:{fmt}} (one-sided: open up to the bound {self.hi:{fmt}})"
        return f"[{self.lo:{fmt}}, {self.hi:{fmt}}]"


def open_interval(law, z: np.ndarray, k: int) -> ParamInterval:
    """Parameter ``k``'s interval when the data say nothing about it: the law's bounds, both sides
    open (:attr:`ParamInterval.unidentified`)."""
    zb = law.z_bounds[k]
    return ParamInterval(_natural(law, z, k, zb[0]), _natural(law, z, k, zb[1]), True, True)


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
    return {k: _interval(law, z, i, zl[i], zh[i], bool(np.isclose(zl[i], lo[i]) or zl[i] == lo[i]),
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


def _interval(law, z: np.ndarray, k: int, zl: float, zh: float, lo_open: bool, hi_open: bool) -> ParamInterval:
    """Parameter ``k``'s interval from transformed ends ``zl``, ``zh`` (:func:`bounded_interval`)."""
    return bounded_interval(law, z, k, _natural(law, z, k, zl), _natural(law, z, k, zh), lo_open, hi_open)


def bounded_interval(law, z: np.ndarray, k: int, lo: float, hi: float, lo_open: bool = False,
                     hi_open: bool = False) -> ParamInterval:
    """Parameter ``k``'s interval [lo, hi] in natural units, a side open when the caller says so and
    also when its end reaches the law's natural bound or is not finite. Why: a Wald interval of se
    1000 on log E ends at exp(-1645) = 0 and exp(+1645) = inf without either transformed end sitting
    at its (infinite) transformed bound, and bootstrap replicates pinned at a bound put a percentile
    on it; either way an interval [0, inf] not flagged open reads as closed."""
    bound_lo, bound_hi = _natural(law, z, k, law.z_bounds[k, 0]), _natural(law, z, k, law.z_bounds[k, 1])
    lo_open = lo_open or not np.isfinite(lo) or lo <= bound_lo
    hi_open = hi_open or not np.isfinite(hi) or hi >= bound_hi
    return ParamInterval(float(lo), float(hi), bool(lo_open), bool(hi_open))


def profile_threshold(fit: FitResult, level: float) -> tuple[float, float]:
    """(q, c): a profile point is inside the ``level`` interval when ``√(2·Δf·c) ≤ q``, with Δf the
    rise of the fit's objective, q the Student-t quantile of :meth:`FitResult.ci_laplace` (so
    2Δf·c ≤ q² is the F(1, n − P) test) and c = E ψ' / E ψ² (:func:`fitting.uncertainty.residual_scales`): for least squares
    1/s², for Huber the M-estimator's drop-in-dispersion scaling, which makes the test agree with
    the sandwich interval where the objective is quadratic."""
    law = fit.law
    _, psi = rho_psi(fit.residuals, fit.loss, fit.delta)
    kappa, epsi2, _ = residual_scales(fit.residuals, psi, fit.loss, fit.delta, law.n_params)
    dof = max(fit.n_points - law.n_params, 1)
    return float(stats.t.ppf(0.5 + level / 2, dof)), kappa / max(epsi2, 1e-300)


def _profile_stat(fit: FitResult, K: np.ndarray, Zk: np.ndarray, c: float, maxiter: int) -> np.ndarray:
    """√(2·Δf·c) with parameter ``K[i]`` fixed at transformed value ``Zk[i]`` and the others
    refitted, all points in one batched L-BFGS (the fixed coordinate's gradient is zeroed, so
    L-BFGS never moves it). Each point is refitted from up to four starts, the best one kept: the
    optimum with z_k replaced, the sandwich's linear profile path (the others moved by
    cov[:, k]/cov[k, k] per unit of z_k, the conditional mean of the Gaussian approximation), and
    the multi-start end point and start-grid point scoring best with z_k fixed
    (:func:`_grid_starts`); a Huber
    objective is not smooth, a gradient can vanish at the optimum, and a refit stuck short of the
    constrained optimum would make the interval too narrow. Δf below 0 (a better optimum than the
    fit's) counts as 0."""
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
    Z0 = np.vstack([Z0, *_grid_starts(fit, fg, K, Zk)])
    n_starts = Z0.shape[0] // K.size
    free = np.tile(free[: K.size], (n_starts, 1))

    def fg_fixed(z, r):
        f, g = fg(z, r)
        with np.errstate(invalid="ignore"):  # a non-finite gradient far out (a side the data leave open) stays so
            return f, g * free[r]

    with single_threaded_blas():
        _, F, _, _ = batched_lbfgs(fg_fixed, Z0, zb[:, 0], zb[:, 1], maxiter=maxiter, gtol=1e-7, ftol=1e-12)
    F = np.where(np.isfinite(F), F, np.inf).reshape(n_starts, K.size).min(axis=0)
    with np.errstate(all="ignore"):
        return np.sqrt(2 * np.clip(np.where(np.isfinite(F), F, np.inf) - fit.objective, 0, None) * c)


#: Start-grid points screened per profile point (:func:`_grid_starts`): the law's grid's best by
#: the unconstrained objective, so a law with thousands of starts costs what a small grid does.
GRID_SCREEN = 256


def _grid_starts(fit: FitResult, fg, K: np.ndarray, Zk: np.ndarray) -> list[np.ndarray]:
    """Starts for the profile points (parameter ``K[i]`` fixed at transformed ``Zk[i]``) from
    other basins: per point, the end point of the fit's multi-start (``fit.starts_z``) and the
    law's start-grid point (best ``GRID_SCREEN`` by objective) that score lowest with that
    coordinate set to ``Zk[i]``; a list of (K.size, P) arrays, one per source.

    Why: at a fit whose optimum sits where a parameter's gradient vanishes (E = exp(e) → 0 on
    Epoch's runs below 1e19 FLOPs), neither the optimum nor the linear path can move that
    parameter when another is fixed, so the profile stays in E ≈ 0's basin: alpha's interval came
    out [0.076, 0.091] and A's [11.9, 14.7] while E = 1, A = 21, alpha = 0.13 is inside the
    threshold. Refits from the multi-start's other end points (E 0.1-0.5 there) reach that basin;
    the grid's best points alone did not (from E = 2.7 the refit at A = 17 fell back to E → 0)."""
    law, data = fit.law, fit.data
    zb = law.z_bounds
    grid = np.clip(law.initial_z(np.random.default_rng(0), data.X, data.y), zb[:, 0], zb[:, 1])
    with np.errstate(all="ignore"):
        F = fg(grid, np.zeros(len(grid), dtype=int))[0]
    pools = [grid[np.argsort(np.where(np.isfinite(F), F, np.inf), kind="stable")[:GRID_SCREEN]]]
    if fit.starts_z is not None and len(fit.starts_z):
        pools.append(np.clip(fit.starts_z, zb[:, 0], zb[:, 1]))
    out = []
    for pool in pools:
        best = np.empty((K.size, law.n_params))
        for k in np.unique(K):
            rows = np.flatnonzero(K == k)
            Zc = np.repeat(pool[None], rows.size, axis=0)  # (rows, G, P)
            Zc[:, :, k] = np.clip(Zk[rows], zb[k, 0], zb[k, 1])[:, None]
            with np.errstate(all="ignore"):
                Fc = fg(Zc.reshape(-1, law.n_params), np.zeros(Zc.shape[0] * Zc.shape[1], dtype=int))[0]
            Fc = np.where(np.isfinite(Fc), Fc, np.inf).reshape(rows.size, -1)
            best[rows] = Zc[np.arange(rows.size), np.argmin(Fc, axis=1)]
        out.append(best)
    return out


def profile_exit(stat: np.ndarray, q: float) -> int | None:
    """The index at which a profile curve ``stat`` (√(2Δf·c) along one side, stat[0] = 0 at the
    optimum) leaves the interval for good: the first point above ``q`` after the last point at or
    below it; None when the last point is inside (the side is open).

    Why not the first point above q: each point is a refit, and a refit that stops short of the
    constrained optimum reads too high. On Epoch's runs below 1e19 FLOPs A's profile read 0.72 at
    A = 15, 4.23 at 17 and 1.38 at 21 (q 1.68): the first crossing ended A's interval at 14.7
    though A = 21 is inside. A point inside the threshold is proof that value is allowed, so the
    interval runs at least to the farthest such point (the hull of the allowed set)."""
    inside = np.flatnonzero(np.asarray(stat) <= q)
    last = int(inside[-1]) if inside.size else 0
    return None if last == len(stat) - 1 else last + 1


def profile_intervals(fit: FitResult, level: float | None = None, *, reach: float = PROFILE_REACH,
                      refine: int = 12, maxiter: int = 150) -> dict[str, ParamInterval]:
    """Profile-likelihood intervals: for each parameter, the range of its values over which the
    objective, refitted over the other parameters, stays within :func:`profile_threshold`.

    Each parameter is fixed at ẑ ± ``PROFILE_LADDER`` × step (step = q × its sandwich se, clipped
    to [1e-3, 1] in the transformed space) plus ``PROFILE_FAR`` points spaced geometrically out to
    the side's end: its finite bound, or ``reach`` beyond the law's start grid. Every point of
    every parameter is refitted in one batched L-BFGS (:func:`_profile_stat`). A crossing wider
    than a step is bracketed again (8 points each) until it is a step wide, at most ``refine`` times
    (three were too few for a fit that ran off to E = exp(-9582): the last bracket was 12 units of
    log E wide and the interpolation put E's end at 0.0011 where the data allow 0.06), then interpolated linearly
    in √(2Δf·c). A side never crossed is open (:class:`ParamInterval`), its end the law's bound.
    Pure: the fit is not changed."""
    level = fit.level if level is None else level
    law = fit.law
    P = law.n_params
    q, c = profile_threshold(fit, level)
    zb = law.z_bounds
    se = np.sqrt(np.clip(np.diag(fit.cov_z), 0, None))
    step = np.clip(np.where(np.isfinite(se), q * se, 1.0), 1e-3, 1.0)
    grid = law.initial_z(np.random.default_rng(0), fit.data.X, fit.data.y)
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
            j = profile_exit(t, q)
            if j is not None and d[j] - d[j - 1] > step[k]:
                todo.append((i, np.linspace(d[j - 1], d[j], 10)[1:-1]))
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
            j = profile_exit(t, q)
            if j is None:  # never crossed: open up to the bound
                ends.append((zb[k, s], True))
                continue
            frac = (q - t[j - 1]) / (t[j] - t[j - 1]) if np.isfinite(t[j]) else 0.0
            ends.append((fit.z[k] + sign * (d[j - 1] + frac * (d[j] - d[j - 1])), False))
        (zl, lo_open), (zh, hi_open) = ends
        out[name] = _interval(law, fit.z, k, zl, zh, lo_open, hi_open)
    return out


#: A bootstrap interval narrower than this fraction of the profile's (widths in the transformed
#: space) is flagged: its replicates missed a direction the data leave open.
NARROW = 0.5


def narrow_bootstrap(boot_ci: dict[str, tuple[float, float]], profile: dict[str, ParamInterval],
                     law, reach: float = PROFILE_REACH) -> tuple[list[str], str | None]:
    """The parameters whose bootstrap (or any other) interval covers much less of their profile
    interval (its overlap < ``NARROW`` × the profile's width, in the law's transformed space), and
    the warning naming them (None when none): one much narrower, or one shifted off it (the 15
    smallest Epoch runs' sandwich interval for B, [0.171, 1905] against a profile [14.5, 2.89e6]).
    An open profile side at an infinite bound counts ``reach`` beyond the bootstrap's end on that
    side (the profile walked at least that far without the objective rising)."""
    names = []
    for k, name in enumerate(law.param_names):
        iv = profile[name]
        with np.errstate(divide="ignore"):
            zb, zp = (np.log(v) if law.transforms[k] == LOG else v for v in (np.array(boot_ci[name]), np.array([iv.lo, iv.hi])))
        zl = zp[0] if np.isfinite(zp[0]) else min(zb[0], zp[1]) - reach
        zh = zp[1] if np.isfinite(zp[1]) else max(zb[1], zp[0]) + reach
        if max(min(zb[1], zh) - max(zb[0], zl), 0.0) < NARROW * (zh - zl):
            names.append(name)
    if not names:
        return [], None
    which = "; ".join(f"{k} bootstrap [{boot_ci[k][0]:.4g}, {boot_ci[k][1]:.4g}] vs profile {profile[k].describe()}"
                      for k in names)
    return names, (f"bootstrap intervals much narrower than the profile likelihood's: {which}; the resamples did not "
                   f"explore a direction the data leave open, so the profile interval is reported for "
                   f"{', '.join(names)}")
