"""Compute-optimal allocation (N, D at a compute budget) from a fitted loss surface.

* :func:`chinchilla_optimal` — closed form for L = E + A/N^α + B/D^β under C = k·N·D
  (Hoffmann et al. 2022, App. A): N_opt = G (C/k)^a, D_opt = G⁻¹ (C/k)^b,
  G = (αA/(βB))^(1/(α+β)), a = β/(α+β), b = α/(α+β).
* :func:`optimal_allocation` — numeric minimiser of L(N, C/(kN)) for any law with N and D inputs
  (other inputs, e.g. U for the data-constrained law, held fixed), vectorised over C.
* :func:`compute_optimal_allocation` (an :class:`Allocation`; what ``scalesweep plan`` prints) —
  N_opt, D_opt, tokens per parameter and the predicted loss at a compute budget,
  and the allocation exponent a in N_opt ∝ C^a, each with an interval that propagates the fit's
  parameter uncertainty (bootstrap samples when the fit has them, else draws from its sandwich
  covariance).

Kaplan et al. 2020's batch-size adjustments (B_crit, S_min, C_min) live in :mod:`fitting.dynamics`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from fitting.checks import ratio_note, unidentified_note
from fitting.law import Law
from fitting.laws import get_law
from fitting.uncertainty import open_sides

__all__ = [
    "allocation_drivers",
    "chinchilla_optimal",
    "optimal_allocation",
    "allocation_exponent",
    "compute_optimal_allocation",
    "Allocation",
    "tokens_per_param",
]


def tokens_per_param(N_opt, D_opt):
    return np.asarray(D_opt, dtype=float) / np.asarray(N_opt, dtype=float)


# ====================================================================== closed form
def chinchilla_optimal(params, C, flops_per_token: float = 6.0):
    """Closed-form compute-optimal (N_opt, D_opt, a, b) for the Chinchilla law.

    ``params``: mapping with E, A, alpha, B, beta, or an ``(..., 5)`` array in
    ``chinchilla.param_names`` order (vectorised over leading axes and over C)."""
    if isinstance(params, Mapping):
        A, al, B, be = (float(params[k]) for k in ("A", "alpha", "B", "beta"))
    else:
        th = np.asarray(params, dtype=float)
        A, al, B, be = th[..., 1], th[..., 2], th[..., 3], th[..., 4]
    A, al, B, be = (np.asarray(v, dtype=float)[..., None] if np.ndim(v) else v for v in (A, al, B, be))
    C = np.asarray(C, dtype=float)
    with np.errstate(all="ignore"):  # alpha or beta <= 0 has no interior optimum: NaN, judged by the caller
        G = (al * A / (be * B)) ** (1.0 / (al + be))
        a = be / (al + be)
        b = al / (al + be)
        N = G * (C / flops_per_token) ** a
        D = (C / flops_per_token) ** b / G
    return N, D, a, b


# ====================================================================== numeric
def _fixed_cols(law: Law, fixed: Mapping[str, float] | None, shape):
    cols = {}
    for name in law.inputs:
        if name in ("N", "D", "C"):
            continue
        if not fixed or name not in fixed:
            raise ValueError(f"law {law.name!r} needs input {name!r} held fixed for planning (e.g. fixed={{'{name}': ...}}, "
                             f"--{name.lower()} on the command line)")
        cols[name] = np.full(shape, float(fixed[name]))
    return cols


def _grid_opt(law: Law, thetas: np.ndarray, C: np.ndarray, k: float, fixed, ratio_range, G: int = 600):
    """Grid + parabolic refinement: thetas (M, P), C (K,) → log N_opt (M, K), at_edge (M, K)."""
    lo_r, hi_r = ratio_range
    lnC = np.log(C / k)  # ln(N·D)
    # ln N ranges over ratio r = D/N in [lo_r, hi_r]: ln N = (lnC - ln r)/2
    u = np.linspace(0.0, 1.0, G)
    lnN = ((lnC[:, None] - np.log(hi_r)) / 2) + u[None, :] * (np.log(hi_r) - np.log(lo_r)) / 2  # (K, G)
    N = np.exp(lnN).ravel()
    D = np.exp(lnC[:, None] - lnN).ravel()
    cols = {"N": N, "D": D, **_fixed_cols(law, fixed, N.shape)}
    if "C" in law.inputs:
        cols["C"] = k * N * D
    with np.errstate(all="ignore"):
        Lv = np.log(law.predict(thetas, cols)).reshape(thetas.shape[0], C.size, G)
    Lv = np.where(np.isfinite(Lv), Lv, np.inf)
    j = np.argmin(Lv, axis=2)
    edge = (j == 0) | (j == G - 1)
    jc = np.clip(j, 1, G - 2)
    take = lambda off: np.take_along_axis(Lv, (jc + off)[..., None], axis=2)[..., 0]
    y0, y1, y2 = take(-1), take(0), take(1)
    den = y0 - 2 * y1 + y2
    off = np.where((den > 0) & np.isfinite(den), 0.5 * (y0 - y2) / np.where(den > 0, den, 1.0), 0.0)
    off = np.clip(off, -1, 1)
    step = (np.log(hi_r) - np.log(lo_r)) / 2 / (G - 1)
    base = np.take_along_axis(np.broadcast_to(lnN, (thetas.shape[0],) + lnN.shape), jc[..., None], axis=2)[..., 0]
    return base + off * step, edge


def optimal_allocation(law, params, C, *, flops_per_token: float = 6.0, fixed: Mapping[str, float] | None = None,
                       ratio_range=(1e-3, 1e7), closed_form: bool = True) -> dict[str, np.ndarray]:
    """Compute-optimal N, D and loss at budgets ``C`` (FLOPs, C = k·N·D) for any (N, D) law.

    Numeric: a grid over log N followed by a bounded 1-D minimisation per budget (tight
    tolerance). ``fixed`` holds other inputs (e.g. ``{"U": 1e10}``). Chinchilla uses the closed
    form unless ``closed_form=False``."""
    from scipy.optimize import minimize_scalar

    law = get_law(law)
    if not allocatable(law):
        raise ValueError(f"law {law.name!r} has no N and D inputs: nothing to allocate")
    theta = law.as_array(params)
    C = np.atleast_1d(np.asarray(C, dtype=float))
    if np.any(C <= 0):
        raise ValueError("compute budgets must be positive")
    k = flops_per_token
    if closed_form and law.name == "chinchilla":
        N, D, _, _ = chinchilla_optimal(theta, C, k)
        N, D = np.broadcast_to(N, C.shape), np.broadcast_to(D, C.shape)
        edge = np.zeros(C.shape, dtype=bool)
    else:
        lnN0, edge0 = _grid_opt(law, theta[None, :], C, k, fixed, ratio_range)
        lnN0, edge = lnN0[0], edge0[0]
        N = np.empty_like(C)
        for i, (c, x0) in enumerate(zip(C, lnN0)):
            lnC = np.log(c / k)

            def f(x, lnC=lnC):
                cols = {"N": np.array([np.exp(x)]), "D": np.array([np.exp(lnC - x)]),
                        **_fixed_cols(law, fixed, (1,))}
                if "C" in law.inputs:
                    cols["C"] = np.array([c])
                with np.errstate(all="ignore"):
                    v = np.log(law.predict(theta, cols)[0])
                return v if np.isfinite(v) else np.inf

            h = 0.05
            r = minimize_scalar(f, bounds=(x0 - h, x0 + h), method="bounded", options={"xatol": 1e-10})
            N[i] = np.exp(r.x if r.fun <= f(x0) else x0)
        D = C / (k * N)
        if edge.any():
            warnings.warn(f"optimum at the edge of tokens-per-parameter range {ratio_range} for "
                          f"{int(edge.sum())} budget(s): the law may have no interior optimum there", UserWarning,
                          stacklevel=2)
    cols = {"N": N, "D": D, **_fixed_cols(law, fixed, N.shape)}
    if "C" in law.inputs:
        cols["C"] = C
    loss = law.predict(theta, cols)
    return {"C": C, "N_opt": np.asarray(N), "D_opt": np.asarray(D), "loss": np.asarray(loss),
            "tokens_per_param": np.asarray(D) / np.asarray(N), "at_edge": edge}


def allocation_exponent(law, params, C, *, flops_per_token: float = 6.0, fixed=None, span: float = 10.0) -> float:
    """Local exponent a = d ln N_opt / d ln C at ``C`` (centred difference over ×/÷ ``span``).
    For Chinchilla this is exactly β/(α+β)."""
    law = get_law(law)
    th = law.as_array(params)
    if law.name == "chinchilla":
        return float(th[4] / (th[2] + th[4]))
    r = optimal_allocation(law, th, [C / span, C * span], flops_per_token=flops_per_token, fixed=fixed)
    return float(np.log(r["N_opt"][1] / r["N_opt"][0]) / (2 * np.log(span)))


# ====================================================================== the allocation with uncertainty
@dataclass
class Allocation:
    """The compute-optimal N and D at one compute budget, with intervals (what `scalesweep plan`
    prints and its ``--json`` holds)."""

    law: str
    compute: float
    N_opt: float
    D_opt: float
    tokens_per_param: float
    loss: float
    exponent_a: float
    level: float
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    # the prediction interval without the law misfit, as if the law were exact; its parameter part is
    # the loss interval's (``parameter_method``), so it lies between intervals["loss"] and loss_misfit_interval
    loss_prediction_interval: tuple[float, float] | None = None
    # the prediction interval widened by the law's misfit, calibrated on the fit's own runs
    # (fitting.extrapolation): what an extrapolation far beyond the data should be trusted to
    loss_misfit_interval: tuple[float, float] | None = None
    misfit_sd: float | None = None
    misfit_source: str | None = None  # where misfit_sd came from: a calibration, or the stated prior
    misfit_calibrated: bool = True  # False: misfit_sd is the stated prior (too few runs to calibrate one)
    misfit_sd_here: float | None = None  # the misfit sd at this (N_opt, D_opt): misfit_sd grown with distance
    parameter_part: str | None = None  # which parameter part the loss intervals took, and why (fitting.extrapolation)
    parameter_method: str | None = None  # that part's name: "delta", "profile", "bootstrap" (or the fit's "sandwich")
    uncertainty: str = ""
    n_samples: int = 0
    fixed: dict[str, float] = field(default_factory=dict)
    # False when the fit's runs cannot identify the allocation (fitting.checks.identifiability):
    # then every number above is NaN and ``unidentified_reason`` says why
    identified: bool = True
    unidentified_reason: str | None = None
    # the fit's verdict per parameter (FitResult.not_identified): None when its runs identify it, else
    # why not. ``identified`` is about the allocation: a parameter the runs leave unknown that does not
    # move N_opt (Chinchilla's E) leaves it identified, so --json gives both (a user read plan's
    # "identified": true beside fit's false for the same runs)
    not_identified: dict[str, str | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # warnings about this allocation (e.g. an extrapolated ratio)

    # The one owner of "the interval for the loss at C" (plan, report, frontier print these): the
    # prediction interval with the law misfit where it was calibrated, else the plain one; and
    # ``intervals["loss"]``, its parameter part alone (fitting.extrapolation.parameter_interval),
    # which lies inside it. The loss at each parameter sample's own optimum was printed as that part
    # before, and fell outside the prediction interval (a new user: 0.7866 < 0.8465).
    @property
    def loss_interval(self) -> tuple[float, float] | None:
        return self.loss_misfit_interval or self.loss_prediction_interval

    @property
    def loss_interval_kind(self) -> str | None:
        """What :attr:`loss_interval` holds, in words (every place that prints it names it so)."""
        if self.loss_misfit_interval:
            misfit = "the calibrated law misfit" if self.misfit_calibrated else "a prior law misfit, not calibrated"
            return f"prediction interval (parameters, run scatter and {misfit})"
        return self.loss_prediction_interval_kind

    @property
    def loss_prediction_interval_kind(self) -> str | None:
        """What :attr:`loss_prediction_interval` holds, in words."""
        if not self.loss_prediction_interval:
            return None
        return f"prediction interval (parameters by {self.part_source}, and run scatter; no law misfit: the law taken as exact)"

    @property
    def part_source(self) -> str | None:
        """Where the loss intervals' parameter part comes from, in words (``parameter_method``)."""
        return {"profile": "the profile likelihood", "delta": "the delta method",
                "bootstrap": "the bootstrap resamples", "sandwich": "the sandwich covariance"}.get(self.parameter_method or "")

    def sources(self, heading: bool = True) -> str:
        """Where each interval comes from, in one phrase: the heading `plan` prints above them and the
        report's allocation line (a heading "intervals from sandwich covariance" once sat above a loss
        interval the profile gave). ``heading``: led by the level ("90% intervals: ")."""
        if not self.intervals:
            return f"no intervals: {self.uncertainty.removeprefix('none (').rstrip(')') if self.uncertainty else 'none'}"
        part = f"; the loss's parameter part by {self.part_source}" if self.part_source else ""
        lead = f"{round(self.level * 100)}% intervals: " if heading else ""
        return f"{lead}N_opt, D_opt, tokens/param and a from {self.uncertainty}{part}"

    def to_dict(self) -> dict[str, Any]:
        key = f"ci{int(round(self.level * 100))}"
        return {
            "law": self.law, "compute": self.compute, "N_opt": self.N_opt, "D_opt": self.D_opt,
            "tokens_per_param": self.tokens_per_param, "loss": self.loss, "exponent_a": self.exponent_a,
            key: {k: list(v) for k, v in self.intervals.items()},
            # [lower, upper] open (an end at 0 or inf: the data leave that side open) for the positive
            # quantities, as predict's rows and fit's ci90_open say it
            f"{key}_open": {k: open_sides(*v) for k, v in self.intervals.items() if k != "exponent_a"},
            "loss_prediction_interval": list(self.loss_prediction_interval) if self.loss_prediction_interval else None,
            "loss_prediction_interval_kind": self.loss_prediction_interval_kind,
            "loss_misfit_interval": list(self.loss_misfit_interval) if self.loss_misfit_interval else None,
            "misfit_sd": self.misfit_sd, "misfit_source": self.misfit_source, "misfit_sd_here": self.misfit_sd_here,
            "parameter_part": self.parameter_part, "parameter_method": self.parameter_method,
            # the interval to quote: with the law misfit where it was calibrated, else the plain
            # prediction interval (the key{ci} "loss" entry is the parameters' part alone)
            "loss_interval": list(self.loss_interval or ()) or None,
            "loss_interval_open": open_sides(*self.loss_interval) if self.loss_interval else None,
            "loss_interval_kind": self.loss_interval_kind,
            "interval_sources": self.sources(heading=False),  # where each interval comes from, as plan's heading
            "uncertainty": self.uncertainty, "n_samples": self.n_samples, "fixed": self.fixed,
            "identified": self.identified, "unidentified_reason": self.unidentified_reason,
            "not_identified": dict(self.not_identified), "notes": list(self.notes),
        }


def _param_samples(fit, n: int, seed: int, bootstrap: bool = True):
    if bootstrap and fit.bootstrap is not None:
        return fit.bootstrap.samples, f"bootstrap ({fit.bootstrap.n} resamples)"
    rng = np.random.default_rng(seed)
    cov = 0.5 * (fit.cov_z + fit.cov_z.T)
    w, V = np.linalg.eigh(cov)
    Zs = fit.z + (rng.standard_normal((n, fit.law.n_params)) * np.sqrt(np.clip(w, 0, None))) @ V.T
    lo, hi = fit.law.z_bounds.T
    return fit.law.from_z(np.clip(Zs, lo, hi)), f"sandwich covariance ({n} draws)"


def allocation_drivers(fit, compute: float, level: float = 0.9, *, flops_per_token: float = 6.0,
                       fixed: Mapping[str, float] | None = None, n_opt: float | None = None,
                       step: float = 0.1, tolerance: float = 0.01) -> list[str]:
    """The parameters the fit's runs leave unbounded by the data (`FitResult.verdicts` at
    ``level``: at a bound of the law, or an interval open to one; `ParamVerdict.bounded`) that
    move the compute-optimal N at ``compute`` FLOPs (:func:`n_opt_movers`). Chinchilla's E never
    does (an additive constant), its exponents and scales do. The bootstrap behind N_opt's
    interval cannot show the spread such a parameter has (the bounds cut it), so the allocation
    is not identified, however narrow that interval (a new user's plan printed N_opt
    [1.3e6, 2.6e6] from a fit with beta at its bound and every parameter unidentified). A merely
    wide interval is not enough: the bootstrap carries that width into N_opt's."""
    verdicts = fit.verdicts(level)
    unknown = [name for name in fit.law.param_names if verdicts[name].bounded]
    return n_opt_movers(fit, unknown, compute, flops_per_token=flops_per_token, fixed=fixed, n_opt=n_opt,
                        step=step, tolerance=tolerance)


def n_opt_movers(fit, names, compute: float, *, flops_per_token: float = 6.0, fixed: Mapping[str, float] | None = None,
                 n_opt: float | None = None, step: float = 0.1, tolerance: float = 0.01) -> list[str]:
    """Those of ``names`` that move the compute-optimal N at ``compute`` FLOPs: a step of ``step``
    in the parameter's fitted (transformed) coordinate changes ln N_opt by more than ``tolerance``."""
    law = fit.law
    if not names:
        return []
    if n_opt is None:
        n_opt = float(optimal_allocation(law, fit.theta, compute, flops_per_token=flops_per_token, fixed=fixed)["N_opt"][0])
    z = law.to_z(fit.theta)
    out = []
    for name in names:
        j = law.param_names.index(name)
        for sign in (1.0, -1.0):
            moved = z.copy()
            moved[j] += sign * step
            with np.errstate(all="ignore"):
                n = optimal_allocation(law, law.from_z(moved), compute, flops_per_token=flops_per_token,
                                       fixed=fixed)["N_opt"][0]
            if not (np.isfinite(n) and abs(np.log(n / n_opt)) <= tolerance):
                out.append(name)
                break
    return out


def allocatable(law) -> bool:
    """Whether a compute budget can be allocated under ``law``: it has N and D inputs, or C."""
    inputs = set(get_law(law).inputs)
    return {"N", "D"} <= inputs or "C" in inputs


def compute_optimal_allocation(fit=None, compute: float = 1e21, *, law=None, params=None, level: float = 0.9,
         flops_per_token: float = 6.0, fixed: Mapping[str, float] | None = None, n_samples: int = 2000,
         seed: int = 0, span: float = 10.0, misfit_calibration=None, parameter_part: str | None = None) -> Allocation:
    """The compute-optimal allocation at ``compute`` FLOPs from a :class:`fitting.fit.FitResult` (with
    intervals) or from bare ``law`` + ``params`` (point estimates only). ``misfit_calibration``
    (:func:`fitting.extrapolation.calibrate_misfit` of the fit) is computed when not given; pass
    it to allocate several budgets from one fit without refitting each time, calibrated with the same
    ``parameter_part``: the loss intervals' parameter part, "delta", "profile" or "bootstrap" (None:
    :func:`fitting.extrapolation.default_parameter_part`'s); every loss interval takes it (the
    interval to quote, the one without the misfit, the parameter part alone). A law without N and
    D inputs has no misfit model: its loss intervals take the fit's own part (bootstrap or sandwich).

    A fit whose runs cannot identify the allocation (:attr:`FitResult.identifiability`: one
    model size, one tokens-per-parameter ratio, ...) gives an Allocation with ``identified=False`` and
    NaN numbers, never a point estimate with an interval. A ratio far outside the fitted
    runs' is noted in ``Allocation.notes`` (:func:`fitting.checks.ratio_note`)."""
    def unidentified(reason: str) -> Allocation:
        nan = float("nan")
        return Allocation(law=law.name, compute=float(compute), N_opt=nan, D_opt=nan, tokens_per_param=nan, loss=nan,
                          exponent_a=nan, level=level, fixed=dict(fixed or {}), uncertainty="none (not identified)",
                          identified=False, unidentified_reason=reason,
                          not_identified=fit.not_identified(level) if fit is not None else {})

    if fit is not None:
        law, theta = fit.law, fit.theta
        verdict = fit.identifiability
        if not verdict.identified:
            return unidentified(f"{verdict.reason}, so the runs cannot separate the N term from the D term "
                                f"(vary N and D/N independently)")
    else:
        if law is None or params is None:
            raise ValueError("compute_optimal_allocation needs a fit, or a law and params")
        law = get_law(law)
        theta = law.as_array(params)
    C = float(compute)
    flat = [f"{k} = {v:.3g}" for k, v in law.as_dict(theta).items() if k in ("alpha", "beta") and not v > 0]
    if flat:  # loss would not fall with N (or D): the optimum runs off to one end
        return unidentified(f"the fitted {' and '.join(flat)} is not > 0, so the law has no compute-optimal "
                            "interior (loss does not fall with that input)")
    res = optimal_allocation(law, theta, C, flops_per_token=flops_per_token, fixed=fixed)
    if not (np.isfinite(res["N_opt"][0]) and np.isfinite(res["D_opt"][0])):
        return unidentified(f"the fitted {law.name} has no finite compute-optimal allocation at {C:.3g} FLOPs")
    if fit is not None:
        driving = allocation_drivers(fit, C, level, flops_per_token=flops_per_token, fixed=fixed,
                                     n_opt=float(res["N_opt"][0]))
        if driving:
            return unidentified(f"N_opt depends on {', '.join(driving)}, which the runs leave at or open to a "
                                f"bound of the law (fit's verdicts), so no interval for it can be trusted")
    a = allocation_exponent(law, theta, C, flops_per_token=flops_per_token, fixed=fixed, span=span)
    out = Allocation(law=law.name, compute=C, N_opt=float(res["N_opt"][0]), D_opt=float(res["D_opt"][0]),
               tokens_per_param=float(res["tokens_per_param"][0]), loss=float(res["loss"][0]), exponent_a=a,
               level=level, fixed=dict(fixed or {}))
    if fit is None:
        out.uncertainty = "none (parameters given)"
        return out
    out.not_identified = fit.not_identified(level)
    for note in (ratio_note(out.tokens_per_param, fit.data.X), fit.bounds_note,
                 unidentified_note(fit.verdicts(level), f"law {law.name!r}")):
        if note:
            out.notes.append(note)
    thetas, how = _param_samples(fit, n_samples, seed)
    samples = [thetas]
    narrow = n_opt_movers(fit, fit.narrow_bootstrap(level), C, flops_per_token=flops_per_token, fixed=fixed,
                          n_opt=out.N_opt)
    if narrow:  # resamples that never left a basin: their spread along these is too small (n_opt_movers)
        thetas_sandwich, how_sandwich = _param_samples(fit, n_samples, seed, bootstrap=False)
        samples.append(thetas_sandwich)
        how = f"{how} and {how_sandwich}, spanning both"
        out.notes.append(f"the bootstrap's intervals of {', '.join(narrow)} are much narrower than their profile "
                         f"likelihood's (its resamples missed a direction the data leave open) and {', '.join(narrow)} "
                         f"move N_opt, so N_opt, D_opt, tokens/param and a span both the bootstrap's and the sandwich "
                         f"covariance's intervals")
    if fit.bootstrap is None and {"N", "D"} <= set(law.inputs):
        from fitting.extrapolation import PROFILE_BELOW_RUNS_PER_PARAMETER, default_parameter_part

        if default_parameter_part(fit) == "profile":  # the rule that moved the loss off the curvature
            out.notes.append(f"N_opt, D_opt, tokens/param and a come from draws of the sandwich covariance: with "
                             f"{fit.n_points} runs for {law.n_params} parameters (under "
                             f"{PROFILE_BELOW_RUNS_PER_PARAMETER:g} per parameter) its curvature can make them too "
                             f"narrow (why the loss's parameter part defaults to the profile likelihood here); --bootstrap B "
                             f"draws them from resamples")
    n_ok = 0
    for thetas in samples:  # each sample's central intervals; with two, their hull
        ivs, ok = _allocation_intervals(law, thetas, C, level, flops_per_token, fixed, span)
        out.intervals = {k: (min(v[0], out.intervals[k][0]), max(v[1], out.intervals[k][1])) if k in out.intervals else v
                         for k, v in ivs.items()}
        n_ok += ok
    cols_fixed = _fixed_cols(law, fixed, (1,))
    X = {"N": res["N_opt"], "D": res["D_opt"], **cols_fixed}
    if "C" in law.inputs:
        X["C"] = np.array([C])
    if {"N", "D"} <= set(law.inputs):
        from fitting.extrapolation import (MisfitCalibration, calibrate_misfit, default_parameter_part,
                                           describe_parameter_part, extrapolation_interval, misfit_sd,
                                           parameter_interval)
        from fitting.prediction_profile import prediction_profile

        part = parameter_part or default_parameter_part(fit)
        calibration = misfit_calibration or calibrate_misfit(fit, parameter_part=part)
        profile = prediction_profile(fit, X, level) if part == "profile" else None  # traced once for every interval
        ei = extrapolation_interval(fit, X, level=level, calibration=calibration, parameter_part=part, profile=profile)
        out.loss_misfit_interval = (float(ei.lo[0]), float(ei.hi[0]))
        exact = MisfitCalibration(0.0, calibration.length, calibration.n_fit, 0)  # the law taken as exact: no misfit
        pi = extrapolation_interval(fit, X, level=level, calibration=exact, parameter_part=part, profile=profile)
        out.misfit_sd, out.misfit_source = calibration.amplitude, calibration.describe()
        out.misfit_calibrated = calibration.calibrated
        out.parameter_part, out.parameter_method = describe_parameter_part(fit, parameter_part), part
        out.misfit_sd_here = float(misfit_sd(fit, X, calibration)[0])
        conf = parameter_interval(fit, X, level, calibration.length, part, profile)
    else:
        from fitting.uncertainty import prediction_interval

        pi = prediction_interval(fit, X, level=level, kind="prediction")  # the fit's own part, as its confidence one
        conf = prediction_interval(fit, X, level=level, kind="confidence")
        out.parameter_method = fit.uncertainty
        out.parameter_part = f"parameter part from the fit's {fit.uncertainty} (law {law.name!r} has no misfit model)"
    out.loss_prediction_interval = (float(pi.lo[0]), float(pi.hi[0]))
    out.intervals["loss"] = (float(conf.lo[0]), float(conf.hi[0]))  # inside loss_interval (Allocation doc)
    out.uncertainty, out.n_samples = how, n_ok
    return out


def _allocation_intervals(law, thetas: np.ndarray, C: float, level: float, flops_per_token: float,
                          fixed: Mapping[str, float] | None, span: float) -> tuple[dict[str, tuple[float, float]], int]:
    """Central ``level`` intervals of N_opt, D_opt, tokens/param and a over parameter draws
    ``thetas`` (S, P) at ``C`` FLOPs, and how many draws had a finite allocation."""
    q = [(1 - level) / 2, (1 + level) / 2]
    Cs = np.array([C, C / span, C * span])
    k = flops_per_token
    if law.name == "chinchilla":
        N, D, aa, _ = chinchilla_optimal(thetas, Cs, k)
        lnN = np.log(N)
        a_s = np.asarray(aa).ravel()
    else:
        lnN, _ = _grid_opt(law, thetas, Cs, k, fixed, (1e-3, 1e7))
        a_s = (lnN[:, 2] - lnN[:, 1]) / (2 * np.log(span))
    Ns = np.exp(lnN[:, 0])
    Ds = C / (k * Ns)
    ok = np.isfinite(Ns) & np.isfinite(a_s)
    pct = lambda v: tuple(float(x) for x in np.quantile(v[ok], q))
    return {"N_opt": pct(Ns), "D_opt": pct(Ds), "tokens_per_param": pct(Ds / Ns), "exponent_a": pct(a_s)}, int(ok.sum())
