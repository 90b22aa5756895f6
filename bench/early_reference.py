"""Replay of the trials' stopper (orchestrator.early_stop.PredictionStopper, either rule) on stored
sweeps, for bench/early_prediction.py.

Both rules use the runs of the sweep that had trained to their end before the evaluation they
decide at (``reference`` predicts from them, `fitting.reference_curves`; both calibrate an
own-curve interval on them), so the replay is an event simulation per sweep, in the stored wall-clock
order of the evaluations: a run becomes a reference when its last evaluation passes unstopped (in a
sweep: when its ``completed`` row is written, what `StoreReferences` reads), and a run the rule
stops never becomes one (its end is unknown). The stopper is the sweep's own class; only where its
references come from differs (this list instead of the store) and its predictions are cached across
settings (they do not depend on min_fraction or rel_ci). Where no reference can serve, it falls back
to the run's own curve, as in a sweep (stopping on it only a run whose planned steps no other run
of its sweep shares). What the replay cannot reproduce: a stopped run frees its
worker early, so in a live sweep later runs start (and end) sooner; the order in which runs finish,
which decides the references, is kept as stored.
"""

from __future__ import annotations

_REFERENCES: dict[str, object] = {}
"""Each finished run's `ReferenceCurve`, by pooled trial id (built once, so its identity keys the cache)."""

_PREDICTIONS: dict[tuple, object] = {}
"""Reference predictions already made, by (trial, points seen, its references' identities)."""


def _by_trial(curves: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for c in curves:
        out.setdefault(c["trial_id"], []).append(c)
    return {k: sorted(v, key=lambda c: c["step"]) for k, v in out.items()}


_ERRORS: dict[tuple, object] = {}
"""Own-curve errors on finished runs already computed, by (finished run's curve, points, schedule)."""


def _replayed_stopper(trial_id: str, references: list, **kw):
    """The bench's cached `PredictionStopper` (early_prediction._stopper), its finished runs the
    replay's `references` list as it grows."""
    from early_prediction import _stopper

    stopper = _stopper(trial_id, references=lambda: references, **kw)
    own_error = stopper._own_error

    def cached_error(ref, seen):
        key = (id(ref), seen, stopper.schedule)
        if key not in _ERRORS:
            _ERRORS[key] = own_error(ref, seen)
        return _ERRORS[key]

    stopper._own_error = cached_error
    plain = stopper._reference

    def cached(steps, losses, total_steps):
        key = (trial_id, len(steps), tuple(id(r) for r in references))
        if key not in _PREDICTIONS:
            try:
                _PREDICTIONS[key] = plain(steps, losses, total_steps)
            except ValueError as error:
                _PREDICTIONS[key] = error
        if isinstance(_PREDICTIONS[key], ValueError):
            raise _PREDICTIONS[key]
        return _PREDICTIONS[key]

    stopper._reference = cached
    return stopper


def replay(runs: list[dict], curves: list[dict], min_fraction: float, rel_ci: float,
           schedule: tuple[float, float] | None, rule: str) -> dict[str, dict]:
    """Each run's outcome under the trials' stopper with `rule`: {trial_id: the row a
    stopped run would have written (stop_reason, predicted_*, steps, flops at the stop), or the
    run's own row}. Trial ids are "<store index>/<key>" (`early_prediction.load_pooled`); only runs
    of the same store are references. schedule: the runs' (warmup_frac, min_lr_ratio), for the
    own-curve fallback."""
    from fitting.reference_curves import reference_curve

    by_trial = _by_trial(curves)
    rows = {r["trial_id"]: r for r in runs}
    out = dict(rows)
    events = sorted(((c["timestamp"], tid, i) for tid, cs in by_trial.items() if tid in rows
                     for i, c in enumerate(cs)), key=lambda e: (e[0], e[1], e[2]))
    from collections import Counter

    # as the sweep tells each trial (orchestrator.sweep.shared_steps): schedules 2+ of its runs plan
    planned = Counter((tid.split("/", 1)[0], row["planned_steps"]) for tid, row in rows.items())
    references: dict[str, list] = {}  # store index -> ReferenceCurve of runs that ended unstopped
    stoppers = {}
    for _, tid, i in events:
        row, cs = rows[tid], by_trial[tid]
        store = tid.split("/", 1)[0]
        pool = references.setdefault(store, [])
        if tid in out and out[tid].get("status") == "early_stopped":
            continue
        if i == len(cs) - 1:  # trained to its end: a reference from now on
            if tid not in _REFERENCES:
                _REFERENCES[tid] = reference_curve(row, cs)
            if _REFERENCES[tid] is not None:
                pool.append(_REFERENCES[tid])
            continue
        if tid not in stoppers:
            stoppers[tid] = _replayed_stopper(tid, pool, enabled=True, min_fraction=min_fraction, rel_ci=rel_ci,
                                              regime=row["regime"], schedule=schedule, rule=rule,
                                              N=float(row["non_embedding_params"]),
                                              fallback_stops=planned[(store, row["planned_steps"])] < 2)
        _, request = stoppers[tid].observe(cs[i]["step"], cs[i]["val_loss"], row["planned_steps"])
        if request is not None:
            out[tid] = {**row, **request.columns(), "status": "early_stopped", "steps": cs[i]["step"],
                        "flops": cs[i]["flops"], "final_val_loss": cs[i]["val_loss"]}
    return out
