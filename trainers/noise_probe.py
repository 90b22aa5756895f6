"""The gradient-norm probe behind the `grad_noise_scale` curve column (estimator: trainers/noise_scale.py).

Every `noise_scale_every` steps, before that step's update and on that step's batch, each rank
splits its share of the batch into two halves and computes each half's gradient with
`torch.autograd.grad` on the engine's module. Then:

- small batch: one half on one rank, B_small = half × n_ctx tokens; |G_small|² is the mean of
  the 2·world_size half-gradient squared norms (an average of unbiased terms is unbiased);
- big batch: the whole global batch, B_big = seqs_per_step × n_ctx tokens; G_big is the mean
  of the halves, averaged over ranks with one all-reduce.

Why a probe rather than the engine's own gradients: DeepSpeed hides them differently at each
stage (ZeRO 0/1 all-reduce them in the accumulation-boundary backward, ZeRO 2 reduce-scatters
them bucket by bucket during backward, ZeRO 3 keeps only this rank's partition), so the
per-micro-batch or per-rank gradient is not there to read at stages 2 and 3 or without
accumulation. `autograd.grad` returns gradients without running the parameters'
AccumulateGrad nodes, so DeepSpeed's post-accumulate-grad hooks (its ZeRO 1-3 reduction) never
fire and `.grad` and the optimizer are untouched: training is bit-identical with or without
the probe (tests/test_noise_scale.py). Calling the module (not the engine) skips the engine's
backward-prologue hooks; under ZeRO 3 the module's own hooks still gather each layer's
parameters in forward and backward, so the gradients are whole on every rank.

The gradients are the loss's, unscaled by 1/grad_accum_steps and before clipping (clipping
would cap |G_big| and bias both estimates). Cost: one extra forward+backward of the batch
(no optimizer step) per probe, plus one all-reduce of N fp32 values with >1 rank; memory: two
fp32 copies of the full gradient while the probe runs, also under ZeRO 3. Measured in
bench/trainer_throughput.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from trainers.config import BatchGeometry
from trainers.runtime import Runtime


@dataclass(frozen=True)
class NormPair:
    """Squared gradient norms at two batch sizes (tokens), as `NoiseScaleEMA.update` takes them."""

    b_small: int
    sq_small: float
    b_big: int
    sq_big: float


def probe_norms(engine, batch: np.ndarray, geometry: BatchGeometry, rt: Runtime) -> NormPair | None:
    """Measure |G_small|² and |G_big|² on this step's global batch [seqs, n_ctx + 1] (see the
    module docstring). Every rank must call it (collectives). None when no two batch sizes
    exist: one sequence per step on one process."""
    per_rank = geometry.micro_batch_size * geometry.grad_accum_steps
    halves = 2 if per_rank >= 2 else 1
    if halves * rt.world_size < 2:
        return None
    half = per_rank // halves
    n_ctx = batch.shape[1] - 1
    local = torch.from_numpy(batch[rt.rank * per_rank : (rt.rank + 1) * per_rank]).to(engine.device)
    params = [p for p in engine.module.parameters() if p.requires_grad]
    mean_grad, sq_small = None, torch.zeros((), dtype=torch.float64, device=engine.device)
    for part in local[: half * halves].split(half):
        grad = _flat_grad(engine.module, params, part, geometry.micro_batch_size)
        sq_small += grad.double().square().sum()
        mean_grad = grad if mean_grad is None else mean_grad.add_(grad)
    mean_grad /= halves
    if rt.world_size > 1:
        dist.all_reduce(mean_grad)
        mean_grad /= rt.world_size
        dist.all_reduce(sq_small)
    return NormPair(b_small=half * n_ctx, sq_small=sq_small.item() / (halves * rt.world_size),
                    b_big=half * halves * rt.world_size * n_ctx, sq_big=mean_grad.double().square().sum().item())


def _flat_grad(module, params: list[torch.Tensor], seqs: torch.Tensor, micro: int) -> torch.Tensor:
    """The gradient of the mean loss over `seqs` as one flat fp32 vector, computed `micro`
    sequences at a time (the training step's activation memory, never more)."""
    flat = None
    for chunk in seqs.split(micro):
        _, loss = module(chunk[:, :-1], chunk[:, 1:])
        grads = torch.autograd.grad(loss * (len(chunk) / len(seqs)), params)
        piece = torch.cat([g.reshape(-1).float() for g in grads])
        flat = piece if flat is None else flat.add_(piece)
    return flat
