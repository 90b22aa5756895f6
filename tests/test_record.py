"""One run record (trainers/record.py): the runs row, Tune's final metrics and the record read
back from the store are views of the same `TrainResult`, so they cannot disagree."""

from __future__ import annotations

from trainers.config import BatchGeometry, RunOutput, TrainConfig
from trainers.record import TrainResult, eval_metrics

CONFIG = TrainConfig.from_dict(dict(shape=dict(n_layer=2, d_model=64, n_heads=4, d_ff=256, n_ctx=64),
                                    dataset_tokens=50_000, batch_tokens=1024))
GEOMETRY = BatchGeometry(seqs_per_step=16, micro_batch_size=4, grad_accum_steps=2, total_steps=48,
                         tokens_per_step=1024)


def a_result(**overrides) -> TrainResult:
    fields = dict(status="early_stopped", steps=37, tokens_seen=37 * 1024, flops=123_456_789, flops_6n=120_000_000,
                  best_val_loss=2.5, best_step=30, final_val_loss=2.6, wall_s=12.5, tokens_per_s=3000.0,
                  mfu=0.01, geometry=GEOMETRY)
    return TrainResult(**{**fields, **overrides})


def test_the_record_read_back_from_its_runs_row_reports_the_same_to_tune():
    result = a_result()
    row = result.run_row_for(CONFIG, RunOutput(sweep="s", trial_id="t", attempt=2), world_size=2)
    assert (row["steps"], row["flops"], row["best_val_loss"], row["status"]) == (37, 123_456_789, 2.5, "early_stopped")
    assert (row["micro_batch_size"], row["grad_accum_steps"], row["world_size"]) == (4, 2, 2)
    again = TrainResult.from_run_row(row)
    assert again.tune_metrics() == result.tune_metrics()
    metrics = result.tune_metrics()
    assert metrics["step"] == row["steps"] and "steps" not in metrics  # the live table's column is "step"
    assert metrics["trial_done"] is True


def test_an_unended_attempt_keeps_its_last_evaluation_progress():
    last = {"step": 8, "tokens_seen": 8192, "flops": 999, "val_loss": 3.1, "wall_s": 4.0, "train_loss": 3.2}
    record = TrainResult.unended("interrupted", last, GEOMETRY)
    assert (record.steps, record.tokens_seen, record.flops, record.final_val_loss) == (8, 8192, 999, 3.1)
    assert eval_metrics(last, best=3.0) == {"step": 8, "tokens_seen": 8192, "flops": 999, "train_loss": 3.2,
                                            "val_loss": 3.1, "best_val_loss": 3.0}
    nothing = TrainResult.unended("failed", None, None)
    assert (nothing.steps, nothing.tokens_seen, nothing.final_val_loss) == (0, 0, None)
    row = nothing.run_row_for(CONFIG, RunOutput(), world_size=1)
    assert row["micro_batch_size"] is None and row["status"] == "failed"
