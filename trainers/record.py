"""One run record: what a training run reports, built once in the trainer.

`TrainResult` is the record of one attempt; every view of it is a method here, so a field is
named and copied in one place:

* `run_row_for(config, output, world_size)` -- the runs-table row (docs/architecture.md §3);
* `tune_metrics()` -- the final dict Tune's searchers and the live table see;
* `eval_metrics(curve_row, best)` -- the small dict Tune sees per evaluation (the curve row
  itself is built by the step loop, `deepspeed_trainer._curve_row`);
* `TrainResult.from_run_row(row)` -- the record of an attempt that already ended (read back
  from the store), and `TrainResult.unended(...)` -- the record of one that did not end.

The runs table calls the step count ``steps`` and Tune's table ``step`` (the curve rows' name);
that rename happens only in `tune_metrics`.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from trainers.config import BatchGeometry, RunOutput, TrainConfig
from trainers.shapes import embedding_params, non_embedding_params


@dataclass(frozen=True)
class StopRequest:
    """What an `on_eval` callback returns to end the run at this evaluation as ``early_stopped``
    (the trainer knows nothing of why; orchestrator/early_stop.py decides). ``reason``: one of
    `metrics.STOP_REASONS`; the rest is the prediction that justified it, written to the runs
    row (its ``predicted_*`` columns, docs/architecture.md §3)."""

    reason: str
    predicted_loss: float | None = None  # nats/token at the planned last step
    predicted_lo: float | None = None
    predicted_hi: float | None = None
    predicted_level: float | None = None  # e.g. 0.9
    predicted_method: str | None = None  # "power_law", "lr_schedule" or "kaplan_ns"
    eval_log_sd: float | None = None  # the run's evaluation scatter about its fitted curve, log space

    def columns(self) -> dict:
        return {"stop_reason": self.reason, "predicted_loss": self.predicted_loss,
                "predicted_lo": self.predicted_lo, "predicted_hi": self.predicted_hi,
                "predicted_level": self.predicted_level, "predicted_method": self.predicted_method,
                "eval_log_sd": self.eval_log_sd}


@dataclass
class TrainResult:
    status: str  # one of metrics.statuses.RUN_STATUSES
    steps: int
    tokens_seen: int
    flops: int  # exact training FLOPs spent: 3 x (2N + 2 n_layer n_ctx d_attn) per token
    flops_6n: int  # the 6 N tokens approximation, for comparison
    best_val_loss: float | None
    best_step: int | None
    final_val_loss: float | None
    wall_s: float  # seconds since the attempt started
    tokens_per_s: float  # training throughput of this attempt
    mfu: float  # model FLOPs utilisation, 0..1, over all ranks
    curve: list[dict] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)  # train loss of every step of this attempt
    loss_per_position: list[float] | None = None  # the last evaluation's, nats at each of n_ctx positions
    run_row: dict | None = None
    geometry: BatchGeometry | None = None  # how the batch was split (None: not known)
    stop: StopRequest | None = None  # why an early_stopped run stopped (reason, prediction)
    error: str | None = None  # why the run diverged (the runs row's ``error``)

    @classmethod
    def unended(cls, status: str, last_curve_row: dict | None, geometry: BatchGeometry | None) -> "TrainResult":
        """An attempt that did not end (``failed`` or ``interrupted``): its progress as of its
        last curve row (none: nothing trained)."""
        last = last_curve_row or {}
        return cls(status=status, steps=last.get("step", 0), tokens_seen=last.get("tokens_seen", 0),
                   flops=last.get("flops", 0), flops_6n=0, best_val_loss=None, best_step=None,
                   final_val_loss=last.get("val_loss"), wall_s=last.get("wall_s", 0.0),
                   tokens_per_s=0.0, mfu=0.0, geometry=geometry)

    @classmethod
    def from_run_row(cls, row: dict) -> "TrainResult":
        """The record of an attempt read back from the runs table."""
        return cls(status=row["status"], steps=row.get("steps"), tokens_seen=row.get("tokens_seen"),
                   flops=row.get("flops"), flops_6n=row.get("flops_6n"), best_val_loss=row.get("best_val_loss"),
                   best_step=row.get("best_step"), final_val_loss=row.get("final_val_loss"),
                   wall_s=row.get("wall_s"), tokens_per_s=row.get("tokens_per_s"), mfu=row.get("mfu"),
                   run_row=row, error=row.get("error"),
                   stop=StopRequest(**{k: row.get(k) for k in StopRequest.__dataclass_fields__ if k != "reason"},
                                    reason=row["stop_reason"]) if row.get("stop_reason") else None)

    def run_row_for(self, config: TrainConfig, output: RunOutput, world_size: int) -> dict:
        """The runs-table row (docs/architecture.md §3) of this attempt."""
        shape, geometry = config.shape, self.geometry
        row = {
            "sweep": output.sweep, "trial_id": output.trial_id, "attempt": output.attempt, "status": self.status,
            "family": shape.family,  # an LSTM's n_heads, d_ff and d_attn are None: they do not apply
            "n_layer": shape.n_layer, "d_model": shape.d_model, "n_heads": shape.n_heads, "d_ff": shape.d_ff,
            "d_attn": shape.d_attn, "n_ctx": shape.n_ctx, "vocab_size": shape.vocab_size,
            "non_embedding_params": non_embedding_params(shape),
            "total_params": non_embedding_params(shape) + embedding_params(shape),
            "dataset_tokens": config.dataset_tokens, "regime": config.regime, "batch_tokens": config.batch_tokens,
            "micro_batch_size": geometry.micro_batch_size if geometry else None,
            "grad_accum_steps": geometry.grad_accum_steps if geometry else None,
            "lr": config.resolved_lr, "seed": config.seed, "zero_stage": config.zero_stage,
            "precision": config.precision, "world_size": world_size,
            "tokens_seen": self.tokens_seen, "steps": self.steps, "flops": self.flops, "flops_6n": self.flops_6n,
            "wall_s": self.wall_s, "final_val_loss": self.final_val_loss, "best_val_loss": self.best_val_loss,
            "best_step": self.best_step, "tokens_per_s": self.tokens_per_s, "mfu": self.mfu,
            "git_sha": _git_sha(), "hostname": socket.gethostname(), "error": self.error,
            "planned_steps": geometry.total_steps if geometry else None,
            **(self.stop.columns() if self.stop else {}),
        }
        from metrics.schema import RUNS_SCHEMA

        clashes = sorted(set(output.run_columns) & (set(row) | set(RUNS_SCHEMA.names)))
        if clashes:
            raise ValueError(f"run_columns: {clashes} are the runs row's own columns")
        return {**row, **output.run_columns}

    def tune_metrics(self) -> dict:
        """The last dict Tune sees for the trial (searchers' `on_trial_complete`, the live table)."""
        return {"status": self.status, "step": self.steps, "tokens_seen": self.tokens_seen,
                "flops": self.flops, "best_val_loss": self.best_val_loss,
                "final_val_loss": self.final_val_loss, "wall_s": self.wall_s,
                "tokens_per_s": self.tokens_per_s, "trial_done": True,
                **(self.stop.columns() if self.stop else {"stop_reason": None})}


def eval_metrics(curve_row: dict, best: float | None) -> dict:
    """The small dict Tune sees per evaluation (the full curve row is in the store)."""
    return {"step": curve_row["step"], "tokens_seen": curve_row["tokens_seen"], "flops": curve_row["flops"],
            "train_loss": curve_row.get("train_loss"), "val_loss": curve_row["val_loss"], "best_val_loss": best}


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
