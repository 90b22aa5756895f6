"""Replay a design strategy against runs that already exist (or a simulated oracle).

:func:`run_design` is the budgeted buy-reveal-refit loop shared by ``scalesweep replay``, the
tests and ``bench/active_vs_grid.py``: the strategy picks candidates, the *reveal* callback
returns their losses (a pool lookup, or an oracle that simulates training), the
:class:`~fitting.online.OnlineFitter` refits, until nothing affordable is left. Every strategy
ends with the same full multi-start refit, so strategies are compared on equal footing.

``scalesweep replay POOL.csv --targets TARGETS.csv --law chinchilla --budget-fraction 0.1 ...``
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from scalesweep.argtypes import count, non_negative, number, positive_count

from fitting.cost import affordable
from fitting.design import Candidates, DesignState, TargetRegion
from fitting.fit import FitResult
from fitting.laws import get_law
from fitting.online import OnlineFitConfig, OnlineFitter
from fitting.strategies import STRATEGIES, ActiveDesign, Strategy, make_strategy

__all__ = ["DesignRun", "SimulatedOracle", "undertraining_misfit", "run_design", "target_metrics", "register"]


@dataclass
class DesignRun:
    """Outcome of one budgeted design: what was bought, at what cost, and the final fit."""

    bought: list[int]
    spent: float
    budget: float
    fit: FitResult | None
    fitter: OnlineFitter


def run_design(law, candidates: Candidates, reveal: Callable[[np.ndarray], np.ndarray], strategy: Strategy,
               budget: float, target: TargetRegion | None = None, *, batch: int = 1, seed: int = 0,
               fit_config: OnlineFitConfig | None = None, noise_floor: float = 0.01) -> DesignRun:
    """Buy candidates with ``strategy`` until ``budget`` is spent; return the final fit.

    ``reveal(idx) -> losses`` (NaN marks a failed run: paid for, not fitted). ``noise_floor``: the
    least run-to-run scatter (log loss) the design assumes, whatever the fit's residuals say."""
    law = get_law(law)
    if len(candidates) == 0:
        raise ValueError("empty candidate pool")
    if not affordable(candidates.cost.min(), budget, budget):
        raise ValueError(f"budget {budget:.4g} is below the cheapest candidate's cost {candidates.cost.min():.4g}")
    target = target or TargetRegion.largest_planned(candidates)
    fitter = OnlineFitter(law, fit_config or OnlineFitConfig(seed=seed))
    state = DesignState(law=law, candidates=candidates, target=target, taken=np.zeros(len(candidates), dtype=bool),
                        budget_total=float(budget), budget_left=float(budget), rng=np.random.default_rng(seed),
                        noise_floor=noise_floor)
    needs_fit = getattr(strategy, "needs_fit", False)
    bought: list[int] = []
    while True:
        picks = strategy.select(state, batch)
        if not picks:
            break
        idx = np.asarray(picks, dtype=int)
        losses = np.asarray(reveal(idx), dtype=float)
        state.taken[idx] = True
        state.budget_left -= float(candidates.cost[idx].sum())
        bought.extend(int(i) for i in idx)
        fitter.add_many(candidates.rows(idx), losses, run_ids=[str(i) for i in idx])
        if needs_fit:
            state.fit = fitter.fit
    fit = fitter.refit(full=True)
    return DesignRun(bought=bought, spent=float(budget - state.budget_left), budget=float(budget), fit=fit,
                     fitter=fitter)


@dataclass
class SimulatedOracle:
    """A known loss surface plus multiplicative log-normal noise: "training" without training.

    ``misfit`` (optional): a function of the inputs giving how far (in log loss) the truth strays
    from the law, e.g. :func:`undertraining_misfit`; None makes the law exactly true."""

    law: object
    params: Mapping[str, float]
    noise: float = 0.015  # sd of log loss (≈ 1.5 % run-to-run scatter)
    seed: int = 0
    misfit: Callable[[Mapping[str, np.ndarray]], np.ndarray] | None = None

    def __post_init__(self):
        self.law = get_law(self.law)
        self._rng = np.random.default_rng(self.seed)

    def truth(self, X) -> np.ndarray:
        mu = self.law.predict(self.params, X)
        return mu if self.misfit is None else mu * np.exp(self.misfit(X))

    def observe(self, X) -> np.ndarray:
        mu = self.truth(X)
        return mu * np.exp(self.noise * self._rng.standard_normal(mu.shape))

    def observe_rows(self, candidates: Candidates) -> Callable[[np.ndarray], np.ndarray]:
        """A ``reveal`` for :func:`run_design`: one noisy outcome per candidate, drawn now, so
        every strategy replayed against it sees the same run give the same loss."""
        y = self.observe(candidates.X)
        return lambda idx: y[np.asarray(idx)]


def undertraining_misfit(amplitude: float = 0.02, knee: float = 2.5) -> Callable[[Mapping[str, np.ndarray]], np.ndarray]:
    """The misfit the Epoch Chinchilla runs show against their own Chinchilla fit: runs with few
    tokens per parameter read high (residuals of runs with D/N < e average +0.9 %, sd 1.7 %;
    with D/N > e^2.5 they are flat, sd 0.4 %). Modelled as amplitude·(1 − ln(D/N)/knee)² log
    loss below D/N = e^knee (≈ 12), zero above: +2 % at D/N = 1, +0.7 % at D/N = e."""

    def misfit(X):
        tokens_per_param = np.log(np.asarray(X["D"], dtype=float) / np.asarray(X["N"], dtype=float))
        return amplitude * np.clip(1.0 - tokens_per_param / knee, 0.0, None) ** 2

    return misfit


def target_metrics(pred: np.ndarray, truth: np.ndarray, lower=None, upper=None) -> dict[str, float]:
    """R² (of loss), mean absolute relative error and, with bounds, interval coverage."""
    pred, truth = np.asarray(pred, dtype=float), np.asarray(truth, dtype=float)
    ss_tot = float(((truth - truth.mean()) ** 2).sum())
    out = {
        "r2": float(1 - ((pred - truth) ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
        "mean_are": float(np.mean(np.abs(pred / truth - 1))),
    }
    if lower is not None and upper is not None:
        out["coverage"] = float(np.mean((truth >= lower) & (truth <= upper)))
    return out


# ====================================================================== CLI
def register(subparsers) -> None:
    p = subparsers.add_parser(
        "replay", help="run a design strategy against an existing pool of runs",
        description="Buy pool rows one batch at a time (revealing a loss only when bought) until the "
        "budget is spent, fit the law on what was bought, and predict the targets.")
    from fitting.cli import add_bootstrap_arg, add_table_args

    p.add_argument("pool", nargs="?", help="CSV/Parquet of existing runs (or --example NAME)")
    p.add_argument("--targets", help="CSV/Parquet of configurations to predict (a loss column there is scored); "
                                     "with --example and no --targets, the example's runs above its holdout compute "
                                     "(1e21 FLOPs for epoch-chinchilla) are the targets and the rest the pool")
    p.add_argument("--law", default="chinchilla", help="built-in name, file.py:LAW or pkg.module:LAW")
    p.add_argument("--budget-fraction", type=number(float, low=0, low_open=True, high=1), default=0.1, help="of the whole pool's cost (default 0.1)")
    p.add_argument("--strategy", default="active", choices=list(STRATEGIES),
                   help="how runs are bought (default active: expected target-error reduction per cost)")
    p.add_argument("--misfit", type=non_negative, default=None,
                   help="active: prior sd of the law's misfit in log loss (default 0.04; 0 trusts the law exactly)")
    p.add_argument("--seed-runs", type=positive_count, default=None,
                   help="model-based strategies: size of the space-filling seed (default 2·(params + 1) for active, params + 3 without a misfit prior)")
    add_table_args(p)  # the column flags of fit and plan; they apply to the pool and the targets alike
    p.add_argument("--cost-col", default=None, help="cost column (default 6·N·D)")
    p.add_argument("--interval", choices=["misfit", "plain"], default="misfit",
                   help="90%% intervals: widened by the law's misfit calibrated on held-out top-compute runs "
                   "(fitting.extrapolation; default), or the plain prediction interval")
    add_bootstrap_arg(p)  # the final fit's intervals, as fit/predict/plan print them
    p.add_argument("--batch", type=positive_count, default=1, help="runs bought per refit")
    p.add_argument("--seed", type=count, default=0, help="seed of the strategy and the fits (default 0)")
    p.add_argument("--out", required=True, help="predictions CSV")
    p.set_defaults(func=_cmd_replay)


def _strategy(args) -> Strategy:
    kwargs = {}
    if args.seed_runs is not None:
        if args.strategy not in ("active", "d_optimal", "v_optimal") or args.seed_runs < 1:
            raise ValueError("--seed-runs takes a positive integer, with --strategy active, d_optimal or v_optimal")
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
        targets, more = load_table(args.targets, args, law, require_loss=False)
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
    from fitting.data import numeric_column, read_table

    raw = read_table(source)[0]
    if args.cost_col not in raw:
        raise ValueError(f"pool: cost column {args.cost_col!r} not found; available: {sorted(raw)}")
    cost = numeric_column(raw[args.cost_col], args.cost_col, str(source))[0][pool.index]
    bad = ~(np.isfinite(cost) & (cost > 0))
    if bad.all():
        raise ValueError(f"pool: cost column {args.cost_col!r} has no positive number in the usable rows")
    note = [f"dropped {int(bad.sum())} pool rows whose {args.cost_col} is not a positive number"] if bad.any() else []
    return pool.subset(~bad), cost[~bad], note


def _cmd_replay(args) -> int:
    import warnings

    from scalesweep.cli import check_output_file

    check_output_file(args.out, "--out")  # before the design runs, not after
    law = get_law(args.law)
    if not 0 < args.budget_fraction <= 1:
        raise ValueError(f"--budget-fraction must be in (0, 1], got {args.budget_fraction}")
    source, pool, targets, tgt_cols, notes = _pool_and_targets(args, law)
    pool, cost, more = _cost(args, source, pool)
    X, y = pool.X, pool.y
    cands = Candidates.from_columns(X, cost)
    notes += more
    budget = args.budget_fraction * float(cands.cost.sum())
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
    if args.interval == "misfit":
        from fitting.extrapolation import calibrate_misfit, extrapolation_interval

        calibration = calibrate_misfit(run.fit)
        iv = extrapolation_interval(run.fit, TX, level=0.9, calibration=calibration)
    else:
        iv = run.fit.interval(TX, level=0.9)
    _write_predictions(args.out, tgt_cols, iv)
    for note in notes:
        print(f"warning: {note}")
    if pool.aggregation:
        print(f"pool rows: {pool.aggregation}")
    print(f"bought {len(run.bought)} of {len(cands)} pool rows with strategy {args.strategy}; "
          f"compute spent {run.spent:.4g} of budget {budget:.4g} ({run.spent / cands.cost.sum():.2%} of the pool)")
    for i in run.bought:
        print("  " + ", ".join(f"{k}={v[i]:.4g}" for k, v in X.items()) + f", loss={y[i]:.4f}, cost={cands.cost[i]:.3g}")
    verdict = run.fit.identifiability
    print(("fit: " if verdict.identified else f"fit (NOT IDENTIFIED: {verdict.reason}; the N and D terms are not "
           f"separated and the predictions assume the split below): ")
          + ", ".join(f"{k}={v:.4g}" for k, v in run.fit.params.items()))
    if run.fit.bounds_note:
        print(f"warning: {run.fit.bounds_note}")
    print(f"intervals: parameter part from {args.bootstrap} bootstrap resamples" if args.bootstrap else
          "intervals: parameter part by the delta method (--bootstrap 0)")
    if args.interval == "misfit":
        print(f"intervals: {calibration.describe()}")
    scored = np.isfinite(targets.y) & (targets.y > 0)
    if scored.any():
        m = target_metrics(iv.mean[scored], targets.y[scored], iv.lo[scored], iv.hi[scored])
        print(f"targets ({int(scored.sum())} with a loss of {len(iv.mean)}): R2 {m['r2']:.4f}, mean abs rel error "
              f"{m['mean_are']:.4%}, 90% interval coverage {m['coverage']:.2%}")
    sys.stdout.flush()
    return 0


def _write_predictions(path, cols: Mapping[str, np.ndarray], iv) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from metrics import resolve, write_atomically

    table = pa.table({**{k: np.asarray(v) for k, v in cols.items()},
                      "predicted_loss": iv.mean, "lower": iv.lo, "upper": iv.hi})
    fs, target = resolve(path)  # a local path or a pyarrow.fs URI
    write_atomically(target, lambda stream: pcsv.write_csv(table, stream), fs)
