"""Engine construction: the model, AdamW, the LR schedule and DeepSpeed's config, in one place.

Kept apart from the step loop (trainers/deepspeed_trainer.py) as torchtitan keeps parallelism
apart from the model and the loop: how a run is distributed (ZeRO stage, micro-batches,
accumulation, precision) is decided here and nowhere else.
"""

from __future__ import annotations

import torch

from trainers.config import BatchGeometry, TrainConfig, lr_multiplier
from trainers.lstm import LSTM
from trainers.model import GPT
from trainers.runtime import Runtime
from trainers.shapes import ModelShape


def build_model(shape: ModelShape) -> torch.nn.Module:
    """The torch module of the shape's family: `trainers.model.GPT` or `trainers.lstm.LSTM`."""
    return LSTM(shape) if shape.family == "lstm" else GPT(shape)


def deepspeed_config(config: TrainConfig, geometry: BatchGeometry, rt: Runtime) -> dict:
    """The DeepSpeed config dict for this run's batch split, ZeRO stage and precision."""
    return {
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


def build_engine(config: TrainConfig, geometry: BatchGeometry, rt: Runtime):
    """A DeepSpeed engine around a fresh model (`build_model`) with AdamW and warmup + cosine LR
    (`lr_multiplier`)."""
    import deepspeed

    model = build_model(config.shape)
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
    ds_config = deepspeed_config(config, geometry, rt)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
    _undo_priming_step(engine)
    return engine


def _undo_priming_step(engine) -> None:
    """Start bf16 without ZeRO from a fresh AdamW, as fp32 and ZeRO 1-3 runs start.

    With bf16 and ZeRO stage 0, DeepSpeed (0.19) wraps the optimizer in FP16_UnfusedOptimizer,
    whose constructor primes it with one step on zero gradients: AdamW then counts that step,
    so every early update is mis-corrected for bias (the first is 0.735 x lr instead of lr),
    and weight decay has shrunk the fp32 master weights once. Clearing the optimizer state and
    re-copying the masters from the module's untouched bf16 weights undoes both (the masters
    were exact fp32 copies of them). Found by bench/gpu_check.py's ZeRO-agreement check.
    """
    try:
        from deepspeed.runtime.fp16.unfused_optimizer import FP16_UnfusedOptimizer
    except ImportError:  # a DeepSpeed without this wrapper cannot have wrapped us in it
        return
    wrapper = engine.optimizer
    if not isinstance(wrapper, FP16_UnfusedOptimizer):
        return
    wrapper.optimizer.state.clear()
    with torch.no_grad():
        for masters, weights in zip(wrapper.fp32_groups, wrapper.fp16_groups):
            for master, weight in zip(masters, weights):
                master.copy_(weight)
                master.grad = None
