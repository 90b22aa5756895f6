"""What a table of runs can and cannot tell: pure checks shared by every command that fits or plans.

* :func:`identifiability` — whether the runs identify how a law splits loss between model size N
  and data D (and so the compute-optimal allocation). Runs that all share one model size, one
  token count, one tokens-per-parameter ratio, or more generally lie on one line in ln N × ln D,
  cannot: along such a line L = E + A/N^α + B/D^β is a sum of two power laws of one variable,
  and nothing says which belongs to N (with one ratio the two labelings fit equally well; with
  one size A/N^α merges into E). Bootstrap resamples of such runs stay on the line, so their
  intervals stay tight around an arbitrary answer. ``fit``, ``plan``, ``replay``, the sweep
  report and the active search summary all ask this one function.
* :func:`parameter_verdicts` — whether the runs identify each fitted parameter: the N/D split
  above, the parameter at a bound, or a 90 % interval too wide or open to mean anything. The one
  owner of "is this parameter identified": the report's tables, ``fit``, ``plan``, ``frontier``
  and ``predict`` all read it (through :meth:`fitting.fit.FitResult.verdicts`).
* :func:`unit_notes` — inputs that look like other units (N in millions, D in billions).
* :func:`repeated_configs` — several rows per (N, D), e.g. a learning-rate sweep, which a fit
  would otherwise count as independent runs (:mod:`fitting.aggregate` turns them into cells).
* :func:`ratio_note` — a planned tokens-per-parameter ratio far outside the fitted runs'.
* :func:`worse_than_constant` — a fit worse than a constant (R²(log) < 0, :func:`r2_log`): a misfit,
  never a design verdict.
* :func:`range_note` — prediction targets far outside the fitted runs' inputs.
* :func:`user_messages` — the warnings a command shows its user, without numpy's floating-point
  noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from fitting.law import LOG

__all__ = ["MIN_SPREAD", "MAX_SCALE_DECADES", "MAX_EXPONENT_WIDTH", "Identifiability", "identifiability",
           "ParamVerdict", "parameter_verdicts", "unidentified_note", "unit_notes", "repeated_configs", "ratio_note", "range_note",
           "user_messages"]

#: Least spread (sd, in natural-log units, i.e. ≈ 10 %) the runs need across their thinnest
#: direction in ln N × ln D for the N/D split to count as identified.
MIN_SPREAD = 0.1
#: A planned tokens-per-parameter ratio more than this factor outside the fitted runs' range is
#: reported as an extrapolation of the law's form.
RATIO_FACTOR = 10.0
#: A scale parameter (log-transformed: A, B, E, N_c, ...) whose interval spans more than this many
#: decades, or an exponent whose interval is wider than this many times its magnitude, is not
#: identified by the runs (the former 3 x 3 demo: B in [82, 1.5e7], a standard error of 1e24).
MAX_SCALE_DECADES = 2.0
MAX_EXPONENT_WIDTH = 2.0


@dataclass(frozen=True)
class Identifiability:
    """Verdict of :func:`identifiability`. ``applicable`` is False for laws without both N and D."""

    identified: bool
    reason: str | None = None
    spread: float = float("nan")  # sd of the runs across their thinnest direction in ln N × ln D
    applicable: bool = True

    def to_dict(self) -> dict:
        return {"identified": self.identified, "reason": self.reason, "spread": self.spread}


def identifiability(X: Mapping[str, np.ndarray], law=None, min_spread: float = MIN_SPREAD) -> Identifiability:
    """Do runs at inputs ``X`` (columns N and D, counts) identify the N/D split of ``law``?

    Unidentified when fewer than 3 distinct (N, D), or when the sd of ln N, ln D, ln(D/N), or
    of the runs across their thinnest principal direction in ln N × ln D, is below
    ``min_spread``. A law without both inputs (or X without them) gets ``applicable=False,
    identified=True``: there is no split to identify."""
    if "N" not in X or "D" not in X or (law is not None and not {"N", "D"} <= set(law.inputs)):
        return Identifiability(True, applicable=False)
    lN, lD = np.log(np.asarray(X["N"], dtype=float)), np.log(np.asarray(X["D"], dtype=float))
    n_configs = len(set(zip(lN.round(9).tolist(), lD.round(9).tolist())))
    if n_configs < 3:
        return Identifiability(False, f"only {n_configs} distinct (N, D) among {lN.size} runs", 0.0)
    spread = float(np.sqrt(max(np.linalg.eigvalsh(np.cov(np.vstack([lN, lD])))[0], 0.0)))
    for name, v in (("model size N", lN), ("token count D", lD), ("tokens-per-parameter ratio D/N", lD - lN)):
        sd = float(np.std(v, ddof=1))
        if sd < min_spread:
            return Identifiability(False, f"every run has (almost) the same {name} (sd of its log {sd:.2g} < "
                                          f"{min_spread:g})", spread)
    if spread < min_spread:
        slope = float(np.polyfit(lN, lD, 1)[0])
        return Identifiability(False, f"the runs lie on one line ln D ≈ {slope:.3g}·ln N + c (sd across it "
                                      f"{spread:.2g} < {min_spread:g})", spread)
    return Identifiability(True, None, spread)


@dataclass(frozen=True)
class ParamVerdict:
    """Verdict of :func:`parameter_verdicts` on one parameter: its value, its interval (lo, hi, in
    natural units) and whether the runs identify it; ``reason`` says why not, in words, with the
    interval as evidence; ``kind`` is "split", "bound", "null" or "interval" (which check
    said no)."""

    name: str
    value: float
    lo: float
    hi: float
    identified: bool
    reason: str | None = None
    kind: str | None = None
    bounded: bool = False  # at a bound, or its interval open to one or not finite: resampling cannot show its spread

    def text(self, fmt: str = ".4g") -> str:
        """``[lo, hi]`` when identified, else ``not identified: <reason>`` (the report's cell)."""
        if self.identified:
            return f"[{self.lo:{fmt}}, {self.hi:{fmt}}]"
        return f"not identified{' by these runs' if self.kind == 'interval' else ''}: {self.reason}"


def parameter_verdicts(law, params: Mapping[str, float], intervals: Mapping, split: Identifiability,
                       at_bounds: Mapping[str, str], null: Mapping[str, str] | None = None,
                       what: str = "interval") -> dict[str, ParamVerdict]:
    """Whether the runs identify each parameter of a fitted ``law`` (a :class:`fitting.law.Law`).

    ``params``: name → fitted value; ``intervals``: name → an interval with ``lo``, ``hi`` and
    optionally ``lo_open``/``hi_open`` (:class:`fitting.param_intervals.ParamInterval`) or a
    (lo, hi) pair; ``split``: :func:`identifiability` of the fitted runs; ``at_bounds``:
    :func:`fitting.objective.params_at_bounds`; ``null``: name → why, for the parameters in a
    (near-)null direction of the fit's Jacobian (:class:`fitting.uncertainty.NullSpace`). A
    parameter is not identified, in this order, when the runs do not identify the law's N/D split
    (every parameter), when it sits at a bound, when the runs leave it in a null direction, or
    when its interval is open on a side (it runs to the law's bound), not finite, spans more
    than ``MAX_SCALE_DECADES`` (a log-scaled parameter) or is wider than ``MAX_EXPONENT_WIDTH``
    times the value (any other). ``what``: the intervals' name in the reasons ("profile interval":
    :meth:`fitting.fit.FitResult.verdicts`). Pure; the thresholds are a reading convention, not a test."""
    log_scaled = [t == LOG for t in law.transforms]
    out = {}
    for (name, value), is_log in zip(params.items(), log_scaled):
        iv = intervals[name]
        lo, hi = (float(iv.lo), float(iv.hi)) if hasattr(iv, "lo") else (float(iv[0]), float(iv[1]))
        open_side = [side for side, flag in (("lower", getattr(iv, "lo_open", False)),
                                             ("upper", getattr(iv, "hi_open", False))) if flag]
        finite = np.isfinite(lo) and np.isfinite(hi)
        if not split.identified:
            verdict = ParamVerdict(name, value, lo, hi, False, split.reason, "split")
        elif name in at_bounds:
            verdict = ParamVerdict(name, value, lo, hi, False, f"at a bound: {name} {at_bounds[name]}", "bound", True)
        elif null and name in null:
            verdict = ParamVerdict(name, value, lo, hi, False, null[name], "null", True)
        elif open_side or not finite:
            how = (f"is open on the {' and '.join(open_side)} side{'s' if len(open_side) == 2 else ''} (the data do "
                   f"not close it)" if open_side else "is not finite")
            verdict = ParamVerdict(name, value, lo, hi, False, f"its {what} [{lo:.3g}, {hi:.3g}] {how}", "interval",
                                   True)
        elif is_log and (lo <= 0 or np.log10(hi / lo) > MAX_SCALE_DECADES):
            verdict = ParamVerdict(name, value, lo, hi, False, f"its {what} [{lo:.3g}, {hi:.3g}] spans more than "
                                   f"{MAX_SCALE_DECADES:g} decades", "interval")
        elif not is_log and hi - lo > MAX_EXPONENT_WIDTH * abs(value):
            verdict = ParamVerdict(name, value, lo, hi, False, f"its {what} [{lo:.3g}, {hi:.3g}] is wider than "
                                   f"{MAX_EXPONENT_WIDTH:g}× the value", "interval")
        else:
            verdict = ParamVerdict(name, value, lo, hi, True)
        out[name] = verdict
    return out


def unidentified_note(verdicts: Mapping[str, ParamVerdict], law_name: str = "the law") -> str | None:
    """The one warning line naming the parameters the runs do not identify because of their
    interval, a null direction or a bound (``kind`` "interval", "null" or "bound": the same names
    as every ``--json``'s ``not_identified``); None when none. An unidentified N/D split has its
    own warning (fitting.fit); parameters at a bound have theirs too (fitting.objective.bounds_note),
    and are named here as well so that the text and the JSON list the same parameters."""
    bad = [v for v in verdicts.values() if not v.identified and v.kind in ("interval", "null", "bound")]
    if not bad:
        return None
    return (f"not identified by these runs: {'; '.join(f'{v.name} ({v.reason})' for v in bad)}; {law_name} fits the "
            f"runs, but a prediction or plan that leans on {'it' if len(bad) == 1 else 'them'} is a guess whose "
            f"intervals understate the uncertainty")


def unit_notes(X: Mapping[str, np.ndarray], columns: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for inputs that look like other units: N below 1e3 parameters, or D below N in
    most rows (median tokens per parameter < 1). Each says what was assumed."""
    columns = columns or {}
    notes = []
    col = lambda k: f"{k} (column {columns[k]!r})" if k in columns else k
    if "N" in X and np.size(X["N"]) and float(np.min(X["N"])) < 1e3:
        notes.append(f"{col('N')} has values below 1e3 (min {float(np.min(X['N'])):.3g}): N is read as a count of "
                     f"parameters; if the column is in millions or billions, multiply it out")
    if "N" in X and "D" in X and np.size(X["N"]):
        ratio = np.asarray(X["D"], dtype=float) / np.asarray(X["N"], dtype=float)
        if float(np.median(ratio)) < 1.0:
            notes.append(f"{col('D')} is below N in {int((ratio < 1).sum())} of {ratio.size} rows (median "
                         f"{float(np.median(ratio)):.3g} tokens per parameter): D is read as a count of training "
                         f"tokens and N of parameters (a D derived from compute assumes FLOPs); if a column is in "
                         f"other units, convert it")
    return notes


def repeated_configs(X: Mapping[str, np.ndarray]) -> tuple[int, np.ndarray]:
    """(number of distinct input configurations, group id per row); rows match when every input
    (positive) agrees to a relative 1e-9."""
    keys = np.column_stack([np.round(np.log(np.asarray(v, dtype=float)), 9) for v in X.values()])
    _, groups = np.unique(keys, axis=0, return_inverse=True)
    groups = np.asarray(groups).ravel()
    return int(groups.max()) + 1 if groups.size else 0, groups


def ratio_note(tokens_per_param: float, X: Mapping[str, np.ndarray], factor: float = RATIO_FACTOR) -> str | None:
    """A warning when a planned tokens-per-parameter ratio lies more than ``factor`` outside the
    range of the fitted runs' D/N (None when inside, or when X has no N and D)."""
    if "N" not in X or "D" not in X or not np.isfinite(tokens_per_param):
        return None
    ratio = np.asarray(X["D"], dtype=float) / np.asarray(X["N"], dtype=float)
    lo, hi = float(ratio.min()), float(ratio.max())
    if lo / factor <= tokens_per_param <= hi * factor:
        return None
    return (f"the planned {tokens_per_param:.3g} tokens per parameter lies more than {factor:g}× outside the fitted "
            f"runs' {lo:.3g}-{hi:.3g}: an extrapolation of the law's form, not of the data (check the units of N "
            f"and D)")


#: Prediction targets below the fitted runs' smallest input by more than RATIO_FACTOR, or above
#: their largest by more than this (extrapolating up is what a held-out check is for), are noted.
UP_FACTOR = 1e3


def range_note(targets: Mapping[str, np.ndarray], X: Mapping[str, np.ndarray], factor: float = RATIO_FACTOR,
               up: float = UP_FACTOR) -> str | None:
    """A warning naming the inputs of prediction ``targets`` that lie far outside the fitted runs'
    ``X``: below their minimum by more than ``factor`` or above their maximum by more than ``up``
    (None when every target is inside). Such a prediction is the law's form alone, and a target
    in other units (N in millions, D in billions) looks exactly like this."""
    parts = []
    for k in targets:
        if k not in X or not np.size(targets[k]) or not np.size(X[k]):
            continue
        t, x = np.asarray(targets[k], dtype=float), np.asarray(X[k], dtype=float)
        lo, hi = float(np.min(x)), float(np.max(x))
        out = (t < lo / factor) | (t > hi * up)
        if out.any():
            parts.append(f"{k} in {int(out.sum())} of {t.size} targets ({float(np.min(t[out])):.3g}"
                         f"{'' if out.sum() == 1 else f' to {float(np.max(t[out])):.3g}'}) vs the fitted runs' "
                         f"{lo:.3g}-{hi:.3g}")
    if not parts:
        return None
    return (f"targets far outside the fitted runs (below their range by more than {factor:g}×, or above by more "
            f"than {up:g}×): {'; '.join(parts)}; those predictions extrapolate the law's form, not the data "
            f"(check the targets' units)")


def user_messages(caught) -> list[str]:
    """The messages of recorded warnings (``warnings.catch_warnings(record=True)``) that a command
    shows its user, once each, in order: the project's warnings and the libraries' user-facing
    ones, not numpy's RuntimeWarnings ("divide by zero encountered in log", overflow in a
    degenerate fit), which say nothing a user can act on; what they signal reaches the user as
    the fit's own verdict (identifiability, parameters at bounds, unsupported approaches)."""
    return list(dict.fromkeys(str(w.message) for w in caught if not issubclass(w.category, RuntimeWarning)))


def r2_log(r: np.ndarray, y: np.ndarray) -> float:
    """R² of log loss: 1 - Σ r² / Σ (log y - mean log y)²; ``r`` log residuals ``(n,)``, ``y``
    targets ``(n,)``; NaN when every target is equal. Below 0: worse than a constant."""
    ly = np.log(y)
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    return float(1 - (r * r).sum() / ss_tot) if ss_tot > 0 else float("nan")


def worse_than_constant(name: str, param_names, r: np.ndarray, y: np.ndarray) -> str | None:
    """The note for a fit worse than predicting every run's mean log loss (R²(log) < 0), or None.

    No design makes a fitted law worse than a constant: the optimiser stopped away from the data
    (starts or bounds that do not reach the data's scale; see `fitting.law.Law.data_init`) or the law does not
    describe these runs. ``name``/``param_names``: the law's; ``r``: log residuals ``(n,)``; ``y``: targets ``(n,)``."""
    r2 = r2_log(r, y)
    if not r2 < 0:
        return None
    return (f"law {name!r} fits worse than a constant (R²(log) {r2:.3g} < 0): the fit did not reach the "
            f"data (starts or bounds of {', '.join(param_names)} away from its scale?) or the law does not "
            f"describe these runs; its parameters and intervals are not estimates")
