"""One training run = one DeepSpeed engine.

`train(config, output)` trains a GPT on D tokens, evaluates every `eval_every` steps, writes
curve rows and a final run row to the metrics store (docs/architecture.md §3), checkpoints so a retried
attempt continues exactly, and returns its record, a `TrainResult` (trainers/record.py). The
engine is built in trainers/engine.py; here are the step loop (`_step_loop`) and the record
(`_record`). It runs standalone, under torchrun,
or inside a Ray Tune / Ray Train worker; it knows nothing of Ray (the caller passes
`on_eval` to hear about evaluations and checkpoints; it may return a `StopRequest` to end the
run there as ``early_stopped``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from trainers import checkpoint
from trainers.config import BatchGeometry, RunOutput, TrainConfig, batch_geometry
from trainers.data import DataSplits, SequenceSampler, eval_batches, load_corpus, make_splits
from trainers.engine import build_engine
from trainers.model import token_losses
from trainers.noise_probe import probe_norms
from trainers.noise_scale import NoiseScaleEMA
from trainers.record import StopRequest, TrainResult
from trainers.runtime import Runtime, peak_flops_per_device, setup_runtime
from trainers.shapes import six_n_flops, train_flops


DIVERGED_FACTOR = 2.0
"""A validation loss above this multiple of ln(vocab_size) ends the run as ``diverged``."""


def divergence(val_loss: float, vocab_size: int) -> str | None:
    """Why a validation loss (nats/token) means the run has diverged, or None. Non-finite, or
    above `DIVERGED_FACTOR` x ln(vocab_size): a model that predicts uniformly scores ln(vocab_size)
    and a freshly initialised one about that, so a loss twice as high is a run that blew up
    (an lr of 30 reached 1688 nats on a 256-token vocabulary and was once recorded
    ``completed``). It is not the result of its configuration and must not reach a fit."""
    if not math.isfinite(val_loss):
        return f"validation loss is {val_loss}"
    limit = DIVERGED_FACTOR * math.log(vocab_size)
    if val_loss > limit:
        return f"validation loss {val_loss:.4g} is above {DIVERGED_FACTOR:g} x ln(vocab {vocab_size}) = {limit:.4g}"
    return None


@dataclass
class EvalEvent:
    """What `on_eval` receives after each evaluation (on every rank)."""

    row: dict  # the curve row just written
    checkpoint_dir: str | None  # the checkpoint saved at this step, if any
    rank: int
    final: bool
    total_steps: int = 0  # the run's planned optimizer steps (its schedule's length)


@dataclass
class _Progress:
    """Loop state that must survive a checkpoint/resume."""

    step: int = 0
    tokens_seen: int = 0
    train_seconds: float = 0.0
    best_val_loss: float = math.inf
    best_step: int | None = None
    evals_since_best: int = 0
    noise: NoiseScaleEMA = field(default_factory=NoiseScaleEMA)  # grad_noise_scale's EMAs


@dataclass
class _Attempt:
    """What the step loop measured in this attempt (a resumed run's earlier attempts excluded)."""

    status: str = "completed"
    stop: StopRequest | None = None  # why an early_stopped attempt stopped
    tokens: int = 0
    seconds: float = 0.0
    curve: list[dict] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    error: str | None = None  # why a diverged attempt diverged

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


@dataclass
class _Run:
    """Everything the step loop reads: built once by `train` before the first step."""

    config: TrainConfig
    output: RunOutput
    rt: Runtime
    engine: object
    sampler: SequenceSampler
    geometry: BatchGeometry
    val_windows: np.ndarray
    extra_windows: dict[str, np.ndarray]
    identity: dict
    started: float  # time.time() at the start of the attempt
    peak_flops: float  # per device, FLOP/s

    def mfu(self, tokens_per_s: float) -> float:
        return tokens_per_s * train_flops(self.config.shape, 1) / (self.peak_flops * self.rt.world_size)


def train(config: TrainConfig, output: RunOutput = RunOutput(),
          on_eval: Callable[[EvalEvent], StopRequest | None] | None = None) -> TrainResult:
    """Train one run (engine: trainers/engine.py), write its curve and runs rows, return its record.
    `on_eval` hears every evaluation on every rank; rank 0's `StopRequest` (if it returns one)
    ends the run there, on every rank, as ``early_stopped`` with the request's reason."""
    started = time.time()
    if output.resume_from:
        checkpoint.latest_tag(output.resume_from)  # a missing checkpoint fails before any work
    rt = setup_runtime(config.precision, config.threads)
    torch.manual_seed(config.seed)
    shape = config.shape
    splits, extra, fingerprint = _load_data(config)
    sampler = SequenceSampler(splits.train, shape.n_ctx, seed=config.seed)
    geometry = batch_geometry(config, rt.world_size, len(splits.train) // (shape.n_ctx + 1))
    val_windows = eval_batches(splits.val, shape.n_ctx, max_tokens=config.eval_tokens)
    extra_windows = {name: eval_batches(tokens, shape.n_ctx, max_tokens=config.eval_tokens) for name, tokens in extra.items()}
    identity = checkpoint.run_identity(config, geometry, rt.world_size, rt.dtype, fingerprint)
    resume_tag = checkpoint.check_resumable(output.resume_from, identity) if output.resume_from else None

    engine = build_engine(config, geometry, rt)
    progress = _Progress()
    if resume_tag:
        _restore(engine, output.resume_from, resume_tag, sampler, progress)
    run = _Run(config, output, rt, engine, sampler, geometry, val_windows, extra_windows, identity, started,
               config.peak_flops or peak_flops_per_device(rt.device, rt.dtype, rt.threads))
    writer = _open_writer(output, rt)
    attempt = _step_loop(run, progress, writer, on_eval)
    result = _record(run, progress, attempt)
    if writer:
        writer.write_run(result.run_row)
    return result


def _step_loop(run: _Run, progress: _Progress, writer, on_eval) -> _Attempt:
    """Train until the schedule ends, the budget or early stopping stops it, or the loss
    diverges; evaluate, write curve rows and checkpoint on the way."""
    config, output, geometry = run.config, run.output, run.geometry
    flops_per_token = train_flops(config.shape, 1)
    attempt = _Attempt()
    train_losses: list[float] = []  # since the last evaluation
    last_save = time.monotonic()
    while progress.step < geometry.total_steps:
        if config.budget_flops is not None and (progress.tokens_seen + geometry.tokens_per_step) * flops_per_token > config.budget_flops:
            attempt.status = "budget_stopped"
            break
        step_start = time.perf_counter()
        batch = run.sampler.next_global_batch(geometry.seqs_per_step)
        if config.noise_scale_every and progress.step % config.noise_scale_every == 0:
            # Before the update, on the step's own batch; timed as part of the step (its cost).
            norms = probe_norms(run.engine, batch, geometry, run.rt)
            if norms:
                progress.noise.update(norms.b_small, norms.sq_small, norms.b_big, norms.sq_big)
        loss = train_step(run.engine, batch, geometry, run.rt)
        elapsed = time.perf_counter() - step_start
        progress.step += 1
        progress.tokens_seen += geometry.tokens_per_step
        progress.train_seconds += elapsed
        attempt.tokens += geometry.tokens_per_step
        attempt.seconds += elapsed
        attempt.step_losses.append(loss)
        if not math.isfinite(loss):
            attempt.status, attempt.error = "diverged", f"training loss is {loss} at step {progress.step}"
            break
        train_losses.append(loss)
        last = progress.step == geometry.total_steps
        if progress.step % config.eval_every == 0 or last:
            row = _curve_row(run, progress, train_losses, attempt.tokens_per_s)
            train_losses = []
            attempt.curve.append(row)
            if writer:
                writer.append_curves([row])
            # a diverged evaluation never becomes the run's best loss (the live table showed 4.99e6)
            if (why := divergence(row["val_loss"], config.shape.vocab_size)) is not None:
                attempt.status, attempt.error, stop = "diverged", f"{why} at step {progress.step}", True
            elif stop := _update_early_stopping(config, progress, row["val_loss"]):
                attempt.status, attempt.stop = "early_stopped", StopRequest("patience")
            ckpt = None
            if output.checkpoint_dir and (stop or last or _checkpoint_due(config, output, progress.step, last_save)):
                ckpt = checkpoint.save(run.engine, output.checkpoint_dir, progress.step,
                                       _client_state(run.sampler, progress), run.identity, run.rt.rank,
                                       run.rt.world_size)
                last_save = time.monotonic()
            if on_eval:
                request = on_eval(EvalEvent(row=row, checkpoint_dir=ckpt, rank=run.rt.rank, final=stop or last,
                                            total_steps=geometry.total_steps))
                if not (stop or last) and _agreed_stop(request, run.rt):
                    # after this evaluation's report and checkpoint: the run has ended, so a retry
                    # reads its runs row (written once, by rank 0, after the loop) and trains no more
                    attempt.status, attempt.stop, stop = "early_stopped", request, True
            if stop:
                break
    return attempt


def _agreed_stop(request: StopRequest | None, rt: Runtime) -> bool:
    """Rank 0's stop decision, for every rank (one broadcast per evaluation when data parallel):
    ranks must leave the loop at the same step, or the collectives of the next step would hang."""
    flag = request is not None
    if rt.world_size > 1:
        decided = torch.tensor([1.0 if flag else 0.0], device=rt.device)
        dist.broadcast(decided, src=0)
        flag = bool(decided.item())
    return flag


def _record(run: _Run, progress: _Progress, attempt: _Attempt) -> TrainResult:
    """The end-of-run record (trainers/record.py), with its runs row."""
    shape = run.config.shape
    result = TrainResult(
        status=attempt.status,
        steps=progress.step,
        tokens_seen=progress.tokens_seen,
        flops=train_flops(shape, progress.tokens_seen),
        flops_6n=six_n_flops(shape, progress.tokens_seen),
        best_val_loss=progress.best_val_loss if progress.best_step is not None else None,
        best_step=progress.best_step,
        final_val_loss=attempt.curve[-1]["val_loss"] if attempt.curve else None,
        wall_s=time.time() - run.started,
        tokens_per_s=attempt.tokens_per_s,
        mfu=run.mfu(attempt.tokens_per_s),
        curve=attempt.curve,
        step_losses=attempt.step_losses,
        loss_per_position=attempt.curve[-1]["loss_per_position"] if attempt.curve else None,
        geometry=run.geometry,
        stop=attempt.stop,
        error=attempt.error,
    )
    result.run_row = result.run_row_for(run.config, run.output, run.rt.world_size)
    return result


def _load_data(config: TrainConfig) -> tuple[DataSplits, dict[str, np.ndarray], str]:
    """Training/validation splits, extra evaluation tokens, and the corpus fingerprint."""
    corpus = load_corpus(config.corpus)
    if corpus.vocab_size != config.shape.vocab_size:
        raise ValueError(
            f"shape.vocab_size: {config.shape.vocab_size} does not match the tokenizer's "
            f"vocabulary of {corpus.vocab_size} ({config.corpus.tokenizer})"
        )
    splits = make_splits(corpus, config.dataset_tokens, val_tokens=config.val_tokens, n_ctx=config.shape.n_ctx)
    extra = {}
    for name, spec in config.extra_evals.items():
        tokens = load_corpus(spec).tokens[: config.val_tokens]
        if len(tokens) < config.shape.n_ctx + 1:
            raise ValueError(f"extra_evals.{name}: corpus has {len(tokens)} tokens, fewer than n_ctx + 1")
        extra[name] = tokens
    return splits, extra, corpus.fingerprint


def train_step(engine, batch: np.ndarray, geometry: BatchGeometry, rt: Runtime) -> float:
    """One optimizer step over the global batch; returns the mean loss over all ranks."""
    per_rank = geometry.micro_batch_size * geometry.grad_accum_steps
    local = torch.from_numpy(batch[rt.rank * per_rank : (rt.rank + 1) * per_rank]).to(engine.device)
    loss_sum = torch.zeros((), device=engine.device, dtype=torch.float32)
    for micro in local.split(geometry.micro_batch_size):
        _, loss = engine(micro[:, :-1], micro[:, 1:])
        engine.backward(loss)
        engine.step()  # DeepSpeed steps the optimizer only at the accumulation boundary
        loss_sum += loss.detach().float()
    if rt.world_size > 1:
        dist.all_reduce(loss_sum)
    return loss_sum.item() / (geometry.grad_accum_steps * rt.world_size)


@torch.no_grad()
def evaluate(engine, windows: np.ndarray, micro_batch_size: int, rt: Runtime) -> tuple[float, list[float]]:
    """Mean next-token loss over fixed windows, and the mean loss at each of the n_ctx context
    positions over the same windows (Kaplan fig. 20; its mean is the first number up to float
    rounding), sharded evenly over ranks.

    Every rank runs the same number of forward passes (ZeRO-3 gathers parameters inside
    forward, so ranks must stay in lock-step); leftover windows beyond an even split are
    dropped, identically for every evaluation.
    """
    per_rank = len(windows) // rt.world_size
    if per_rank == 0:
        raise ValueError(f"val_tokens: {len(windows)} validation windows cannot be split over {rt.world_size} ranks")
    mine = torch.from_numpy(windows[rt.rank * per_rank : (rt.rank + 1) * per_rank]).to(engine.device)
    engine.eval()
    position_sums = torch.zeros(windows.shape[1] - 1, device=engine.device, dtype=torch.float64)
    for micro in mine.split(micro_batch_size):
        logits, _ = engine(micro[:, :-1])
        position_sums += token_losses(logits, micro[:, 1:]).double().sum(dim=0)
    engine.train()
    if rt.world_size > 1:
        dist.all_reduce(position_sums)
    per_position = position_sums / (per_rank * rt.world_size)
    return per_position.mean().item(), per_position.tolist()


def _curve_row(run: _Run, progress: _Progress, train_losses: list[float], tokens_per_s: float) -> dict:
    """The curves-table row (docs/architecture.md §3) of this evaluation; evaluates the model."""
    engine, micro, rt, output = run.engine, run.geometry.micro_batch_size, run.rt, run.output
    val_loss, per_position = evaluate(engine, run.val_windows, micro, rt)
    row = {
        "sweep": output.sweep,
        "trial_id": output.trial_id,
        "attempt": output.attempt,
        "step": progress.step,
        "tokens_seen": progress.tokens_seen,
        "flops": train_flops(run.config.shape, progress.tokens_seen),
        "train_loss": float(np.mean(train_losses)) if train_losses else float("nan"),
        "val_loss": val_loss,
        "loss_per_position": per_position,
        "lr": engine.get_lr()[0],
        "grad_noise_scale": progress.noise.value,
        "tokens_per_s": tokens_per_s,
        "mfu": run.mfu(tokens_per_s),
        "wall_s": time.time() - run.started,
        "timestamp": time.time(),
    }
    for name, windows in run.extra_windows.items():
        row[f"val_loss_{name}"], _ = evaluate(engine, windows, micro, rt)
    return row


def _update_early_stopping(config: TrainConfig, progress: _Progress, val_loss: float) -> bool:
    """Track the best validation loss; in the dataset regime, stop after `patience` evals
    without an improvement larger than `min_delta`."""
    if val_loss < progress.best_val_loss - config.min_delta:
        progress.best_val_loss, progress.best_step, progress.evals_since_best = val_loss, progress.step, 0
        return False
    if progress.best_step is None and math.isfinite(val_loss):
        progress.best_val_loss, progress.best_step = val_loss, progress.step
    progress.evals_since_best += 1
    return config.regime == "dataset" and progress.evals_since_best >= config.patience


def _checkpoint_due(config: TrainConfig, output: RunOutput, step: int, last_save: float) -> bool:
    if output.checkpoint_every is not None and step % output.checkpoint_every:
        return False
    return time.monotonic() - last_save >= config.checkpoint_interval_s


def _client_state(sampler: SequenceSampler, progress: _Progress) -> dict:
    """Loop state DeepSpeed saves beside the engine: data position, progress and RNG."""
    loop = {**vars(progress), "noise": progress.noise.state_dict()}  # plain data, no pickled classes
    return {"sampler": sampler.state_dict(), "progress": loop, "torch_rng": torch.get_rng_state()}


def _restore(engine, checkpoint_dir: str, tag: str, sampler: SequenceSampler, progress: _Progress) -> None:
    client_state = checkpoint.load(engine, checkpoint_dir, tag)
    sampler.load_state_dict(client_state["sampler"])
    for key, value in client_state["progress"].items():
        if key == "noise":
            progress.noise.load_state_dict(value)
        else:
            setattr(progress, key, value)
    torch.set_rng_state(client_state["torch_rng"])


def _open_writer(output: RunOutput, rt: Runtime):
    if not output.storage or rt.rank != 0:
        return None
    from metrics import TrialWriter

    return TrialWriter(output.storage, output.sweep, output.trial_id, output.attempt)
