"""The Tune function trial: one Tune trial = one training run of the sweep.

A single-worker trial runs the DeepSpeed trainer in the trial process itself. A multi-worker
trial (data parallel) starts a Ray Train `TorchTrainer` inside this function: with Ray Train V2
(the default in Ray 2.60) a trainer cannot be handed to `Tuner` directly (docs/architecture.md §7).
Its ranks report every evaluation; Ray Train forwards rank 0's metrics to Tune
(`TuneReportCallback`), so the live table shows its curve as for a single worker.

Retries: each evaluation's DeepSpeed checkpoint is reported with a small ``ATTEMPT_FILE``
beside it; a retried trial (`FailureConfig.max_failures`) restores that checkpoint and writes
under a new attempt number, so the store's reader keeps the latest. A single worker reports it
to Tune; the ranks of a multi-worker trial report their shards to Ray Train, which keeps them
in the sweep's storage (`train_storage`, readable from any node) under the trial's key, so the
retried trial's new TorchTrainer finds them there.

Interrupts: when the driver stops (Ctrl-C, SIGTERM), Tune ends each running trial by raising
``SystemExit(0)`` from its next ``tune.report``. That is not a failure: the attempt is recorded
as ``interrupted`` (not ended, so ``--resume`` continues it from its checkpoint). A trial
killed before it reaches a report leaves no runs row, as after a SIGKILL.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from metrics.statuses import ENDED_STATUSES
from trainers.config import TrainConfig
from trainers.fields import option

ATTEMPT_FILE = "scalesweep_attempt.json"
_PART_ATTEMPT = re.compile(r"part-(\d+)")
# not ended: "failed" (crashed after Tune's retries) and "interrupted" (stopped by the driver)


@dataclass(frozen=True)
class TrialConfig:
    """One Tune trial's configuration, typed: the sweep's settings (the same for every trial, built
    once by the driver) plus, per trial, its key and `TrainConfig` (`for_trial`). Crosses the
    Tune boundary once each way: `to_tune` (plain data, for Tune's param dict and its experiment
    state) and `from_tune` in the trial."""

    sweep: str = option(doc="sweep name: the store partition the trial writes")
    storage: str = option(doc="metrics store root (local path or pyarrow.fs URI)")
    workers: int = option(1, "data-parallel ranks per trial (more than 1: a Ray Train TorchTrainer)")
    cpus_per_worker: float = option(1.0, "CPUs per rank; also the rank's torch threads")
    gpus_per_worker: float = option(0.0, "GPUs per rank (0: CPU training, gloo)")
    trial_key: str | None = option(None, "the plan's stable key; the trial_id in the store", optional=True)
    train_config: TrainConfig | None = option(None, "what the trial trains (budget_flops: this trial's "
                                              "allowance)", optional=True)
    early_prediction: dict | None = option(None, "the spec's early_prediction section as plain data "
                                                 "(orchestrator/early_stop.py)", optional=True)
    run_columns: dict | None = option(None, "extra scalar columns of the trial's runs row (e.g. "
                                            "isoflop_budget, docs/architecture.md §3)", optional=True)
    shared_steps: tuple | None = option(None, "planned step counts two or more of the sweep's planned trials "
                                              "share (early_prediction.rule reference: such a run is a reference "
                                              "for others, so its own-curve fallback does not stop it)", optional=True)

    def for_trial(self, trial_key: str, train_config: TrainConfig,
                  run_columns: Mapping[str, Any] | None = None) -> "TrialConfig":
        return dataclasses.replace(self, trial_key=trial_key, train_config=train_config,
                                   run_columns=dict(run_columns or {}))

    def to_tune(self) -> dict[str, Any]:
        """Plain data for Tune's param dict (JSON-able: the progress table and Tune's state)."""
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                "train_config": self.train_config.to_dict()}

    @classmethod
    def from_tune(cls, config: dict) -> "TrialConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        trial = cls(**{k: v for k, v in config.items() if k in fields and k != "train_config"})
        return dataclasses.replace(trial, train_config=TrainConfig.from_dict(config["train_config"]))


def next_attempt(storage: str, sweep: str, trial_key: str, checkpoint_attempt: int | None) -> int:
    """One more than any attempt this trial left in the store or its checkpoint.

    Lists only this trial's own partition directories, so it costs O(1) in the sweep size.
    A killed attempt writes no runs row, so its curve parts count too.
    """
    from metrics import resolve

    seen = [-1 if checkpoint_attempt is None else checkpoint_attempt]
    fs, sweep_dir = resolve(storage, sweep)
    from pyarrow import fs as pafs

    for table in ("curves", "runs"):
        selector = pafs.FileSelector(f"{sweep_dir}/{table}/trial_id={trial_key}", allow_not_found=True)
        for info in fs.get_file_info(selector):
            match = _PART_ATTEMPT.match(info.base_name)
            if match:
                seen.append(int(match.group(1)))
    return max(seen) + 1


def ended_run(storage: str, sweep: str, trial_key: str) -> dict | None:
    """This trial's ended runs row, if an earlier driver saw it finish (reads only its own
    partition, through the store's reader, so an unreadable part is skipped and named). A driver
    killed after a trial finished but before Tune recorded it would otherwise train it again on
    resume."""
    from metrics import load_runs

    rows = load_runs(storage, sweep, trial_id=trial_key).to_pylist()
    latest = rows[-1] if rows else None
    return latest if latest and latest["status"] in ENDED_STATUSES else None


def train_storage(storage: str, sweep: str):
    """(filesystem, path) where multi-worker trials keep their Ray Train runs (checkpoints):
    ``<storage>/<sweep>/train`` on the store's filesystem (any pyarrow.fs URI, its query
    options included), so a retry on another node reads them."""
    from metrics import resolve

    return resolve(storage, sweep, "train")


def _restore_checkpoint(checkpoint, workdir: Path) -> tuple[str | None, int | None]:
    """Copy the latest checkpoint (Tune's or Ray Train's; None: not a retry) to local disk;
    its dir and attempt."""
    if checkpoint is None:
        return None, None
    local = workdir / "resume"
    shutil.rmtree(local, ignore_errors=True)
    checkpoint.to_directory(str(local))
    try:
        attempt = int(json.loads((local / ATTEMPT_FILE).read_text())["attempt"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        # Only the numbering needs it, and `next_attempt` also counts the store's attempts.
        warnings.warn(f"Tune checkpoint without a readable {ATTEMPT_FILE} ({err}); numbering the attempt "
                      "from the store", stacklevel=2)
        attempt = None
    return str(local), attempt


class _EvalReporter:
    """`on_eval` callback: forwards metrics and checkpoints to Tune (one worker) or to Ray Train
    (every rank: Train needs each rank's call and merges their checkpoint files into one). On rank
    0 it also predicts the final loss (the live table's ``pred``) and returns the early-prediction
    stopper's `StopRequest`, which ends the run (orchestrator/early_stop.py says why here)."""

    def __init__(self, report, checkpoint_cls, attempt: int, stopper=None):
        self._report, self._checkpoint_cls, self._attempt = report, checkpoint_cls, attempt
        self._stopper = stopper
        self.best: float | None = None
        self.last_row: dict | None = None
        self.stopped = False  # Tune stopped the trial from inside a report (driver interrupted)

    def __call__(self, event) -> None:
        self.last_row = event.row
        val = event.row["val_loss"]
        if val == val and (self.best is None or val < self.best):  # val == val: not NaN
            self.best = val
        checkpoint = None
        if event.checkpoint_dir:  # every rank: under ZeRO each holds its own optimizer shard
            if event.rank == 0:
                Path(event.checkpoint_dir, ATTEMPT_FILE).write_text(json.dumps({"attempt": self._attempt}))
            checkpoint = self._checkpoint_cls.from_directory(event.checkpoint_dir)
        prediction = request = None
        if self._stopper is not None and event.rank == 0:
            prediction, request = self._stopper.observe(event.row["step"], val, event.total_steps)
        try:
            from orchestrator.early_stop import pred_text
            from trainers.record import eval_metrics

            metrics = {**eval_metrics(event.row, self.best), "pred": pred_text(prediction)}
            self._report(metrics, checkpoint=checkpoint)
        except SystemExit:
            # Tune's session.report exits the training thread when the trial is stopped.
            self.stopped = True
            raise
        return request


def _write_unended_row(train_config, output, status: str, error: BaseException | None, world_size: int,
                       last_row: dict | None) -> None:
    """An attempt that did not end still leaves a runs row with its progress: ``failed`` (with
    the error, before Tune retries it) or ``interrupted`` (stopped by the driver)."""
    from metrics import TrialWriter
    from trainers.config import batch_geometry
    from trainers.record import TrainResult

    try:  # the split of the batch does not depend on the data size (only the step count does)
        geometry = batch_geometry(train_config, world_size, train_windows=1 << 62)
    except ValueError:  # the geometry itself was the fault
        geometry = None
    row = TrainResult.unended(status, last_row, geometry).run_row_for(train_config, output, world_size)
    if error is not None:
        row["error"] = "".join(traceback.format_exception_only(type(error), error)).strip()[-2000:]
    row = {k: v for k, v in row.items() if k not in ("sweep", "trial_id", "attempt")}
    TrialWriter(output.storage, output.sweep, output.trial_id, output.attempt).write_run(row)


def _train_and_report(trial: TrialConfig, attempt: int, resume_from: str | None, report,
                      checkpoint_cls, scratch: Path, rank: int = 0, world_size: int = 1):
    """Run the trainer with metrics/checkpoints forwarded through `report`; on a crash write
    the failed row (rank 0) and re-raise so Ray retries; on a stop, the interrupted row."""
    from trainers.config import RunOutput
    from trainers.deepspeed_trainer import train

    config = dataclasses.replace(trial.train_config, threads=max(1, int(trial.cpus_per_worker)))
    checkpoint_dir = str(scratch / "ckpt")
    Path(checkpoint_dir).mkdir()
    output = RunOutput(storage=trial.storage, sweep=trial.sweep, trial_id=trial.trial_key, attempt=attempt,
                       checkpoint_dir=checkpoint_dir, resume_from=resume_from,
                       run_columns=dict(trial.run_columns or {}))
    from orchestrator.early_stop import PredictionStopper, StoreReferences, planned_steps

    references = StoreReferences(trial.storage, trial.sweep, trial.trial_key, config.family) if rank == 0 else None
    fallback_stops = planned_steps(config, world_size) not in (trial.shared_steps or ())
    stopper = PredictionStopper.from_settings(trial.early_prediction, config.regime, config, references, fallback_stops)
    if resume_from and rank == 0:  # a retry: the curve before its checkpoint is in the store
        from metrics import load_curves

        earlier = load_curves(trial.storage, trial.sweep, trial_id=trial.trial_key).to_pylist()
        stopper.seed([row["step"] for row in earlier], [row["val_loss"] for row in earlier])
    reporter = _EvalReporter(report, checkpoint_cls, attempt, stopper)
    try:
        return train(config, output, on_eval=reporter)
    except BaseException as error:
        if rank == 0:
            if reporter.stopped or isinstance(error, KeyboardInterrupt):
                _write_unended_row(config, output, "interrupted", None, world_size, reporter.last_row)
            else:
                _write_unended_row(config, output, "failed", error, world_size, reporter.last_row)
        raise


def run_trial(config: dict[str, Any]) -> None:
    """The Tune function trainable."""
    from ray import tune

    trial = TrialConfig.from_tune(config)
    ended = ended_run(trial.storage, trial.sweep, trial.trial_key)
    if ended is None and trial.workers > 1:
        _run_data_parallel(trial)
        # its runs row, not Train's result, whose metrics are those of the latest checkpoint
        ended = ended_run(trial.storage, trial.sweep, trial.trial_key)
        if ended is None:
            raise RuntimeError(f"trial {trial.trial_key}: its workers ended without an ended runs row")
    if ended is not None:
        from trainers.record import TrainResult

        tune.report(_final_metrics(TrainResult.from_run_row(ended)))
        return
    # Not Tune's checkpoints: the trial's own, by its key (orchestrator.trial_checkpoint says why).
    result = _resume_and_train(trial, _StoredCheckpoint.latest(trial), tune.report, _StoredCheckpoint.saver(trial))
    tune.report(_final_metrics(result))


class _StoredCheckpoint:
    """A single-worker trial's checkpoint in the sweep's storage, behind the parts of Ray's
    `Checkpoint` this module uses: ``to_directory`` (restore) and, on the object `saver` returns,
    ``from_directory`` (save; it returns None, so nothing is reported to Tune)."""

    def __init__(self, trial: TrialConfig):
        self.trial = trial

    @classmethod
    def latest(cls, trial: TrialConfig) -> "_StoredCheckpoint | None":
        from orchestrator.trial_checkpoint import latest_checkpoint

        return cls(trial) if latest_checkpoint(trial.storage, trial.sweep, trial.trial_key) else None

    def to_directory(self, path: str) -> None:
        from orchestrator.trial_checkpoint import download_checkpoint

        if not download_checkpoint(self.trial.storage, self.trial.sweep, self.trial.trial_key, path):
            raise FileNotFoundError(f"trial {self.trial.trial_key}: no stored checkpoint")

    @classmethod
    def saver(cls, trial: TrialConfig):
        from orchestrator.trial_checkpoint import save_checkpoint

        class Saver:
            @staticmethod
            def from_directory(local_dir: str) -> None:
                save_checkpoint(trial.storage, trial.sweep, trial.trial_key, local_dir)
                return None

        return Saver


def _final_metrics(result) -> dict:
    """The trial's last Tune result; a prediction-stopped run keeps its ``pred`` cell in the final
    table (the evaluations' cells are replaced by this result)."""
    from orchestrator.early_stop import pred_cell

    metrics = result.tune_metrics()
    pred = pred_cell(metrics.get("predicted_loss"), metrics.get("predicted_lo"), metrics.get("predicted_hi"))
    return {**metrics, "pred": pred} if pred else metrics


def _resume_and_train(trial: TrialConfig, checkpoint, report, checkpoint_cls, rank: int = 0, world_size: int = 1):
    """Restore `checkpoint` (None: a first attempt), number the attempt, train and report."""
    from orchestrator.trial_scratch import trial_scratch

    # restored checkpoint and local checkpoints in one scratch dir, reaped if this process is killed
    with trial_scratch() as scratch:
        resume_from, checkpoint_attempt = _restore_checkpoint(checkpoint, scratch)
        # Every rank numbers it alike; only rank 0 writes rows and the checkpoint's attempt.
        attempt = next_attempt(trial.storage, trial.sweep, trial.trial_key, checkpoint_attempt)
        return _train_and_report(trial, attempt, resume_from, report, checkpoint_cls, scratch, rank, world_size)


def _train_worker(loop_config: dict) -> None:
    """Ray Train worker loop: every rank trains, resuming from the run's latest checkpoint in the
    sweep's storage (a retried trial's); each reports its evaluations, checkpoint shards and result."""
    import ray.train

    trial: TrialConfig = loop_config["trial"]
    _quiet_train_reports()
    context = ray.train.get_context()
    result = _resume_and_train(trial, ray.train.get_checkpoint(), ray.train.report, ray.train.Checkpoint,
                               rank=context.get_world_rank(), world_size=context.get_world_size())
    ray.train.report(result.tune_metrics())


def _quiet_train_reports() -> None:
    """Ray Train logs every `ray.train.report` of every rank at INFO ("Reporting training result
    N: TrainingReport(...)") through a logger named by its module's file, so the run config's
    LoggingConfig (the ``ray.train`` logger) misses it: 2 ranks x every evaluation, in the live
    table. Warnings from that module still show. Ray 2.5x's private module; absent, nothing to do."""
    import logging

    try:
        from ray.train.v2._internal.execution import context as train_context
    except ImportError:
        return
    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)


def _run_data_parallel(trial: TrialConfig) -> None:
    """Several workers: a Ray Train TorchTrainer started from inside the Tune trial. The Train run
    is named by the trial's key in `train_storage`, so a retry (Tune's: Train itself does not
    retry, `--max-failures` counts once) resumes from the checkpoint the failed attempt left."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    workers = {"CPU": trial.cpus_per_worker}
    if trial.gpus_per_worker:
        workers["GPU"] = trial.gpus_per_worker
    fs, path = train_storage(trial.storage, trial.sweep)
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"trial": trial},
        scaling_config=ScalingConfig(num_workers=trial.workers, use_gpu=bool(trial.gpus_per_worker),
                                     resources_per_worker=workers),
        torch_config=TorchConfig(backend="nccl" if trial.gpus_per_worker else "gloo"),
        run_config=RunConfig(name=trial.trial_key, storage_path=path, storage_filesystem=fs,
                             failure_config=FailureConfig(max_failures=0),
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             callbacks=[TuneReportCallback()],
                             # Ray Train's INFO lines (every report and checkpoint of every rank)
                             # flood a sweep's live table; warnings and errors still show, and
                             # Ray Train's own log files keep everything
                             logging_config=LoggingConfig(log_level="WARNING")),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
