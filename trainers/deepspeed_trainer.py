"""One training run = one DeepSpeed engine.

`train(config, output)` trains a GPT on D tokens, evaluates every `eval_every` steps, writes
curve rows and a final run row to the metrics store (docs/architecture.md §3), checkpoints so a retried
attempt continues exactly, and returns a `TrainResult`. It runs standalone, under torchrun,
or inside a Ray Tune / Ray Train worker; it knows nothing of Ray (the caller passes
`on_eval` to hear about evaluations and checkpoints).
"""

from __future__ import annotations

import math
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from trainers import checkpoint
from trainers.config import BatchGeometry, RunOutput, TrainConfig, batch_geometry, lr_multiplier
from trainers.data import DataSplits, SequenceSampler, eval_batches, load_corpus, make_splits
from trainers.model import GPT
from trainers.runtime import Runtime, peak_flops_per_device, setup_runtime
from trainers.shapes import embedding_params, non_embedding_params, six_n_flops, train_flops


@dataclass
class EvalEvent:
    """What `on_eval` receives after each evaluation (on every rank)."""

    row: dict  # the curve row just written
    checkpoint_dir: str | None  # the checkpoint saved at this step, if any
    rank: int
    final: bool


@dataclass
class TrainResult:
    status: str  # one of metrics.RUN_STATUSES
    steps: int
    tokens_seen: int
    flops: int  # exact training FLOPs spent: 3 x (2N + 2 n_layer n_ctx d_attn) per token
    flops_6n: int  # the 6 N tokens approximation, for comparison
    best_val_loss: float | None
    best_step: int | None
    final_val_loss: float | None
    wall_s: float
    tokens_per_s: float
    mfu: float
    curve: list[dict] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)  # train loss of every step of this attempt
    loss_per_position: list[float] | None = None
    run_row: dict | None = None
    geometry: BatchGeometry | None = None  # how the batch was split (None: not known)


@dataclass
class _Progress:
    """Loop state that must survive a checkpoint/resume."""

    step: int = 0
    tokens_seen: int = 0
    train_seconds: float = 0.0
    best_val_loss: float = math.inf
    best_step: int | None = None
    evals_since_best: int = 0


def train(config: TrainConfig, output: RunOutput = RunOutput(), on_eval: Callable[[EvalEvent], None] | None = None) -> TrainResult:
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

    writer = _open_writer(output, rt)
    flops_per_token = train_flops(shape, 1)
    peak = config.peak_flops or peak_flops_per_device(rt.device, rt.dtype, rt.threads)
    attempt_tokens, attempt_seconds = 0, 0.0  # throughput of this attempt only
    curve: list[dict] = []
    step_losses: list[float] = []
    train_losses: list[float] = []  # since the last evaluation
    status = "completed"
    last_save = time.monotonic()

    while progress.step < geometry.total_steps:
        if config.budget_flops is not None and (progress.tokens_seen + geometry.tokens_per_step) * flops_per_token > config.budget_flops:
            status = "budget_stopped"
            break
        step_start = time.perf_counter()
        batch = sampler.next_global_batch(geometry.seqs_per_step)
        loss = train_step(engine, batch, geometry, rt)
        elapsed = time.perf_counter() - step_start
        progress.step += 1
        progress.tokens_seen += geometry.tokens_per_step
        progress.train_seconds += elapsed
        attempt_tokens += geometry.tokens_per_step
        attempt_seconds += elapsed
        step_losses.append(loss)
        if not math.isfinite(loss):
            status = "diverged"
            break
        train_losses.append(loss)
        last = progress.step == geometry.total_steps
        if progress.step % config.eval_every == 0 or last:
            tokens_per_s = attempt_tokens / max(attempt_seconds, 1e-9)
            row = _curve_row(config, output, engine, progress, train_losses, val_windows, extra_windows, geometry, rt,
                             tokens_per_s=tokens_per_s, mfu=tokens_per_s * flops_per_token / (peak * rt.world_size),
                             wall_s=time.time() - started)
            train_losses = []
            curve.append(row)
            if writer:
                writer.append_curves([row])
            stop = _update_early_stopping(config, progress, row["val_loss"])
            if not math.isfinite(row["val_loss"]):
                status, stop = "diverged", True
            elif stop:
                status = "early_stopped"
            ckpt = None
            if output.checkpoint_dir and (stop or last or _checkpoint_due(config, output, progress.step, last_save)):
                ckpt = checkpoint.save(engine, output.checkpoint_dir, progress.step, _client_state(sampler, progress),
                                       identity, rt.rank, rt.world_size)
                last_save = time.monotonic()
            if on_eval:
                on_eval(EvalEvent(row=row, checkpoint_dir=ckpt, rank=rt.rank, final=stop or last))
            if stop:
                break

    positions = _loss_per_position(engine, val_windows, rt) if status != "diverged" else None
    tokens_per_s = attempt_tokens / max(attempt_seconds, 1e-9)
    result = TrainResult(
        status=status,
        steps=progress.step,
        tokens_seen=progress.tokens_seen,
        flops=train_flops(shape, progress.tokens_seen),
        flops_6n=six_n_flops(shape, progress.tokens_seen),
        best_val_loss=progress.best_val_loss if progress.best_step is not None else None,
        best_step=progress.best_step,
        final_val_loss=curve[-1]["val_loss"] if curve else None,
        wall_s=time.time() - started,
        tokens_per_s=tokens_per_s,
        mfu=tokens_per_s * flops_per_token / (peak * rt.world_size),
        curve=curve,
        step_losses=step_losses,
        loss_per_position=positions,
        geometry=geometry,
    )
    result.run_row = run_row(config, output, result, rt.world_size)
    if writer:
        writer.write_run(result.run_row)
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


def build_engine(config: TrainConfig, geometry: BatchGeometry, rt: Runtime):
    import deepspeed

    model = GPT(config.shape)
    # Weight decay on matrices only; biases, LayerNorm gains and embeddings' row norms are
    # not what decay is meant to shrink (the nanoGPT / GPT-2 convention).
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.resolved_lr, betas=(0.9, 0.95), eps=1e-8,
    )
    # A plain torch optimizer: a DeepSpeed `optimizer` section would select FusedAdam, which
    # JIT-compiles for minutes on CPU (docs/architecture.md §7).
    total = geometry.total_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total, config.warmup_frac, config.min_lr_ratio)
    )
    ds_config = {
        "train_batch_size": geometry.seqs_per_step,
        "train_micro_batch_size_per_gpu": geometry.micro_batch_size,
        "gradient_accumulation_steps": geometry.grad_accum_steps,
        "gradient_clipping": config.grad_clip,
        # memory_efficient_linear=False: with it, stage 3 swaps torch.nn.functional.linear
        # process-wide, which changed the numerics of later runs in the same process.
        "zero_optimization": {"stage": config.zero_stage, "memory_efficient_linear": False},
        "bf16": {"enabled": rt.dtype == torch.bfloat16},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
    return engine


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
def evaluate(engine, windows: np.ndarray, micro_batch_size: int, rt: Runtime) -> float:
    """Mean next-token loss over fixed windows, sharded evenly over ranks.

    Every rank runs the same number of forward passes (ZeRO-3 gathers parameters inside
    forward, so ranks must stay in lock-step); leftover windows beyond an even split are
    dropped, identically for every evaluation.
    """
    per_rank = len(windows) // rt.world_size
    if per_rank == 0:
        raise ValueError(f"val_tokens: {len(windows)} validation windows cannot be split over {rt.world_size} ranks")
    mine = torch.from_numpy(windows[rt.rank * per_rank : (rt.rank + 1) * per_rank]).to(engine.device)
    engine.eval()
    total = torch.zeros((), device=engine.device, dtype=torch.float64)
    for micro in mine.split(micro_batch_size):
        _, loss = engine(micro[:, :-1], micro[:, 1:])
        total += loss.double() * len(micro)
    engine.train()
    if rt.world_size > 1:
        dist.all_reduce(total)
    return total.item() / (per_rank * rt.world_size)


def _curve_row(config, output, engine, progress, train_losses, val_windows, extra_windows, geometry, rt, *, tokens_per_s, mfu, wall_s) -> dict:
    micro = geometry.micro_batch_size
    row = {
        "sweep": output.sweep,
        "trial_id": output.trial_id,
        "attempt": output.attempt,
        "step": progress.step,
        "tokens_seen": progress.tokens_seen,
        "flops": train_flops(config.shape, progress.tokens_seen),
        "train_loss": float(np.mean(train_losses)) if train_losses else float("nan"),
        "val_loss": evaluate(engine, val_windows, micro, rt),
        "lr": engine.get_lr()[0],
        "grad_noise_scale": None,
        "tokens_per_s": tokens_per_s,
        "mfu": mfu,
        "wall_s": wall_s,
        "timestamp": time.time(),
    }
    for name, windows in extra_windows.items():
        row[f"val_loss_{name}"] = evaluate(engine, windows, micro, rt)
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


@torch.no_grad()
def _loss_per_position(engine, windows: np.ndarray, rt: Runtime, max_windows: int = 32) -> list[float]:
    """Mean loss at each context position (Kaplan fig. 20), on the first validation windows."""
    batch = torch.from_numpy(windows[:max_windows]).to(engine.device)
    engine.eval()
    per_position = engine.module.loss_per_position(batch[:, :-1], batch[:, 1:])
    engine.train()
    return [float(x) for x in per_position.float().cpu()]


def _checkpoint_due(config: TrainConfig, output: RunOutput, step: int, last_save: float) -> bool:
    if output.checkpoint_every is not None and step % output.checkpoint_every:
        return False
    return time.monotonic() - last_save >= config.checkpoint_interval_s


def _client_state(sampler: SequenceSampler, progress: _Progress) -> dict:
    """Loop state DeepSpeed saves beside the engine: data position, progress and RNG."""
    return {"sampler": sampler.state_dict(), "progress": vars(progress).copy(), "torch_rng": torch.get_rng_state()}


def _restore(engine, checkpoint_dir: str, tag: str, sampler: SequenceSampler, progress: _Progress) -> None:
    client_state = checkpoint.load(engine, checkpoint_dir, tag)
    sampler.load_state_dict(client_state["sampler"])
    for key, value in client_state["progress"].items():
        setattr(progress, key, value)
    torch.set_rng_state(client_state["torch_rng"])


def _open_writer(output: RunOutput, rt: Runtime):
    if not output.storage or rt.rank != 0:
        return None
    from metrics import TrialWriter

    return TrialWriter(output.storage, output.sweep, output.trial_id, output.attempt)


def run_row(config: TrainConfig, output: RunOutput, result: TrainResult, world_size: int) -> dict:
    """The runs-table row (docs/architecture.md §3) for a finished attempt."""
    shape = config.shape
    return {
        "sweep": output.sweep, "trial_id": output.trial_id, "attempt": output.attempt, "status": result.status,
        "n_layer": shape.n_layer, "d_model": shape.d_model, "n_heads": shape.n_heads, "d_ff": shape.d_ff,
        "d_attn": shape.d_attn, "n_ctx": shape.n_ctx, "vocab_size": shape.vocab_size,
        "non_embedding_params": non_embedding_params(shape),
        "total_params": non_embedding_params(shape) + embedding_params(shape),
        "dataset_tokens": config.dataset_tokens, "regime": config.regime, "batch_tokens": config.batch_tokens,
        "micro_batch_size": result.geometry.micro_batch_size if result.geometry else None,
        "grad_accum_steps": result.geometry.grad_accum_steps if result.geometry else None,
        "lr": config.resolved_lr, "seed": config.seed, "zero_stage": config.zero_stage,
        "precision": config.precision, "world_size": world_size,
        "tokens_seen": result.tokens_seen, "steps": result.steps, "flops": result.flops, "flops_6n": result.flops_6n,
        "wall_s": result.wall_s, "final_val_loss": result.final_val_loss, "best_val_loss": result.best_val_loss,
        "best_step": result.best_step, "tokens_per_s": result.tokens_per_s, "mfu": result.mfu,
        "git_sha": _git_sha(), "hostname": socket.gethostname(), "error": None,
    }


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
