"""Compute saved by early prediction against the held-out error of the fitted L(N, D) (issue 12).

    .venv/bin/python bench/early_prediction.py --out DIR          # train the bench's 3 sweeps first
    .venv/bin/python bench/early_prediction.py --store DIR [--store DIR ...]   # or use stored ones

The bench's sweeps (`SWEEPS`) train every run to its end (early prediction off), so each run's
whole curve is in the store: 3 grids of 4 N x 4 D tiny models, each with its own seed
(initialisation, data order), scaled by 1, 2^-1/2 and 1/2 in N and D (48 runs: the second grid
interleaves the first, the third repeats 9 of its configurations one step down with another seed;
~26 min to train on 2 loaded cores, ~15 min to analyse). The early-prediction rule (`orchestrator.early_stop.
PredictionStopper`, the one the trials run, with the runs' warmup + cosine schedule) is replayed
on each curve: its decisions depend only on the curve seen so far, so the stop step and the
prediction are those a sweep with `early_prediction.enabled` would have made, and both arms see the
same runs and the same noise (each curve's predictions are made once and reused across settings).
Chinchilla's L(N, D) = E + A/N^a + B/D^b is fitted to the pooled runs outside the largest quarter
by compute, once with their final losses and once with early prediction (a stopped run enters with
its predicted loss and its weight, `fitting.run_result`), and judged on the held-out largest runs'
observed losses (mean relative error). Compute saved: planned FLOPs the stopped runs did not
spend, over the fitted runs' planned FLOPs.

Resolution: one 16-run sweep's held-out error moves by -44 % ... +105 % when its fitted losses get
0.5 % noise, so it cannot resolve a 10 % change; the 48 pooled runs: -2 % ... +22 %; 112 runs (7
sweeps: these 3 and seeds 3-6 at scales 0.5, 0.84, 0.59, 0.71): -8.7 % ... +4.3 %, and there the
ideal predictor's 90 % interval is [-6.4 %, +12.3 %], so +10 % is at the edge of what it resolves. The change
is paired-bootstrapped: each replicate resamples the fitted and the held-out runs (with
replacement, one draw for both arms) and refits both arms (each fit started from every arm's
full-sample optimum); the table gives the change on all runs and the 5th-95th percentile of the
replicates'. The resolution line is the change 0.5 % loss noise alone makes, nothing stopped.

Rules (``--rule``, default the spec's `early_prediction.rule`): both replay the trials' own
`PredictionStopper`. ``reference`` predicts each run from the finished runs of its own sweep with
the same schedule, its interval calibrated on them, and falls back to the run's own curve where
none can serve (replayed in the stored order in which runs finished, bench/early_reference.py);
``own`` predicts every run from its own curve. bench/early_rules.py compares the rules' errors.

Weights (``--weights``): a stopped run enters the fit with `fitting.run_result`'s weight, its
interval against its own evaluation scatter (``interval``), against scatter + the law's misfit
(``misfit``, what a store's fit does, `fitting.data.load_fit_data`: the misfit is
`fitting.run_result.law_misfit` of a first fit with the ``interval`` weights) or 1 (``one``). A
line splits the reported setting's change into the weighting alone (observed losses, its weights)
and the predictions alone (weight 1): Chinchilla's near-L1 fit on these runs moves with either.

Prints one line per (min_fraction, rel_ci), the resolution, the setting that saves most within the
goal (or that none does), and last the saved fraction and the change of the held-out error at the
reported setting (default: the spec's defaults, the setting sweeps ship). Goal: >= 30 % saved for
<= 10 % relative increase. The ideal-predictor line
bounds what any rule can show here: the reported setting's stopped runs keep their observed losses
up to one evaluation's scatter (the runs' median scatter about their own late curve), weight 1.
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
            if steps[-1] < self.min_fraction * total_steps:  # only the live table's pred needs these
                raise ValueError("before min_fraction: no decision to make")
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


SWEEPS = ((0, 1.0), (1, 2 ** -0.5), (2, 0.5))
"""(seed, scale) of the bench's sweeps: three seeds on interleaved grids (`bench_spec`)."""

MIN_FRACTIONS = (0.3, 0.5, 0.6, 0.7, 0.8)
REL_CIS = (0.01, 0.02, 0.03, 0.05, 0.1)


def load_pooled(stores: list[str], sweep: str) -> tuple[list[dict], list[dict]]:
    """Completed runs and curves of every store, trial ids prefixed by the store's index (the
    sweeps share trial ids)."""
    from metrics import load_curves, load_runs

    runs, curves = [], []
    for k, storage in enumerate(stores):
        rows = [r for r in load_runs(storage, sweep).to_pylist() if r["status"] == "completed"]
        if not rows or any(r.get("planned_steps") is None for r in rows):
            raise SystemExit(f"{storage}/{sweep}: needs completed runs with planned_steps (schema version 2)")
        runs += [dict(r, trial_id=f"{k}/{r['trial_id']}") for r in rows]
        curves += [dict(c, trial_id=f"{k}/{c['trial_id']}") for c in load_curves(storage, sweep).to_pylist()]
    return runs, curves


class Design:
    """The pooled runs' inputs, which are held out (the largest quarter by FLOPs), and the fit of
    Chinchilla on the others with given losses, weights and bootstrap counts."""

    def __init__(self, runs: list[dict]):
        self.runs = runs
        self.flops = np.array([r["flops"] for r in runs], float)
        self.held = self.flops >= np.quantile(self.flops, 0.75)
        # planned D: a stopped run's D is its plan (its prediction is the loss there)
        self.X = {"N": np.array([r["non_embedding_params"] for r in runs], float),
                  "D": np.array([r["tokens_seen"] for r in runs], float)}
        self.observed = np.array([r["best_val_loss"] for r in runs], float)
        self.misfits: dict[int, float] = {}  # id(outcome) -> the law misfit its ``misfit`` weights used

    def losses(self, outcome: dict[str, dict] | None, weights: str = "misfit") -> tuple[np.ndarray, np.ndarray]:
        """(loss, weight) of each run as the fit takes it: the held-out runs' and, without
        `outcome`, every run's observed loss; a fitted run's early outcome otherwise, weighted
        (`weights`) by `fitting.run_result`'s rule (``interval``), with the law's misfit estimated
        as a store's fit does (``misfit``: `law_misfit` of the fit with the ``interval`` weights,
        `fitting.data._with_misfit`) or not at all (``one``)."""
        from fitting.run_result import law_misfit, result_loss

        def rows(misfit):
            pairs = [result_loss(outcome[r["trial_id"]] if outcome and not held else r, misfit_log_sd=misfit)
                     for r, held in zip(self.runs, self.held)]
            return np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs], float)

        y, w = rows(0.0)
        if weights == "misfit":
            fit, fitted = self.error(y, w)[1], ~self.held
            misfit = law_misfit(fit.predict({k: v[fitted] for k, v in self.X.items()}), y[fitted], w[fitted])
            self.misfits[id(outcome)] = misfit
            y, w = rows(misfit)
        return y, (np.ones_like(w) if weights == "one" else w)

    def error(self, y: np.ndarray, w: np.ndarray, fit_counts=None, held_counts=None, starts=None):
        """(held-out mean relative error, fit): Chinchilla fitted to the fitted runs' `y` with
        weights `w` x `fit_counts` (bootstrap multiplicities; None: 1), its error averaged over
        the held-out runs with `held_counts`. `starts`: (S, 5) transformed-space starts instead of
        the law's multistart grid."""
        from fitting.data import FitData
        from fitting.fit import fit_law
        from fitting.laws import chinchilla

        fit_counts = np.ones(len(y)) if fit_counts is None else fit_counts
        train = ~self.held & (fit_counts > 0)
        weights = (w * fit_counts)[train]
        data = FitData({k: v[train] for k, v in self.X.items()}, y[train],
                       {"N": "non_embedding_params", "D": "tokens_seen"},
                       weights=weights if (weights != 1).any() else None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_law(chinchilla, data, **({} if starts is None else {"starts": starts}))
        rel = np.abs(fit.predict({k: v[self.held] for k, v in self.X.items()}) / self.observed[self.held] - 1)
        counts = np.ones(rel.size) if held_counts is None else held_counts
        return float(rel @ counts / counts.sum()), fit


def paired_changes(design: Design, arms: dict, replicates: int, seed: int = 0) -> dict:
    """{key: relative changes of the held-out error against the base arm over `replicates`
    paired bootstrap draws}. arms: {key: (y, w)}, key None the base arm (observed losses). Each
    replicate's fits start from every arm's full-sample optimum (Chinchilla's objective has
    several basins on so few runs; one shared set of starts keeps the arms' fits comparable)."""
    rng = np.random.default_rng(seed)
    fitted, held = np.flatnonzero(~design.held), np.flatnonzero(design.held)
    starts = np.stack([design.error(y, w)[1].z for y, w in arms.values()])
    changes = {key: [] for key in arms if key is not None}
    for _ in range(replicates):
        fit_counts = np.zeros(len(design.runs))
        fit_counts[fitted] = rng.multinomial(fitted.size, np.full(fitted.size, 1 / fitted.size))
        held_counts = rng.multinomial(held.size, np.full(held.size, 1 / held.size)).astype(float)
        errors = {key: design.error(y, w, fit_counts, held_counts, starts)[0] for key, (y, w) in arms.items()}
        for key in changes:
            changes[key].append(errors[key] / errors[None] - 1)
    return {key: np.array(v) for key, v in changes.items()}


def evaluation_scatter(curves: list[dict], runs: list[dict], tail: float = 0.4) -> float:
    """Median over runs of one evaluation's log-loss sd about a cubic in steps fitted to the last
    `tail` of the run's curve (where the curve is smooth): what a run's recorded loss is
    uncertain by, whatever predicts it."""
    planned = {r["trial_id"]: r["planned_steps"] for r in runs}
    by_trial: dict[str, list] = {}
    for c in curves:
        by_trial.setdefault(c["trial_id"], []).append((c["step"], c["val_loss"]))
    sds = []
    for trial_id, points in by_trial.items():
        x, y = np.array(sorted(points), float).T
        late = x >= (1 - tail) * planned.get(trial_id, x[-1])
        if late.sum() >= 8:
            u = x[late] / x[-1]
            r = np.log(y[late]) - np.polyval(np.polyfit(u, np.log(y[late]), 3), u)
            sds.append(np.sqrt(r @ r / (r.size - 4)))
    return float(np.median(sds))


def noise_floor(design: Design, base: float, sd: float = 0.005, draws: int = 20) -> np.ndarray:
    """Relative changes of the held-out error when every fitted run's loss is multiplied by
    exp(sd·z), z standard normal (seeded), with no early prediction: how finely this design's
    held-out error can resolve a change in the fitted losses at all."""
    rng = np.random.default_rng(0)
    ones = np.ones(len(design.runs))
    noisy = [design.observed * np.where(design.held, 1.0, np.exp(sd * rng.standard_normal(len(design.runs))))
             for _ in range(draws)]
    return np.array([design.error(y, ones)[0] / base - 1 for y in noisy])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", action="append", help="a stored sweep's storage root; repeat to pool several "
                                                     "(default: train the bench's sweeps under --out)")
    ap.add_argument("--sweep", default="early")
    ap.add_argument("--out", help="where the bench's sweeps write their stores, one folder each "
                                  "(default: a new temporary folder)")
    from orchestrator.spec_types import EARLY_RULES, EarlyPrediction

    shipped = EarlyPrediction()
    ap.add_argument("--min-fraction", type=float, default=shipped.min_fraction,
                    help=f"the min_fraction reported last (default: the spec's, {shipped.min_fraction:g})")
    ap.add_argument("--rel-ci", type=float, default=shipped.rel_ci,
                    help=f"the rel_ci reported last (default: the spec's, {shipped.rel_ci:g})")
    ap.add_argument("--replicates", type=int, default=40, help="paired bootstrap draws per setting")
    ap.add_argument("--min-saved", type=float, default=0.2,
                    help="bootstrap only the settings that save at least this (and the reported one)")
    ap.add_argument("--only-reported", action="store_true",
                    help="replay only the reported setting, not the whole (min_fraction, rel_ci) table")
    ap.add_argument("--assumed-sd", action="store_true",
                    help="weigh predictions against the assumed 0.01 observed-loss sd, not the run's measured scatter")
    ap.add_argument("--steps-law", action="store_true",
                    help="predict with the power law in steps (no LR schedule), as the stopper did before")
    ap.add_argument("--rule", choices=EARLY_RULES, default=shipped.rule,
                    help="the trials' stopper's rule: reference (the finished runs of its sweep, own curve where none "
                         f"serves) or own (each run's own curve); default the spec's, {shipped.rule}")
    ap.add_argument("--weights", choices=("interval", "misfit", "one"), default="misfit",
                    help="a stopped run's weight in the fit: misfit (its interval against the law's misfit + the run's "
                         "scatter, what a store's fit does), interval (against the scatter alone) or one")
    args = ap.parse_args(argv)

    stores = args.store
    if not stores:
        from orchestrator.sweep import run_sweep

        root = Path(args.out or tempfile.mkdtemp(prefix="bench-early-"))
        stores = []
        for seed, scale in SWEEPS:
            storage = str(root / f"seed{seed}_x{scale:.2f}")
            started = time.time()
            summary = run_sweep(bench_spec(storage, seed, scale), num_cpus=2, verbose=0)
            print(f"sweep seed {seed} x{scale:.2f}: {summary.line()} ({time.time() - started:.0f} s) -> {storage}")
            stores.append(storage)
    runs, curves = load_pooled(stores, args.sweep)
    design = Design(runs)
    ones = np.ones(len(runs))
    base, _ = design.error(design.observed, ones)
    fitted = ~design.held
    print(f"{len(stores)} sweeps, {len(runs)} runs, {int(fitted.sum())} fitted, {int(design.held.sum())} held out "
          f"(largest by FLOPs); held-out mean relative error without early prediction: {base:.4f}")
    schedule = None if args.steps_law else trainer_schedule()
    from early_reference import replay
    grid = set() if args.only_reported else {(f, c) for f in MIN_FRACTIONS for c in REL_CIS}
    settings = sorted(grid | {(args.min_fraction, args.rel_ci)})
    rows, arms, scatter = {}, {None: (design.observed, ones)}, []
    for setting in settings:
        outcome = replay(runs, curves, *setting, schedule, args.rule)
        scatter += [o["eval_log_sd"] for o in outcome.values() if o.get("eval_log_sd")]
        if args.assumed_sd:  # as rows written before eval_log_sd: fitting.run_result.REFERENCE_LOG_SD
            outcome = {key: dict(row, eval_log_sd=None) for key, row in outcome.items()}
        early = [outcome[r["trial_id"]] for r in runs]
        saved = sum(r["flops"] - o["flops"] for r, o, f in zip(runs, early, fitted) if f) / float(design.flops[fitted].sum())
        stops = tuple(o["steps"] for o in early)
        rows[setting] = (sum(o["status"] == "early_stopped" for o, f in zip(early, fitted) if f), saved, stops)
        if saved >= args.min_saved or setting == (args.min_fraction, args.rel_ci):
            arms.setdefault(stops, design.losses(outcome, args.weights))  # settings that stop alike share one arm
        else:
            rows[setting] += (design.losses(outcome, args.weights),)
        if setting == (args.min_fraction, args.rel_ci):
            reported = design.losses(outcome, args.weights)
            reported_misfit = design.misfits.get(id(outcome))
    # the ideal predictor: the reported setting's stopped runs, observed losses off by one evaluation's scatter
    sd = evaluation_scatter(curves, runs)
    stopped = np.array(rows[(args.min_fraction, args.rel_ci)][2]) < np.array([r["steps"] for r in runs])
    rng = np.random.default_rng(1)
    for draw in range(3):
        arms[("ideal", draw)] = (design.observed * np.exp(sd * rng.standard_normal(len(runs)) * stopped), ones)
    started = time.time()
    changes = paired_changes(design, arms, args.replicates)
    errors = {key: design.error(*arm)[0] for key, arm in arms.items()}
    for row in rows.values():
        if row[2] not in errors:  # row: (stopped, saved, stops, the arm's (loss, weight))
            errors[row[2]] = design.error(*row[3])[0]
    print(f"{'min_frac':>8} {'rel_ci':>7} {'stopped':>8} {'saved':>7} {'held-out err':>13} {'change':>8} "
          f"{'90% interval':>17} {'P(<=+10%)':>9}   ({args.replicates} paired bootstrap draws, {time.time() - started:.0f} s)")
    best = None
    for (fraction, rel_ci), (n_stopped, saved, stops, *_) in rows.items():
        change = errors[stops] / base - 1
        if stops not in changes:  # saves too little to be a candidate: no interval
            print(f"{fraction:>8g} {rel_ci:>7g} {n_stopped:>8d} {saved:>7.1%} {errors[stops]:>13.4f} {change:>+8.1%}")
            continue
        draws = changes[stops]
        lo, hi = np.percentile(draws, [5, 95])
        print(f"{fraction:>8g} {rel_ci:>7g} {n_stopped:>8d} {saved:>7.1%} {errors[stops]:>13.4f} {change:>+8.1%} "
              f"{f'[{lo:+.1%}, {hi:+.1%}]':>17} {np.mean(draws <= 0.10):>9.0%}")
        if saved >= 0.30 and max(change, hi) <= 0.10 and (best is None or saved > best[1]):
            best = ((fraction, rel_ci), saved, change, lo, hi)
    ideal = np.concatenate([changes[("ideal", draw)] for draw in range(3)])
    points = [design.error(*arms[("ideal", draw)])[0] / base - 1 for draw in range(3)]
    print(f"ideal predictor (the {int(stopped[fitted].sum())} fitted runs the reported setting stops keep their observed "
          f"losses x exp({sd:.2%} z), weight 1; 3 draws): change {min(points):+.1%} ... {max(points):+.1%}, 90% "
          f"interval [{np.percentile(ideal, 5):+.1%}, {np.percentile(ideal, 95):+.1%}]")
    floor = noise_floor(design, base)
    print(f"resolution: 0.5 % noise on the fitted runs' losses alone (no early prediction) changes the held-out "
          f"error by {np.percentile(floor, 10):+.1%} ... {np.percentile(floor, 90):+.1%} (10th-90th percentile of "
          f"{floor.size} draws)")
    if scatter:
        print(f"scale: the goal's +10 % is {0.1 * base:.2%} of held-out error; the runs' own evaluation scatter about "
              f"their curves (eval_log_sd, median over the stops) is {np.median(scatter):.2%} of the loss")
    y, w = reported
    print(f"the reported setting's change split (full sample): its weights with the observed losses "
          f"{design.error(design.observed, w)[0] / base - 1:+.1%}, its predicted losses with weight 1 "
          f"{design.error(y, ones)[0] / base - 1:+.1%} (weights: {args.weights}; law misfit "
          f"{'-' if reported_misfit is None else f'{reported_misfit:.2%}'} rms)")
    if best is None:
        print("no setting saves >= 30 % with its held-out error change and the 95th percentile of it <= +10 %")
    else:
        (fraction, rel_ci), saved, change, lo, hi = best
        print(f"most saved within the goal (change and its 95th percentile <= +10 %): min_fraction {fraction:g}, rel_ci {rel_ci:g}: "
              f"saved {saved:.1%}, change {change:+.1%} [{lo:+.1%}, {hi:+.1%}]")
    _, saved, stops, *_ = rows[(args.min_fraction, args.rel_ci)]
    lo, hi = np.percentile(changes[stops], [5, 95])
    from orchestrator.spec_types import EarlyPrediction

    shipped = EarlyPrediction()
    which = " = the spec's defaults" if (args.rule, args.min_fraction, args.rel_ci, args.weights) == (
        shipped.rule, shipped.min_fraction, shipped.rel_ci, "misfit") else ""
    print(f"early prediction (rule {args.rule}, min_fraction {args.min_fraction:g}, rel_ci {args.rel_ci:g}, weights "
          f"{args.weights}{which}): saved {saved:.1%} of the "
          f"fitted runs' compute; held-out error {errors[stops] / base - 1:+.1%} relative, 90% interval "
          f"[{lo:+.1%}, {hi:+.1%}] (goal: >= 30 % saved, <= +10 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
