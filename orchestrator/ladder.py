"""The scaling ladder: train the run a finished sweep predicts to be compute-optimal at K times its
largest run's compute, and score the prediction (`scalesweep ladder SPEC --multiplier K`, or the
spec's ``ladder:`` section, run by `scalesweep run` after a sweep that ends with exit 0).

1. `plan_ladder` (no Ray): the sweep's runs, read as `fit` reads them (`fitting.cli.load_table`
   on the store, so the same statuses, predicted stops and aggregation apply; earlier ladder runs
   left out), the law fitted (`search.law` or chinchilla), the compute-optimal (N, D) at
   K x the largest fitted run's exact FLOPs (`fitting.allocate.compute_optimal_allocation`, with
   C = 6ND as `plan` uses), the shape by the spec's shape rules (`trainers.shapes.shape_for_params`)
   and D from that shape's exact training FLOPs per token, so the run spends K x C; the law's loss
   re-predicted at the trained (N, D), each loss with its prediction interval widened by the law's
   misfit (`fitting.extrapolation`, as `plan` and `predict`). The run's planned FLOPs must fit what
   the spec's budget has left after the sweep.
2. `run_ladder` (`scalesweep ladder`, in orchestrator/cli.py): that one run through `orchestrator.sweep.run_sweep` (a one-run `GridSearcher`;
   the sweep's trainer settings, resources and storage; its own Tune experiment, named by its
   trial key ``ladder-x<K>``), so retries, resume and the budget ledger work as for any run; then
   its row in the sweep's ``ladder/`` table (`metrics.write_ladder_row`; docs/architecture.md §3).

It trains only a prediction its runs identify, refusing (exit 2, before training) a fit that does
not separate the N and D terms (`FitResult.identifiability`), parameters at their bounds
(`params_at_bounds`) unless `allow_at_bounds` (their interval at the target is unreliable: more
runs are cheaper than K x C spent on a prediction the fit disowns), an optimum that hinges on a
parameter the data leave unbounded (`fitting.allocate.allocation_drivers`) and a loss at the run
without a finite interval (`identified_rung`). Parameters merely wide one by one (closed
intervals) do not stop it: the bootstrap carries their spread into the scored interval, which is
the test, and the plan names them ("trained although ..."). Bad input raises ValueError (or
FileNotFoundError for a sweep that never ran) before Ray starts, and writes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from metrics.schema import LADDER_GRID, LADDER_PREFIX, SUB_SWEEP_COLUMN
from orchestrator.spec_types import EarlyPrediction, LadderSpec, SweepSpec, ladder_multiplier
from trainers.fields import SpecError
from trainers.shapes import ModelShape, non_embedding_params, shape_for_params, train_flops


def ladder_key(multiplier: float) -> str:
    """The ladder run's trial key (its trial_id in runs/ and ladder/): ``ladder-x4``."""
    return f"{LADDER_PREFIX}{multiplier:g}"


# --------------------------------------------------------------------------------------------
# The shape rules of the spec


def _geomean(values) -> float:
    return float(np.exp(np.mean(np.log(np.asarray(values, dtype=float)))))


def ladder_shape(spec: SweepSpec, target_params: float) -> tuple[ModelShape, list[str]]:
    """The shape the spec's rules give for N = ``target_params``, and notes on the choices made.

    With ``axes.target_params`` the rules are the axes' aspect ratio, d_ff ratio and head width
    (the first value of an axis that lists several, noted); with explicit ``axes.shapes``, their
    geometric-mean aspect ratio and d_ff ratio and their typical head width (a multiple of 8).
    Raises ValueError naming the axis when the rule cannot make the shape."""
    axes, notes = spec.axes, []
    n_ctx = axes.n_ctx[0]
    if len(axes.n_ctx) > 1:
        notes.append(f"axes.n_ctx lists {len(axes.n_ctx)} values; the ladder uses the first ({n_ctx})")
    n_heads = None
    if axes.shapes:
        widths = [(raw["d_model"], raw["n_layer"], raw["d_ff"], raw.get("d_attn", raw["d_model"]) // raw["n_heads"])
                  for raw in axes.shapes]
        aspect = _geomean([d / n for d, n, _, _ in widths])
        ff_ratio = _geomean([ff / d for d, _, ff, _ in widths])
        head_dim = max(8, int(round(float(np.median([h for *_, h in widths])) / 8)) * 8)
        notes.append(f"axes.shapes: the ladder's shape follows their mean aspect ratio {aspect:.3g}, d_ff ratio "
                     f"{ff_ratio:.3g} and head width {head_dim}")
    else:
        aspect, ff_ratio = axes.aspect_ratio[0], axes.d_ff_ratio[0]
        for name in ("aspect_ratio", "d_ff_ratio", "head_dim", "n_heads"):
            if len(getattr(axes, name)) > 1:
                notes.append(f"axes.{name} lists several values; the ladder uses the first")
        head_dim = 8 if axes.n_heads else axes.head_dim[0]  # n_heads: any width that is a multiple of 8
        n_heads = axes.n_heads[0] if axes.n_heads else None
    try:
        shape = shape_for_params(target_params, aspect_ratio=aspect, d_ff_ratio=ff_ratio, head_dim=head_dim,
                                 n_ctx=n_ctx, vocab_size=spec.vocab_size)
    except ValueError as err:
        raise ValueError(f"ladder: no shape for the predicted N {target_params:.4g} under the spec's shape rules: "
                         f"{err}") from None
    if n_heads is not None:
        if shape.d_model % n_heads:
            raise ValueError(f"axes.n_heads: {n_heads} heads do not divide d_model={shape.d_model} of the ladder's "
                             f"shape for N {target_params:.4g}")
        shape = dataclasses.replace(shape, n_heads=n_heads)
    return shape, notes


def _only(spec: SweepSpec, name: str, notes: list[str]):
    values = getattr(spec.axes, name)
    if len(values) > 1:
        notes.append(f"axes.{name} lists {len(values)} values; the ladder uses the first ({values[0]})")
    return values[0]


# --------------------------------------------------------------------------------------------
# The plan


@dataclass
class LadderPlan:
    """What the ladder will train and what it predicts. Losses in nats/token, compute in FLOPs."""

    sweep: str
    multiplier: float
    law: str
    n_runs: int  # runs the law was fitted to
    reference_compute: float  # the largest fitted run's exact training FLOPs
    compute: float  # multiplier x reference_compute
    allocation: Any  # fitting.allocate.Allocation at `compute`
    trial: Any  # orchestrator.grid.TrialSpec: the run to train
    d_actual: int  # tokens it will train on (whole batches)
    predicted: tuple[float, float, float]  # (loss, lo, hi) at the trained (N, D), law misfit included
    level: float
    loss_column: str  # the runs column the law was fitted to
    misfit: str  # where the misfit sd came from
    notes: list[str] = field(default_factory=list)

    @property
    def n_actual(self) -> int:
        return non_embedding_params(self.trial.shape)

    def lines(self) -> list[str]:
        a, shape, (loss, lo, hi) = self.allocation, self.trial.shape, self.predicted
        ci = f"{int(round(self.level * 100))}% prediction interval"
        opt_lo, opt_hi = a.loss_misfit_interval or (math.nan, math.nan)
        lines = [
            f"ladder x{self.multiplier:g} of sweep {self.sweep}: {self.law} fitted to {self.n_runs} runs; "
            f"largest {self.reference_compute:.3g} FLOPs -> {self.compute:.3g} FLOPs",
            f"  predicted optimum   N {a.N_opt:.4g}  D {a.D_opt:.4g}  loss {a.loss:.4g} [{opt_lo:.4g}, {opt_hi:.4g}] ({ci})",
            f"  trained as          {self.trial.trial_key}: n_layer {shape.n_layer}, d_model {shape.d_model}, "
            f"n_heads {shape.n_heads}, d_ff {shape.d_ff}: N {self.n_actual}, D {self.d_actual} tokens, "
            f"{self.trial.planned_flops:.3g} FLOPs planned",
            f"  {self.rounding_line()}",
            f"  predicted loss there {loss:.4g} [{lo:.4g}, {hi:.4g}] ({ci}; {self.loss_column})",
            f"  held out            the ladder run itself: never in the fit, {self.multiplier:g}x the largest "
            f"fitted run's compute",
            f"  {a.parameter_part}",  # both intervals' parameter part, and why (fitting.extrapolation)
            f"  {self.misfit}",
        ]
        return lines + [f"  note: {note}" for note in self.notes]

    def rounding_line(self) -> str:
        """Why the trained (N, D) is not the optimum's (C = 6ND): a whole shape, and D = K·C over its
        exact FLOPs per token (`train_flops`) in whole steps; the budget is charged the planned
        FLOPs (windows of n_ctx + 1 tokens read to train on n_ctx)."""
        shape, batch = self.trial.shape, self.trial.batch_tokens
        per_token = train_flops(shape, 1)
        trained = per_token * self.d_actual
        return (f"why not the optimum N {self.n_actual} is a whole shape; D = {self.compute:.3g} FLOPs / {per_token:.4g} "
                f"FLOPs per token (this shape's exact cost, attention included; 6N = {6 * self.n_actual:.4g}) in "
                f"{self.d_actual // batch} whole steps of {batch} tokens: {trained:.3g} FLOPs trained "
                f"({trained / self.compute - 1:+.1%} of {self.compute:.3g}); {self.trial.planned_flops:.3g} planned "
                f"(charged to the budget: windows of n_ctx + 1 = {shape.n_ctx + 1} tokens read to train on {shape.n_ctx})")

    def row(self, run: Mapping | None) -> dict:
        """The ``ladder/`` row (`metrics.LADDER_SCHEMA`), with the trained run's outcome (its runs row
        or None when it has none)."""
        from metrics import USABLE_STATUSES

        loss, lo, hi = self.predicted
        a = self.allocation
        observed = run.get(self.loss_column) if run and run.get("status") in USABLE_STATUSES else None
        observed = None if observed is None or not math.isfinite(observed) else float(observed)
        return {"trial_id": self.trial.trial_key, "multiplier": self.multiplier,
                "reference_compute": self.reference_compute, "compute": self.compute, "law": self.law,
                "n_runs": self.n_runs, "n_opt": a.N_opt, "d_opt": a.D_opt, "loss_opt": a.loss,
                "n_actual": self.n_actual, "d_actual": self.d_actual, "planned_flops": float(self.trial.planned_flops),
                "predicted_loss": loss, "predicted_lo": lo, "predicted_hi": hi, "predicted_level": self.level,
                "status": run.get("status") if run else None, "flops": run.get("flops") if run else None,
                "final_val_loss": run.get("final_val_loss") if run else None, "loss_column": self.loss_column,
                "observed_loss": observed, "covered": None if observed is None else bool(lo <= observed <= hi)}


def _sweep_runs(spec: SweepSpec, law):
    """The sweep's runs as `fit` reads them (`fitting.cli.load_table` on its store), without earlier
    ladder runs; → (FitData, per-row exact FLOPs at the fitted D, notes)."""
    from fitting.cli import add_table_args, load_table
    from metrics import join, load_runs, require_sweep

    require_sweep(spec.storage, spec.name)  # a sweep that never ran: one line, nothing created
    store = join(spec.storage, spec.name)
    parser = argparse.ArgumentParser(add_help=False)
    add_table_args(parser)  # the fit's own column defaults, and the sweep's aggregation (fit.aggregate)
    aggregation = spec.aggregation()
    flags = [a for c in aggregation.best_over for a in ("--best-over", c)]
    flags += [a for c in aggregation.mean_over for a in ("--mean-over", c)]
    data, notes = load_table(store, parser.parse_args(flags), law, name=f"sweep {spec.name}")
    with warnings.catch_warnings():  # its skipped parts are in `notes` already, from load_table's read
        warnings.simplefilter("ignore")
        runs = load_runs(store)  # the table load_fit_data read, row for row: ids and FLOPs per token
    rows = data.index
    ids = np.asarray(runs.column("trial_id").to_pylist(), dtype=object)[rows]
    flops = np.asarray(runs.column("flops").to_numpy(zero_copy_only=False), dtype=float)[rows]
    seen = np.asarray(runs.column("tokens_seen").to_numpy(zero_copy_only=False), dtype=float)[rows]
    keep = np.array([not str(i).startswith(LADDER_PREFIX) for i in ids], dtype=bool)
    data = data.subset(keep)
    # exact FLOPs of each fitted run at the D the fit uses (a prediction-stopped run: its planned end)
    compute = (flops / seen)[keep] * data.X["D"]
    return data, compute, notes


def plan_ladder(spec: SweepSpec, multiplier: float, *, allow_at_bounds: bool = False, level: float = 0.9,
                check_budget: bool = True) -> LadderPlan:
    """The ladder's plan from the sweep's stored runs (module doc). Raises ValueError (one line,
    naming the field, flag or store) for a multiplier <= 1, too few usable runs, a fit the runs do
    not identify, parameters at their bounds (unless `allow_at_bounds`), a spec that cannot train
    the run (tokens regime, trainer.max_steps, batch geometry) or, with `check_budget`, a budget
    that cannot pay for it; FileNotFoundError for a sweep that never ran."""
    from fitting.checks import user_messages
    from fitting.allocate import compute_optimal_allocation
    from fitting.extrapolation import calibrate_misfit, extrapolation_interval
    from fitting.fit import fit_law
    from fitting.uncertainty import bootstrap
    from fitting.laws import get_law
    from fitting.objective import bounds_note, params_at_bounds
    from orchestrator.grid import check_trial, make_trial

    multiplier = ladder_multiplier(multiplier, "ladder.multiplier")
    law = get_law(spec.search.law or "chinchilla")
    data, compute, notes = _sweep_runs(spec, law)
    need = law.min_runs
    if len(data) < need:
        raise ValueError(f"ladder: sweep {spec.name} has {len(data)} usable runs; fitting {law.name} "
                         f"({law.n_params} parameters) needs at least {need}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_law(law, data, level=level, seed=0)
        # N_opt's and D_opt's intervals from resamples, as `plan` draws them with its default --bootstrap;
        # the loss intervals take the default parameter part (fitting.extrapolation), as plan's do
        bootstrap(fit, n_boot=1000, seed=0)
    notes += user_messages(caught)
    verdict = fit.identifiability
    if not verdict.identified:
        raise ValueError(f"ladder: the runs of sweep {spec.name} do not identify {law.name} ({verdict.reason}); "
                         f"no compute-optimal allocation to train")
    reference = float(np.max(compute))
    target = multiplier * reference
    calibration = calibrate_misfit(fit)
    allocation = compute_optimal_allocation(fit, target, level=level, misfit_calibration=calibration)
    if not allocation.identified:
        raise ValueError(f"ladder: no compute-optimal allocation from the runs of sweep {spec.name}: "
                         f"{allocation.unidentified_reason}; add runs that vary N and D more widely")
    at_target = {k: np.append(v, allocation.N_opt if k == "N" else allocation.D_opt) for k, v in fit.data.X.items()}
    at_bounds = params_at_bounds(law, fit.z, at_target)
    if at_bounds and not allow_at_bounds:
        raise ValueError(f"ladder: {bounds_note(at_bounds)}: the interval at {target:.3g} FLOPs is unreliable; add "
                         f"runs (or widen their range), or set ladder.allow_at_bounds (--allow-at-bounds) to train anyway")
    if at_bounds:
        notes.append(f"TRAINED ANYWAY (allow_at_bounds): {bounds_note(at_bounds)}")

    shape, shape_notes = ladder_shape(spec, allocation.N_opt)
    notes += shape_notes
    if "tokens" not in spec.axes.regime:
        raise ValueError("axes.regime: the ladder trains in the tokens regime (each token once, the schedule "
                         "spans D), which the sweep does not use")
    batch_tokens = _only(spec, "batch_tokens", notes)
    lr, seed = _only(spec, "lr", notes), _only(spec, "seeds", notes)
    seqs = batch_tokens // shape.n_ctx
    steps = max(1, round(target / (train_flops(shape, 1) * batch_tokens)))
    # whole windows of n_ctx + 1 tokens: the trainer's split then gives exactly `steps` batches
    dataset_tokens = steps * seqs * (shape.n_ctx + 1)
    max_steps = spec.trainer.get("max_steps")
    if max_steps is not None and max_steps < steps:
        if "dataset" not in spec.axes.regime and all("dataset" not in a.regime for a in spec.sub_sweeps.values()):
            raise ValueError(f"trainer.max_steps: {max_steps} would cut the ladder run at {max_steps} of its {steps} "
                             f"steps ({target:.3g} FLOPs)")
        # The sweep needs max_steps for its dataset-regime runs (their cap and schedule length); a
        # cut ladder run would test nothing, so it trains its whole schedule (the budget still holds).
        notes.append(f"trainer.max_steps ({max_steps}) caps the sweep's dataset-regime runs; the ladder run "
                     f"(tokens regime) trains all its {steps} steps")
        spec = dataclasses.replace(spec, trainer={k: v for k, v in spec.trainer.items() if k != "max_steps"})
    # its own grid in the runs table, so fits of the sweep (`--sub-sweep` main) leave it out
    trial = make_trial(spec, ladder_key(multiplier), shape, dataset_tokens, regime="tokens",
                       batch_tokens=batch_tokens, lr=lr, seed=seed, target_params=allocation.N_opt,
                       run_columns={SUB_SWEEP_COLUMN: LADDER_GRID})
    check_trial(trial, spec.resources)
    d_actual = steps * batch_tokens
    iv = extrapolation_interval(fit, {"N": np.array([float(non_embedding_params(shape))]),
                                      "D": np.array([float(d_actual)])}, level=level, calibration=calibration)
    predicted = (float(iv.mean[0]), float(iv.lo[0]), float(iv.hi[0]))
    rule = identified_rung(fit.verdicts(level), predicted, f"the runs of sweep {spec.name}", law.name)
    plan = LadderPlan(sweep=spec.name, multiplier=multiplier, law=law.name, n_runs=len(data),
                      reference_compute=reference, compute=target, allocation=allocation, trial=trial,
                      d_actual=d_actual, predicted=predicted,
                      level=level, loss_column=data.columns["loss"], misfit=calibration.describe(),
                      notes=list(dict.fromkeys(notes + allocation.notes + rule)))
    if check_budget:
        check_ladder_budget(spec, trial)
    return plan


def identified_rung(verdicts: Mapping, predicted: tuple[float, float, float], runs: str, law: str) -> list[str]:
    """The ladder's last identification rule (module doc), after the N/D split, the bounds and the
    allocation's drivers passed: the loss predicted at the ladder run, ``(loss, lo, hi)`` in
    nats/token, must have a finite, positive interval, else ValueError (nothing to score).
    Parameters the runs merely leave unidentified one by one (`ParamVerdict` kinds "interval",
    "null"; `verdicts` is `FitResult.verdicts`) do not stop it: returns the one note that names
    them (empty list when there are none)."""
    if not (np.all(np.isfinite(predicted)) and predicted[1] > 0):
        raise ValueError(f"ladder: {runs} do not identify {law}'s loss at the ladder run (its interval "
                         f"[{predicted[1]:.4g}, {predicted[2]:.4g}] is not finite); nothing to score")
    wide = [v.name for v in verdicts.values() if not v.identified and v.kind in ("interval", "null")]
    if not wide:
        return []
    return [f"trained although {', '.join(wide)} {'is' if len(wide) == 1 else 'are'} not identified one by one "
            f"(wide intervals; none at a bound or open where that moves the optimum), and the loss at the ladder "
            f"run has a finite interval (bootstrap) that carries their spread: this run tests it"]


def check_ladder_budget(spec: SweepSpec, trial) -> bool:
    """Whether the ladder run still has to be trained (False: it already ended in the store).
    Raises ValueError naming ``budget`` if what the sweep left cannot pay for its planned FLOPs
    (`orchestrator.budget`: the ledger of the stored runs, `BudgetLedger.fits`)."""
    from metrics import load_runs
    from orchestrator.budget import ledger_from_store, limit_flops

    limit = limit_flops(spec.budget)
    ledger, done = ledger_from_store(limit, load_runs(spec.storage, spec.name).to_pylist())
    if trial.trial_key in done:
        return False
    if not ledger.fits(trial.planned_flops):
        raise ValueError(f"budget: the ladder run {trial.trial_key} plans {trial.planned_flops:.3g} FLOPs; the sweep "
                         f"spent {ledger.spent:.3g} of {limit:.3g}, leaving {ledger.remaining:.3g} (raise budget.flops "
                         f"to at least {ledger.spent + trial.planned_flops:.3g})")
    return True


# --------------------------------------------------------------------------------------------
# Training it


@dataclass(frozen=True)
class LadderOutcome:
    plan: LadderPlan
    row: dict  # what was written to ladder/
    exit_code: int  # the one-run sweep's (0: it ended; 1: it failed after retries; 128+n: interrupted)


def result_line(row: Mapping) -> str:
    """The verdict: predicted vs observed loss, the interval, covered yes/no."""
    head = (f"ladder {row['trial_id']}: predicted {row['predicted_loss']:.4g} "
            f"[{row['predicted_lo']:.4g}, {row['predicted_hi']:.4g}] ({int(round(row['predicted_level'] * 100))}% "
            f"prediction interval)")
    if row.get("observed_loss") is None:
        return f"{head}, no observed loss (run status {row.get('status') or 'none'}): not scored"
    error = row['observed_loss'] / row['predicted_loss'] - 1
    return (f"{head}, observed {row['observed_loss']:.4g} ({row['loss_column']}; final_val_loss "
            f"{row['final_val_loss']:.4g}; held out: the ladder run itself): relative error {error:+.2%} "
            f"(observed / predicted - 1), covered {'yes' if row['covered'] else 'NO'}")


def run_ladder(spec, *, multiplier: float | None = None, allow_at_bounds: bool | None = None, level: float = 0.9,
               resume: bool = False, address: str | None = None, num_cpus: int | None = None,
               max_failures: int = 2, verbose: int = 1, check_corpus: bool = True) -> LadderOutcome:
    """Plan, train and score the ladder run (module doc); prints the plan and the verdict. The
    spec's ``ladder:`` section gives the defaults of `multiplier` and `allow_at_bounds`. Raises as
    `plan_ladder` (and the data checks, `orchestrator.spec_data.check_data`) before Ray starts."""
    from metrics import load_runs, write_ladder_row
    from orchestrator.grid import Grid
    from orchestrator.search import GridSearcher
    from orchestrator.spec import load_spec
    from orchestrator.spec_data import check_data
    from orchestrator.sweep import run_sweep, trial_settings

    spec_path = None if isinstance(spec, (SweepSpec, Mapping)) else str(spec)
    spec = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    settings = spec.ladder or LadderSpec()
    multiplier = settings.multiplier if multiplier is None else multiplier
    allow = settings.allow_at_bounds if allow_at_bounds is None else allow_at_bounds
    plan = plan_ladder(spec, multiplier, allow_at_bounds=allow, level=level, check_budget=False)
    trial = plan.trial
    to_train = check_ladder_budget(spec, trial)
    if to_train and check_corpus:  # the ladder's D may exceed every grid run's
        try:
            check_data(spec, Grid(trials=(trial,), cut=(), total_flops=trial.planned_flops, budget=spec.budget))
        except SpecError as err:
            if "axes.dataset_tokens" not in str(err):
                raise
            raise SpecError(f"ladder: the compute-optimal D at {multiplier:g}x ({trial.dataset_tokens:.4g} tokens) does "
                            f"not fit the corpus ({str(err).split(' must be in ', 1)[-1]}); lower ladder.multiplier "
                            f"(--multiplier) or use a larger corpus") from None
    print("\n".join(plan.lines()), flush=True)
    exit_code = 0
    if to_train:
        # An observation, not a prediction, scores the ladder: no early prediction for this run.
        run_settings = dataclasses.replace(trial_settings(spec),
                                           early_prediction=dataclasses.asdict(EarlyPrediction()))

        def one_run(spec, grid, ledger, done, max_concurrent):
            # the spec `run_sweep` passes names the corpora as prepared in the sweep's storage
            # (the extra-eval sets too); the ladder's own trainer settings stand (it may have left
            # out a max_steps that only the dataset regime needs)
            run = dataclasses.replace(trial, corpus=spec.corpus,
                                      trainer={k: v for k, v in spec.trainer.items() if k in trial.trainer})
            return GridSearcher([run], done_keys=done, settings=run_settings, ledger=ledger,
                                max_concurrent=max_concurrent)

        summary = run_sweep(spec, resume=resume, address=address, num_cpus=num_cpus, max_failures=max_failures,
                            verbose=verbose, make_searcher=one_run, check_corpus=check_corpus,
                            experiment=trial.trial_key)
        exit_code = summary.exit_code
        if summary.interrupted:
            print(f"scalesweep ladder: interrupted by {summary.interrupted}; continue the ladder run with:\n"
                  f"  scalesweep ladder {spec_path or 'SPEC'} --multiplier {multiplier:g} --resume",
                  file=sys.stderr, flush=True)
    else:
        print(f"ladder {trial.trial_key}: already trained in sweep {spec.name}; scoring its stored run", flush=True)
    stored = load_runs(spec.storage, spec.name, trial_id=trial.trial_key).to_pylist()
    row = plan.row(stored[-1] if stored else None)
    write_ladder_row(spec.storage, spec.name, row)
    print(result_line(row), flush=True)
    return LadderOutcome(plan=plan, row=row, exit_code=exit_code)
