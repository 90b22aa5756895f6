"""``scalesweep replay``: a design strategy replayed against an existing pool of runs
(:func:`fitting.replay.run_design`), its predictions of the targets written as CSV.

``scalesweep replay POOL.csv --targets TARGETS.csv --law chinchilla --budget-fraction 0.1 ...``

Apart from :mod:`fitting.replay` so that registering the command imports no scipy: every
`scalesweep` command builds the whole parser, and the design modules' scipy.stats import cost
each one ~3 s of start-up (`scalesweep run` included).
"""

from __future__ import annotations

import sys
from typing import Mapping

import numpy as np

from fitting.strategy_names import STRATEGY_NAMES
from scalesweep.argtypes import count, non_negative, positive_count, share

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "replay", help="run a design strategy against an existing pool of runs",
        description="Buy pool rows one batch at a time (revealing a loss only when bought) until the "
        "budget is spent, fit the law on what was bought, and predict the targets.")
    from fitting.cli import add_bootstrap_arg, add_parameter_part_arg, add_table_args

    p.add_argument("pool", nargs="?", help="CSV/Parquet of existing runs (or --example NAME)")
    p.add_argument("--targets", help="CSV/Parquet of configurations to predict (a loss column there is scored); "
                                     "with --example and no --targets, the example's runs above its holdout compute "
                                     "(1e21 FLOPs for epoch-chinchilla) are the targets and the rest the pool")
    p.add_argument("--law", default="chinchilla", help="built-in name, file.py:LAW or pkg.module:LAW")
    p.add_argument("--budget-fraction", type=share, default=0.1, help="of the whole pool's cost (default 0.1)")
    p.add_argument("--strategy", default="active", choices=list(STRATEGY_NAMES),
                   help="how runs are bought (default active: expected target-error reduction per cost)")
    p.add_argument("--misfit", type=non_negative, default=None,
                   help="active: prior sd of the law's misfit in log loss (default 0.04; 0 trusts the law exactly)")
    p.add_argument("--seed-runs", type=positive_count, default=None,
                   help="model-based strategies: the first this many runs are the space-filling seed (default: the seed, laid out for 2·(params + 1) runs, or params + 3 without a misfit prior, ends at the first fit)")
    add_table_args(p)  # the column flags of fit and plan; they apply to the pool and the targets alike
    p.add_argument("--cost-col", default=None, help="cost column (default 6·N·D)")
    p.add_argument("--interval", choices=["misfit", "plain"], default="misfit",
                   help="90%% intervals: widened by the law's misfit calibrated on held-out top-compute runs "
                   "(fitting.extrapolation; default), or the plain prediction interval")
    add_bootstrap_arg(p)  # the final fit's parameter intervals, as fit/predict/plan print them
    add_parameter_part_arg(p)
    p.add_argument("--batch", type=positive_count, default=1, help="runs bought per refit")
    p.add_argument("--seed", type=count, default=0, help="seed of the strategy and the fits (default 0)")
    p.add_argument("--out", required=True, help="predictions CSV")
    p.set_defaults(func=_cmd_replay)


def _check_seed_runs(args, law, n_pool: int) -> None:
    """Before any design work: --seed-runs is for a strategy with a seed design, at least the runs
    a fit of ``law`` needs (the spec's search.seed_runs rule: the designer seeds until it has a fit
    anyway) and at most the pool's ``n_pool`` rows (more cannot be bought). The strategy buys that
    many seed runs first (:meth:`fitting.strategies._ModelStrategy.seeding`)."""
    if args.seed_runs is None:
        return
    if args.strategy not in ("active", "d_optimal", "v_optimal"):
        raise ValueError("--seed-runs takes a positive integer, with --strategy active, d_optimal or v_optimal")
    if args.seed_runs < law.min_runs:
        raise ValueError(f"--seed-runs {args.seed_runs}: fewer than the {law.min_runs} runs a fit of law {law.name!r} "
                         f"needs (its parameters + 1); the strategy seeds until it has a fit")
    if args.seed_runs > n_pool:
        raise ValueError(f"--seed-runs {args.seed_runs}: the pool has {n_pool} rows; a seed cannot be larger")


def _seed_note(args, run, law) -> list[str]:
    """The line saying how many bought runs were the seed when --seed-runs asked for another number:
    the budget ended during the seed, or no fit of the law was possible after that many runs and
    the seed went on until one was."""
    if args.seed_runs is None or run.seeded == args.seed_runs:
        return []
    if run.seeded == len(run.bought) and run.seeded < args.seed_runs:
        why = "the budget ended during the seed"
    else:  # seeds go on while the law cannot be fitted (failed runs, a fit that did not converge)
        why = f"no fit of law {law.name!r} was possible after {args.seed_runs} runs, so the seed went on until one was"
    return [f"--seed-runs {args.seed_runs}: {run.seeded} of the {len(run.bought)} bought runs were seed runs ({why})"]


def _strategy(args):
    from fitting.strategies import ActiveDesign, make_strategy

    kwargs = {}
    if args.seed_runs is not None:
        kwargs["seed_size"] = args.seed_runs
    if args.misfit is not None:
        if args.strategy != "active" or args.misfit < 0:
            raise ValueError("--misfit takes a number >= 0, with --strategy active")
        return ActiveDesign.with_misfit(args.misfit, **kwargs)
    return make_strategy(args.strategy, **kwargs)


def _pool_and_targets(args, law):
    """→ (pool source, pool FitData, target FitData, target columns to write, warnings): one
    column-mapping path (:func:`fitting.cli.load_table`) for both tables."""
    from fitting import reference
    from fitting.cli import load_table, table_source
    from fitting.data import read_table

    source, drop, name = table_source(args.pool, args, "POOL")
    pool, notes = load_table(source, args, law, drop_top_loss=drop, name=name)
    if args.targets:
        targets, more = load_table(args.targets, args, law, require_loss=False, flag="--targets")
        raw = read_table(args.targets)[0]
        cols = {k: np.asarray(v)[targets.index] for k, v in raw.items()}
    elif args.example:
        split = reference.get(args.example).holdout_compute
        above = pool.compute(args.flops_per_token) > split
        targets, pool, more = pool.subset(above), pool.subset(~above), []
        notes.append(f"example {args.example}: pool = its {len(pool)} runs with C <= {split:g} FLOPs, targets = the "
                     f"{len(targets)} above")
        cols = {**targets.X, "loss": targets.y}
    else:
        raise ValueError("replay needs --targets (or --example NAME without POOL)")
    if len(targets) == 0:
        raise ValueError("no targets to predict")
    return source, pool, targets, cols, notes + more


def _cost(args, source, pool):
    """→ (pool, its cost per row or None, notes): ``--cost-col`` read like every other column; a
    pool row whose cost is not a positive number is dropped with a counted note."""
    if not args.cost_col:
        return pool, None, []
    from fitting.columns import numeric_column
    from fitting.data import read_table

    raw = read_table(source)[0]
    if args.cost_col not in raw:
        raise ValueError(f"--cost-col {args.cost_col}: no column {args.cost_col!r} in the pool ({source}); "
                         f"available: {sorted(raw)}")
    try:
        cost = numeric_column(raw[args.cost_col], args.cost_col, str(source))[0][pool.index]
    except ValueError as err:  # no number at all
        raise ValueError(f"--cost-col {args.cost_col}: {err}") from None
    bad = ~(np.isfinite(cost) & (cost > 0))
    if bad.all():
        raise ValueError(f"--cost-col {args.cost_col}: no positive number in the pool's usable rows")
    note = [f"dropped {int(bad.sum())} pool rows whose {args.cost_col} is not a positive number"] if bad.any() else []
    return pool.subset(~bad), cost[~bad], note


def _check_budget(fraction: float, budget: float, cost: np.ndarray) -> None:
    """ValueError naming --budget-fraction when the budget it gives cannot buy even the cheapest
    pool row (`orchestrator.budget.affordable`, the design's own test), before any design work."""
    from fitting.cost import affordable

    cheapest, total = float(np.min(cost)), float(np.sum(cost))
    if not affordable(cheapest, budget, budget):
        raise ValueError(f"--budget-fraction: {fraction:g} of the pool's cost {total:.4g} is {budget:.4g}, below the "
                         f"cheapest pool row's cost {cheapest:.4g}; use at least {cheapest / total * 1.001:.3g}")


def _cmd_replay(args) -> int:
    import warnings

    from fitting.design import Candidates, TargetRegion
    from fitting.replay import run_design, target_metrics
    from fitting.checks import unidentified_note
    from fitting.cli import PLAIN_SOURCE, check_parameter_part, law_from_args, parameter_part_from_args
    from scalesweep.cli import check_output_file

    check_output_file(args.out, "--out")  # before the design runs, not after
    law = law_from_args(args)
    if not args.cost_col and not {"N", "D"} <= set(law.inputs):
        raise ValueError(f"--law {args.law}: replay's default cost of a run is 6·N·D, and law {law.name!r} has no N "
                         f"and D inputs; give --cost-col")
    if not 0 < args.budget_fraction <= 1:
        raise ValueError(f"--budget-fraction must be in (0, 1], got {args.budget_fraction}")
    check_parameter_part(args)
    source, pool, targets, tgt_cols, notes = _pool_and_targets(args, law)
    pool, cost, more = _cost(args, source, pool)
    X, y = pool.X, pool.y
    cands = Candidates.from_columns(X, cost)
    notes += more
    budget = args.budget_fraction * float(cands.cost.sum())
    _check_budget(args.budget_fraction, budget, cands.cost)
    _check_seed_runs(args, law, len(cands))
    TX = targets.X
    target = TargetRegion.explicit(TX)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = run_design(law, cands, lambda idx: y[idx], _strategy(args), budget, target, batch=args.batch,
                         seed=args.seed)
    if run.fit is None:
        raise ValueError(f"the budget bought {len(run.bought)} runs: too few to fit law {law.name!r} "
                         f"({law.min_runs} needed); raise --budget-fraction")
    if args.bootstrap:  # the parameter part as `predict` on the bought runs prints it (bench/coverage.py --bootstrap)
        from fitting.uncertainty import bootstrap

        bootstrap(run.fit, n_boot=args.bootstrap, seed=args.seed)
    from fitting.extrapolation import describe_parameter_part

    part = parameter_part_from_args(args, run.fit)
    if args.interval == "misfit":
        from fitting.extrapolation import calibrate_misfit, extrapolation_interval

        calibration = calibrate_misfit(run.fit, parameter_part=part)
        iv = extrapolation_interval(run.fit, TX, level=0.9, calibration=calibration, parameter_part=part)
    else:
        iv = run.fit.interval(TX, level=0.9)
    _write_predictions(args.out, tgt_cols, iv)
    for note in notes + _seed_note(args, run, law):
        print(f"warning: {note}")
    if pool.aggregation:
        print(f"pool rows: {pool.aggregation}")
    seed_what = "" if not run.seeded else (f" (the first {run.seeded} its seed design"
                                             + (f", --seed-runs {args.seed_runs}" if args.seed_runs is not None else "") + ")")
    print(f"bought {len(run.bought)} of {len(cands)} pool rows with strategy {args.strategy}{seed_what}; "
          f"compute spent {run.spent:.4g} of budget {budget:.4g} ({run.spent / cands.cost.sum():.2%} of the pool)")
    for j, i in enumerate(run.bought):
        print("  " + ", ".join(f"{k}={v[i]:.4g}" for k, v in X.items()) + f", loss={y[i]:.4f}, cost={cands.cost[i]:.3g}"
              + ("  (seed)" if j < run.seeded else ""))
    verdict = run.fit.identifiability
    tags = run.fit.param_tags(0.9)  # the tags fit prints beside each parameter, at the intervals' level
    print(("fit: " if verdict.identified else f"fit (NOT IDENTIFIED: {verdict.reason}; the N and D terms are not "
           f"separated and the predictions assume the split below): ")
          + ", ".join(f"{k}={v:.4g}" + (f" ({tags[k]})" if tags[k] else "") for k, v in run.fit.params.items()))
    if run.fit.bounds_note:
        print(f"warning: {run.fit.bounds_note}")
    if (why := unidentified_note(run.fit.verdicts(0.9), f"law {run.fit.law.name!r}")):  # the tags' reasons
        print(f"warning: {why}")
    if args.interval == "misfit":
        print(f"intervals: {describe_parameter_part(run.fit, part)}")
        print(f"intervals: {calibration.describe()}")
    else:  # --interval plain: named too, so no interval is printed without its source
        print(f"intervals: {PLAIN_SOURCE[iv.method]}")
    scored = np.isfinite(targets.y) & (targets.y > 0)
    if scored.any():
        m = target_metrics(iv.mean[scored], targets.y[scored], iv.lo[scored], iv.hi[scored])
        print(f"targets with a known loss, {int(scored.sum())} of {len(iv.mean)}: R2 {m['r2']:.4f}, mean abs rel error "
              f"{m['mean_are']:.4%}, 90% interval coverage {m['coverage']:.2%}")
    sys.stdout.flush()
    return 0


def _write_predictions(path, cols: Mapping[str, np.ndarray], iv) -> None:
    """The targets' predictions as CSV at ``path`` (local or a pyarrow.fs URI), each row with its
    interval's level and method (e.g. ``profile+extrapolation_error(sd=0.0238)``: the parameter part and the
    misfit sd replay prints in full), so the file says what its bounds are."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from metrics import resolve, write_atomically

    table = pa.table({**{k: np.asarray(v) for k, v in cols.items()},
                      "predicted_loss": iv.mean, "lower": iv.lo, "upper": iv.hi,
                      "level": np.full(len(iv.mean), iv.level), "interval": [iv.method] * len(iv.mean)})
    fs, target = resolve(path)  # a local path or a pyarrow.fs URI
    write_atomically(target, lambda stream: pcsv.write_csv(table, stream), fs)
