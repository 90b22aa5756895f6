"""Process-level set-up for a training run: distributed init, threads, device, peak FLOP/s.

Kept apart from the train loop because these are facts about the machine, not the model.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from metrics.fs import write_atomically

# Dense bf16 tensor-core peaks per device (vendor data sheets, without sparsity).
GPU_BF16_PEAK_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,  # SXM; the PCIe part is 756e12 and is matched first below
    "H100 PCIe": 756e12,
    "A100": 312e12,
    "A10G": 125e12,
    "L4": 121e12,
    "L40S": 362e12,
    "V100": 125e12,  # fp16 tensor cores; no bf16
}


@dataclass(frozen=True)
class Runtime:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    dtype: torch.dtype  # compute dtype for the model
    threads: int


def setup_runtime(precision: str, threads: int | None) -> Runtime:
    """Initialise torch.distributed (gloo on CPU, nccl on GPU) for this process.

    Works standalone (world of one, a free loopback port), under torchrun / the deepspeed
    launcher (env:// variables already set), and inside a Ray Train worker (process group
    already initialised by Ray).
    """
    import torch.distributed as dist

    use_cuda = torch.cuda.is_available()
    _skip_shm_comm_build()
    import deepspeed

    backend = "nccl" if use_cuda else "gloo"
    if dist.is_initialized() or "WORLD_SIZE" in os.environ:
        # torchrun / deepspeed launcher (env://) or a Ray Train worker (group already up).
        deepspeed.init_distributed(dist_backend=backend, verbose=False)
    else:
        # Standalone: a world of one over an in-process store, without touching os.environ (a
        # child inheriting MASTER_PORT would collide with us) and without a TCP store, which
        # listens on every interface whatever host its URL names (tests/test_cluster_path.py
        # lists a local sweep's sockets). DeepSpeed's engine insists on LOCAL_RANK, which is
        # harmless for children to inherit.
        os.environ.setdefault("LOCAL_RANK", "0")
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, verbose=False)
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if threads is None:
        threads = max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1) // local_world)
    # One thread per allotted core: oversubscribed intra-op threads made small steps 3-10x
    # slower on 2-core machines (docs/architecture.md §7).
    torch.set_num_threads(threads)
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dtype = resolve_dtype(precision, device)
    return Runtime(rank, local_rank, world, device, dtype, threads)


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]


def _skip_shm_comm_build() -> None:
    """Keep DeepSpeed from JIT-compiling its CPU shared-memory allreduce op (60-100 s).

    `deepspeed.comm.torch.build_shm_op` only builds the op when
    `deepspeed.ops.__compatible_ops__` marks it compatible; DeepSpeed keeps that dict as a
    module-level cache so edits persist. We mark it incompatible unless the op was prebuilt
    at install time (`DS_BUILD_SHM_COMM=1`) or the user opts in with SCALESWEEP_DS_SHM=1;
    collectives then go through gloo, which for the gradient sizes of scaling sweeps on CPU
    is what bounds nothing anyway. GPUs use NCCL and never touch this op.
    """
    if torch.cuda.is_available() or os.environ.get("SCALESWEEP_DS_SHM") == "1":
        return
    import deepspeed.ops
    from deepspeed.git_version_info import installed_ops

    if not installed_ops.get("deepspeed_shm_comm", False):
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def peak_flops_per_device(device: torch.device, dtype: torch.dtype, threads: int) -> float:
    """Peak FLOP/s that MFU is measured against.

    GPU: the data-sheet bf16 peak (fp32 runs are still compared to it: that is what the
    hardware could do). CPU: a large fp32 matmul measured once per (host, threads) and
    cached, since there is no trustworthy data sheet for a virtualised core.
    """
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key in sorted(GPU_BF16_PEAK_FLOPS, key=len, reverse=True):
            if key in name:
                return GPU_BF16_PEAK_FLOPS[key]
        return measure_matmul_flops(device, torch.bfloat16)
    cache = _cache_dir() / "peak_flops.json"
    key = f"{socket.gethostname()}:{torch.__version__}:cpu:threads={threads}"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if key not in known:
        known[key] = measure_matmul_flops(device, torch.float32)
        write_atomically(cache, lambda out: out.write(json.dumps(known, indent=1).encode()))
    return known[key]


def measure_matmul_flops(device: torch.device, dtype: torch.dtype, size: int = 1024, seconds: float = 0.5) -> float:
    """Best-of FLOP/s of a square matmul: the attainable peak for dense layers here."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = max(best, 4 * 2 * size**3 / (time.perf_counter() - start))
    return best


def _cache_dir() -> Path:
    return Path(os.environ.get("SCALESWEEP_CACHE", Path.home() / ".cache" / "scalesweep"))
