"""Compute saved by early prediction against the held-out error of the fitted L(N, D) (issue 12).

    .venv/bin/python bench/early_prediction.py                       # run a small real sweep first
    .venv/bin/python bench/early_prediction.py --store DIR --sweep NAME   # or use a stored one

One real sweep trains every run to its end (early prediction off), so each run's whole curve is
in the store. The early-prediction rule (`orchestrator.early_stop.PredictionStopper`, the one the
trials run) is then replayed on each curve: its decisions depend only on the curve seen so far, so
the stop step and the prediction are those a sweep with `early_prediction.enabled` would have
made, and both arms of the comparison see the same runs and the same noise (each curve's
predictions are made once and reused across the rel_ci values: they do not depend on it). The
runs' LR schedule is modelled as the trials do (`--steps-law`: the power law in steps). Chinchilla's
L(N, D) = E + A/N^a + B/D^b is fitted to the runs outside the largest quarter by compute, once
with their final losses and once with early prediction (a stopped run enters with its predicted
loss and its weight, `fitting.run_result`), and judged on the held-out largest runs' losses.
Compute saved: planned FLOPs the stopped runs did not spend, over the fitted runs' planned FLOPs.

Prints one line per rel_ci, the held-out error's resolution (its change when the fitted runs'
losses get 0.5 % noise and nothing is stopped), then the saved fraction and the relative change
of the held-out error at the spec's rel_ci last. Goal: >= 30 % saved for <= 10 % relative increase.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("SCALESWEEP_CACHE", str(REPO / ".cache" / "bench"))


def bench_spec(storage: str, seed: int = 0, scale: float = 1.0) -> dict:
    """4 N x 4 D tiny models on the built-in corpus, an evaluation every 8 steps (96-1536 steps at
    scale 1; `scale` multiplies every N and D, `seed` changes initialisation and data order)."""
    return {
        "name": "early", "storage": storage,
        "axes": {"target_params": [n * scale for n in (2.5e4, 5e4, 1e5, 2e5)], "aspect_ratio": 16,
                 "head_dim": 16, "n_ctx": 64, "seeds": [seed],
                 "dataset_tokens": [int(d * scale) for d in (1e5, 2e5, 4e5, 8e5)], "batch_tokens": 512},
        "trainer": {"eval_every": 8, "val_tokens": 4096, "peak_flops": 1e11, "zero_stage": 0,
                    "precision": "fp32", "checkpoint_interval_s": 1e9},
        "resources": {"cpus_per_worker": 1, "workers": 1},
        "budget": {"flops": 1e15},
    }


def trainer_schedule() -> tuple[float, float]:
    """(warmup_frac, min_lr_ratio) of the bench sweep's runs: the trainer's defaults (its spec sets
    neither, and the runs table does not record them)."""
    import dataclasses

    from trainers.config import TrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return defaults["warmup_frac"], defaults["min_lr_ratio"]


_PREDICTIONS: dict[tuple, object] = {}
"""Predictions already made, by (trial, schedule, last step seen, points seen, target): a curve's
prediction at a step does not depend on rel_ci or min_fraction, so each replay reuses them."""


def _stopper(trial_id: str, **kw):
    """`PredictionStopper` whose predictions go through `_PREDICTIONS` (its rule unchanged)."""
    from orchestrator.early_stop import PredictionStopper

    class Replayed(PredictionStopper):
        def _predict(self, steps, losses, target_step, total_steps):
            key = (trial_id, self.schedule, steps[-1], len(steps), target_step, total_steps)
            if key not in _PREDICTIONS:
                try:
                    _PREDICTIONS[key] = super()._predict(steps, losses, target_step, total_steps)
                except ValueError as error:
                    _PREDICTIONS[key] = error
            if isinstance(_PREDICTIONS[key], ValueError):
                raise _PREDICTIONS[key]
            return _PREDICTIONS[key]

    return Replayed(**kw)


def replay(runs: list[dict], curves: list[dict], min_fraction: float, rel_ci: float,
           schedule: tuple[float, float] | None) -> dict[str, dict]:
    """Each run's outcome under early prediction: {trial_id: row as a stopped run would have
    written it (stop_reason, predicted_*, steps, flops), or the run's own row if never stopped}.
    schedule: the runs' (warmup_frac, min_lr_ratio) for the schedule-aware prediction (None: the
    power law in steps)."""

    by_trial: dict[str, list[dict]] = {}
    for c in curves:
        by_trial.setdefault(c["trial_id"], []).append(c)
    out = {}
    for row in runs:
        stopper = _stopper(row["trial_id"], enabled=True, min_fraction=min_fraction, rel_ci=rel_ci,
                           regime=row["regime"], schedule=schedule)
        out[row["trial_id"]] = row
        for c in sorted(by_trial.get(row["trial_id"], []), key=lambda c: c["step"]):
            _, request = stopper.observe(c["step"], c["val_loss"], row["planned_steps"])
            if request is not None:
                out[row["trial_id"]] = {**row, **request.columns(), "status": "early_stopped",
                                        "steps": c["step"], "flops": c["flops"], "final_val_loss": c["val_loss"]}
                break
    return out


def heldout_error(runs: list[dict], outcome: dict[str, dict] | None) -> tuple[float, object]:
    """Mean relative error of Chinchilla fitted on the runs outside the largest quarter by FLOPs
    (their result: observed, or `outcome`'s early one), on the largest quarter's observed losses."""
    from fitting.data import FitData
    from fitting.fit import fit_law
    from fitting.laws import chinchilla
    from fitting.run_result import result_loss

    flops = np.array([r["flops"] for r in runs], dtype=float)
    held = flops >= np.quantile(flops, 0.75)
    X = {"N": np.array([r["non_embedding_params"] for r in runs], float),
         "D": np.array([r["tokens_seen"] for r in runs], float)}  # planned D: a stopped run's D is its plan
    y, w = [], []
    for row, is_held in zip(runs, held):
        loss, weight = result_loss(outcome[row["trial_id"]] if outcome and not is_held else row)
        y.append(loss), w.append(weight)
    y, w = np.array(y, float), np.array(w, float)
    data = FitData(X, y, {"N": "non_embedding_params", "D": "tokens_seen"}, weights=w if (w < 1).any() else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_law(chinchilla, data, train=~held)
    return fit.diagnostics["holdout"]["mae_rel"], fit


def noise_floor(runs: list[dict], base: float, sd: float = 0.005, draws: int = 20) -> np.ndarray:
    """Relative changes of the held-out error when every fitted run's loss is multiplied by
    exp(sd·z), z standard normal (seeded), with no early prediction: how finely this sweep's
    held-out error can resolve a change in the fitted losses at all."""
    rng = np.random.default_rng(0)
    changes = []
    for _ in range(draws):
        noisy = {r["trial_id"]: dict(r, best_val_loss=r["best_val_loss"] * float(np.exp(sd * rng.standard_normal())))
                 for r in runs}
        changes.append(heldout_error(runs, noisy)[0] / base - 1)
    return np.array(changes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="a stored sweep's storage root (default: run the bench sweep)")
    ap.add_argument("--sweep", default="early")
    ap.add_argument("--seed", type=int, default=0, help="the bench sweep's seed (without --store)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the bench sweep's N and D (without --store)")
    ap.add_argument("--out", help="where the bench sweep writes its store (default: a new temporary folder)")
    ap.add_argument("--min-fraction", type=float, default=0.3)
    ap.add_argument("--rel-ci", type=float, default=0.01, help="the rel_ci reported last (spec default 0.01)")
    ap.add_argument("--steps-law", action="store_true",
                    help="predict with the power law in steps (no LR schedule), as the stopper did before")
    args = ap.parse_args(argv)
    from metrics import load_curves, load_runs

    storage = args.store
    if storage is None:
        from orchestrator.sweep import run_sweep

        storage = args.out or tempfile.mkdtemp(prefix="bench-early-")
        started = time.time()
        summary = run_sweep(bench_spec(storage, args.seed, args.scale), num_cpus=2, verbose=0)
        print(f"sweep: {summary.line()} ({time.time() - started:.0f} s)")
    runs = [r for r in load_runs(storage, args.sweep).to_pylist() if r["status"] == "completed"]
    curves = load_curves(storage, args.sweep).to_pylist()
    if not runs or any(r.get("planned_steps") is None for r in runs):
        raise SystemExit(f"{storage}/{args.sweep}: needs completed runs with planned_steps (schema version 2)")
    base, _ = heldout_error(runs, None)
    flops = np.array([r["flops"] for r in runs], float)
    fitted = flops < np.quantile(flops, 0.75)
    print(f"{len(runs)} runs, {int(fitted.sum())} fitted, {int((~fitted).sum())} held out (largest by FLOPs); "
          f"held-out mean relative error without early prediction: {base:.4f}")
    print(f"{'rel_ci':>8} {'stopped':>8} {'saved':>7} {'held-out err':>13} {'change':>8}")
    result = None
    for rel_ci in sorted({0.005, 0.01, 0.02, 0.05, 0.1, 0.12, 0.15, 0.2, 0.5, args.rel_ci}):
        outcome = replay(runs, curves, args.min_fraction, rel_ci, None if args.steps_law else trainer_schedule())
        stopped = [outcome[r["trial_id"]] for r, f in zip(runs, fitted) if f]
        saved = sum(r["flops"] - o["flops"] for r, o in zip([r for r, f in zip(runs, fitted) if f], stopped))
        saved /= float(flops[fitted].sum())
        error, _ = heldout_error(runs, outcome)
        n_stopped = sum(o["status"] == "early_stopped" for o in stopped)
        print(f"{rel_ci:>8g} {n_stopped:>8d} {saved:>7.1%} {error:>13.4f} {error / base - 1:>+8.1%}")
        if rel_ci == args.rel_ci:
            result = (saved, error / base - 1)
    floor = noise_floor(runs, base)
    print(f"resolution: 0.5 % noise on the fitted runs' losses alone (no early prediction) changes the held-out "
          f"error by {np.percentile(floor, 10):+.1%} ... {np.percentile(floor, 90):+.1%} (10th-90th percentile of "
          f"{floor.size} draws)")
    print(f"early prediction (min_fraction {args.min_fraction:g}, rel_ci {args.rel_ci:g}): saved {result[0]:.1%} of "
          f"the fitted runs' compute; held-out error {result[1]:+.1%} relative (goal: >= 30 % saved, <= +10 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
