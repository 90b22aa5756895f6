"""One fitting engine for every law: robust multi-start fits with honest uncertainty.

* Objective: Huber (default δ = 1e-3, Hoffmann et al. App. D.2) or least squares on the
  log-loss residuals ``r = log L̂ − log L``, summed over runs (optionally weighted).
* Optimiser: a batched L-BFGS (:mod:`fitting.optim`) runs every start of the law's grid at
  once, in the law's transformed space (log scales, identity exponents).
* Derivatives: the law's own ``grad`` if it has one; otherwise complex-step differentiation of
  its ``fn`` (exact to rounding), falling back to central differences when ``fn`` is not
  complex-safe. Nothing is hand-written per law.
* Uncertainty: an M-estimator sandwich covariance at the optimum (the "Laplace" posterior the
  active design uses), bootstrap over runs (batched, seeded, warm-started), prediction and
  confidence intervals for any inputs.
* Diagnostics: residuals, goodness of fit, held-out error, and a warning when the design is
  degenerate (ill-conditioned Jacobian: e.g. every run at one tokens-per-parameter ratio).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from scipy import stats
from threadpoolctl import threadpool_limits

from fitting.data import FitData, load_fit_data
from fitting.laws import Law, get_law
from fitting.objective import log_jacobian, make_objective, mu_jacobian, objective, rho_psi
from fitting.optim import batched_lbfgs

__all__ = [
    "FitResult",
    "BootstrapResult",
    "Interval",
    "DegenerateDesignWarning",
    "FitError",
    "fit_law",
    "bootstrap",
    "prediction_interval",
    "log_jacobian",
    "mu_jacobian",
    "objective",
    "make_objective",
    "load_fit_data",
]


def _single_threaded_blas():
    """L-BFGS-B calls BLAS on vectors of a few elements; a multi-threaded OpenBLAS pays thread
    wake-ups on each call, which measured 6x slower on a busy 2-core machine."""
    return threadpool_limits(limits=1, user_api="blas")


class DegenerateDesignWarning(UserWarning):
    """The runs do not identify all parameters (ill-conditioned Jacobian)."""


class FitError(ValueError):
    """The data cannot support the requested fit."""


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


@dataclass
class FitResult:
    law: Law
    theta: np.ndarray
    z: np.ndarray
    objective: float
    loss: str
    delta: float
    data: FitData
    cov_z: np.ndarray
    sigma: float  # robust scale of log residuals (for prediction intervals)
    sigma_eff: float  # M-estimator scale: cov_z ≈ sigma_eff² (JᵀJ)⁻¹ under homoscedastic noise
    residuals: np.ndarray  # log L̂ − log L on the fitted rows
    diagnostics: dict[str, Any] = field(default_factory=dict)
    level: float = 0.9
    n_starts: int = 0
    converged: bool = True
    starts_z: np.ndarray | None = None
    start_objectives: np.ndarray | None = None
    bootstrap: BootstrapResult | None = None
    warnings: list[str] = field(default_factory=list)

    # ---- parameters
    @property
    def params(self) -> dict[str, float]:
        return self.law.as_dict(self.theta)

    @property
    def n_points(self) -> int:
        return len(self.data)

    @property
    def cov(self) -> np.ndarray:
        """Covariance of natural parameters (delta method from ``cov_z``)."""
        d = self.law.dtheta_dz(self.z)
        return self.cov_z * np.outer(d, d)

    @property
    def stderr(self) -> dict[str, float]:
        """Standard errors: bootstrap if one was run, else the sandwich (delta method)."""
        if self.bootstrap is not None:
            return self.bootstrap.stderr
        return self.stderr_laplace

    @property
    def stderr_laplace(self) -> dict[str, float]:
        se = np.sqrt(np.clip(np.diag(self.cov), 0, None))
        return {k: float(v) for k, v in zip(self.law.param_names, se)}

    def ci(self, level: float | None = None) -> dict[str, tuple[float, float]]:
        """Central CIs: bootstrap percentiles if run, else Wald intervals in the transformed space
        mapped back (so positive scales get asymmetric, positive intervals)."""
        level = self.level if level is None else level
        if self.bootstrap is not None:
            return self.bootstrap.ci(level)
        return self.ci_laplace(level)

    def ci_laplace(self, level: float | None = None) -> dict[str, tuple[float, float]]:
        level = self.level if level is None else level
        dof = max(self.n_points - self.law.n_params, 1)
        q = stats.t.ppf(0.5 + level / 2, dof)
        se_z = np.sqrt(np.clip(np.diag(self.cov_z), 0, None))
        lo = self.law.from_z(self.z - q * se_z)
        hi = self.law.from_z(self.z + q * se_z)
        return {k: (float(min(a, b)), float(max(a, b))) for k, a, b in zip(self.law.param_names, lo, hi)}

    # ---- predictions
    def predict(self, X) -> np.ndarray:
        return self.law.predict(self.theta, X)

    def interval(self, X, level: float | None = None, kind: str = "prediction", method: str = "auto") -> Interval:
        return prediction_interval(self, X, level=self.level if level is None else level, kind=kind, method=method)

    def fisher(self, X=None) -> np.ndarray:
        """Fisher information in z-space of the fitted rows (or of ``X``): JᵀJ / sigma_eff²."""
        J = log_jacobian(self.law, self.z, self.data.X if X is None else X)
        return J.T @ J / self.sigma_eff**2

    # ---- reporting
    def gof(self) -> dict[str, float]:
        r = self.residuals
        rel = np.abs(np.expm1(r))
        ly = np.log(self.data.y)
        ss_tot = float(((ly - ly.mean()) ** 2).sum())
        return {
            "objective": float(self.objective),
            "rmse_log": float(np.sqrt(np.mean(r * r))),
            "mae_rel": float(rel.mean()),
            "max_rel": float(rel.max()),
            "r2_log": float(1 - (r * r).sum() / ss_tot) if ss_tot > 0 else float("nan"),
            "sigma": float(self.sigma),
        }

    def to_dict(self, level: float | None = None) -> dict[str, Any]:
        level = self.level if level is None else level
        key = f"ci{int(round(level * 100))}"
        out = {
            "law": self.law.name,
            "n_points": self.n_points,
            "n_dropped": self.data.n_dropped,
            "params": self.params,
            "stderr": self.stderr,
            key: {k: list(v) for k, v in self.ci(level).items()},
            "uncertainty": "bootstrap" if self.bootstrap is not None else "sandwich",
            "loss": self.loss,
            "delta": self.delta if self.loss == "huber" else None,
            "objective": float(self.objective),
            "gof": self.gof(),
            "n_starts": self.n_starts,
            "converged": bool(self.converged),
            "columns": dict(self.data.columns),
            "warnings": list(self.warnings),
        }
        if self.bootstrap is not None:
            out["n_bootstrap"] = self.bootstrap.n
        if "holdout" in self.diagnostics:
            out["holdout"] = self.diagnostics["holdout"]
        out["condition_number"] = self.diagnostics.get("condition_number")
        return out

    def summary(self, level: float | None = None) -> str:
        level = self.level if level is None else level
        ci, se = self.ci(level), self.stderr
        lines = [f"law {self.law.name}: {self.n_points} points ({self.data.n_dropped} dropped), "
                 f"{self.loss}{'(δ=%g)' % self.delta if self.loss == 'huber' else ''}, {self.n_starts} starts, "
                 f"uncertainty: {'bootstrap (%d)' % self.bootstrap.n if self.bootstrap is not None else 'sandwich'}"]
        lines.append(f"{'param':<10} {'value':>12} {'stderr':>12} {'ci%d lo' % round(level * 100):>12} {'ci hi':>12}")
        for k in self.law.param_names:
            lines.append(f"{k:<10} {self.params[k]:>12.6g} {se[k]:>12.4g} {ci[k][0]:>12.6g} {ci[k][1]:>12.6g}")
        g = self.gof()
        lines.append(f"fit: rmse(log) {g['rmse_log']:.4g}  mean |rel err| {g['mae_rel']:.4%}  max {g['max_rel']:.4%}  "
                     f"R²(log) {g['r2_log']:.4f}  objective {g['objective']:.6g}")
        if "holdout" in self.diagnostics:
            h = self.diagnostics["holdout"]
            lines.append(f"held out: {h['n']} points, mean |rel err| {h['mae_rel']:.4%}, max {h['max_rel']:.4%}")
        for w in self.warnings:
            lines.append(f"warning: {w}")
        return "\n".join(lines)


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


def _covariance(J, r, psi, loss, delta, p, kind="sandwich"):
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


def _conditioning(J: np.ndarray) -> tuple[float, np.ndarray]:
    Jc = J / np.maximum(np.linalg.norm(J, axis=0), 1e-300)
    s, vt = np.linalg.svd(Jc, full_matrices=False)[1:]
    cond = float(s[0] / max(s[-1], 1e-300))
    return cond, vt[-1]


# ====================================================================== fitting
def _as_mask(sel, data: FitData, flops_per_token: float):
    if sel is None:
        return None
    if callable(sel):
        return np.asarray(sel(data), dtype=bool)
    if isinstance(sel, Mapping):  # {"max_compute": x} / {"min_compute": x}
        C = data.compute(flops_per_token)
        m = np.ones(len(data), dtype=bool)
        if "max_compute" in sel:
            m &= C <= float(sel["max_compute"])
        if "min_compute" in sel:
            m &= C >= float(sel["min_compute"])
        return m
    return np.asarray(sel, dtype=bool)


def fit_law(
    law,
    data,
    *,
    loss: str = "huber",
    delta: float = 1e-3,
    starts=None,
    init=None,
    weights=None,
    train=None,
    level: float = 0.9,
    covariance: str = "sandwich",
    maxiter: int = 1000,
    gtol: float = 1e-10,
    ftol: float = 1e-15,
    screen: int | str | None = "auto",
    seed: int = 0,
    cond_warn: float = 1e6,
    flops_per_token: float = 6.0,
    n_bootstrap: int = 0,
    diff: str = "auto",
    **columns,
) -> FitResult:
    """Fit ``law`` to runs.

    ``data``: anything :func:`fitting.data.load_fit_data` reads (``**columns`` are passed to it:
    ``n_col=``, ``d_col=``, ``loss_col=``, ``extra_cols=``...). ``starts``: ``(S, P)`` starts in
    the transformed space (default: the law's grid/sampler). ``init``: a warm start (dict or
    natural-parameter array, or a FitResult); it is added to the starts, and with ``starts=()``
    it is the only one. ``train``: boolean mask / callable / ``{"max_compute": x}`` — fit on
    those rows and report held-out error on the others in ``diagnostics["holdout"]``.
    ``screen``: ``"auto"`` (default) — with more than 64 starts, keep the best quarter by initial
    objective, run those 3 L-BFGS iterations and finish the best 32 (up to 300 iterations each); an int — finish that many;
    ``None`` — run every start to convergence (exhaustive). On the Epoch data over a third of
    Hoffmann's 4,500 starts reach the global optimum, and screening finds it in all our checks.
    The best few candidates are then polished one by one with scipy's L-BFGS-B to tight tolerance. ``n_bootstrap``: also run :func:`bootstrap`.
    """
    law = get_law(law)
    import fitting.data as _fd

    full = data if isinstance(data, FitData) else _fd.load_fit_data(data, law=law, flops_per_token=flops_per_token, **columns)
    missing = [c for c in law.inputs if c not in full.X]
    if missing:
        raise FitError(f"law {law.name!r} needs inputs {list(law.inputs)}; data lacks {missing}")
    mask = _as_mask(train, full, flops_per_token)
    fdata = full.subset(mask) if mask is not None else full
    P, n = law.n_params, len(fdata)
    if n < P + 1:
        raise FitError(f"too few points for law {law.name!r}: {n} usable runs for {P} parameters "
                       f"(need at least {P + 1}; dropped {full.n_dropped} rows)")
    if mask is not None and (~mask).sum() == 0:
        warnings.warn("train selection keeps every row: no held-out points", UserWarning, stacklevel=2)

    # ---- starts
    lo, hi = law.z_bounds.T
    rng = np.random.default_rng(seed)
    if starts is None:
        Z0 = law.initial_z(rng)
    else:
        Z0 = np.asarray(starts, dtype=float).reshape(-1, P) if len(np.atleast_1d(starts)) else np.empty((0, P))
    if init is not None:
        if isinstance(init, FitResult):
            zi = init.z
        else:
            zi = law.to_z(law.as_array(init))
        Z0 = np.vstack([np.atleast_2d(zi), Z0])
    if Z0.shape[0] == 0:
        raise FitError("no starting points")
    Z0 = np.clip(Z0, lo, hi)
    fg = make_objective(law, fdata.X, fdata.y, loss=loss, delta=delta, weights=weights, method=diff)

    with _single_threaded_blas():
        Zf, ff, conv = _multistart(fg, Z0, lo, hi, screen=screen, maxiter=maxiter, gtol=gtol, ftol=ftol,
                                   n_keep_first=1 if init is not None else 0)
    ok = np.isfinite(ff)
    if not ok.any():
        raise FitError(f"law {law.name!r}: the objective is not finite at any start (check inputs and bounds)")
    best = int(np.argmin(np.where(ok, ff, np.inf)))
    z = Zf[best]
    return _finish(law, z, float(ff[best]), fdata, full, mask, loss, delta, level, covariance, Z0.shape[0],
                   bool(conv[best]), Zf, ff, cond_warn, n_bootstrap, seed, flops_per_token)


def _finish(law, z, fbest, fdata, full, mask, loss, delta, level, covariance, n_starts, conv, Zf, ff,
            cond_warn, n_bootstrap, seed, flops_per_token):
    P = law.n_params
    theta = law.from_z(z)
    mu = law.predict(theta, fdata.X)
    r = np.log(mu) - np.log(fdata.y)
    _, psi = rho_psi(r, loss, delta)
    J = log_jacobian(law, z, fdata.X)
    cov_z, sigma_eff, sigma = _covariance(J, r, psi, loss, delta, P, covariance)
    cond, weak = _conditioning(J)
    msgs = []
    diag: dict[str, Any] = {"condition_number": cond, "weak_direction": dict(zip(law.param_names, np.round(weak, 4).tolist())),
                            "iterations_converged": conv}
    if not np.isfinite(cond) or cond > cond_warn:
        top = sorted(zip(law.param_names, np.abs(weak)), key=lambda t: -t[1])[:3]
        msg = (f"degenerate design for law {law.name!r}: Jacobian condition number {cond:.3g} > {cond_warn:g}; "
               f"the runs barely constrain the combination of {', '.join(k for k, _ in top)} "
               f"(vary tokens-per-parameter and scale more widely); uncertainties are unreliable")
        msgs.append(msg)
        warnings.warn(msg, DegenerateDesignWarning, stacklevel=3)
    if {"N", "D"} <= set(law.inputs) and len(fdata) > 2:
        lr = np.log(fdata.X["D"]) - np.log(fdata.X["N"])
        lN = np.log(fdata.X["N"])
        spread = float(np.std(lr))
        diag["log_tokens_per_param_sd"] = spread
        if spread < 0.05 * max(float(np.std(lN)), 1e-12) or spread < 1e-3:
            msg = (f"degenerate design: every run has (almost) the same tokens-per-parameter ratio D/N "
                   f"(sd of ln(D/N) {spread:.3g}); the N and D exponents of {law.name!r} are not separately "
                   f"identifiable — add runs at other D/N ratios")
            msgs.append(msg)
            warnings.warn(msg, DegenerateDesignWarning, stacklevel=3)
    at_bound = [k for k, zk, (l, h) in zip(law.param_names, z, law.z_bounds) if np.isclose(zk, l) or np.isclose(zk, h)]
    if at_bound:
        msgs.append(f"parameters at a bound: {at_bound}")
    if not conv:
        msgs.append("best start did not meet the convergence tolerance")
    res = FitResult(law=law, theta=theta, z=z, objective=fbest, loss=loss, delta=delta, data=fdata, cov_z=cov_z,
                    sigma=sigma, sigma_eff=sigma_eff, residuals=r, diagnostics=diag, level=level, n_starts=n_starts,
                    converged=conv, starts_z=Zf, start_objectives=ff, warnings=msgs)
    if mask is not None and (~mask).any():
        hd = full.subset(~mask)
        pred = law.predict(theta, hd.X)
        rel = np.abs(pred / hd.y - 1)
        diag["holdout"] = {"n": int(len(hd)), "mae_rel": float(rel.mean()), "max_rel": float(rel.max()),
                           "mean_log_resid": float(np.mean(np.log(pred) - np.log(hd.y)))}
        diag["holdout_data"] = hd
    if n_bootstrap:
        bootstrap(res, n_boot=n_bootstrap, seed=seed)
    return res


def _multistart(fg, Z0, lo, hi, *, screen="auto", maxiter=1000, gtol=1e-10, ftol=1e-15, n_polish=3, prune=0.25,
                n_keep_first=0):
    """Batched multi-start L-BFGS with optional screening, then a scipy polish of the best few.

    Returns (Z, f, converged) for the surviving starts (polished ones updated in place)."""
    from scipy.optimize import minimize

    S = Z0.shape[0]
    keep = None
    if screen == "auto":
        keep = 32 if S > 64 else None
    elif screen is not None:
        keep = int(screen)
    Z = Z0
    if keep is not None and S > keep:
        f0, _ = fg(Z, np.arange(S))
        f0 = np.where(np.isfinite(f0), f0, np.inf)
        first = np.argsort(f0, kind="stable")[: max(4 * keep, S // 4)]
        if n_keep_first and not np.isin(np.arange(n_keep_first), first).all():  # warm starts survive
            first = np.unique(np.concatenate([np.arange(n_keep_first), first]))
        Zs, fs, _, _ = batched_lbfgs(lambda z, r: fg(z, first[r]), Z[first], lo, hi, maxiter=3)
        fs = np.where(np.isfinite(fs), fs, np.inf)
        pos_first = np.flatnonzero(first < n_keep_first)
        fs_rank = fs.copy()
        fs_rank[pos_first] = -np.inf
        order = np.argsort(fs_rank, kind="stable")[:keep]
        rows = first[order]
        Z = Zs[order]
    else:
        rows = np.arange(S)
    # the batched stage only has to find the best basins; the scipy polish converges tightly
    Zf, ff, _, conv = batched_lbfgs(lambda z, r: fg(z, rows[r]), Z, lo, hi, maxiter=min(maxiter, 100 if Z.shape[0] > 64 else 300),
                                    gtol=1e-6, ftol=1e-10, prune=prune if Z.shape[0] > 64 else None)
    ff = np.where(np.isfinite(ff), ff, np.inf)
    # polish the best distinct candidates one at a time (tight tolerances)
    order = np.argsort(ff, kind="stable")
    picked: list[int] = []
    for i in order:
        if not np.isfinite(ff[i]) or len(picked) >= n_polish:
            break
        if any(np.allclose(Zf[i], Zf[j], rtol=1e-4, atol=1e-6) for j in picked):
            continue
        picked.append(int(i))
    bounds = [(None if not np.isfinite(a) else a, None if not np.isfinite(b) else b) for a, b in zip(lo, hi)]
    for i in picked:
        row = rows[i : i + 1]

        def single(z, row=row):
            f, g = fg(z[None, :], row)
            return float(f[0]), g[0]

        try:
            res = minimize(single, Zf[i], jac=True, method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": maxiter, "ftol": ftol, "gtol": gtol, "maxcor": 20})
        except (ValueError, FloatingPointError):  # pragma: no cover - polish is best effort
            continue
        if np.isfinite(res.fun) and res.fun <= ff[i]:
            Zf[i], ff[i] = res.x, res.fun
            conv[i] = conv[i] or bool(res.success)
    return Zf, ff, conv


# ====================================================================== bootstrap
def bootstrap(fit: FitResult, n_boot: int = 1000, *, seed: int | None = 0, n_perturb: int = 1,
              scale: float = 2.0, starts=None, level: float | None = None, chunk: int = 4096,
              attach: bool = True, maxiter: int = 150, gtol: float = 1e-6, ftol: float = 1e-10) -> BootstrapResult:
    """Nonparametric bootstrap over runs (rows resampled with replacement), seeded.

    Each replicate is refit from the full-data optimum and ``n_perturb`` starts perturbed by
    ``scale`` × the sandwich standard errors (plus any extra ``starts``), all replicates batched in
    one vectorised L-BFGS (chunks of ``chunk`` problems); the best start per replicate wins.
    With ``attach`` the result is stored on ``fit`` so its ``stderr``/``ci`` use it."""
    law, data = fit.law, fit.data
    n, P = len(data), law.n_params
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)
    base = [fit.z[None, :]]
    se = np.sqrt(np.clip(np.diag(fit.cov_z), 0, None))
    se = np.where(np.isfinite(se), np.minimum(se, 5.0), 0.5)
    if n_perturb:
        base.append(fit.z + scale * se * rng.standard_normal((n_perturb, P)))
    if starts is not None:
        base.append(np.atleast_2d(np.asarray(starts, dtype=float)))
    S0 = np.vstack(base)
    lo, hi = law.z_bounds.T
    S0 = np.clip(S0, lo, hi)
    k = S0.shape[0]
    Zall = np.empty((n_boot, P))
    Fall = np.empty(n_boot)
    Call = np.empty(n_boot, dtype=bool)
    per = max(1, chunk // k)
    for b0 in range(0, n_boot, per):
        b1 = min(n_boot, b0 + per)
        W = np.repeat(counts[b0:b1], k, axis=0)
        Z0 = np.tile(S0, (b1 - b0, 1))
        fg = make_objective(law, data.X, data.y, loss=fit.loss, delta=fit.delta, weights=W)
        with _single_threaded_blas():
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
