"""The DeepSpeed trainer, really run on CPU: learning, ZeRO equivalence, resume, divergence,
metrics contract, bad input. Tiny models so the whole file stays around a minute."""

import functools
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metrics import load_curves, load_runs
from trainers.config import RunOutput, TrainConfig
from trainers.deepspeed_trainer import train
from trainers.shapes import ModelShape

REPO = Path(__file__).resolve().parents[1]
TINY = ModelShape(n_layer=2, d_model=64, n_heads=4, d_ff=256, n_ctx=64, vocab_size=256)


def tiny_config(**overrides) -> TrainConfig:
    fields = dict(shape=TINY, dataset_tokens=120_000, batch_tokens=1024, val_tokens=8192,
                  eval_every=10, lr=3e-3, threads=1, peak_flops=1e11)
    fields.update(overrides)
    return TrainConfig(**fields)


def test_loss_goes_down_on_builtin_corpus(tmp_path):
    result = train(tiny_config(), RunOutput(storage=str(tmp_path), sweep="s", trial_id="learn"))
    assert result.status == "completed"
    first, last = result.curve[0]["val_loss"], result.curve[-1]["val_loss"]
    # Uniform over 256 bytes is ln 256 = 5.55 nats; the model must learn real structure.
    assert last < math.log(256) - 2.0, result.curve
    assert last < first - 0.3, result.curve
    assert result.steps == 120_000 // 65 // 16  # tokens regime: every window seen at most once
    assert result.tokens_seen == result.steps * 1024
    assert result.flops == 3 * result.tokens_seen * (2 * 98_304 + 2 * 2 * 64 * 64)
    assert result.tokens_per_s > 0 and 0 < result.mfu
    assert len(result.loss_per_position) == 64


ZERO_CASE = dict(dataset_tokens=60_000, max_steps=6, eval_every=100)


@functools.cache
def stage_0_losses(precision: str) -> tuple[float, ...]:
    """The ZeRO-0 run the stages are compared with, trained once per precision (not once per
    stage: the same deterministic run three times)."""
    return tuple(train(tiny_config(precision=precision, **ZERO_CASE)).step_losses)


@pytest.mark.parametrize("stage", [1, 2, 3])
@pytest.mark.parametrize("precision, tol", [("fp32", 1e-4), ("bf16", 1e-3)])
def test_zero_stages_match_stage_0(stage, precision, tol):
    # bf16 ZeRO 0 is DeepSpeed's FP16_UnfusedOptimizer, which primes AdamW with a zero-gradient
    # step; unless undone (engine._undo_priming_step) its losses drift ~1% from ZeRO 1-3 by step 2.
    baseline = list(stage_0_losses(precision))
    losses = train(tiny_config(zero_stage=stage, precision=precision, **ZERO_CASE)).step_losses
    assert len(losses) == len(baseline) == 6
    assert losses == pytest.approx(baseline, rel=tol, abs=tol)
    assert losses[-1] < losses[0]  # it trained, not just matched


def test_diverged_run_is_recorded_not_raised(tmp_path):
    result = train(tiny_config(lr=1e4, grad_clip=0.0, warmup_frac=0.0),
                   RunOutput(storage=str(tmp_path), sweep="s", trial_id="nan"))
    assert result.status == "diverged"
    runs = load_runs(str(tmp_path), "s").to_pylist()
    assert [r["status"] for r in runs] == ["diverged"]
    assert runs[0]["steps"] < 20 and runs[0]["tokens_seen"] == runs[0]["steps"] * 1024


def test_a_finite_loss_blown_far_above_uniform_is_diverged_not_completed(tmp_path):
    """lr 3 without warmup: the loss stays finite but reaches hundreds of nats on a 256-byte
    vocabulary (an lr of 30 reached 1688 and was recorded ``completed``, so its loss could reach a
    fit). Above 2 ln(vocab) the run ends ``diverged``, the runs row saying why."""
    from trainers.deepspeed_trainer import divergence

    result = train(tiny_config(lr=3.0, warmup_frac=0.0, dataset_tokens=30_000, eval_every=5),
                   RunOutput(storage=str(tmp_path), sweep="s", trial_id="blown"))
    assert result.status == "diverged" and result.steps == 5, result.curve
    assert math.isfinite(result.curve[-1]["val_loss"]) and result.curve[-1]["val_loss"] > 2 * math.log(256)
    (row,) = load_runs(str(tmp_path), "s").to_pylist()
    assert row["status"] == "diverged" and "above 2 x ln(vocab 256) = 11.09 at step 5" in row["error"], row["error"]
    assert row["best_val_loss"] is None and result.best_val_loss is None  # a blown-up loss is no one's best
    assert divergence(2 * math.log(256) - 1e-9, 256) is None and divergence(float("nan"), 256) is not None


def test_metrics_contract_read_by_pyarrow_and_duckdb(tmp_path):
    from trainers.data import CorpusSpec

    extra = {"other": CorpusSpec(source=str(REPO / "trainers" / "*.py"))}
    result = train(tiny_config(dataset_tokens=40_000, eval_every=5, extra_evals=extra, micro_batch_size=4),
                   RunOutput(storage=str(tmp_path), sweep="contract", trial_id="t0"))
    curves = load_curves(str(tmp_path), "contract")
    for column in ("trial_id", "attempt", "step", "tokens_seen", "flops", "train_loss", "val_loss",
                   "val_loss_other", "lr", "tokens_per_s", "mfu", "wall_s", "timestamp"):
        assert column in curves.column_names
    assert curves.num_rows == len(result.curve)
    for row in curves.select(["val_loss", "loss_per_position"]).to_pylist():  # fig. 20, per evaluation
        assert len(row["loss_per_position"]) == 64 and all(map(math.isfinite, row["loss_per_position"]))
        assert sum(row["loss_per_position"]) / 64 == pytest.approx(row["val_loss"], rel=1e-9)
    import duckdb
    rows = duckdb.sql(
        f"select trial_id, count(*) n, max(step) s from read_parquet('{tmp_path}/contract/curves/**/*.parquet', "
        "hive_partitioning=true) group by trial_id").fetchall()
    assert rows == [("t0", len(result.curve), result.steps)]
    run = duckdb.sql(f"select status, non_embedding_params, tokens_seen, flops, best_val_loss from "
                     f"read_parquet('{tmp_path}/contract/runs/**/*.parquet', hive_partitioning=true)").fetchall()
    assert run == [("completed", 98_304, result.tokens_seen, result.flops, result.best_val_loss)]
    # 1024 tokens / 64 = 16 sequences per step, in micro batches of 4: 4 accumulation steps
    (row,) = load_runs(str(tmp_path), "contract").select(["micro_batch_size", "grad_accum_steps"]).to_pylist()
    assert row == {"micro_batch_size": 4, "grad_accum_steps": 4}


def test_failed_row_records_the_batch_split(tmp_path):
    from orchestrator.trial import _write_unended_row

    config = tiny_config(micro_batch_size=2)
    output = RunOutput(storage=str(tmp_path), sweep="s", trial_id="oom")
    _write_unended_row(config, output, "failed", MemoryError("out of memory"), world_size=2, last_row=None)
    (row,) = load_runs(str(tmp_path), "s").to_pylist()
    assert (row["status"], row["micro_batch_size"], row["grad_accum_steps"]) == ("failed", 2, 4)
    assert "MemoryError: out of memory" in row["error"]


def test_resume_after_kill_continues_exactly(tmp_path):
    """SIGKILL a standalone training process after its first checkpoint; resuming from that
    checkpoint reproduces the uninterrupted run's next losses."""
    args = dict(dataset_tokens=60_000, eval_every=4)
    reference = train(tiny_config(**args)).step_losses
    ckpt = tmp_path / "ckpt"
    cmd = [sys.executable, "-m", "trainers.cli", "--n-layer", "2", "--d-model", "64", "--n-heads", "4",
           "--d-ff", "256", "--n-ctx", "64", "--dataset-tokens", "60000", "--batch-tokens", "1024",
           "--lr", "3e-3", "--eval-every", "4", "--threads", "1", "--checkpoint-dir", str(ckpt)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 600  # a wait, not a timing: the child's imports on a loaded machine
    while not (ckpt / "latest").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    ended = proc.poll()  # before the kill: a child that already finished was never interrupted
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (ckpt / "latest").exists(), "the child never checkpointed"
    assert ended is None, f"the child ended (exit {ended}) before it could be killed"
    resumed = train(tiny_config(**args), RunOutput(resume_from=str(ckpt)))
    done = len(reference) - len(resumed.step_losses)
    assert 0 < done < len(reference)
    assert resumed.step_losses == pytest.approx(reference[done:], rel=1e-5, abs=1e-5)


def test_bf16_zero0_resume_continues_exactly(tmp_path):
    """The GPU's default path (bf16, ZeRO 0: DeepSpeed's FP16_UnfusedOptimizer with fp32 masters)
    stopped after step 5 and resumed from its step-4 checkpoint repeats the uninterrupted run."""
    config = tiny_config(precision="bf16", regime="dataset", max_steps=8, eval_every=2, patience=100)
    full = train(config).step_losses
    budget = 3 * (2 * 98_304 + 2 * 2 * 64 * 64) * 5 * 1024  # train_flops of exactly 5 steps
    stopped = train(tiny_config(precision="bf16", regime="dataset", max_steps=8, eval_every=2, patience=100,
                                budget_flops=budget), RunOutput(checkpoint_dir=str(tmp_path / "ckpt")))
    assert stopped.status == "budget_stopped" and stopped.steps == 5
    resumed = train(config, RunOutput(resume_from=str(tmp_path / "ckpt")))
    assert [r["step"] for r in resumed.curve] == [6, 8]
    assert resumed.step_losses == pytest.approx(full[4:], rel=1e-5, abs=1e-5)
    assert stopped.step_losses == pytest.approx(full[:5], rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("overrides, field", [
    (dict(shape=dict(n_layer=2, d_model=60, n_heads=8, d_ff=240, n_ctx=64, vocab_size=256)), "d_attn"),
    (dict(dataset_tokens=10**12), "dataset_tokens"),
    (dict(regime="epochs"), "regime"),
    (dict(zero_stage=4), "zero_stage"),
    (dict(batch_tokens=1000), "batch_tokens"),
    (dict(regime="dataset"), "max_steps"),
])
def test_bad_input_names_the_field(overrides, field):
    raw = dict(shape=dict(n_layer=2, d_model=64, n_heads=4, d_ff=256, n_ctx=64), dataset_tokens=50_000)
    raw.update(overrides)
    with pytest.raises(ValueError, match=field):
        train(TrainConfig.from_dict(raw))


def test_context_longer_than_the_data_fails_before_training(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("def f(x):\n    return x\n" * 2000)  # ~46k tokens: 11 blocks of 4096
    base = dict(shape=dict(n_layer=1, d_model=32, n_heads=2, d_ff=64, n_ctx=8192), batch_tokens=8192,
                val_tokens=4096, corpus=str(small))
    with pytest.raises(ValueError, match="n_ctx"):  # the context does not fit the validation split
        train(TrainConfig.from_dict(dict(base, dataset_tokens=20_000)))
    with pytest.raises(ValueError, match="dataset_tokens"):  # more than the corpus holds
        train(TrainConfig.from_dict(dict(base, dataset_tokens=60_000)))


@pytest.mark.slow
def test_two_process_gloo_run_completes(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "trainers.cli", "--n-layer", "2", "--d-model", "64", "--n-heads", "4", "--d-ff", "256",
           "--n-ctx", "64", "--dataset-tokens", "60000", "--batch-tokens", "1024", "--zero-stage", "2",
           "--threads", "1", "--eval-every", "5", "--storage", str(tmp_path), "--sweep", "dp"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "status      completed" in out.stdout
    runs = load_runs(str(tmp_path), "dp").to_pylist()
    assert len(runs) == 1 and runs[0]["world_size"] == 2 and runs[0]["status"] == "completed"


def test_checkpoint_interval_saves_only_when_due(tmp_path):
    events = []
    result = train(tiny_config(dataset_tokens=40_000, eval_every=5, checkpoint_interval_s=1e9),
                   RunOutput(checkpoint_dir=str(tmp_path / "ckpt")), on_eval=events.append)
    saved = [e.row["step"] for e in events if e.checkpoint_dir]
    assert len(events) > 3 and saved == [result.steps]  # only the last step, never mid-run
    assert (tmp_path / "ckpt" / f"step{result.steps:08d}").is_dir()


@pytest.fixture(scope="module")
def stage1_checkpoint(tmp_path_factory):
    """A real DeepSpeed checkpoint of the tiny model at ZeRO stage 1, after 2 steps."""
    ckpt = tmp_path_factory.mktemp("stage1") / "ckpt"
    train(tiny_config(zero_stage=1, dataset_tokens=40_000, max_steps=2, eval_every=2), RunOutput(checkpoint_dir=str(ckpt)))
    return ckpt


def test_resume_under_another_zero_stage_names_it(stage1_checkpoint):
    with pytest.raises(ValueError, match=r"resume_from: .* another run configuration \(zero_stage: checkpoint 1, "
                                         r"this run 3\)"):
        train(tiny_config(zero_stage=3, dataset_tokens=40_000, max_steps=2, eval_every=2),
              RunOutput(resume_from=str(stage1_checkpoint)))
    # the same settings resume (2 steps were done: nothing is left to train)
    resumed = train(tiny_config(zero_stage=1, dataset_tokens=40_000, max_steps=2, eval_every=2),
                    RunOutput(resume_from=str(stage1_checkpoint)))
    assert resumed.steps == 2 and resumed.step_losses == []


def test_resume_under_another_shape_or_lr_names_each_field(stage1_checkpoint):
    other = ModelShape(n_layer=3, d_model=32, n_heads=4, d_ff=256, n_ctx=64, vocab_size=256)
    with pytest.raises(ValueError) as err:
        train(tiny_config(shape=other, zero_stage=1, dataset_tokens=40_000, max_steps=2, eval_every=2, lr=1e-3),
              RunOutput(resume_from=str(stage1_checkpoint)))
    message = str(err.value)
    for expected in ("shape.n_layer: checkpoint 2, this run 3", "shape.d_model: checkpoint 64, this run 32",
                     "shape.d_attn: checkpoint 64, this run 32", "lr: checkpoint 0.003, this run 0.001"):
        assert expected in message, message
    assert "zero_stage" not in message and "shape.d_ff" not in message


def test_checkpoint_without_a_record_still_names_a_deepspeed_failure(stage1_checkpoint, tmp_path):
    import shutil

    legacy = tmp_path / "legacy"
    shutil.copytree(stage1_checkpoint, legacy)
    for record in legacy.glob("*/scalesweep_checkpoint.json"):  # as saved before records existed
        record.unlink()
    with pytest.warns(UserWarning, match="records no run configuration"), \
            pytest.raises(ValueError, match=rf"resume_from: DeepSpeed could not load {legacy}/step00000002 "
                                            r"\(AssertionError: no message\)"):
        train(tiny_config(zero_stage=3, dataset_tokens=40_000, max_steps=2, eval_every=2),
              RunOutput(resume_from=str(legacy)))


def test_missing_checkpoint_fails_first_and_creates_nothing(tmp_path, capsys):
    from scalesweep.cli import main

    with pytest.raises(FileNotFoundError, match="resume_from: .*nope is not a directory"):
        train(tiny_config(), RunOutput(resume_from=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    code = main(["train", "--n-layer", "2", "--d-model", "64", "--n-heads", "4", "--d-ff", "256", "--n-ctx", "64",
                 "--resume-from", str(tmp_path / "empty"), "--storage", str(tmp_path / "store"),
                 "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert code == 2
    assert "no DeepSpeed checkpoint in" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
