"""Overhead of running through `scalesweep run` (Ray Tune) vs launching the same trainer runs
directly as processes with the same parallelism.

    .venv/bin/python bench/sweep_overhead.py [--runs 8] [--parallel 2]

Prints both wall times, Ray's start-up separately, and the ratio (goal <= 1.10) last.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("SCALESWEEP_CACHE", str(REPO / ".cache" / "bench"))


def bench_spec(storage: str, runs: int, checkpoint_interval_s: float = 0.0) -> dict:
    """`runs` trials of the same size (seeds differ): 1 layer, d_model 48, 24 steps each."""
    return {
        "name": "overhead", "storage": storage,
        "axes": {"shapes": [{"n_layer": 2, "d_model": 48, "n_heads": 4, "d_ff": 192}], "n_ctx": 64,
                 "dataset_tokens": [30_000], "batch_tokens": 1024, "lr": 3e-3, "seeds": list(range(runs))},
        "trainer": {"eval_every": 8, "val_tokens": 4096, "peak_flops": 1e11, "zero_stage": 0,
                    "precision": "fp32", "threads": 1, "checkpoint_interval_s": checkpoint_interval_s},
        "resources": {"cpus_per_worker": 1, "workers": 1},
        "budget": {"flops": 1e15},
    }


def run_direct(trials, storage: str, parallel: int) -> float:
    def one(trial) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            yaml.safe_dump(dataclasses.replace(trial.train_config, threads=1).to_dict(), handle)
        subprocess.run([sys.executable, "-m", "scalesweep.cli", "train", "--config", handle.name,
                        "--storage", storage, "--sweep", "direct", "--trial-id", trial.trial_key],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.unlink(handle.name)

    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, trials))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--checkpoint-interval", type=float, default=0.0,
                        help="trainer.checkpoint_interval_s for the Tune runs (0: a checkpoint at every "
                             "evaluation, the default; the direct runs never checkpoint)")
    args = parser.parse_args()

    from orchestrator.cluster import start_ray
    from orchestrator.grid import expand_grid
    from orchestrator.spec import load_spec
    from orchestrator.sweep import run_sweep

    with tempfile.TemporaryDirectory() as tmp:
        spec = load_spec(bench_spec(f"{tmp}/store", args.runs, args.checkpoint_interval))
        trials = expand_grid(spec).trials
        direct_s = run_direct(trials, f"{tmp}/direct", args.parallel)
        print(f"direct: {len(trials)} trainer processes, {args.parallel} at a time: {direct_s:.1f} s", flush=True)

        started = time.perf_counter()
        local_ray = start_ray(None, args.parallel)  # private, 127.0.0.1 only, as `scalesweep run` starts it
        ray_start_s = time.perf_counter() - started
        started = time.perf_counter()
        summary = run_sweep(spec, verbose=0)
        sweep_s = time.perf_counter() - started
        local_ray.stop()
        assert summary.completed == len(trials), summary
        print(f"ray start-up: {ray_start_s:.1f} s")
        print(f"scalesweep run (Ray Tune, {args.parallel} concurrent): {sweep_s:.1f} s "
              f"(+ {ray_start_s:.1f} s Ray start = {sweep_s + ray_start_s:.1f} s)")
        print(f"ratio including Ray start-up: {(sweep_s + ray_start_s) / direct_s:.3f}")
        print(f"ratio (Tune sweep / direct, Ray start-up excluded): {sweep_s / direct_s:.3f}")


if __name__ == "__main__":
    main()
