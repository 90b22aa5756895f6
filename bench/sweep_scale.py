"""Scale: a sweep of many trivially small trials through the real trainer path.

    .venv/bin/python bench/sweep_scale.py [--trials 500] [--cpus 2]

Reports trials/minute, the driver's RSS growth per finished trial (Tune's logger callbacks
leak ~300 KB per trial, ray#64231; scalesweep disables them) and the store's read time.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("SCALESWEEP_CACHE", str(REPO / ".cache" / "bench"))


def scale_spec(storage: str, trials: int) -> dict:
    return {
        "name": "scale", "storage": storage,
        "axes": {"shapes": [{"n_layer": 1, "d_model": 16, "n_heads": 2, "d_ff": 64}], "n_ctx": 16,
                 "dataset_tokens": [2_000], "batch_tokens": 256, "lr": 3e-3, "seeds": list(range(trials))},
        "trainer": {"eval_every": 2, "max_steps": 4, "val_tokens": 512, "peak_flops": 1e11,
                    "precision": "fp32", "threads": 1},
        "resources": {"cpus_per_worker": 1, "workers": 1},
        "budget": {"flops": 1e15},
    }


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()

    from orchestrator.cluster import start_ray
    from orchestrator.spec import load_spec
    from orchestrator.sweep import run_sweep
    from metrics import load_curves, load_runs

    with tempfile.TemporaryDirectory() as tmp:
        spec = load_spec(scale_spec(f"{tmp}/store", args.trials))
        local_ray = start_ray(None, args.cpus)  # private, 127.0.0.1 only, as `scalesweep run` starts it
        samples: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample() -> None:  # driver RSS vs runs finished so far
            while not stop.wait(10):
                done = len(list(Path(tmp, "store", "scale", "runs").glob("trial_id=*")))
                samples.append((rss_mb(), done))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        summary = run_sweep(spec, verbose=0)
        wall = time.perf_counter() - started
        stop.set()
        local_ray.stop()
        print(f"{summary.completed} trials in {wall:.0f} s: {summary.completed / wall * 60:.1f} trials/min "
              f"on {args.cpus} CPUs")
        late = [s for s in samples if s[1] >= 0.2 * args.trials]
        if len(late) >= 2 and late[-1][1] > late[0][1]:
            growth = (late[-1][0] - late[0][0]) * 1024 / (late[-1][1] - late[0][1])
            print(f"driver RSS {late[0][0]:.0f} MB at {late[0][1]} trials -> {late[-1][0]:.0f} MB at "
                  f"{late[-1][1]} trials: {growth:.0f} KB per finished trial")
        for name, load in (("runs", load_runs), ("curves", load_curves)):
            started = time.perf_counter()
            table = load(spec.storage, spec.name)
            print(f"store read {name}: {table.num_rows} rows in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
