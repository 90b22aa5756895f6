"""A run's final loss from the finished runs of its sweep: the shared-curve rule (issue 12 item 4).

`predict_final_loss` extrapolates one run's own curve; on the warmup + cosine curves of the bench
sweep (bench/early_prediction.py) its error from 30-70 % of a run is several times the runs'
evaluation scatter, mostly because the cosine's final drop is not in the part of the curve seen.
Runs of one sweep that share a schedule (the same planned steps, so the same LR at every step)
share that drop, so a run that has finished carries it. :func:`reference_prediction`:

* **Prediction.** Of the finished ``references`` with the run's planned steps, the nearest in
  log N; the run's offset from it, the mean of log L_run − log L_ref over the run's last
  ``points`` evaluations (the reference's curve interpolated in steps); predicted final loss
  L_ref,final · exp(offset). Each reference's recorded final loss is its best evaluation, the
  value a fit takes from a run that trains to its end.
* **Interval.** Calibrated on the references themselves, at the run's own fraction f of its
  planned steps: each reference that has a same-schedule partner (its nearest other reference
  in log N) is predicted from that partner as if it were at f, and the interval's log
  half-width is t · rms of those errors (t on as many degrees of freedom as distinct pairs, the
  90 % ``level``): how well the rule has worked on runs whose end is known, not a model of its
  error. ValueError below :data:`MIN_CALIBRATION` such pairs: no stop without evidence.
* ``eval_log_sd``: the sd (dof-corrected) of log L_run − log L_ref over the second half of the
  points seen — the run's scatter about the curve it is predicted on, as
  `predict_final_loss` reports the scatter about its fitted law.

Measured on the bench's stored sweeps (3 seeds, 48 runs; the 26-30 runs that had a reference and
two calibration pairs among the runs of their sweep that had finished by then, nothing stopped):
rms error of the final loss 2.3 % from 30 % of a run, 1.2 % from 50 %, 0.6 % from 70 % with the
offset over 4 points, 2.0 / 1.0 / 0.5 % over 2 (:data:`POINTS`; the per-run LR-schedule law on all
48: 30 %, 8 %, 2.4 %); the 90 % intervals held 88 %, 90 %, 77 % (2 points: 93 %, 80 %, 77 %).
The runs it stops are the larger models, predicted from smaller ones, and the calibration, made
on the smaller pairs that finished first, is over-confident for them: with rel_ci 0.01 the 19
fitted runs it stopped (at a median 54 % of their steps) were off by 0.95 % rms and their
intervals held the final loss 53 % of the time (rel_ci 0.03: 1.35 %, 95 %).
The figures on the stopped runs above are with 4 points. Wired into sweeps as
``early_prediction.rule: reference`` (orchestrator/early_stop.py reads the finished runs from the
metrics store, `reference_curve` builds each; the bench replays the same stopper). Units:
steps are optimizer steps, N parameters, losses nats/token. Pure numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from fitting.curve_prediction import CurvePrediction

__all__ = ["MIN_CALIBRATION", "ReferenceCurve", "calibrated", "reference_curve", "reference_prediction"]

MIN_CALIBRATION = 2
"""Fewest finished same-schedule pairs whose errors calibrate the interval."""

POINTS = 2
"""Evaluations the offset averages (the last ones seen): fewer follow the evaluation noise, more
reach back to where the run's gap to its reference was still changing. Measured (bench/
early_rules.py, causal replay): on the 48 runs of /work/earlybench4 2 points gave 2.1 / 1.0 / 0.5 %
rms from 30 / 50 / 70 % of a run against 4 points' 2.3 / 1.2 / 0.6 % (8: 2.3 / 1.5 / 0.8 %), and
chosen there it held on 48 new runs (seeds 3-5): 2.25 / 1.20 / 0.57 % against 2.62 / 1.40 / 0.75 %."""


@dataclass(frozen=True)
class ReferenceCurve:
    """A run of the sweep that trained to its planned end: its evaluations (steps increasing,
    validation losses in nats/token), its planned steps, non-embedding parameters and the loss a
    fit takes from it (its best evaluation)."""

    N: float
    total_steps: int
    steps: np.ndarray
    losses: np.ndarray
    final_loss: float


def reference_curve(row, curve_rows) -> ReferenceCurve | None:
    """The `ReferenceCurve` of a runs row that trained to its end (status ``completed``, its
    ``planned_steps``, ``non_embedding_params`` and ``best_val_loss`` known) and its curve rows
    (``step``, ``val_loss``; any order, non-finite losses dropped, a repeated step kept once);
    None for any other row or an empty curve: only a run whose end is known can be a reference."""
    if row.get("status") != "completed" or not row.get("planned_steps") or not row.get("non_embedding_params"):
        return None
    final = row.get("best_val_loss")
    if not (isinstance(final, (int, float)) and np.isfinite(final) and final > 0):
        return None
    points = {}
    for c in curve_rows:
        loss = c.get("val_loss")
        if isinstance(loss, (int, float)) and np.isfinite(loss) and loss > 0 and c.get("step") is not None:
            points[int(c["step"])] = float(loss)
    if not points:
        return None
    steps = np.array(sorted(points), float)
    return ReferenceCurve(float(row["non_embedding_params"]), int(row["planned_steps"]), steps,
                          np.array([points[int(s)] for s in steps], float), float(final))


def _nearest(N: float, total_steps: int, pool: Sequence[ReferenceCurve], skip=None) -> ReferenceCurve | None:
    same = [r for r in pool if r.total_steps == total_steps and r is not skip]
    return min(same, key=lambda r: abs(np.log(r.N / N)), default=None)


def _offsets(steps: np.ndarray, losses: np.ndarray, ref: ReferenceCurve) -> tuple[np.ndarray, np.ndarray]:
    """(steps, log L_run − log L_ref there) at the run's steps inside the reference's evaluated range."""
    inside = (steps >= ref.steps[0]) & (steps <= ref.steps[-1])
    return steps[inside], np.log(losses[inside]) - np.interp(steps[inside], ref.steps, np.log(ref.losses))


def _predict_log(steps: np.ndarray, losses: np.ndarray, ref: ReferenceCurve, points: int) -> float | None:
    d = _offsets(steps, losses, ref)[1]
    return None if d.size == 0 else float(np.log(ref.final_loss) + d[-points:].mean())


def _calibration_errors(fraction: float, pool: Sequence[ReferenceCurve], points: int) -> tuple[np.ndarray, int]:
    """(errors in log final loss of the rule on each reference with a partner, from `fraction` of
    it; how many distinct pairs made them: two runs that are each other's partner err almost
    oppositely, so they count once as degrees of freedom)."""
    errors, pairs = [], set()
    for ref in pool:
        partner = _nearest(ref.N, ref.total_steps, pool, skip=ref)
        if partner is None:
            continue
        seen = ref.steps <= fraction * ref.total_steps
        if seen.sum() < points:
            continue
        log_pred = _predict_log(ref.steps[seen], ref.losses[seen], partner, points)
        if log_pred is not None:
            errors.append(log_pred - np.log(ref.final_loss))
            pairs.add(frozenset((id(ref), id(partner))))
    return np.array(errors), len(pairs)


def reference_prediction(steps, losses, total_steps: int, N: float, references: Sequence[ReferenceCurve], *,
                         level: float = 0.9, points: int = POINTS) -> CurvePrediction:
    """Predicted loss of a run at its planned last step from the sweep's finished runs (module
    docstring), method ``reference``.

    steps, losses: the run's evaluations so far (1-D, steps increasing; non-finite or non-positive
    losses are dropped); total_steps: its planned steps; N: its non-embedding parameters;
    references: the sweep's runs that trained to their end (not the run itself). Raises
    ValueError (saying what is missing) when no reference has the run's planned steps, when
    fewer than `points` evaluations overlap it, or with fewer than :data:`MIN_CALIBRATION`
    calibration pairs."""
    s = np.asarray(steps, dtype=float).ravel()
    y = np.asarray(losses, dtype=float).ravel()
    ok = np.isfinite(y) & (y > 0) & (s > 0)
    s, y = s[ok], y[ok]
    ref = _nearest(N, total_steps, references)
    if ref is None:
        raise ValueError(f"no finished run with the same {total_steps} planned steps to predict from")
    at, d = _offsets(s, y, ref)
    if d.size < points:
        raise ValueError(f"{d.size} evaluations overlap the reference's curve, need at least {points}")
    errors, pairs = _calibration_errors(s[-1] / total_steps, references, points)
    if pairs < MIN_CALIBRATION:
        raise ValueError(f"{pairs} finished same-schedule pairs calibrate the interval, need at least "
                         f"{MIN_CALIBRATION}")
    log_loss = float(np.log(ref.final_loss) + d[-points:].mean())
    half = float(stats.t.ppf(0.5 + level / 2, pairs) * np.sqrt(np.mean(errors ** 2)))
    late = d[at >= at[-1] / 2]
    eval_log_sd = float(np.std(late, ddof=1)) if late.size > 1 else None
    return CurvePrediction(loss=float(np.exp(log_loss)), lo=float(np.exp(log_loss - half)),
                           hi=float(np.exp(log_loss + half)), level=float(level), method="reference",
                           n_points=int(d.size), eval_log_sd=eval_log_sd)


def calibrated(prediction: CurvePrediction, log_errors, level: float = 0.9) -> CurvePrediction:
    """`prediction` with its interval widened, where narrower, to t · rms(log_errors) either side
    of it in log space (t on as many degrees of freedom as errors, the 90 % ``level``): the errors
    the same predictor made on the sweep's finished runs from the same fraction of them (log
    predicted − log final loss), as the reference rule's interval is built. A model's own interval
    can be far narrower than its errors (the own-curve rule at rel_ci 0.5: 3 of 8 "90 %" intervals
    held the final loss). ValueError below :data:`MIN_CALIBRATION` errors: no stop without evidence."""
    errors = np.asarray(log_errors, dtype=float)
    if errors.size < MIN_CALIBRATION:
        raise ValueError(f"{errors.size} finished runs calibrate the interval, need at least {MIN_CALIBRATION}")
    half = float(stats.t.ppf(0.5 + level / 2, errors.size) * np.sqrt(np.mean(errors ** 2)))
    return CurvePrediction(loss=prediction.loss, lo=min(prediction.lo, prediction.loss * float(np.exp(-half))),
                           hi=max(prediction.hi, prediction.loss * float(np.exp(half))), level=prediction.level,
                           method=prediction.method, n_points=prediction.n_points, eval_log_sd=prediction.eval_log_sd)
