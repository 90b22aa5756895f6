"""Uncertainty of a fit: sandwich covariance, bootstrap over runs, prediction intervals.

* :func:`estimate_covariance`: the M-estimator sandwich (or "Laplace") covariance of the transformed
  parameters at the optimum, with a kernel-smoothed Huber slope; :func:`fitting.fit.fit_law`
  stores it on every :class:`~fitting.fit.FitResult`.
* :func:`bootstrap`: nonparametric bootstrap over runs (batched, seeded, warm-started).
* :func:`prediction_interval`: prediction and confidence intervals for any inputs (delta method
  or bootstrap percentiles).
* Parameter intervals that stay inside the law's bounds and show the sides the data leave open
  live in :mod:`fitting.param_intervals`: Wald, profile likelihood, and the check of a bootstrap
  interval against the profile.

Everything here is re-exported by :mod:`fitting.fit`; this module needs nothing from it at
import time (``FitResult`` appears in annotations only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import special, stats

from fitting.multistart import single_threaded_blas
from fitting.objective import log_jacobian, make_objective
from fitting.optim import batched_lbfgs
from fitting.posterior import Discrepancy

if TYPE_CHECKING:  # annotations only: fitting.fit imports this module
    from fitting.fit import FitResult

__all__ = ["Interval", "BootstrapResult", "bootstrap", "prediction_interval", "estimate_covariance",
           "residual_scales", "scaled_pinv", "m_estimator_factor", "huber_moments", "split_residuals", "residual_split", "NullSpace", "null_space",
           "jacobian_directions", "loaded_params", "NULL_RCOND", "NULL_LOADING"]


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


def interval_text(lo: float, hi: float, spec: str = ".4g") -> str:
    """``"[lo, hi]"`` for an interval of a positive quantity (a loss, N_opt), a side the data leave
    open printed ``0 (open)`` / ``inf (open)``: every interval here encodes an open side as lo = 0
    or hi = inf (:func:`fitting.extrapolation.parameter_interval`), and a bare "[0.0000, 2.79]"
    read as a closed interval reaching zero loss (a new user's ``predict`` on runs below 5e18
    FLOPs). The one formatter for such intervals in every command and the report."""
    def side(v: float, is_open: bool) -> str:
        return f"{v:{spec}} (open)" if is_open else f"{v:{spec}}"
    lo_open, hi_open = open_sides(lo, hi)
    return f"[{side(lo, lo_open)}, {side(hi, hi_open)}]"


def open_sides(lo: float, hi: float) -> list[bool]:
    """[lower open, upper open] of a positive quantity's interval (:func:`interval_text`'s rule),
    for ``--json``."""
    return [bool(lo <= 0), bool(np.isposinf(hi))]


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
def residual_scales(r: np.ndarray, psi: np.ndarray, loss: str, delta: float, p: int):
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


#: A direction of the column-scaled Jacobian whose singular value is below this fraction of the
#: largest is null: the runs' losses do not move along it, so the data say nothing about it
#: (Rothenberg 1971: a parameter is locally identified iff the information matrix JᵀJ is nonsingular).
#: A sandwich's pseudo-inverse drops such a direction and would give its parameters zero width.
#: 1e-7 is where float64 J stops telling a tiny slope from rounding (its square, 1e-14, is
#: :func:`scaled_pinv`'s cut on JᵀJ); a direction this flat has a standard error ~1e7 × the noise.
NULL_RCOND = 1e-7
#: A parameter is in a (near-)null direction when its loading (the unit vector's component, in
#: column-scaled coordinates; root-sum-square over several null directions) is at least this.
NULL_LOADING = 0.1
#: A prediction depends on a null direction when its gradient's component along it is at least
#: this fraction of the gradient (column-scaled; 100 × NULL_RCOND, above what a near-null direction
#: moves the fitted runs themselves): a product A·K the runs fix keeps a finite interval.
NULL_TOUCH = 1e-5


def jacobian_directions(J: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The column-scaled Jacobian's directions, weakest last: → (s/s₀ (P,), Vᵀ (P, P) unit rows in
    the scaled coordinates, column norms of ``J`` (P,)). ``J`` (n, P): log-loss residuals'
    Jacobian in the law's transformed parameters. A zero column (a parameter with no effect on
    these runs) gives a zero singular value with that parameter's unit vector."""
    J = np.where(np.isfinite(J), J, 0.0)
    scale = np.linalg.norm(J, axis=0)
    Jc = J / np.maximum(scale, 1e-300)
    _, s, vt = np.linalg.svd(Jc, full_matrices=True)
    s = np.r_[s, np.zeros(vt.shape[0] - s.size)]  # fewer runs than parameters: the rest are null
    return s / max(s[0], 1e-300), vt, scale


def loaded_params(vectors: np.ndarray, names, threshold: float = NULL_LOADING) -> list[str]:
    """The names whose loading (root-sum-square over the rows of ``vectors`` (k, P)) is at least
    ``threshold``, largest first."""
    load = np.sqrt(np.sum(np.atleast_2d(vectors) ** 2, axis=0))
    return [names[i] for i in np.argsort(-load, kind="stable") if load[i] >= threshold]


@dataclass(frozen=True)
class NullSpace:
    """The directions in which a fit's runs leave the loss unchanged (:func:`null_space`):
    ``vectors`` (k, P) unit rows in column-scaled transformed coordinates, ``scale`` (P,) the
    Jacobian's column norms, ``names`` the law's parameter names."""

    vectors: np.ndarray
    scale: np.ndarray
    names: tuple[str, ...]

    @property
    def params(self) -> list[str]:
        """The parameters the null directions move (:data:`NULL_LOADING`), largest loading first."""
        return loaded_params(self.vectors, self.names) if self.vectors.size else []

    def moves(self, G: np.ndarray) -> np.ndarray:
        """(n,) bool: whether each prediction, with gradient rows ``G`` (n, P) in the transformed
        parameters, changes along a null direction (so the runs do not fix it)."""
        G = np.atleast_2d(np.asarray(G, dtype=float))
        if not self.vectors.size:
            return np.zeros(G.shape[0], dtype=bool)
        with np.errstate(all="ignore"):
            # a zero column (no effect on the runs) scaled by a floor that keeps |Gs| finite
            Gs = np.where(np.isfinite(G), G, 0.0) / np.maximum(self.scale, 1e-12 * max(self.scale.max(), 1e-300))
            along = np.linalg.norm(Gs @ self.vectors.T, axis=1)
            return along > NULL_TOUCH * np.linalg.norm(Gs, axis=1)


def null_space(J: np.ndarray, names, rcond: float = NULL_RCOND) -> NullSpace:
    """The (near-)null directions of the Jacobian ``J`` (n, P): singular value below ``rcond`` of
    the largest, in column-scaled coordinates (:func:`jacobian_directions`)."""
    ratio, vt, scale = jacobian_directions(J)
    return NullSpace(vt[ratio < rcond], scale, tuple(names))


def scaled_pinv(JtJ: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of JᵀJ (p x p), taken on the column-scaled matrix for stability."""
    sc = np.sqrt(np.clip(np.diag(JtJ), 1e-300, None))
    return np.linalg.pinv(JtJ / np.outer(sc, sc), rcond=1e-13) / np.outer(sc, sc)


def m_estimator_factor(sigma: float, loss: str, delta: float) -> float:
    """E ψ(ε)² / (E ψ'(ε))² for ε ~ N(0, σ²): the M-estimator's asymptotic covariance is this
    times (JᵀJ)⁻¹ (Huber 1964; Huber & Ronchetti 2009 §7.6). Least squares: σ². Huber with
    threshold δ and t = δ/σ: E ψ' = 2Φ(t) − 1, E ψ² = σ²(2Φ(t) − 1 − 2tφ(t)) + 2δ²(1 − Φ(t))
    (→ π σ²/2, least absolute deviations, as δ/σ → 0). ``sigma`` > 0 in log loss."""
    if loss != "huber":
        return float(sigma) ** 2
    kappa, epsi2 = huber_moments(sigma, delta)
    return float(epsi2 / max(kappa, 1e-300) ** 2)


def huber_moments(sigma: float, delta: float) -> tuple[float, float]:
    """(E ψ'(ε), E ψ(ε)²) of the Huber loss with threshold δ for ε ~ N(0, σ²), in log loss:
    2Φ(t) − 1 and σ²(2Φ(t) − 1 − 2tφ(t)) + 2δ²(1 − Φ(t)) with t = δ/σ (:func:`m_estimator_factor`)."""
    t = delta / max(float(sigma), 1e-300)
    kappa = float(special.erf(t / np.sqrt(2)))  # 2Φ(t) − 1 without the cancellation at small t
    epsi2 = sigma**2 * (kappa - 2 * t * stats.norm.pdf(t)) + 2 * delta**2 * stats.norm.sf(t)
    return kappa, float(epsi2)


def split_residuals(r: np.ndarray, J: np.ndarray, Phi: np.ndarray) -> tuple[float, float, int]:
    """REML split of a fit's residuals into white noise and a smooth misfit: → (noise sd σ,
    misfit amplitude a, residual degrees of freedom m).

    ``r`` (n,) the log residuals, ``J`` (n, p) their Jacobian in the parameters, ``Phi`` (n, f) the
    misfit's features at the same rows for amplitude 1 (a Gaussian process with kernel ΦΦᵀ,
    :class:`fitting.posterior.Discrepancy`). The fit absorbs what J's columns span, so the model is
    for r's component in J's left null space Q (n x m, m = n − rank J): Qᵀr ~ N(0, a²QᵀΦΦᵀQ + σ²I),
    fitted by maximum likelihood (restricted maximum likelihood: Patterson & Thompson 1971;
    Rasmussen & Williams 2006 §5.4), σ² profiled out and the ratio a²/σ² searched on a log grid
    (0 included) then refined. σ is the run-to-run scatter with the smooth misfit taken out and
    with the fit's degrees of freedom removed (REML's correction), so it reads neither the misfit
    nor a MAD's small-sample shortfall. m ≤ 1: (the residuals' rms, 0, m), nothing to split."""
    r, J, Phi = np.asarray(r, float), np.asarray(J, float), np.asarray(Phi, float)
    U, s, _ = np.linalg.svd(np.where(np.isfinite(J), J, 0.0), full_matrices=True)
    rank = int(np.sum(s > (s[0] if s.size else 0) * 1e-10))
    Q = U[:, rank:]
    m = Q.shape[1]
    if m <= 1:
        return float(np.sqrt(np.mean(r**2))), 0.0, m
    Qr, QPhi = Q.T @ r, Q.T @ Phi
    lam, V = np.linalg.eigh(QPhi @ QPhi.T)
    z2 = (V.T @ Qr) ** 2
    lam = np.clip(lam, 0.0, None)

    def nll(log_ratio):  # σ² profiled out: −2 log L = Σ log(ρλ + 1) + m log(Σ z²/(ρλ + 1)/m) + const
        v = np.exp(log_ratio) * lam + 1.0
        return float(np.sum(np.log(v)) + m * np.log(np.sum(z2 / v) / m))

    grid = np.linspace(-12.0, 12.0, 97)
    values = [nll(g) for g in grid]
    best = int(np.argmin(values))
    ratio = 0.0
    if nll(-np.inf) > values[best]:  # a ratio above 0 is better than none
        from scipy.optimize import minimize_scalar

        lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
        ratio = float(np.exp(minimize_scalar(nll, bounds=(lo, hi), method="bounded").x))
    sigma2 = float(np.sum(z2 / (ratio * lam + 1.0)) / m)
    return float(np.sqrt(sigma2)), float(np.sqrt(ratio * sigma2)), m


def residual_split(fit: FitResult, length: float = 2.0, J: np.ndarray | None = None) -> tuple[float, float, int]:
    """(noise sd σ > 0, smooth-misfit amplitude, degrees of freedom) of the fit's residuals by REML
    (:func:`split_residuals`), the misfit the GP of :func:`fitting.extrapolation.unit_misfit_sd`
    (:class:`fitting.posterior.Discrepancy` of correlation ``length``)."""
    J = log_jacobian(fit.law, fit.z, fit.data.X) if J is None else J
    sigma, a_in, dof = split_residuals(fit.residuals, J, Discrepancy(amplitude=1.0, length=length).features(fit.data.X))
    return max(sigma, 1e-6), a_in, dof


def estimate_covariance(J, r, psi, loss, delta, p, kind="sandwich"):
    """(covariance of the transformed parameters, effective residual scale sqrt(E ψ²)/E ψ', robust
    residual scale) at the optimum: ``J`` the residual Jacobian (n x p), ``r`` the residuals,
    ``psi`` the loss's ψ(r), ``kind`` "sandwich" (M-estimator) or "laplace"; another kind raises
    ValueError. Used by `fitting.fit`."""
    kappa, epsi2, sigma = residual_scales(r, psi, loss, delta, p)
    n = r.size
    inv = scaled_pinv(J.T @ J)
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
    grid = law.initial_z(rng, fit.data.X, fit.data.y)
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
    :func:`bootstrap`), or ``"auto"`` (bootstrap when available). A prediction that moves along a
    null direction of the fit (``fit.null_space``, :meth:`NullSpace.moves`: the runs do not fix
    it) gets the interval (0, inf) and an infinite se, whichever the method."""
    law = fit.law
    cols = law.columns(X)
    mean = law.predict(fit.theta, cols)
    a = (1 - level) / 2
    noise = fit.sigma if kind == "prediction" else 0.0
    if kind not in ("prediction", "confidence"):
        raise ValueError("kind must be 'prediction' or 'confidence'")
    if method == "auto":
        method = "bootstrap" if fit.bootstrap is not None else "delta"
    null = getattr(fit, "null_space", None)
    moved = null.moves(log_jacobian(law, fit.z, cols)) if null is not None and null.vectors.size else None
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
        if moved is not None:  # resamples never leave the optimum along a null direction: not a spread
            lo, hi, se = np.where(moved, -np.inf, lo), np.where(moved, np.inf, hi), np.where(moved, np.inf, se)
        return Interval(mean, np.exp(lo), np.exp(hi), level, kind, method, se)
    if method != "delta":
        raise ValueError("method must be 'delta', 'bootstrap' or 'auto'")
    G = log_jacobian(law, fit.z, cols)
    var = np.einsum("np,pq,nq->n", G, fit.cov_z, G) + noise**2
    se = np.sqrt(np.clip(var, 0, None))
    if moved is not None:  # the pseudo-inverse gives a null direction zero variance; the runs give it none
        se = np.where(moved, np.inf, se)
    dof = max(fit.n_points - law.n_params, 1)
    q = stats.t.ppf(1 - a, dof)
    lm = np.log(mean)
    return Interval(mean, np.exp(lm - q * se), np.exp(lm + q * se), level, kind, method, se)
