"""Early prediction: stop a run whose outcome its curve already tells (issue 12 item 4).

`PredictionStopper` watches one run's evaluations (step, validation loss). From
``min_fraction`` of its planned steps on, it asks the learning-curve predictor
(`fitting.curve_prediction.predict_final_loss`) for the loss at the planned last step and ends the
run when that prediction is known to ``rel_ci`` (relative 90% half-width) — stop reason
``predicted_final`` — or, in the dataset regime, when the run is predicted to have passed its best
validation loss (``predicted_overfit``: its latest evaluations lie above the interval its curve up to
the best evaluation predicts for them, so training on cannot improve its result, its best loss). `check_evaluations` refuses, before
Ray starts, a sweep whose runs evaluate too rarely to ever fit a curve before ``min_fraction``.

Rules (``early_prediction.rule``): ``reference`` (the default) predicts a run, from
``min_fraction`` on, from the finished runs of its sweep with the same planned steps
(`fitting.reference_curves`; `StoreReferences` reads them from the metrics store at each decision,
so only runs that have ended unstopped count); where none can serve (no finished run with its
schedule, too few calibration pairs) it falls back to the run's own curve and a stop records why
in ``predicted_method`` (``lr_schedule; no reference: ...``), except for a run whose planned steps
other runs of the sweep share (``fallback_stops`` False): it is, or will be, their reference, so
it trains on (on the bench's 112 runs, letting the fallback stop such runs cost the reference rule
its references: 24.6 % saved for +22 % held-out error at 0.5/0.05, against 35 % for +6 %). ``own``: the run's own curve always.
Either way a stop on the run's own curve is made on an interval calibrated like the reference
rule's: widened to the errors the same prediction made from the same fraction of the sweep's
finished runs (`fitting.reference_curves.calibrated`; the model's own interval was over-confident,
3 of 8 "90 %" intervals held at rel_ci 0.5), and there is no such stop before
`fitting.reference_curves.MIN_CALIBRATION` runs have finished. A stopper given no source of
finished runs (``references`` None: built outside a sweep) stops on the model's interval.
bench/early_prediction.py replays this class, not a copy of its rule.

Where the decision runs, and why not in the driver: a Tune `Stopper`/`TrialScheduler` ends a
function trial by raising SystemExit from its next ``tune.report`` — to the trial the same event
as the driver's Ctrl-C (recorded ``interrupted`` and continued on ``--resume``) — and for a
multi-worker trial it tears the Ray Train run down before rank 0 can write its runs row. So the
stopper runs inside the trial, in the `on_eval` callback (orchestrator/trial.py), on rank 0, at
the evaluation whose data it needs: it returns a `trainers.record.StopRequest`, the trainer
broadcasts rank 0's decision so every rank leaves the loop at the same step, and the run ends
through the trainer's own status path: one runs row, written once by rank 0 (who knows the
observed loss), ``early_stopped`` with its ``stop_reason`` and prediction. A retry or a resumed
sweep finds that ended row (`orchestrator.trial.ended_run`) and trains no more. The trial's FLOPs
reach the ledger as for any run, so the unspent planned compute is free again when it finishes.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Iterable

from trainers.fields import fail
from trainers.record import StopRequest

LEVEL = 0.9  # the interval whose relative half-width rel_ci bounds (the spec's wording: "90%")


def planned_steps(train_config, workers: int) -> int:
    """A trial's schedule length in optimizer steps, as its trainer will compute it (the
    training split holds dataset_tokens // (n_ctx + 1) windows; `trainers.config.batch_geometry`)."""
    from trainers.config import batch_geometry

    windows = train_config.dataset_tokens // (train_config.shape.n_ctx + 1)
    return batch_geometry(train_config, workers, windows).total_steps


def evaluations_before(min_fraction: float, total_steps: int, eval_every: int) -> int:
    """How many evaluations a run of `total_steps` has made once `min_fraction` of it is done
    (the trainer evaluates every `eval_every` steps and at the last)."""
    return math.floor(min_fraction * total_steps) // eval_every


def check_evaluations(settings, trials: Iterable, workers: int) -> None:
    """SpecError (naming early_prediction.min_fraction) if early prediction is enabled and some
    trial makes fewer than `fitting.curve_prediction.MIN_CURVE_POINTS` evaluations before
    `min_fraction` of its planned steps: no curve could be fitted when the stopper first looks.
    The worst trial is named, with the steps and eval_every that make it so."""
    if not settings.enabled:
        return
    from fitting.curve_prediction import MIN_CURVE_POINTS

    worst = None
    for trial in trials:
        config = trial.train_config
        total = planned_steps(config, workers)
        count = evaluations_before(settings.min_fraction, total, config.eval_every)
        if worst is None or count < worst[0]:
            worst = (count, trial.trial_key, total, config.eval_every)
    if worst is not None and worst[0] < MIN_CURVE_POINTS:
        count, key, total, every = worst
        raise fail("early_prediction.min_fraction",
                   f"{settings.min_fraction:g} of trial {key}'s {total} planned steps holds {count} "
                   f"evaluations (trainer.eval_every {every}); fitting its curve needs at least "
                   f"{MIN_CURVE_POINTS}: raise min_fraction or lower trainer.eval_every")


class PredictionStopper:
    """One run's early-prediction rule: feed it each evaluation (`observe`); it returns the
    current prediction (None while too few points) and a `StopRequest` when the run should end.

    With ``enabled`` False it only predicts (the live table's ``pred`` column). ``schedule``:
    the run's LR schedule as (warmup_frac, min_lr_ratio) of `trainers.config.lr_multiplier`; the
    prediction then models it (`predict_final_loss`'s ``lr_schedule`` path; a power law in steps
    is biased low on warmup + cosine curves). None: a power law in steps."""

    def __init__(self, *, enabled: bool, min_fraction: float, rel_ci: float, regime: str,
                 schedule: tuple[float, float] | None = None, rule: str = "own", N: float | None = None,
                 references=None, fallback_stops: bool = True):
        self.enabled, self.min_fraction, self.rel_ci, self.regime = enabled, min_fraction, rel_ci, regime
        self.schedule = schedule
        # rule "reference": the run's non-embedding parameters and a callable giving the sweep's
        # finished runs as `fitting.reference_curves.ReferenceCurve`s at the time of the call
        self.rule, self.N, self.references = rule, N, references
        # rule "reference": may the own-curve fallback stop the run? Not where other runs of the
        # sweep plan its steps: it is (or will be) their reference, and stopping it starves them
        self.fallback_stops = fallback_stops
        self._errors: dict[tuple, float | None] = {}  # (id of a finished run's curve, points) -> its log error
        self._lr: dict[int, object] = {}  # total_steps -> LR multipliers of steps 0..total-1
        self.steps: list[int] = []
        self.losses: list[float] = []

    @classmethod
    def from_settings(cls, settings: dict | None, regime: str, config=None, references=None,
                      fallback_stops: bool = True) -> "PredictionStopper":
        """From the spec's ``early_prediction`` section as plain data (Tune's param dict; a key
        left out takes `orchestrator.spec_types.EarlyPrediction`'s default), the run's
        `trainers.config.TrainConfig` (its LR schedule and N; None: not modelled) and, for the
        reference rule, the callable giving the sweep's finished runs (`StoreReferences`)."""
        from orchestrator.spec_types import EarlyPrediction
        from trainers.shapes import non_embedding_params

        settings = {**dataclasses.asdict(EarlyPrediction()), **(settings or {})}
        schedule = None if config is None else (config.warmup_frac, config.min_lr_ratio)
        by_reference = settings["rule"] == "reference" and config is not None
        return cls(enabled=bool(settings["enabled"]), min_fraction=float(settings["min_fraction"]),
                   rel_ci=float(settings["rel_ci"]), regime=regime, schedule=schedule, rule=settings["rule"],
                   N=float(non_embedding_params(config.shape)) if by_reference else None, references=references,
                   fallback_stops=fallback_stops)

    def _predict(self, steps, losses, target_step: int, total_steps: int):
        """`predict_final_loss` at `target_step` of a run whose schedule spans `total_steps`."""
        import numpy as np

        from fitting.curve_prediction import predict_final_loss

        lr = None
        if self.schedule is not None:
            if total_steps not in self._lr:
                from trainers.config import lr_multiplier

                self._lr[total_steps] = np.array([lr_multiplier(i, total_steps, *self.schedule)
                                                  for i in range(total_steps)])
            lr = self._lr[total_steps]
        return predict_final_loss(np.asarray(steps), np.asarray(losses), target_step, level=LEVEL, lr_schedule=lr)

    def _reference(self, steps, losses, total_steps: int):
        """`reference_prediction` of the run's final loss from the sweep's finished runs now;
        ValueError (saying what is missing) where none can serve."""
        from fitting.reference_curves import reference_prediction

        if self.N is None or self.references is None:
            raise ValueError("the run's N or the sweep's finished runs are not known")
        return reference_prediction(steps, losses, total_steps, self.N, self.references(), level=LEVEL)

    def seed(self, steps: Iterable[int], losses: Iterable[float]) -> None:
        """The curve an earlier attempt of this run left (a retry resumes from its checkpoint, so
        the prediction continues from the whole curve, not from the resumed part alone)."""
        for step, loss in sorted(zip(steps, losses)):
            if isinstance(loss, float) and math.isfinite(loss) and (not self.steps or step > self.steps[-1]):
                self.steps.append(int(step))
                self.losses.append(float(loss))

    def observe(self, step: int, val_loss: float, total_steps: int):
        """-> (prediction or None, StopRequest or None) after the evaluation at `step`."""
        from fitting.curve_prediction import MIN_CURVE_POINTS

        if not (isinstance(val_loss, float) and math.isfinite(val_loss)) or (self.steps and step <= self.steps[-1]):
            return None, None  # a diverged eval ends the run anyway; a repeated step adds nothing
        self.steps.append(int(step))
        self.losses.append(float(val_loss))
        if len(self.steps) < MIN_CURVE_POINTS or step >= total_steps:
            return None, None
        note, deciding = None, True
        if self.rule == "reference" and self.enabled and step >= self.min_fraction * total_steps:
            # the store is read only where a decision is due (the live table's pred before that
            # comes from the run's own curve)
            try:
                return (prediction := self._reference(self.steps, self.losses, total_steps)), \
                    self._decide(prediction, step, total_steps)
            except ValueError as error:
                note = f"no reference: {error}"
                deciding = self.fallback_stops
        try:
            prediction = self._predict(self.steps, self.losses, total_steps, total_steps)
        except ValueError:  # a curve the predictor cannot fit (e.g. flat noise): keep training
            return None, None
        if not (math.isfinite(prediction.loss) and prediction.loss > 0):
            return None, None  # a loss is > 0: an early curve extrapolated below it is no prediction (a user saw -3.8)
        if not deciding:  # a reference-to-be: its own-curve prediction is for the live table only
            return prediction, None
        if self.references is not None and self.enabled and step >= self.min_fraction * total_steps:
            try:  # the interval the run is stopped on is the one its finished peers bear out
                prediction = self._calibrated(prediction, step / total_steps)
            except ValueError:  # fewer finished runs than calibrate it: no stop without evidence
                return prediction, None
        return prediction, self._decide(prediction, step, total_steps, note)

    def _calibrated(self, prediction, fraction: float):
        """The own-curve `prediction`, its interval widened to the errors the same prediction made
        from `fraction` of each of the sweep's finished runs (`fitting.reference_curves.calibrated`)."""
        from fitting.curve_prediction import MIN_CURVE_POINTS
        from fitting.reference_curves import calibrated

        errors = []
        for ref in self.references():
            seen = int((ref.steps <= fraction * ref.total_steps).sum())
            if seen >= MIN_CURVE_POINTS:
                error = self._own_error(ref, seen)
                if error is not None:
                    errors.append(error)
        return calibrated(prediction, errors, LEVEL)

    def _own_error(self, ref, seen: int) -> float | None:
        """log(predicted / final loss) of the own-curve prediction from a finished run's first
        `seen` evaluations (None: its curve cannot be fitted); cached, a finished run's curve is fixed."""
        key = (id(ref), seen)
        if key not in self._errors:
            try:
                p = PredictionStopper._predict(self, ref.steps[:seen], ref.losses[:seen], ref.total_steps,
                                               ref.total_steps)
                self._errors[key] = math.log(p.loss / ref.final_loss)
            except ValueError:
                self._errors[key] = None
        return self._errors[key]

    def _decide(self, prediction, step: int, total_steps: int, note: str | None = None) -> StopRequest | None:
        if not self.enabled or step < self.min_fraction * total_steps:
            return None
        if not (math.isfinite(prediction.loss) and prediction.loss > 0):
            return None
        reason = None
        if prediction.rel_half_width <= self.rel_ci:
            reason = "predicted_final"
        elif self.regime == "dataset" and self._past_best(total_steps):
            reason = "predicted_overfit"
        if reason is None:
            return None
        return StopRequest(reason, predicted_loss=float(prediction.loss), predicted_lo=float(prediction.lo),
                           predicted_hi=float(prediction.hi), predicted_level=float(prediction.level),
                           predicted_method=prediction.method if note is None else f"{prediction.method}; {note}",
                           eval_log_sd=prediction.eval_log_sd)


    def _past_best(self, total_steps: int) -> bool:
        """Dataset regime: has the run left its learning curve upwards? The curve up to its best
        evaluation, extrapolated to the last two evaluations (`predict_final_loss` at their steps),
        has both of them above its interval, and above the best loss: the run is overfitting, so
        training on cannot improve its result (its best loss). An extrapolation of the whole curve
        cannot say this: a decreasing law misfits a curve that turned, and its interval only widens."""
        import numpy as np

        from fitting.curve_prediction import MIN_CURVE_POINTS

        best = int(np.argmin(self.losses))
        if best + 1 < MIN_CURVE_POINTS or len(self.losses) - best < 3:
            return False
        steps, losses = np.asarray(self.steps[:best + 1]), np.asarray(self.losses[:best + 1])
        for later_step, later_loss in zip(self.steps[-2:], self.losses[-2:]):
            try:
                trend = self._predict(steps, losses, later_step, total_steps)
            except ValueError:
                return False
            if not later_loss > max(trend.hi, self.losses[best]):
                return False
        return True


class StoreReferences:
    """The reference rule's finished runs, read from the metrics store when called: the sweep's
    runs rows with status ``completed`` (trained to their planned end; an ``early_stopped`` run's
    end is unknown) of the trial's model family, other than the trial itself, each with its curve
    (`fitting.reference_curves.reference_curve`). Causal by construction: a run is there once
    its ended row is written. A finished run's curve no longer changes, so each is read once; the
    runs table is listed again at most every `refresh_s` seconds (the decisions come at every
    evaluation past min_fraction). A store that cannot be read raises ValueError, so the stopper
    falls back to the run's own curve, saying why."""

    def __init__(self, storage: str, sweep: str, trial_id: str | None, family: str | None = None,
                 refresh_s: float = 5.0):
        self.storage, self.sweep, self.trial_id, self.family, self.refresh_s = storage, sweep, trial_id, family, refresh_s
        self._curves: dict[str, object] = {}
        self._listed_at = -math.inf

    def __call__(self) -> list:
        """The finished runs as `ReferenceCurve`s; ValueError if the store cannot be read."""
        if time.monotonic() - self._listed_at >= self.refresh_s:
            self._listed_at = time.monotonic()
            try:
                self._read()
            except OSError as error:  # pyarrow's I/O errors are OSErrors; its ArrowInvalid is a ValueError
                raise ValueError(f"the sweep's store could not be read ({type(error).__name__}: {error})") from error
        return list(self._curves.values())

    def _read(self) -> None:
        from fitting.reference_curves import reference_curve
        from metrics import load_curves, load_runs

        for row in load_runs(self.storage, self.sweep).to_pylist():
            key = row["trial_id"]
            if key == self.trial_id or key in self._curves or row["status"] != "completed" or \
                    (self.family is not None and row.get("family") != self.family):
                continue
            reference = reference_curve(row, load_curves(self.storage, self.sweep, trial_id=key).to_pylist())
            if reference is not None:
                self._curves[key] = reference


def pred_text(prediction) -> str | None:
    """The live table's ``pred`` cell: predicted final loss ± its interval's half-width."""
    if prediction is None:
        return None
    return pred_cell(prediction.loss, prediction.lo, prediction.hi)


def pred_cell(loss: float | None, lo: float | None, hi: float | None) -> str | None:
    """``pred`` from a predicted loss and its interval (a prediction, or an ended run's row)."""
    if loss is None or lo is None or hi is None:
        return None
    return f"{loss:.3f}±{(hi - lo) / 2:.3f}"


__all__ = ["PredictionStopper", "StoreReferences", "check_evaluations", "evaluations_before", "planned_steps", "pred_cell", "pred_text"]
