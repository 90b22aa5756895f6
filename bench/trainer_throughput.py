"""Trainer throughput: the DeepSpeed engine's training step vs a minimal plain-PyTorch AdamW
loop on the same model, batch and threads, measured alternately in one run; MFU against the
measured fp32 matmul peak. Prints the ratio, then the gradient-noise-scale probe's cost
(trainers/noise_probe.py) as a % of step time at the default `noise_scale_every`, last.

    .venv/bin/python bench/trainer_throughput.py [--d-model 256 --n-layer 2 --n-ctx 128 --rounds 5]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("DS_ACCELERATOR", "cpu")

import numpy as np
import torch

from trainers.config import TrainConfig, batch_geometry
from trainers.deepspeed_trainer import train_step
from trainers.noise_probe import probe_norms
from trainers.engine import build_engine
from trainers.model import GPT
from trainers.runtime import measure_matmul_flops, setup_runtime
from trainers.shapes import ModelShape, non_embedding_params, train_flops


def plain_step(model, optimizer, batch: torch.Tensor, grad_clip: float, autocast: torch.dtype | None = None) -> float:
    """One plain-PyTorch AdamW step; `autocast`: run forward/backward under that autocast dtype."""
    with torch.autocast(batch.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        _, loss = model(batch[:, :-1], batch[:, 1:])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--n-layer", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=128)
    parser.add_argument("--batch-seqs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per contender")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--zero-stage", type=int, default=0)
    args = parser.parse_args()

    shape = ModelShape(n_layer=args.n_layer, d_model=args.d_model, n_heads=max(1, args.d_model // 64),
                       d_ff=4 * args.d_model, n_ctx=args.n_ctx, vocab_size=256)
    batch_tokens = args.batch_seqs * args.n_ctx
    config = TrainConfig(shape=shape, dataset_tokens=10**7, batch_tokens=batch_tokens, lr=1e-3,
                         threads=args.threads, zero_stage=args.zero_stage, warmup_frac=0.0)
    rt = setup_runtime(config.precision, config.threads)
    geometry = batch_geometry(config, rt.world_size, train_windows=10**6)
    peak = measure_matmul_flops(rt.device, torch.float32)

    torch.manual_seed(0)
    engine = build_engine(config, geometry, rt)
    torch.manual_seed(0)
    model = GPT(shape)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, size=(args.batch_seqs, args.n_ctx + 1)) for _ in range(args.steps)]
    torch_batches = [torch.from_numpy(b) for b in batches]

    def run_deepspeed() -> float:
        start = time.perf_counter()
        for b in batches:
            train_step(engine, b, geometry, rt)
        return time.perf_counter() - start

    def run_plain() -> float:
        start = time.perf_counter()
        for b in torch_batches:
            plain_step(model, optimizer, b, config.grad_clip)
        return time.perf_counter() - start

    def run_probe() -> float:
        start = time.perf_counter()
        for b in batches:
            probe_norms(engine, b, geometry, rt)
        return time.perf_counter() - start

    run_deepspeed(), run_plain(), run_probe()  # warm-up: allocator, first-step optimizer state
    times = {"deepspeed": [], "plain": []}
    probe_times = []
    for _ in range(args.rounds):  # alternate so drift in machine load hits all equally
        times["deepspeed"].append(run_deepspeed())
        times["plain"].append(run_plain())
        probe_times.append(run_probe())

    tokens = args.steps * batch_tokens
    flops_per_token = train_flops(shape, 1)
    print(f"model: N={non_embedding_params(shape):,} n_layer={shape.n_layer} d_model={shape.d_model} "
          f"n_ctx={shape.n_ctx}; batch {batch_tokens} tokens; threads {rt.threads}; ZeRO {args.zero_stage}")
    print(f"measured fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s")
    rates = {}
    for name, block_times in times.items():
        best = min(block_times)  # least-disturbed block: the attainable rate
        median = float(np.median(block_times))
        rates[name] = tokens / median
        print(f"{name:10s} tokens/s median {tokens / median:10,.0f}  best {tokens / best:10,.0f}  "
              f"MFU median {100 * tokens / median * flops_per_token / peak:5.1f}%")
    print(f"ratio deepspeed/plain tokens/s (median blocks): {rates['deepspeed'] / rates['plain']:.3f}")
    step, probe = np.median(times["deepspeed"]) / args.steps, np.median(probe_times) / args.steps
    every = config.noise_scale_every
    print(f"noise-scale probe: {1e3 * probe:.1f} ms per probe vs {1e3 * step:.1f} ms per step "
          f"({probe / step:.2f} steps); overhead at noise_scale_every={every}: {100 * probe / (every * step):.1f}% of step time")


if __name__ == "__main__":
    main()
