"""The checks of bench/gpu_check.py (see its docstring), one function per section.

Each `check_<section>(dry_run)` prints its details and returns (ok, one-line summary). They
import torch and DeepSpeed only when called, after gpu_check.py set DS_ACCELERATOR.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import platform
import shutil
import sys
import tempfile
import time

# Tolerances for "the same loss": bf16 keeps 8 mantissa bits (relative step 2^-8 ~ 0.4%); a
# loss is a mean over thousands of tokens computed in fp32, so runs that differ only in
# reduction order (ZeRO partitioning, nondeterministic attention backward) stay far below
# one bf16 step over a few updates. fp32 runs (CPU dry-run) must agree much more tightly.
REL_TOL = {"bfloat16": 5e-3, "float32": 1e-4}
NOISE_REL_TOL = 0.1  # the noise scale at ZeRO 1-3 vs 0 on the same weights and batch (issue 12: within 10 %)

GPT2_SMALL = dict(n_layer=12, d_model=768, n_heads=12, d_ff=3072, n_ctx=1024, vocab_size=50257)
TINY = dict(n_layer=2, d_model=64, n_heads=4, d_ff=256, n_ctx=64, vocab_size=256)


def _cache_dir() -> str:
    """A private token/peak cache: the GPU machine starts bare and its $HOME may be read-only."""
    path = os.environ.setdefault("SCALESWEEP_CACHE", os.path.join(tempfile.gettempdir(), "scalesweep-gpu-check"))
    os.makedirs(path, exist_ok=True)
    return path


def _agree(a: float, b: float, dtype: str) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= REL_TOL[dtype] * max(abs(a), abs(b), 1.0)


def _free(*objects) -> None:
    del objects
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# env
# ---------------------------------------------------------------------------------------------

def check_env(dry_run: bool) -> tuple[bool, str]:
    import torch

    print(f"python {platform.python_version()}  torch {torch.__version__}  CUDA {torch.version.cuda}  "
          f"cudnn {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        print(f"GPU {props.name}  capability {props.major}.{props.minor}  memory {props.total_memory / 2**30:.0f} GiB  "
              f"count {torch.cuda.device_count()}  bf16 {torch.cuda.is_bf16_supported()}")
    else:
        print(f"no CUDA device (dry-run: {dry_run}); CPU threads {torch.get_num_threads()}")
    print(f"nvcc on PATH: {shutil.which('nvcc')}  DS_ACCELERATOR={os.environ.get('DS_ACCELERATOR')}")
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    print(f"deepspeed {deepspeed.__version__} from {os.path.dirname(deepspeed.__file__)}  "
          f"accelerator {get_accelerator().device_name()}")
    import trainers.deepspeed_trainer  # noqa: F401 -- the whole training import path
    import trainers.model  # noqa: F401

    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("ray", "orchestrator", "scalesweep"))
    print(f"trainer import path pulls: {leaked or 'nothing of ray/orchestrator/scalesweep'}")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return not leaked, f"torch {torch.__version__} CUDA {torch.version.cuda} deepspeed {deepspeed.__version__} on {gpu}"


# ---------------------------------------------------------------------------------------------
# mfu
# ---------------------------------------------------------------------------------------------

def check_mfu(dry_run: bool) -> tuple[bool, str]:
    import numpy as np
    import torch

    from trainer_throughput import plain_step
    from trainers.config import TrainConfig, batch_geometry
    from trainers.data import CorpusSpec
    from trainers.deepspeed_trainer import train_step
    from trainers.engine import build_engine
    from trainers.model import GPT, exact_param_counts
    from trainers.noise_probe import probe_norms
    from trainers.runtime import measure_matmul_flops, peak_flops_per_device, setup_runtime
    from trainers.shapes import ModelShape, non_embedding_params, train_flops

    _cache_dir()
    shape = ModelShape(**(TINY if dry_run else GPT2_SMALL))
    seqs, steps, rounds = (4, 2, 2) if dry_run else (32, 10, 3)
    batch_tokens = seqs * shape.n_ctx
    config = TrainConfig(shape=shape, dataset_tokens=10**9, batch_tokens=batch_tokens, lr=6e-4, warmup_frac=0.0,
                         corpus=CorpusSpec(vocab_size=shape.vocab_size),  # padded byte corpus: only validated
                         precision="bf16" if dry_run else "auto")  # the dry-run takes the GPU's bf16 paths
    rt = setup_runtime(config.precision, config.threads)
    geometry = batch_geometry(config, rt.world_size, train_windows=10**6)
    sheet_peak = peak_flops_per_device(rt.device, rt.dtype, rt.threads)
    on_gpu = rt.device.type == "cuda"
    measured_peak = measure_matmul_flops(rt.device, torch.bfloat16 if on_gpu else torch.float32,
                                         size=8192 if on_gpu else 512, seconds=1.0 if on_gpu else 0.3)
    autocast = rt.dtype if rt.dtype != torch.float32 else None

    torch.manual_seed(0)
    engine = build_engine(config, geometry, rt)
    # ZeRO 1 too: with bf16 it is another DeepSpeed optimizer path (DeepSpeedZeroOptimizer, not
    # FP16_UnfusedOptimizer), which tells which stage a one-GPU run should use.
    torch.manual_seed(0)
    engine_z1 = build_engine(dataclasses.replace(config, zero_stage=1), geometry, rt)
    torch.manual_seed(0)
    model = GPT(shape).to(rt.device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.resolved_lr,
                                  betas=(0.9, 0.95), eps=1e-8)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, shape.vocab_size, size=(seqs, shape.n_ctx + 1)) for _ in range(steps)]
    device_batches = [torch.from_numpy(b).to(rt.device) for b in batches]

    def sync() -> None:
        if rt.device.type == "cuda":
            torch.cuda.synchronize(rt.device)

    def timed(fn, items) -> float:
        sync()
        start = time.perf_counter()
        for b in items:
            fn(b)
        sync()
        return time.perf_counter() - start

    contenders = {
        "deepspeed": lambda: timed(lambda b: train_step(engine, b, geometry, rt), batches),
        "ds-zero1": lambda: timed(lambda b: train_step(engine_z1, b, geometry, rt), batches),
        "plain": lambda: timed(lambda b: plain_step(model, optimizer, b, config.grad_clip, autocast), device_batches),
        # The gradient-noise-scale probe alone (trainers/noise_probe.py), on the engine's weights.
        "probe": lambda: timed(lambda b: probes.append(probe_norms(engine, b, geometry, rt)), batches),
    }
    probes = []
    for run in contenders.values():  # warm-up: cuBLAS heuristics, allocator, optimizer state
        run()
    times = {name: [] for name in contenders}
    for _ in range(rounds):  # alternate so drift (clocks, other load) hits all equally
        for name, run in contenders.items():
            times[name].append(run())

    flops_per_token = train_flops(shape, 1)
    tokens = steps * batch_tokens
    counts = exact_param_counts(model)
    print(f"model: {counts['total'] / 1e6:.1f}M parameters (N non-embedding {non_embedding_params(shape) / 1e6:.1f}M) "
          f"n_layer {shape.n_layer} d_model {shape.d_model} heads {shape.n_heads} n_ctx {shape.n_ctx} "
          f"vocab {shape.vocab_size}; batch {seqs} x {shape.n_ctx} = {batch_tokens} tokens; "
          f"{flops_per_token / 1e9:.3f} GFLOP/token (trainers.shapes.train_flops)")
    print(f"engine: {rt.dtype} params, ZeRO {config.zero_stage} {type(engine.optimizer).__name__} / ZeRO 1 "
          f"{type(engine_z1.optimizer).__name__}, over torch AdamW; plain: fp32 params, "
          f"autocast {autocast}, torch AdamW; {steps} steps per block, {rounds} blocks each")
    head = 6 * shape.d_model * shape.vocab_size  # output-head matmul, fwd + bwd, per token
    print(f"note: train_flops (Kaplan's C) leaves out the output head's {head / 1e9:.3f} GFLOP/token; "
          f"hardware utilisation is {(flops_per_token + head) / flops_per_token:.2f} x the MFU below")
    print(f"peak: trainers.runtime (GPU: data sheet) {sheet_peak / 1e12:.3g} TFLOP/s, measured "
          f"{'bf16' if rt.device.type == 'cuda' else 'fp32'} matmul {measured_peak / 1e12:.3g} TFLOP/s")
    print(f"{'':10s} {'tokens/s':>12s} {'TFLOP/s':>9s} {'MFU sheet':>10s} {'MFU meas':>9s} {'ms/step':>8s}")
    probe_s = float(np.median(times.pop("probe"))) / steps
    step_s = float(np.median(times["deepspeed"])) / steps
    probe_ok = bool(probes) and all(p is not None and math.isfinite(p.sq_small) and math.isfinite(p.sq_big)
                                    and p.sq_small > p.sq_big > 0 for p in probes)
    rates = {}
    for name, block_times in times.items():
        rate = tokens / float(np.median(block_times))
        rates[name] = rate
        achieved = rate * flops_per_token
        print(f"{name:10s} {rate:12,.0f} {achieved / 1e12:9.2f} {100 * achieved / sheet_peak:9.1f}% "
              f"{100 * achieved / measured_peak:8.1f}% {1e3 * batch_tokens / rate:8.1f}")
    ratio = rates["deepspeed"] / rates["plain"]
    print(f"ratio ZeRO 1 engine/plain tokens/s (median blocks): {rates['ds-zero1'] / rates['plain']:.3f}")
    print(f"ratio engine/plain tokens/s (median blocks; engine = ZeRO {config.zero_stage}, the default): {ratio:.3f}")
    every = config.noise_scale_every
    probe_cost = probe_s / (every * step_s)
    print(f"noise-scale probe: {1e3 * probe_s:.1f} ms per call = {probe_s / step_s:.2f} engine steps; at the "
          f"default interval ({every} steps) {100 * probe_cost:.1f} % of step time; |G_small|^2 > |G_big|^2 > 0 "
          f"and finite on every call: {probe_ok}")
    mfu = rates["deepspeed"] * flops_per_token / sheet_peak
    summary = (f"engine {rates['deepspeed']:,.0f} tok/s MFU {100 * mfu:.1f}% of {sheet_peak / 1e12:.3g} TFLOP/s, "
               f"plain {rates['plain']:,.0f} tok/s, engine/plain {ratio:.2f} "
               f"(ZeRO 1: {rates['ds-zero1'] / rates['plain']:.2f}), noise probe {100 * probe_cost:.1f} % of step time")
    # A measurement, not a target: it fails only if a contender produced no usable timing or the
    # probe no usable norms.
    return all(math.isfinite(r) and r > 0 for r in rates.values()) and probe_ok, summary


# ---------------------------------------------------------------------------------------------
# zero
# ---------------------------------------------------------------------------------------------

def _corpus_spec(vocab_size: int | None = None):
    """The builtin byte corpus (real text, so losses move within a few steps); if this Python
    has no stdlib sources to read, a synthetic Zipf-word text file written here instead."""
    from trainers.data import CorpusSpec, load_corpus

    try:
        if load_corpus(CorpusSpec()).tokens.size >= 1_000_000:
            return CorpusSpec(vocab_size=vocab_size)
        print("builtin corpus is small; using a synthetic text corpus")
    except Exception as err:  # noqa: BLE001 -- any failure: fall back, and say why
        print(f"builtin corpus unavailable ({type(err).__name__}: {err}); using a synthetic text corpus")
    import numpy as np

    path = os.path.join(_cache_dir(), "synthetic.txt")
    if not os.path.exists(path):
        rng = np.random.default_rng(0)
        words = ["".join(rng.choice(list("etaoinshrdlucmfw"), size=rng.integers(2, 8))) for _ in range(2000)]
        ranks = np.minimum(rng.zipf(1.3, size=400_000) - 1, len(words) - 1)
        with open(path + ".tmp", "w") as out:
            out.write(" ".join(words[i] for i in ranks))
        os.replace(path + ".tmp", path)
    return CorpusSpec(source=path, vocab_size=vocab_size)


def _corpus_sampler(shape, seed: int):
    from trainers.data import SequenceSampler, load_corpus

    corpus = load_corpus(_corpus_spec(shape.vocab_size))
    return SequenceSampler(corpus.tokens[: 2_000_000], shape.n_ctx, seed=seed)


def check_zero(dry_run: bool) -> tuple[bool, str]:
    import torch

    from trainers.config import TrainConfig, batch_geometry
    from trainers.data import CorpusSpec
    from trainers.deepspeed_trainer import train_step
    from trainers.engine import build_engine
    from trainers.noise_probe import probe_norms
    from trainers.noise_scale import unbiased_estimates
    from trainers.runtime import setup_runtime
    from trainers.shapes import ModelShape

    _cache_dir()
    shape = ModelShape(**(TINY if dry_run else GPT2_SMALL))
    seqs, k = (4, 5) if dry_run else (8, 5)
    # The dry-run trains in bf16 too: the CPU accelerator supports it and it is the GPU's path.
    base = TrainConfig(shape=shape, dataset_tokens=10**9, batch_tokens=seqs * shape.n_ctx, lr=1e-3,
                       warmup_frac=0.0, precision="bf16" if dry_run else "auto",
                       corpus=CorpusSpec(vocab_size=shape.vocab_size))
    rt = setup_runtime(base.precision, base.threads)
    dtype = str(rt.dtype).removeprefix("torch.")
    sampler = _corpus_sampler(shape, seed=0)
    batches = [sampler.next_global_batch(seqs) for _ in range(k)]
    losses, noise = {}, {}
    for stage in (0, 1, 2, 3):
        config = dataclasses.replace(base, zero_stage=stage)
        geometry = batch_geometry(config, rt.world_size, train_windows=10**6)
        torch.manual_seed(config.seed)
        engine = build_engine(config, geometry, rt)
        # The noise-scale probe on the initial weights and the first batch: the same norms at
        # every stage (ZeRO 3 gathers the partitioned parameters inside the module's forward).
        norms = probe_norms(engine, batches[0], geometry, rt)
        g2, trace = unbiased_estimates(norms.b_small, norms.sq_small, norms.b_big, norms.sq_big)
        noise[stage] = trace / g2
        start = time.perf_counter()
        losses[stage] = [train_step(engine, b, geometry, rt) for b in batches]
        print(f"ZeRO {stage}: " + " ".join(f"{x:.5f}" for x in losses[stage])
              + f"   ({time.perf_counter() - start:.1f} s for {k} steps); noise-scale probe B_simple "
              f"{noise[stage]:.4g} tokens", flush=True)
        _free(engine)
        engine = None
    worst = max(abs(a - b) / max(abs(a), 1.0) for s in (1, 2, 3) for a, b in zip(losses[0], losses[s]))
    ok = all(_agree(a, b, dtype) for s in (1, 2, 3) for a, b in zip(losses[0], losses[s]))
    moved = losses[0][-1] < losses[0][0]
    noise_dev = max(abs(noise[s] / noise[0] - 1) for s in (1, 2, 3))
    noise_ok = all(math.isfinite(v) for v in noise.values()) and noise_dev <= NOISE_REL_TOL
    print(f"noise-scale probe: max relative deviation from ZeRO 0 {noise_dev:.2e} (tolerance {NOISE_REL_TOL:.0e})")
    print(f"{dtype}: max relative deviation from ZeRO 0 over {k} steps {worst:.2e} "
          f"(tolerance {REL_TOL[dtype]:.0e}); loss moved {losses[0][0]:.4f} -> {losses[0][-1]:.4f}")
    return ok and moved and noise_ok, (f"{dtype} max rel dev {worst:.1e} <= {REL_TOL[dtype]:.0e}, first loss "
                                       f"{losses[0][0]:.4f}, noise probe dev {noise_dev:.1e}")


# ---------------------------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------------------------

def check_resume(dry_run: bool) -> tuple[bool, str]:
    from trainers.config import RunOutput, TrainConfig
    from trainers.deepspeed_trainer import train
    from trainers.shapes import ModelShape, train_flops

    _cache_dir()
    small = TINY if dry_run else dict(n_layer=4, d_model=256, n_heads=4, d_ff=1024, n_ctx=256, vocab_size=256)
    shape = ModelShape(**small)
    seqs, stop_after, every = (4, 5, 2) if dry_run else (16, 5, 2)
    config = TrainConfig(shape=shape, dataset_tokens=200_000, regime="dataset", max_steps=10, patience=100,
                         batch_tokens=seqs * shape.n_ctx, lr=1e-3, warmup_frac=0.2, eval_every=every,
                         val_tokens=8 * shape.n_ctx * 4, eval_tokens=8 * shape.n_ctx * 4, corpus=_corpus_spec(),
                         precision="bf16" if dry_run else "auto")  # bf16 ZeRO 0: the GPU's path
    root = tempfile.mkdtemp(prefix="gpu-check-resume-")
    try:
        full = train(config, RunOutput(checkpoint_dir=os.path.join(root, "full")))
        # Stopped by a FLOP budget after `stop_after` steps: the newest checkpoint is at the last
        # evaluation before it, so the resumed run redoes the steps after that checkpoint.
        budget = train_flops(shape, stop_after * config.batch_tokens)
        stopped = train(dataclasses.replace(config, budget_flops=budget),
                        RunOutput(checkpoint_dir=os.path.join(root, "stopped")))
        resumed = train(config, RunOutput(checkpoint_dir=os.path.join(root, "resumed"),
                                          resume_from=os.path.join(root, "stopped"), attempt=1))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    dtype = _run_dtype(config.precision)
    saved_step = max(row["step"] for row in stopped.curve)
    print(f"precision {dtype}; uninterrupted {full.steps} steps ({full.status}); stopped at step {stopped.steps} "
          f"({stopped.status}), last checkpoint step {saved_step}; resumed ran steps {saved_step + 1}..{resumed.steps}")
    print(f"{'step':>4s} {'full':>9s} {'stopped':>9s} {'resumed':>9s}")
    for i, loss in enumerate(full.step_losses):
        a = stopped.step_losses[i] if i < len(stopped.step_losses) else None
        j = i - saved_step
        b = resumed.step_losses[j] if 0 <= j < len(resumed.step_losses) else None
        print(f"{i + 1:4d} {loss:9.5f} {'' if a is None else f'{a:9.5f}':>9s} {'' if b is None else f'{b:9.5f}':>9s}")
    joined = [r["step"] for r in stopped.curve if r["step"] <= saved_step] + [r["step"] for r in resumed.curve]
    full_steps = [r["step"] for r in full.curve]
    print(f"curve steps: full {full_steps}; stopped (to checkpoint) + resumed {joined}")
    val = {r["step"]: r["val_loss"] for r in full.curve}
    joined_val = {r["step"]: r["val_loss"] for r in stopped.curve + resumed.curve}
    checks = {
        "stopped early": stopped.status == "budget_stopped" and stopped.steps == stop_after and saved_step < stop_after,
        "same length": resumed.steps == full.steps and len(resumed.step_losses) == full.steps - saved_step,
        "no step twice": len(joined) == len(set(joined)) and joined == full_steps,
        "prefix equal": all(_agree(a, b, dtype) for a, b in zip(stopped.step_losses, full.step_losses)),
        "continues": all(_agree(a, b, dtype) for a, b in zip(resumed.step_losses, full.step_losses[saved_step:])),
        "val equal": all(_agree(val[s], joined_val[s], dtype) for s in full_steps),
    }
    worst = max(abs(a - b) / max(abs(a), 1.0) for a, b in zip(resumed.step_losses, full.step_losses[saved_step:]))
    print("; ".join(f"{name}: {'ok' if good else 'NO'}" for name, good in checks.items())
          + f"; max rel dev after resume {worst:.1e} (tolerance {REL_TOL[dtype]:.0e})")
    failed = [name for name, good in checks.items() if not good]
    return not failed, (f"resumed at step {saved_step + 1}, {resumed.steps} steps, max rel dev {worst:.1e}"
                        + (f"; failed: {', '.join(failed)}" if failed else ""))


def _run_dtype(precision: str) -> str:
    """The dtype `train` resolves `precision` to on this machine."""
    import torch

    from trainers.runtime import resolve_dtype

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return str(resolve_dtype(precision, device)).removeprefix("torch.")
