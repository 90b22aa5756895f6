"""isoFLOP sweeps (Hoffmann et al. 2022, approach 2): per compute budget C, a log-spaced set of
model sizes, each trained on the tokens that make its exact training FLOPs land on C.

Pure planning, no Ray: `parse_isoflop` reads ``search: {kind: isoflop, ...}``, `budget_sizes`
gives the target N of one budget, `isoflop_dataset_tokens` the D of one shape at one budget, and
`format_isoflop_plan` is the per-budget table `scalesweep validate` prints. The shapes come from
the grid's shape rules (`orchestrator.grid`, `trainers.shapes.shape_for_params`), the FLOPs from
`trainers.shapes.train_flops` (3 x Kaplan's forward FLOPs per token, attention term included;
not 6N), the budget cut from `orchestrator.grid` as for any grid.

Rounding: a run trains whole batches, so D is a whole number of steps. The step count is
round(C / FLOPs per step), so a run's FLOPs miss C by at most half a step; a plan whose rounding
misses any budget by more than `ISOFLOP_RTOL` (fewer than ~10 steps) is refused, naming the budget.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from fitting.allocate import chinchilla_optimal
from fitting.laws import CHINCHILLA_EPOCH
from orchestrator.spec_types import SearchSpec
from trainers.fields import fail, positive, positive_int
from trainers.shapes import ModelShape, non_embedding_params, train_flops

__all__ = ["ISOFLOP_KEYS", "ISOFLOP_RTOL", "RUN_COLUMNS", "MIN_SIZES", "parse_isoflop", "budget_sizes",
           "reference_n_opt", "isoflop_dataset_tokens", "trained_tokens", "format_isoflop_plan"]

ISOFLOP_KEYS = ("budgets", "sizes_per_budget", "n_range", "n_span_decades")
# |actual FLOPs / C - 1| of every planned run is at most this (rounding D to whole steps).
ISOFLOP_RTOL = 0.05
# A profile's vertex (a parabola in log N) needs three points.
MIN_SIZES = 3
DEFAULT_SIZES = 7
DEFAULT_SPAN_DECADES = 1.5
# Extra runs columns an isoFLOP trial writes (docs/architecture.md §3): name -> Arrow type.
RUN_COLUMNS = {"isoflop_budget": "float64"}


def parse_isoflop(raw: Mapping[str, Any]) -> SearchSpec:
    """``search`` with ``kind: isoflop`` -> SearchSpec; raises SpecError naming the field:
    budgets missing, empty, not positive or repeated; sizes_per_budget below 3; n_range not
    two increasing positive numbers; both n_range and n_span_decades."""
    budgets = raw.get("budgets")
    if budgets is None:
        raise fail("search.budgets", "required for search.kind: isoflop (compute budgets in FLOPs)")
    if not isinstance(budgets, (list, tuple)):
        budgets = [budgets]
    if not budgets:
        raise fail("search.budgets", "must not be empty")
    parsed = []
    for i, value in enumerate(budgets):
        budget = positive(value, f"search.budgets[{i}]")
        if budget in parsed:
            raise fail(f"search.budgets[{i}]", f"{budget:g} is already search.budgets[{parsed.index(budget)}]")
        parsed.append(budget)
    sizes = raw.get("sizes_per_budget")
    sizes = DEFAULT_SIZES if sizes is None else positive_int(sizes, "search.sizes_per_budget")
    if sizes < MIN_SIZES:
        raise fail("search.sizes_per_budget", f"must be at least {MIN_SIZES} (an isoFLOP profile's "
                                              f"vertex needs 3 points), got {sizes}")
    n_range, span = raw.get("n_range"), raw.get("n_span_decades")
    if n_range is not None and span is not None:
        raise fail("search.n_range", "give n_range or n_span_decades, not both")
    if n_range is not None:
        if not isinstance(n_range, (list, tuple)) or len(n_range) != 2:
            raise fail("search.n_range", f"must be [lo, hi] (non-embedding N), got {n_range!r}")
        lo, hi = (positive(v, f"search.n_range[{i}]") for i, v in enumerate(n_range))
        if not lo < hi:
            raise fail("search.n_range", f"empty or inverted: lo {lo:g} must be below hi {hi:g}")
        n_range = (lo, hi)
    else:
        span = DEFAULT_SPAN_DECADES if span is None else positive(span, "search.n_span_decades")
    return SearchSpec(kind="isoflop", budgets=tuple(parsed), sizes_per_budget=sizes,
                      n_range=n_range or (), n_span_decades=span)


def reference_n_opt(budget: float) -> float:
    """The N that spends `budget` FLOPs compute-optimally under Epoch's refit of Chinchilla
    (`fitting.laws.CHINCHILLA_EPOCH`, C = 6ND): the centre of a budget's sizes with n_span_decades."""
    n_opt, _, _, _ = chinchilla_optimal(CHINCHILLA_EPOCH, budget)
    return float(n_opt)


def budget_sizes(search: SearchSpec, budget: float) -> tuple[float, ...]:
    """The target N (3 significant digits, so trial keys stay readable) of one budget's profile:
    `sizes_per_budget` log-spaced over n_range, or over n_span_decades centred on
    `reference_n_opt(budget)`."""
    if search.n_range:
        lo, hi = search.n_range
    else:
        centre, half = reference_n_opt(budget), search.n_span_decades / 2
        lo, hi = centre * 10 ** -half, centre * 10 ** half
    k = search.sizes_per_budget
    step = math.log(hi / lo) / (k - 1)
    return tuple(float(f"{lo * math.exp(i * step):.3g}") for i in range(k))


def isoflop_dataset_tokens(shape: ModelShape, budget: float, batch_tokens: int, path: str) -> int:
    """D (tokens of the training slice) that makes a run of `shape` spend ~`budget` FLOPs.

    The trainer cuts the slice into (n_ctx + 1)-token windows and takes whole batches of
    batch_tokens / n_ctx windows (`trainers.config.batch_geometry`), so D = steps x sequences x
    (n_ctx + 1) trains exactly steps x batch_tokens tokens, steps = round(budget / FLOPs per
    step). Raises SpecError at `path` when the budget is below one step, or when rounding to whole
    steps misses it by more than `ISOFLOP_RTOL`. A batch that is not a whole number of contexts
    is left to the trainer's own check (it names axes.batch_tokens)."""
    seqs = max(1, batch_tokens // shape.n_ctx)
    step_flops = train_flops(shape, seqs * shape.n_ctx)
    steps = round(budget / step_flops)
    what = (f"shape L{shape.n_layer}-d{shape.d_model} (N {non_embedding_params(shape):.3g}) at "
            f"batch_tokens {batch_tokens}: one step costs {step_flops:.3g} FLOPs")
    if steps < 1:
        raise fail(path, f"{budget:.3g} FLOPs is below one batch of {what}")
    miss = abs(steps * step_flops / budget - 1)
    if miss > ISOFLOP_RTOL:
        raise fail(path, f"{budget:.3g} FLOPs buys only {steps} step{'s' if steps > 1 else ''} of {what}, "
                         f"so the run would miss the budget by {miss:.0%} (more than {ISOFLOP_RTOL:.0%}); "
                         f"raise the budget or lower batch_tokens or the sizes")
    return steps * seqs * (shape.n_ctx + 1)


def trained_tokens(dataset_tokens: int, n_ctx: int, batch_tokens: int) -> int:
    """Tokens a tokens-regime run trains on a D-token slice: whole batches of its (n_ctx + 1)-token
    windows (`trainers.config.batch_geometry`; no trainer.max_steps cap)."""
    seqs = max(1, batch_tokens // n_ctx)  # a batch below one context is refused by the trainer's own check
    return (dataset_tokens // (n_ctx + 1)) // seqs * seqs * n_ctx


def format_isoflop_plan(trials) -> str:
    """Per budget: each run's actual N, the tokens it trains (D), tokens/param, its exact FLOPs
    and their ratio to the budget. `trials`: the grid's kept `TrialSpec`s."""
    by_budget: dict[float, list] = {}
    for trial in trials:
        by_budget.setdefault(trial.run_columns["isoflop_budget"], []).append(trial)
    lines = []
    for budget, group in sorted(by_budget.items()):
        sizes = sorted({t.non_embedding_params for t in group})
        lines.append(f"isoFLOP budget {budget:.3g} FLOPs: {len(group)} runs, {len(sizes)} sizes, "
                     f"N {sizes[0]:.3g}..{sizes[-1]:.3g} (Chinchilla-optimal N under Epoch's fit "
                     f"{reference_n_opt(budget):.3g}); D: tokens trained, FLOPs: their exact cost")
        if len(group) <= MIN_SIZES:  # fitting.frontier reports such a budget's vertex as unidentified
            lines.append(f"  warning: {len(group)} runs fit this budget's parabola exactly, so `frontier` can give its "
                         f"vertex no interval; sweep 4 or more sizes (search.sizes_per_budget) or seeds")
        rows = [("  trial", "N", "D", "D/N", "FLOPs", "FLOPs/C")]
        for t in sorted(group, key=lambda t: (t.non_embedding_params, t.trial_key)):
            n, d, flops = t.non_embedding_params, t.planned_tokens, t.planned_flops  # the budget's numbers
            rows.append((f"  {t.trial_key}", f"{n:.3g}", f"{d:.3g}", f"{d / n:.3g}", f"{flops:.3g}",
                         f"{flops / budget:.3f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)
