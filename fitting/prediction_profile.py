"""Profile-likelihood intervals for a fit's predictions: as wide as the data allow, along the law.

The delta method reads a prediction's parameter uncertainty off the objective's curvature at the
optimum; the bootstrap off refits of resampled runs. Both failed the coverage goal of issue 15
item 5 on the small active designs, in opposite directions (9-parameter law at 5 %: delta 96.8 %,
bootstrap 82.0 %; data-constrained at 5 %: delta 82.0 %): with 22 runs for 7-9 parameters the
objective is far from quadratic over the range the prediction can move, and the bootstrap's
resamples drop the few runs that pin a parameter down. The profile follows the objective itself:
the interval for log L̂ at a target x_t is every value v for which the best fit with
log f(θ, x_t) = v stays within the F(1, n − P) threshold of the optimum (Venzon & Moolgavkar 1988,
the profile of a function of the parameters).

The profile is traced without constraints, by the Lagrangian path: minimising F(z) − μ·log f(z, x_t)
for a ladder of multipliers μ of both signs gives points (v(μ), F(z(μ))) that lie on the profile
itself (a constrained optimum at v(μ) by the Lagrange conditions), all targets' ladders in one
batched L-BFGS (:func:`fitting.optim.batched_lbfgs`). The ladder is scaled per target so its middle
lands near the quadratic crossing, and reaches 20x past it both ways (50x made the far
multipliers' Lagrangians run off toward the bounds for the whole iteration budget: 12x the time).

Which objective. The profile is traced on the noise model's objective, not on the fit's: a Huber
loss with Huber's tuning constant, δ_p = max(δ, 1.345·σ) (95 % efficiency under Gaussian noise,
still robust to an outlying run; Huber 1964), with σ the run-to-run noise of the REML split
(:func:`fitting.uncertainty.residual_split`: the misfit taken out, as in the delta method's
noise-only part), minimised again from the fit's optimum. The fit's own δ = 1e-3 (Hoffmann et
al.'s) against σ ≈ 0.01 makes its objective nearly L1, and under it a prediction can give up the one
or two runs that pin a parameter at a cost linear in their residuals, where the noise model's cost
is quadratic: on the data-constrained law's 5 % designs, whose targets hang on R_D*, that profile
alone covered 96 % at 90 % (bench/coverage.py; :mod:`fitting.extrapolation` has the figures). The
interval is the set of predictions the runs allow under the noise model, whichever estimator
printed the point, so its ends are found about the profile's own optimum and the half-widths taken
about the printed point (0 where that point lies outside). Where the objective is quadratic it is
the efficient estimator's delta interval, about 0.8x the nearly-L1 fit's (2/π in variance).

Threshold: a point is inside when 2·ΔF·c ≤ q², with q the Student-t quantile of the delta interval
and c = E ψ' / E ψ² of that loss under the noise σ alone, so that where the objective is quadratic
the profile interval *is* that delta interval, and only the objective's shape makes them differ.
(The empirical c of :func:`fitting.param_intervals.profile_threshold`, from the Huber residuals
inside ±δ, is a count of 2-3 residuals at 22 runs: 73 % coverage where this one gave 94 %.)

A side that never crosses within the ladder is traced further (``FAR_LADDER``, those targets only),
and one that never crosses there either is open: the data do not close it before the law's bounds
stop the path (its end is how far the path got). A prediction that moves along a null
direction of the fit (:meth:`fitting.uncertainty.NullSpace.moves`) is open on both sides.

``FitResult`` appears in annotations only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import numpy as np
from scipy import stats

from fitting.multistart import single_threaded_blas
from fitting.objective import log_jacobian, make_objective
from fitting.optim import batched_lbfgs
from fitting.param_intervals import profile_exit
from fitting.uncertainty import huber_moments, residual_split, scaled_pinv

if TYPE_CHECKING:  # annotations only: fitting.fit imports fitting.uncertainty
    from fitting.fit import FitResult

__all__ = ["PredictionProfile", "prediction_profile", "LADDER"]

#: Multipliers μ, in units of the one at the quadratic crossing: the profile's curve is traced from
#: 1/50 of the way to 20x past where a quadratic objective would cross the threshold.
LADDER = np.geomspace(0.02, 20.0, 14)


@dataclass(frozen=True)
class PredictionProfile:
    """A profile interval of log L̂ at n targets: half-widths below and above the point prediction
    (log loss; shape (n,)) and whether each side is open (the data leave it open to the bounds).
    ``q`` the quantile and ``c`` the noise-only curvature scale of the threshold 2·ΔF·c ≤ q²."""

    h_lo: np.ndarray
    h_hi: np.ndarray
    open_lo: np.ndarray
    open_hi: np.ndarray
    q: float
    c: float


#: Huber's tuning constant in units of the noise σ (Huber 1964; 95 % efficiency under Gaussian
#: noise): the profile's objective is the Huber loss with threshold max(δ, HUBER_TUNING·σ) (module doc).
HUBER_TUNING = 1.345


@dataclass(frozen=True)
class _ProfileObjective:
    """The objective a profile is traced on (module doc, "Which objective"): its loss and threshold,
    the batched ``fg`` of :func:`fitting.objective.make_objective`, and its optimum (z, value),
    the fit's own where the fit's loss already is it."""

    loss: str
    delta: float
    fg: object
    z: np.ndarray
    objective: float

    @classmethod
    def of(cls, fit: FitResult, sigma: float) -> "_ProfileObjective":
        """For ``fit`` with noise-only σ (log loss): least squares stays; a Huber fit's δ is raised
        to HUBER_TUNING·σ and the optimum found again from the fit's (kept if the refit is no lower)."""
        data, z0 = fit.data, np.asarray(fit.z, dtype=float)[None]
        if fit.loss != "huber" or fit.delta >= HUBER_TUNING * sigma:
            fg = make_objective(fit.law, data.X, data.y, loss=fit.loss, delta=fit.delta, weights=data.weights)
            return cls(fit.loss, fit.delta, fg, z0[0], float(fit.objective))
        delta = HUBER_TUNING * sigma
        fg = make_objective(fit.law, data.X, data.y, loss="huber", delta=delta, weights=data.weights)
        zb = fit.law.z_bounds
        with single_threaded_blas():
            Z, F, _, _ = batched_lbfgs(fg, z0, zb[:, 0], zb[:, 1], maxiter=500, gtol=1e-10, ftol=1e-15)
        F0 = fg(z0, np.arange(1))[0]
        if not np.isfinite(F[0]) or F[0] > F0[0]:
            Z, F = z0, F0
        return cls("huber", delta, fg, Z[0], float(F[0]))

    def scale(self, sigma: float) -> tuple[float, float]:
        """(c, κ): the threshold's scale c = E ψ'/E ψ² and the expected curvature E ψ' = κ of the loss
        under the noise-only σ (least squares: 1/σ², 1)."""
        if self.loss != "huber":
            return 1.0 / sigma**2, 1.0
        kappa, epsi2 = huber_moments(sigma, self.delta)
        return kappa / max(epsi2, 1e-300), kappa


def prediction_profile(fit: FitResult, X: Mapping[str, np.ndarray], level: float | None = None, *,
                       ladder: np.ndarray = LADDER, maxiter: int = 300, explore: bool = True) -> PredictionProfile:
    """Profile-likelihood interval of the log prediction at each row of X (module doc).

    ``X``: the law's input columns, n rows. Each ladder point is refitted from three starts, the best
    Lagrangian value kept: the optimum, the quadratic path's point (the optimum moved by
    μ·H⁻¹∇log f with H the expected Hessian κ·JᵀJ), and the point scoring best on that Lagrangian
    among the fit's multi-start end points and the law's start grid; the Huber objective is not smooth, a gradient can vanish at the optimum, and a
    refit stuck short would make the interval too narrow (``explore=False`` leaves the grid start
    out, to see what it adds). Pure: the fit is not changed."""
    level = fit.level if level is None else level
    law, data = fit.law, fit.data
    X = law.columns(X)
    Xt = {k: np.asarray(v, dtype=float) for k, v in X.items()}
    T = len(next(iter(Xt.values())))
    q = float(stats.t.ppf(0.5 + level / 2, max(fit.n_points - law.n_params, 1)))
    sigma = residual_split(fit)[0]
    shape = _ProfileObjective.of(fit, sigma)
    c, kappa = shape.scale(sigma)
    G = log_jacobian(law, shape.z, Xt)
    G = np.where(np.isfinite(G), G, 0.0)
    J = log_jacobian(law, shape.z, data.X)
    H_inv = scaled_pinv(J.T @ J) / kappa
    step = G @ H_inv  # (T, P): dz/dμ on the quadratic path
    # quadratic: Δlog f = μ·gᵀH⁻¹g and ΔF = μ²·gᵀH⁻¹g/2, so 2ΔF·c = q² at μ* = q/√(c·gᵀH⁻¹g)
    s2 = np.clip(np.einsum("tp,tp->t", step, G), 1e-300, None)
    mu_star = q / np.sqrt(c * s2)
    def trace(rows: np.ndarray, rungs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dist, rise = [], []
        for g0 in range(0, rows.size, TARGETS_PER_BATCH):  # every row evaluates its batch's targets: (rows, batch, P)
            g = rows[g0:g0 + TARGETS_PER_BATCH]
            d, r = _trace(fit, shape, {k: v[g] for k, v in Xt.items()}, mu_star[g], step[g], rungs, maxiter, explore)
            dist.append(d)
            rise.append(r)
        return np.concatenate(dist), np.concatenate(rise)

    threshold = q**2 / (2 * c)
    dist, rise = trace(np.arange(T), ladder)
    h, is_open = _crossings(dist, rise, threshold)
    far = np.flatnonzero(is_open.any(axis=1))
    if far.size:  # a side the ladder did not close: the same path further out, for those targets only
        d_far, r_far = trace(far, ladder[-1] * FAR_LADDER)
        h[far], is_open[far] = _crossings(np.concatenate([dist[far], d_far], axis=2),
                                          np.concatenate([rise[far], r_far], axis=2), threshold)
    # the ends are about the profile objective's own optimum; the half-widths about the fit's point
    shift = np.log(law.predict(law.from_z(shape.z[None])[0], Xt)) - np.log(law.predict(fit.theta, Xt))
    h = np.clip(h + np.stack([-shift, shift], axis=1), 0.0, None)
    if fit.null_space is not None and fit.null_space.vectors.size:
        moved = fit.null_space.moves(G)
        h[moved] = np.inf
        is_open[moved] = True
    return PredictionProfile(h[:, 0], h[:, 1], is_open[:, 0], is_open[:, 1], q, float(c))


#: Targets traced in one batched L-BFGS: each objective call evaluates every row at all of them.
TARGETS_PER_BATCH = 8
#: Beyond the ladder's last multiplier, for a side it left open: up to 20x further. Why: on Epoch's
#: runs below 5e18 FLOPs (`predict --train "C <= 5e18" --test "C > 3e21"`) two lower sides rose to
#: 0.298 against a threshold of 0.303 at the ladder's end and printed "0 (open)", where a direct
#: minimisation closes them at 1.61-1.67; only the open targets pay (50x for every target cost 12x).
FAR_LADDER = np.geomspace(1.5, 20.0, 6)


def _trace(fit: FitResult, shape: "_ProfileObjective", Xt: dict[str, np.ndarray], mu_star: np.ndarray, step: np.ndarray,
           ladder: np.ndarray, maxiter: int, explore: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The Lagrangian path at T targets (module doc): → |Δ log f| and the objective's rise ΔF at
    each multiplier, both of shape (T, 2, L) (side 0 below the prediction, 1 above)."""
    law, data = fit.law, fit.data
    T, L = mu_star.size, ladder.size
    target = np.repeat(np.arange(T), 2 * L)
    sign = np.tile(np.repeat([-1.0, 1.0], L), T)
    mu = sign * np.tile(ladder, 2 * T) * mu_star[target]
    zb = law.z_bounds
    path = np.clip(shape.z + mu[:, None] * step[target], zb[:, 0], zb[:, 1])
    fg = shape.fg
    # the third start: the law's start grid point with the lowest Lagrangian (the objective is the same for
    # every row, so one pass scores them all); where a gradient vanishes at the optimum (E = exp(e) → 0)
    # neither the optimum nor the quadratic path can move that parameter, a grid point can
    grid = np.clip(law.initial_z(np.random.default_rng(0), data.X, data.y), zb[:, 0], zb[:, 1]) if explore else None
    if explore and fit.starts_z is not None and len(fit.starts_z):  # the multi-start's end points: other basins' optima
        grid = np.vstack([np.clip(fit.starts_z, zb[:, 0], zb[:, 1]), grid])
    starts = [path, np.broadcast_to(shape.z, path.shape)]
    if explore:
        with np.errstate(all="ignore"):
            F_grid = fg(grid, np.zeros(len(grid), dtype=int))[0]  # the fit's weights are one (n,) vector
            lp_grid = np.log(law.predict(law.from_z(grid), Xt))  # (G, T)
            scores = F_grid[:, None] - mu[None, :] * lp_grid[:, target]  # (G, rows)
        starts.append(grid[np.argmin(np.where(np.isfinite(scores), scores, np.inf), axis=0)])
    k = len(starts)
    Z0 = np.vstack(starts)
    MU, TG = np.tile(mu, k), np.tile(target, k)

    def log_pred(z, rows):
        """log f and its z-gradient at each row's own target."""
        i = np.arange(z.shape[0])
        with np.errstate(all="ignore"):
            return np.log(law.predict(law.from_z(z), Xt))[i, TG[rows]], log_jacobian(law, z, Xt)[i, TG[rows]]

    def lagrangian(z, rows):
        f, g = fg(z, rows)
        lp, glp = log_pred(z, rows)
        with np.errstate(invalid="ignore"):  # a start off the law's domain: inf - inf, dropped below
            fl = f - MU[rows] * lp
            gl = g - MU[rows][:, None] * glp
        return np.where(np.isfinite(fl), fl, np.inf), np.where(np.isfinite(gl), gl, 0.0)

    with single_threaded_blas():
        Z, FL, _, _ = batched_lbfgs(lagrangian, Z0, zb[:, 0], zb[:, 1], maxiter=maxiter, gtol=1e-8, ftol=1e-13)
    n = mu.size
    FL = np.where(np.isfinite(FL), FL, np.inf).reshape(k, n)
    best = Z.reshape(k, n, -1)[np.argmin(FL, axis=0), np.arange(n)]
    F, _ = fg(best, np.arange(n))
    lp, _ = log_pred(best, np.arange(n))
    l0 = np.log(law.predict(law.from_z(shape.z[None])[0], Xt))
    dist = np.abs(lp - l0[target]).reshape(T, 2, L)
    rise = np.where(np.isfinite(F), np.clip(F - shape.objective, 0, None), np.inf).reshape(T, 2, L)
    return dist, rise


def _crossings(dist: np.ndarray, rise: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Where each side's profile first rises past ``threshold``: ``dist``, ``rise`` of shape
    (T, 2, L) (|Δ log f| and ΔF along the ladder) → half-widths (T, 2) and open flags (T, 2).
    Interpolated linearly in √ΔF between the bracketing points (exact where the profile is
    quadratic); the distance is made monotone first and a side ends after its last point inside
    (:func:`fitting.param_intervals.profile_exit`): a refit that fell short is not a narrowing."""
    T = dist.shape[0]
    h = np.zeros((T, 2))
    is_open = np.zeros((T, 2), dtype=bool)
    for t in range(T):
        for s in range(2):
            d = np.maximum.accumulate(np.r_[0.0, dist[t, s]])
            r = np.sqrt(np.r_[0.0, rise[t, s]])
            j = profile_exit(r, np.sqrt(threshold))  # past a refit that stopped short
            if j is None:
                h[t, s], is_open[t, s] = d[-1], True
                continue
            frac = (np.sqrt(threshold) - r[j - 1]) / (r[j] - r[j - 1]) if np.isfinite(r[j]) else 0.0
            h[t, s] = d[j - 1] + frac * (d[j] - d[j - 1])
    return h, is_open
