"""Replay of the shared-curve stopping rule (`fitting.reference_curves`) on stored sweeps, for
bench/early_prediction.py (``--rule reference``).

The rule predicts a run from the runs of its own sweep that had trained to their end before the
evaluation it decides at, so the replay is an event simulation per sweep, in the stored wall-clock
order of the evaluations: a run becomes a reference when its last evaluation passes unstopped, and
a run the rule stops never becomes one (its end is unknown). What the replay cannot reproduce: a
stopped run frees its worker early, so in a live sweep later runs start (and end) sooner; the
order in which runs finish, which decides the references, is kept as stored.
"""

from __future__ import annotations

import numpy as np


def _by_trial(curves: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for c in curves:
        out.setdefault(c["trial_id"], []).append(c)
    return {k: sorted(v, key=lambda c: c["step"]) for k, v in out.items()}


_PREDICTIONS: dict[tuple, object] = {}
"""Predictions already made, by (trial, evaluation index, references' trial ids, points): they do
not depend on min_fraction or rel_ci, only on which runs had ended unstopped, so the settings'
replays share them."""


def replay_reference(runs: list[dict], curves: list[dict], min_fraction: float, rel_ci: float,
                     level: float = 0.9, points: int | None = None) -> dict[str, dict]:
    """Each run's outcome under the shared-curve rule: {trial_id: the row a stopped run would
    have written (stop_reason predicted_final, predicted_*, steps, flops at the stop), or the run's
    own row}. Trial ids are "<store index>/<key>" (`early_prediction.load_pooled`); only runs of
    the same store are references. The decision is `PredictionStopper`'s: from `min_fraction` of
    the planned steps, stop when the prediction's relative half-width is at most `rel_ci`.
    points: the evaluations the run's offset averages (None: `fitting.reference_curves.POINTS`)."""
    from fitting.reference_curves import POINTS, ReferenceCurve, reference_prediction
    from trainers.record import StopRequest

    by_trial = _by_trial(curves)
    rows = {r["trial_id"]: r for r in runs}
    out = dict(rows)
    events = sorted(((c["timestamp"], tid, i) for tid, cs in by_trial.items() if tid in rows
                     for i, c in enumerate(cs)), key=lambda e: (e[0], e[1], e[2]))
    points = POINTS if points is None else points
    references: dict[str, list] = {}  # store index -> ReferenceCurve of runs that ended unstopped
    names: dict[str, list] = {}  # store index -> their trial ids, in the same order
    stopped: set[str] = set()
    for _, tid, i in events:
        if tid in stopped:
            continue
        row, cs = rows[tid], by_trial[tid]
        store, total = tid.split("/", 1)[0], row["planned_steps"]
        if i == len(cs) - 1:  # trained to its end: a reference from now on
            references.setdefault(store, []).append(ReferenceCurve(
                float(row["non_embedding_params"]), int(total), np.array([c["step"] for c in cs], float),
                np.array([c["val_loss"] for c in cs], float), float(row["best_val_loss"])))
            names.setdefault(store, []).append(tid)
            continue
        step = cs[i]["step"]
        if step < min_fraction * total:
            continue
        key = (tid, i, tuple(names.get(store, ())), points, level)
        if key not in _PREDICTIONS:
            try:
                _PREDICTIONS[key] = reference_prediction(
                    [c["step"] for c in cs[:i + 1]], [c["val_loss"] for c in cs[:i + 1]], total,
                    float(row["non_embedding_params"]), references.get(store, []), level=level, points=points)
            except ValueError as error:  # no reference or no calibration yet: keep training
                _PREDICTIONS[key] = error
        pred = _PREDICTIONS[key]
        if isinstance(pred, ValueError):
            continue
        if pred.rel_half_width <= rel_ci:
            request = StopRequest("predicted_final", predicted_loss=pred.loss, predicted_lo=pred.lo,
                                  predicted_hi=pred.hi, predicted_level=pred.level,
                                  predicted_method=pred.method, eval_log_sd=pred.eval_log_sd)
            out[tid] = {**row, **request.columns(), "status": "early_stopped", "steps": step,
                        "flops": cs[i]["flops"], "final_val_loss": cs[i]["val_loss"]}
            stopped.add(tid)
    return out
