"""One fitting engine for every law: robust multi-start fits with honest uncertainty.

* Objective: Huber (default δ = 1e-3, Hoffmann et al. App. D.2) or least squares on the
  log-loss residuals ``r = log L̂ − log L``, summed over runs (optionally weighted).
* Optimiser: a batched L-BFGS (:mod:`fitting.optim`) runs every start of the law's grid at
  once, in the law's transformed space (log scales, identity exponents); the screening and
  polishing around it live in :mod:`fitting.multistart`.
* Derivatives: the law's own ``grad`` if it has one; otherwise complex-step differentiation of
  its ``fn`` (exact to rounding), falling back to central differences when ``fn`` is not
  complex-safe. Nothing is hand-written per law.
* Uncertainty (:mod:`fitting.uncertainty`): an M-estimator sandwich covariance
  at the optimum (the "Laplace" posterior the active design uses), bootstrap over runs (batched,
  seeded, warm-started), prediction and confidence intervals for any inputs.
* Diagnostics: residuals, goodness of fit, held-out error, and a warning when the design is
  degenerate (ill-conditioned Jacobian: e.g. every run at one tokens-per-parameter ratio).

This module holds :func:`fit_law`, :class:`FitResult` and the fit-time diagnostics.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np
from scipy import stats

from fitting.checks import (
    Identifiability, ParamVerdict, identifiability, parameter_verdicts, r2_log, unidentified_note, worse_than_constant,
)
from fitting.data import FitData, load_fit_data
from fitting.law import LOG, Law
from fitting.laws import get_law
from fitting.multistart import multistart_lbfgs, single_threaded_blas
from fitting.objective import bounds_note, log_jacobian, make_objective, params_at_bounds, rho_psi
from fitting.param_intervals import ParamInterval, bounded_interval, narrow_bootstrap, open_interval, profile_intervals, wald_intervals
from fitting.uncertainty import (BootstrapResult, Interval, NullSpace, bootstrap, estimate_covariance,
                                 jacobian_directions, loaded_params, null_space, prediction_interval)

__all__ = ["FitResult", "DegenerateDesignWarning", "FitError", "fit_law", "store_misfit"]


class DegenerateDesignWarning(UserWarning):
    """The runs do not identify all parameters (ill-conditioned Jacobian)."""


class FitError(ValueError):
    """The data cannot support the requested fit."""


# ====================================================================== results
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
    method: str = "auto"  # parameter intervals: "auto" (bootstrap if run, else sandwich) or "profile"
    profile: dict[str, ParamInterval] | None = None  # profile intervals at ``level``, when computed
    null_space: NullSpace | None = None  # directions the runs leave the loss unchanged along (not identified)
    # profile intervals at other levels, traced on first use (profile_at)
    _profiles: dict = field(default_factory=dict, repr=False, compare=False)

    # ---- parameters
    @property
    def params(self) -> dict[str, float]:
        return self.law.as_dict(self.theta)

    @property
    def n_points(self) -> int:
        return len(self.data)

    @property
    def identifiability(self) -> Identifiability:
        """Whether the fitted runs identify the law's N/D split (:func:`fitting.checks.identifiability`)."""
        return identifiability(self.data.X, self.law)

    def profile_at(self, level: float | None = None) -> dict[str, ParamInterval]:
        """Profile-likelihood intervals at ``level`` (:func:`fitting.param_intervals.profile_intervals`),
        traced on first use and kept: the verdicts need them whatever the printed intervals are, and
        the many fits nobody reads a verdict of (the design's refits, a calibration's held-out
        refits) never trace one."""
        level = self.level if level is None else level
        if level == self.level and self.profile is not None:
            return self.profile
        if level not in self._profiles:
            self._profiles[level] = profile_intervals(self, level)
        if level == self.level:
            self.profile = self._profiles[level]
        return self._profiles[level]

    def verdicts(self, level: float | None = None) -> dict[str, ParamVerdict]:
        """Whether the runs identify each parameter (:func:`fitting.checks.parameter_verdicts`: the
        N/D split, a bound, a null direction, the ``level`` profile-likelihood interval of
        :meth:`profile_at`), the one verdict fit, predict, replay, plan, frontier, the active
        summary and the report give. Read from the profile, what the objective itself allows,
        never from the printed intervals: those are a bootstrap's when one was run, and the same
        runs got "not identified" tags from ``--bootstrap 200`` and none from ``--bootstrap 0``."""
        split = self.identifiability  # not identified: every parameter is so, no profile to trace
        ivs = dict(self.profile_at(level) if split.identified else self.intervals(level))
        for k in self.null_params:
            ivs[k] = open_interval(self.law, self.z, self.law.param_names.index(k))
        verdicts = parameter_verdicts(self.law, self.params, ivs, split,
                                      params_at_bounds(self.law, self.z, self.data.X), self.null_reasons,
                                      what="profile interval")
        with np.errstate(over="ignore"):  # a scale's Wald interval may overflow: said in words
            printed = self.intervals(level)
        # each verdict's lo, hi: the interval fit prints (the report's cell, the headline); the reason cites the profile's
        return {k: replace(v, lo=printed[k].lo, hi=printed[k].hi) for k, v in verdicts.items()}

    def param_tags(self, level: float | None = None) -> dict[str, str]:
        """Per parameter, the tag printed beside its value ("" when none): ``one-sided`` when its
        printed interval (:meth:`intervals`) is open on one side, and ``not identified`` when
        :meth:`verdicts` says the runs do not identify it, or its printed interval is open to both
        bounds. The one tag fit's table, replay's fit line and the active summary print."""
        verdicts = self.verdicts(level)
        with np.errstate(over="ignore"):
            ivs = self.intervals(level)
        out = {}
        for k in self.law.param_names:
            iv = ivs[k]
            tags = ["one-sided" if iv.one_sided else "",
                    "" if verdicts[k].identified and not iv.unidentified else "not identified"]
            out[k] = ", ".join(t for t in tags if t)
        return out

    def not_identified(self, level: float | None = None) -> dict[str, str | None]:
        """Per parameter: None when the runs identify it, else why not (:meth:`verdicts`): the
        machine-readable form of the tags and notes, as every ``--json`` gives it."""
        return {k: None if v.identified else v.reason for k, v in self.verdicts(level).items()}

    def notes(self, level: float | None = None) -> list[str]:
        """:attr:`warnings` and, last, the note naming the parameters the runs do not identify
        (:func:`fitting.checks.unidentified_note` of :meth:`verdicts`): what every command prints
        as the fit's warnings. Apart from :attr:`warnings` because the verdicts trace the profile,
        which a fit nobody reads should not pay for."""
        note = unidentified_note(self.verdicts(level), f"law {self.law.name!r}")
        return list(self.warnings) + ([note] if note and note not in self.warnings else [])

    @property
    def null_params(self) -> list[str]:
        """The parameters in a (near-)null direction of the fit's Jacobian (:class:`NullSpace`): the
        runs' losses do not move along it, so no interval, sandwich, bootstrap or profile, can
        bound them (the sandwich's pseudo-inverse gave them zero width; warm-started resamples
        never leave the optimum along it)."""
        return self.null_space.params if self.null_space is not None else []

    @property
    def null_reasons(self) -> dict[str, str]:
        """name → why, for :attr:`null_params`: no effect on these runs' losses, or only a
        combination with the others named."""
        names = self.null_params
        if len(names) == 1:
            return {names[0]: "it has no effect on these runs' losses: a null direction of the fit"}
        return {k: f"the runs fix only a combination of {', '.join(names)}: a null direction of the fit" for k in names}

    @property
    def bounds_note(self) -> str | None:
        """The warning naming the parameters at their bounds (:func:`fitting.objective.params_at_bounds`),
        None when none is: the line replay, plan and the active summary print."""
        return bounds_note(params_at_bounds(self.law, self.z, self.data.X))

    @property
    def cov(self) -> np.ndarray:
        """Covariance of natural parameters (delta method from ``cov_z``)."""
        d = self.law.dtheta_dz(self.z)
        return self.cov_z * np.outer(d, d)

    @property
    def stderr(self) -> dict[str, float]:
        """Standard errors: bootstrap if one was run, else the sandwich (delta method)."""
        se = self.bootstrap.stderr if self.bootstrap is not None else self.stderr_laplace
        return {k: float("inf") if k in self.null_params else v for k, v in se.items()}

    @property
    def stderr_laplace(self) -> dict[str, float]:
        se = np.sqrt(np.clip(np.diag(self.cov), 0, None))
        # a log-scaled parameter driven to its bound 0 has no curvature left: the delta method's 0·∞
        # printed se 0 beside a one-sided interval, so it is infinite (the data do not fix its scale)
        flat = (np.asarray(self.law.transforms) == LOG) & (self.z < UNDERFLOW_Z)
        return {k: float("inf") if f else float(v) for k, v, f in zip(self.law.param_names, se, flat)}

    @property
    def uncertainty(self) -> str:
        """Where :meth:`intervals` come from: "profile", "bootstrap" or "sandwich"."""
        return "profile" if self.method == "profile" else "bootstrap" if self.bootstrap is not None else "sandwich"

    def intervals(self, level: float | None = None) -> dict[str, ParamInterval]:
        """Every parameter's central interval, with the sides the data leave open
        (:class:`~fitting.param_intervals.ParamInterval`): profile intervals with ``method="profile"``,
        else bootstrap percentiles if run, else Wald intervals that stay inside the bounds
        (:meth:`ci_laplace`). A bootstrap interval much narrower than the parameter's profile (the
        replicates missed a direction the data leave open, :func:`fitting.param_intervals.narrow_bootstrap`)
        is replaced by the profile's, so no printed interval is narrower than the data allow, and so is a
        parameter's at a bound (:func:`fitting.objective.params_at_bounds`), whichever the method. A
        parameter in a null direction (:attr:`null_params`) is unidentified (open to both bounds)
        whichever the method."""
        level = self.level if level is None else level
        out = self._intervals(level)
        for k in self.null_params:
            out[k] = open_interval(self.law, self.z, self.law.param_names.index(k))
        return out

    def _intervals(self, level: float) -> dict[str, ParamInterval]:
        if self.method == "profile":
            return dict(self.profile_at(level))
        if self.bootstrap is None:
            out = self.ci_laplace_intervals(level)
        else:
            out = {k: bounded_interval(self.law, self.z, self.law.param_names.index(k), lo, hi)
                   for k, (lo, hi) in self.bootstrap.ci(level).items()}
        replace = self.profile_replaced(level)
        if replace:
            prof = self.profile_at(level)
            out.update({k: prof[k] for k in replace})
        return out

    def profile_replaced(self, level: float | None = None) -> dict[str, str]:
        """The parameters :meth:`intervals` gives the profile's interval instead of the method's, each
        with why: "bound" (at a bound: neither resamples nor the curvature can show a spread the bound
        cuts; a new user read E's bootstrap interval [1.6e-22, 0.152], closed, where the profile gives
        [0 (open), 1.12]), "sandwich" (:meth:`off_profile`) or "bootstrap" (:meth:`narrow_bootstrap`).
        Empty with ``method="profile"``. The one owner of that choice: the fit table's notes read it."""
        if self.method == "profile":
            return {}
        level = self.level if level is None else level
        why = {k: "bound" for k in params_at_bounds(self.law, self.z, self.data.X)}
        if self.bootstrap is None:
            if self.identifiability.identified:  # the curvature can miss what the profile allows, as resamples can
                why.update({k: "sandwich" for k in self.off_profile(level) if k not in why})
        else:
            why.update({k: "bootstrap" for k in self.narrow_bootstrap(level) if k not in why})
        return why

    def off_profile(self, level: float | None = None) -> list[str]:
        """The parameters whose sandwich (Wald) interval covers less than half of their profile
        interval (:func:`fitting.param_intervals.narrow_bootstrap`'s rule): :meth:`intervals` prints
        the profile's for them, and the table says so."""
        level = self.level if level is None else level
        wald = {k: (iv.lo, iv.hi) for k, iv in self.ci_laplace_intervals(level).items()}
        return narrow_bootstrap(wald, self.profile_at(level), self.law)[0]

    def narrow_bootstrap(self, level: float | None = None) -> list[str]:
        """The parameters whose bootstrap interval at ``level`` is much narrower than their profile
        interval (:func:`fitting.param_intervals.narrow_bootstrap`): the resamples missed a
        direction the data leave open, so anything drawn from them (N_opt's interval) is too
        narrow along it. Empty without a bootstrap; a bootstrap attached after the fit (replay) is
        checked too."""
        if self.bootstrap is None:
            return []
        level = self.level if level is None else level
        return narrow_bootstrap(self.bootstrap.ci(level), self.profile_at(level), self.law)[0]

    def ci(self, level: float | None = None) -> dict[str, tuple[float, float]]:
        """Central CIs as (lo, hi) in natural units (:meth:`intervals`, an open side at its bound)."""
        return {k: (iv.lo, iv.hi) for k, iv in self.intervals(level).items()}

    def ci_laplace_intervals(self, level: float | None = None) -> dict[str, ParamInterval]:
        """Wald intervals from the sandwich covariance, taken in the law's transformed space and
        once more in an unbounded coordinate (:func:`fitting.param_intervals.wald_intervals`), so
        positive scales get asymmetric, positive intervals and none leaves the law's bounds."""
        level = self.level if level is None else level
        q = stats.t.ppf(0.5 + level / 2, max(self.n_points - self.law.n_params, 1))
        out = wald_intervals(self.law, self.z, self.cov_z, q)
        for k in self.null_params:  # the pseudo-inverse gave them zero width
            out[k] = open_interval(self.law, self.z, self.law.param_names.index(k))
        return out

    def ci_laplace(self, level: float | None = None) -> dict[str, tuple[float, float]]:
        return {k: (iv.lo, iv.hi) for k, iv in self.ci_laplace_intervals(level).items()}

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
        return {
            "objective": float(self.objective),
            "rmse_log": float(np.sqrt(np.mean(r * r))),
            "mae_rel": float(rel.mean()),
            "max_rel": float(rel.max()),
            "r2_log": r2_log(r, self.data.y),
            "sigma": float(self.sigma),
        }

    def to_dict(self, level: float | None = None) -> dict[str, Any]:
        level = self.level if level is None else level
        key = f"ci{int(round(level * 100))}"
        verdict = self.identifiability
        # unidentified: the intervals describe the runs' line only, so none is given as known
        known = verdict.identified
        ivs = self.intervals(level)
        not_identified = self.not_identified(level)
        unnamed = [k for k, why in not_identified.items() if why]
        out = {
            "law": self.law.name,
            "n_points": self.n_points,
            "n_dropped": self.data.n_dropped,
            "params": self.params,
            # every parameter identified by these runs (a new user read true beside a non-null
            # not_identified.E); split_identified: the N/D split alone, which gates the intervals
            "identified": known and not unnamed,
            "unidentified_reason": verdict.reason if not known else
            (f"not identified by these runs: {', '.join(unnamed)} (not_identified says why)" if unnamed else None),
            "split_identified": known,
            # per parameter: null when the runs identify it, else why not (fitting.checks.parameter_verdicts)
            "not_identified": not_identified,
            "stderr": {k: v if known and np.isfinite(v) else None for k, v in self.stderr.items()},
            key: {k: [iv.lo, iv.hi] if known else None for k, iv in ivs.items()},
            # per parameter [lower open, upper open]: the data do not close that side (it runs to the bound)
            f"{key}_open": {k: [iv.lo_open, iv.hi_open] if known else None for k, iv in ivs.items()},
            "uncertainty": self.uncertainty,
            "loss": self.loss,
            "delta": self.delta if self.loss == "huber" else None,
            "objective": float(self.objective),
            "gof": self.gof(),
            "n_starts": self.n_starts,
            "converged": bool(self.converged),
            "columns": dict(self.data.columns),
            "warnings": self.notes(level),
        }
        if self.data.aggregation:  # several rows per cell became one (fitting.aggregate)
            out["aggregation"] = self.data.aggregation
        if self.diagnostics.get("optimal_hyperparameters"):
            out["optimal_hyperparameters"] = [h.to_dict() for h in self.diagnostics["optimal_hyperparameters"]]
        if self.bootstrap is not None:
            out["n_bootstrap"] = self.bootstrap.n
        if "holdout" in self.diagnostics:
            out["holdout"] = self.diagnostics["holdout"]
        out["condition_number"] = self.diagnostics.get("condition_number")
        return out

    def summary(self, level: float | None = None) -> str:
        level = self.level if level is None else level
        ivs, se = self.intervals(level), self.stderr
        how = {"bootstrap": f"bootstrap ({self.bootstrap.n if self.bootstrap is not None else 0})",
               "profile": "profile likelihood", "sandwich": "sandwich"}[self.uncertainty]
        # what the input said (units, range, dropped rows) comes before the numbers it qualifies
        first = [w for w in self.diagnostics.get("input_warnings", ()) if w in self.warnings]
        lines = [f"warning: {w}" for w in first]
        dropped = f" (after dropping {self.data.n_dropped} of the input's rows)" if self.data.n_dropped else ""
        lines += [f"law {self.law.name}: {self.n_points} points{dropped}, "
                 f"{self.loss}{'(δ=%g)' % self.delta if self.loss == 'huber' else ''}, {self.n_starts} starts, "
                 f"uncertainty: {how}"]
        if self.data.aggregation:
            lines.append(f"rows: {self.data.aggregation}")
        verdict = self.identifiability
        tags = self.param_tags(level)
        if not verdict.identified:
            lines.append(f"NOT IDENTIFIED: {verdict.reason}; the values below fit these runs but do not separate "
                         f"the N term from the D term: no intervals")
        pct = round(level * 100)
        lines.append(f"{'param':<10} {'value':>12} {'stderr':>12} {f'ci{pct} lo':>12} {f'ci{pct} hi':>12}")
        for k in self.law.param_names:
            if verdict.identified:
                iv = ivs[k]
                lo, hi = (f"{v:.6g}" + (" (open)" if o else "") for v, o in ((iv.lo, iv.lo_open), (iv.hi, iv.hi_open)))
                tag = f"  {tags[k]}" if tags[k] else ""
                lines.append(f"{k:<10} {self.params[k]:>12.6g} {se[k]:>12.4g} {lo:>12} {hi:>12}{tag}")
            else:
                lines.append(f"{k:<10} {self.params[k]:>12.6g} {'—':>12} {'not identified':>14} {'—':>12}")
        if verdict.identified and any(iv.lo_open or iv.hi_open for iv in ivs.values()):
            lines.append("(open): the data do not close the interval on that side; it runs to the law's bound")
        replaced = self.profile_replaced(level) if verdict.identified else {}
        at_bound = [k for k, why in replaced.items() if why == "bound" and k not in self.null_params]
        if at_bound:
            lines.append(f"{', '.join(at_bound)}: at a bound, so {'its interval is' if len(at_bound) == 1 else 'their intervals are'} "
                         f"the profile likelihood's, not the {self.uncertainty}'s (which cannot show a spread the bound cuts)")
        off = [k for k, why in replaced.items() if why == "sandwich" and k not in self.null_params]
        if off:
            lines.append(f"{', '.join(off)}: the sandwich interval covers less than half of the profile likelihood's, "
                         f"so the profile's is printed (the curvature at the optimum misses what the runs allow)")
        g = self.gof()
        lines.append(f"fit: rmse(log) {g['rmse_log']:.4g}  mean |rel err| {g['mae_rel']:.4%}  max {g['max_rel']:.4%}  "
                     f"R²(log) {g['r2_log']:.4f}  objective {g['objective']:.6g}")
        if "holdout" in self.diagnostics:
            h = self.diagnostics["holdout"]
            lines.append(f"held out: {h['n']} points, mean |rel err| {h['mae_rel']:.4%}, max {h['max_rel']:.4%}")
        lines += [h.text() for h in self.diagnostics.get("optimal_hyperparameters", ())]
        lines += [f"warning: {w}" for w in self.notes(level) if w not in first]
        return "\n".join(lines)


# ====================================================================== diagnostics
#: Where the null-direction and conditioning checks evaluate a log-scaled parameter that sits below
#: it: exp(-300) ≈ 5e-131, so its Jacobian column's squares (the column norm) are still normal
#: floats (at -600 they underflowed and that column swamped the rest), its effect on any loss nil.
UNDERFLOW_Z = -300.0


def _conditioning(J: np.ndarray) -> tuple[float, np.ndarray]:
    """(condition number of the column-scaled Jacobian, its weakest unit direction (P,))."""
    ratio, vt, _ = jacobian_directions(J)
    return float(1 / max(ratio[-1], 1e-300)), vt[-1]


def degenerate_note(law: Law, cond: float, cond_warn: float, weak: np.ndarray, null: NullSpace,
                    missed: bool = False) -> str:
    """The degenerate-design warning: the parameters the runs leave (nearly) free, named from the
    loadings of the null directions (else of the weakest one), and how to fix the design: the
    law's own advice for them (``Law.identify``), else the generic one. ``missed``: the fit is
    worse than a constant (:func:`fitting.checks.worse_than_constant`), so the flat Jacobian is
    where the fit stopped, not proof of a weak design, and no design advice is given."""
    names = null.params or loaded_params(weak, law.param_names)
    free = "do not constrain" if null.params else "barely constrain"
    what = (f"{names[0]} (changing it alone leaves every run's loss {'unchanged' if null.params else 'almost unchanged'})"
            if len(names) == 1 else f"the combination of {', '.join(names)} (only a product or trade-off of them is fixed)")
    advice = [law.identify[k] for k in names if k in law.identify]
    fix = "; ".join(dict.fromkeys(advice)) if advice else ("runs where they change the loss (vary tokens-per-parameter "
                                                           "and scale more widely), or drop a parameter the law does "
                                                           "not need")
    todo = ("the misfit above comes first: the flat Jacobian is where the fit stopped, not proof of a weak design"
            if missed else f"to identify {'it' if len(names) == 1 else 'them'} add {fix}")
    return (f"degenerate design for law {law.name!r}: Jacobian condition number {cond:.3g} > {cond_warn:g}; the runs "
            f"{free} {what}; {todo}; their uncertainties are unreliable")


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
    intervals: str = "auto",
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
    The best few candidates are then polished one by one with scipy's L-BFGS-B to tight tolerance.
    ``n_bootstrap``: also run :func:`bootstrap`, and check its intervals against the profile's (:func:`fitting.param_intervals.narrow_bootstrap`).
    ``intervals``: ``"auto"`` (bootstrap if run, else sandwich) or ``"profile"`` (profile
    likelihood, :func:`fitting.param_intervals.profile_intervals`); another value raises FitError.
    """
    if intervals not in ("auto", "profile"):
        raise FitError(f"intervals must be 'auto' or 'profile', got {intervals!r}")
    law = get_law(law)
    full = data if isinstance(data, FitData) else load_fit_data(data, law=law, flops_per_token=flops_per_token,
                                                                misfit_of=store_misfit, **columns)
    missing = [c for c in law.inputs if c not in full.X]
    if missing:
        raise FitError(f"law {law.name!r} needs inputs {list(law.inputs)}; data lacks {missing}")
    mask = _as_mask(train, full, flops_per_token)
    fdata = full.subset(mask) if mask is not None else full
    if weights is None:
        weights = fdata.weights  # e.g. predicted losses of early-stopped runs (fitting/run_result.py)
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
        Z0 = law.initial_z(rng, fdata.X, fdata.y)  # the law's grid, and starts placed from these rows
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

    with single_threaded_blas():
        Zf, ff, conv = multistart_lbfgs(fg, Z0, lo, hi, screen=screen, maxiter=maxiter, gtol=gtol, ftol=ftol,
                                   n_keep_first=1 if init is not None else 0)
    ok = np.isfinite(ff)
    if not ok.any():
        raise FitError(f"law {law.name!r}: the objective is not finite at any start (check inputs and bounds)")
    best = int(np.argmin(np.where(ok, ff, np.inf)))
    optimum = _Optimum(z=Zf[best], objective=float(ff[best]), converged=bool(conv[best]), n_starts=Z0.shape[0],
                       starts_z=Zf, start_objectives=ff)
    options = _FitOptions(loss=loss, delta=delta, level=level, covariance=covariance, cond_warn=cond_warn,
                          n_bootstrap=n_bootstrap, seed=seed, intervals=intervals)
    return _finish(law, fdata, full, mask, optimum, options)


@dataclass(frozen=True)
class _Optimum:
    """What the multi-start search found (:func:`fitting.multistart.multistart_lbfgs`)."""

    z: np.ndarray  # the best start's end point, in the law's transformed space
    objective: float  # its objective value
    converged: bool  # whether the best start met the convergence tolerance
    n_starts: int  # starts tried, before screening
    starts_z: np.ndarray  # (S, P): where each surviving start ended
    start_objectives: np.ndarray  # (S,): their objective values


@dataclass(frozen=True)
class _FitOptions:
    """The :func:`fit_law` arguments that shape the result after the optimum is found."""

    loss: str  # "huber" or least squares (fitting.objective.rho_psi)
    delta: float  # Huber threshold on log residuals
    level: float  # default interval level of the result
    covariance: str  # "sandwich" or "laplace" (fitting.uncertainty.estimate_covariance)
    cond_warn: float  # Jacobian condition number above which the design is called degenerate
    n_bootstrap: int  # bootstrap resamples to run (0: none)
    seed: int  # bootstrap seed
    intervals: str = "auto"  # "auto" or "profile" (FitResult.intervals)


def _finish(law: Law, fdata: FitData, full: FitData, mask: np.ndarray | None, optimum: _Optimum,
            options: _FitOptions) -> FitResult:
    """The FitResult at ``optimum``: covariance, diagnostics and warnings on the fitted rows
    ``fdata``; held-out error on the rows of ``full`` outside ``mask``; optional bootstrap."""
    z, conv = optimum.z, optimum.converged
    loss, delta, cond_warn = options.loss, options.delta, options.cond_warn
    P = law.n_params
    theta = law.from_z(z)
    mu = law.predict(theta, fdata.X)
    r = np.log(mu) - np.log(fdata.y)
    _, psi = rho_psi(r, loss, delta)
    J = log_jacobian(law, z, fdata.X)
    cov_z, sigma_eff, sigma = estimate_covariance(J, r, psi, loss, delta, P, options.covariance)
    # a log-scaled parameter driven to exactly 0 (E = exp(-9582) underflows) has a zero column, which
    # read as a null direction, open to +inf; at any tiny value it has its real direction (the checks
    # scale columns away), so they take the Jacobian there: the flat-E test's fit flipped on this
    J_dir = log_jacobian(law, np.where(np.asarray(law.transforms) == LOG, np.maximum(z, UNDERFLOW_Z), z), fdata.X)
    cond, weak = _conditioning(J_dir)
    msgs = []
    diag: dict[str, Any] = {"condition_number": cond, "weak_direction": dict(zip(law.param_names, np.round(weak, 4).tolist())),
                            "iterations_converged": conv}
    null = null_space(J_dir, law.param_names)
    diag["null_params"] = null.params
    misfit = worse_than_constant(law.name, law.param_names, r, fdata.y)
    if misfit:  # first: a fit that missed the data is not a design problem, whatever the Jacobian says
        msgs.append(misfit)
        warnings.warn(misfit, UserWarning, stacklevel=3)
    if not np.isfinite(cond) or cond > cond_warn or null.params:
        msg = degenerate_note(law, cond, cond_warn, weak, null, missed=bool(misfit))
        msgs.append(msg)
        warnings.warn(msg, DegenerateDesignWarning, stacklevel=3)
    verdict = identifiability(fdata.X, law)
    diag["identifiability"] = verdict.to_dict()
    if not verdict.identified:
        msg = (f"degenerate design for law {law.name!r}: {verdict.reason}, so the N and D terms (and the "
               f"compute-optimal allocation) are not identified; vary N and D/N independently")
        msgs.append(msg)
        warnings.warn(msg, DegenerateDesignWarning, stacklevel=3)
    diag["params_at_bounds"] = params_at_bounds(law, z, fdata.X)
    if diag["params_at_bounds"]:
        msgs.append(bounds_note(diag["params_at_bounds"]))
    if not conv:
        msgs.append("best start did not meet the convergence tolerance")
    res = FitResult(law=law, theta=theta, z=z, objective=optimum.objective, loss=loss, delta=delta, data=fdata,
                    cov_z=cov_z, sigma=sigma, sigma_eff=sigma_eff, residuals=r, diagnostics=diag, level=options.level,
                    n_starts=optimum.n_starts, converged=conv, starts_z=optimum.starts_z,
                    start_objectives=optimum.start_objectives, warnings=msgs, method=options.intervals,
                    null_space=null)
    if mask is not None and (~mask).any():
        hd = full.subset(~mask)
        pred = law.predict(theta, hd.X)
        rel = np.abs(pred / hd.y - 1)
        diag["holdout"] = {"n": int(len(hd)), "mae_rel": float(rel.mean()), "max_rel": float(rel.max()),
                           "mean_log_resid": float(np.mean(np.log(pred) - np.log(hd.y)))}
        diag["holdout_data"] = hd
    if options.n_bootstrap:
        bootstrap(res, n_boot=options.n_bootstrap, seed=options.seed)
    if options.n_bootstrap:
        narrow, note = narrow_bootstrap(res.bootstrap.ci(res.level), res.profile_at(), law)
        if narrow:
            diag["narrow_bootstrap"] = narrow
            msgs.append(note)
    # the note naming the parameters the runs do not identify is FitResult.notes' (it traces the profile)
    return res


def store_misfit(law, data: FitData) -> float | None:
    """The law's misfit sd (log loss) on a store's runs, what its prediction-stopped runs are
    weighed with (`fitting.run_result.law_misfit` of a fit with their plain weights); None when
    the rows cannot be fitted. `load_fit_data`'s ``misfit_of``."""
    from fitting.run_result import law_misfit

    try:
        fit = fit_law(law, data)
    except FitError:
        return None
    return law_misfit(fit.predict(data.X), data.y, data.weights)
