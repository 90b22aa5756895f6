"""Typed sweep spec: the frozen dataclasses `orchestrator.spec.load_spec` returns.

`SweepSpec` and its parts (`Axes`, `Resources`, `SearchSpec`, `Budget`), plus the key lists the
parser and the grid expansion (`orchestrator.grid`) both check against. No parsing here: the
YAML/mapping validation lives in `orchestrator.spec`, the trial grid in `orchestrator.grid`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from fitting.aggregate import RUN_COLUMNS
from trainers.config import REGIMES, TrainConfig
from trainers.data import CorpusSpec
from trainers.shapes import FAMILIES
from trainers.tokenizers import corpus_vocab_size
from trainers.fields import (
    choice, fail, mapping, non_negative, non_negative_int, number, option, positive, positive_int, text,
)

# Trainer settings a spec may set: every TrainConfig field the grid axes, corpus and budget do
# not own. Derived, so a new trainer option is accepted here without a second list to keep in sync.
_AXIS_OWNED = {"shape", "dataset_tokens", "regime", "corpus", "batch_tokens", "lr", "seed",
               "budget_flops"}
TRAINER_KEYS = tuple(sorted(f.name for f in dataclasses.fields(TrainConfig) if f.name not in _AXIS_OWNED))

SEARCH_KINDS = ("grid", "active", "isoflop")
ACTIVE_LAWS = ("chinchilla", "kaplan")
SEARCH_COSTS = ("flops", "time")
CUT_POLICIES = ("cheapest_first", "largest_first", "error")
HEADLINES = ("main", "kaplan_n", "kaplan_d", "kaplan_c", "kaplan_ns")
"""What the report states first (`fit.headline`): the law of N and D, L(N), L(D), L(C_min) or L(N, S_min)."""
_SHAPE_KEYS = ("n_layer", "d_model", "n_heads", "d_ff", "d_attn")


def _lr_item(value: Any, path: str) -> float | None:
    if value in (None, "kaplan"):
        return None
    return positive(value, path)


_lr_item.rule = "number > 0 or kaplan"


def _shape_item(value: Any, path: str) -> Mapping[str, int]:
    # n_heads and d_ff: required by the transformer (ModelShape says so, per trial); an LSTM-only
    # sweep may leave them out
    raw = mapping(value, path, _SHAPE_KEYS, required=("n_layer", "d_model"))
    return {key: positive_int(item, f"{path}.{key}") for key, item in raw.items()}


_shape_item.rule = "mapping of integers > 0"


# --------------------------------------------------------------------------------------------
# Typed spec. Each field's `doc` is the spec reference (docs/spec_reference.md, written by
# `python -m orchestrator.spec_reference`); an axis takes one value or a list.


@dataclass(frozen=True)
class Axes:
    """Grid axes; the trial grid is their Cartesian product. Either target_params (shapes made by
    `shape_for_params` for each aspect_ratio x d_ff_ratio x head_dim/n_heads) or explicit shapes."""

    target_params: tuple[float, ...] = option(
        (), "target non-embedding parameter counts N; the shape is chosen by shape_for_params "
            "(give this or shapes)", positive)
    shapes: tuple[Mapping[str, int], ...] = option(
        (), "explicit shapes {n_layer, d_model, n_heads, d_ff, d_attn (optional)} (give this or "
            "target_params); an lstm uses only n_layer and d_model", _shape_item)
    family: tuple[str, ...] = option(
        ("transformer",), "model families: transformer, lstm (Kaplan §3.2.1; hidden width d_model, "
                          "its shape from target_params by aspect_ratio alone)", choice(FAMILIES))
    aspect_ratio: tuple[float, ...] = option((64.0,), "d_model / n_layer (with target_params)", positive)
    d_ff_ratio: tuple[float, ...] = option((4.0,), "d_ff / d_model (with target_params)", positive)
    head_dim: tuple[int, ...] = option((64,), "d_model / n_heads (with target_params; or n_heads)",
                                       positive_int)
    n_heads: tuple[int, ...] = option((), "fixed head counts instead of head_dim (with target_params)",
                                      positive_int)
    n_ctx: tuple[int, ...] = option((1024,), "context length in tokens", positive_int)
    dataset_tokens: tuple[int, ...] = option(
        (), "D: training tokens (required, except with search.kind isoflop; unique tokens in the "
            "dataset regime); at most the corpus minus the validation split", positive_int)
    regime: tuple[str, ...] = option(
        ("tokens",), "tokens (each token once, schedule spans D) or dataset (repeat D, early-stop "
                     "on validation loss; needs trainer.max_steps)", choice(REGIMES))
    seeds: tuple[int, ...] = option((0,), "seeds (initialisation and data order)", non_negative_int)
    lr: tuple[float | None, ...] = option(
        (None,), "peak learning rates; 'kaplan' or omitted: Kaplan's rule from the trial's actual N",
        _lr_item, optional=True)
    batch_tokens: tuple[int, ...] = option(
        (8192,), "global batch in tokens; a multiple of n_ctx whose sequences divide evenly over "
                 "resources.workers", positive_int)


AXES_KEYS = tuple(f.name for f in dataclasses.fields(Axes))
"""The keys an ``axes:`` mapping may hold (the `Axes` fields)."""


@dataclass(frozen=True)
class Resources:
    """Per trial: `workers` data-parallel ranks, each with these CPUs and GPUs."""

    cpus_per_worker: float = option(1.0, "CPUs per rank; every rank must fit on one node", positive)
    gpus_per_worker: float = option(0.0, "GPUs per rank", non_negative)
    workers: int = option(1, "data-parallel ranks per trial (> 1: a Ray Train TorchTrainer)", positive_int)


@dataclass(frozen=True)
class SearchSpec:
    kind: str = option("grid", "grid: every planned run (cut to the budget up front); active: the "
                               "designer picks runs one at a time (the fields below); isoflop: per "
                               "compute budget, log-spaced sizes whose D spends that budget "
                               "(orchestrator/isoflop.py; sets N and D, so no axes.target_params, "
                               "shapes or dataset_tokens)",
                       choice(SEARCH_KINDS))
    law: str | None = option(None, "active: the law fitted as runs finish (default chinchilla)",
                             choice(ACTIVE_LAWS), optional=True)
    max_trials: int | None = option(None, "active (required): at most this many runs", positive_int,
                                    optional=True)
    target: Mapping[str, Any] = option(
        default_factory=dict, hash=False,
        doc="active: where the prediction should be good, one of {largest: K} (the K most expensive "
            "planned runs; default K=5), {compute: C, reference: {law params}} (the compute-optimal "
            "frontier around C FLOPs under reference params, default Epoch's Chinchilla fit) or "
            "{points: [[N, D], ...]}; may hold stop_when")
    stop_when: Mapping[str, float] = option(
        default_factory=dict, hash=False,
        doc="active: {rel_pred_ci: x} stops when the target's relative 90% CI half-width is below x")
    seed_runs: int | None = option(None, "active: space-filling seed size, at least law params + 1, bought first "
                                         "(default: the seed is laid out for 2*(law params + 1) runs, params + 3 if "
                                         "misfit is 0, and ends at the first fit)", positive_int, optional=True)
    cost: str = option("flops", "active: rank runs per planned FLOPs (flops) or per predicted "
                                "seconds (time)", choice(SEARCH_COSTS))
    misfit: float | None = option(None, "active: prior sd of the law's misfit in log loss (0: trust "
                                        "the law exactly)", non_negative, optional=True)
    budgets: tuple[float, ...] = option((), "isoflop (required): compute budgets C in FLOPs, one "
                                            "profile each, distinct", positive)
    sizes_per_budget: int | None = option(None, "isoflop: model sizes per budget, log-spaced (default 7; "
                                                "at least 3; 3 fit each parabola exactly, so the frontier's "
                                                "intervals are not identified)", positive_int, optional=True)
    n_range: tuple[float, ...] = option((), "isoflop: [lo, hi] non-embedding N of every budget's sizes "
                                            "(or n_span_decades)", positive)
    n_span_decades: float | None = option(None, "isoflop: the sizes span this many decades of N centred "
                                                "on each budget's Chinchilla-optimal N under Epoch's fit "
                                                "(C = 6ND; default 1.5 without n_range)", positive,
                                          optional=True)


@dataclass(frozen=True)
class Budget:
    """Limits on planned compute. GPU-hours are planned FLOPs / (gpu_flops_per_s * 3600): the
    sustained per-GPU throughput is the user's estimate, so it must be stated with gpu_hours."""

    flops: float | None = option(None, "limit on planned training FLOPs (set this and/or gpu_hours)",
                                 positive, optional=True)
    gpu_hours: float | None = option(None, "limit in GPU-hours = planned FLOPs / (gpu_flops_per_s * "
                                           "3600)", positive, optional=True)
    gpu_flops_per_s: float | None = option(None, "sustained FLOP/s per GPU (required with gpu_hours)",
                                           positive, optional=True)
    cut: str = option("cheapest_first", "a grid over the budget keeps the cheapest runs "
                                        "(cheapest_first), the largest (largest_first) or is refused "
                                        "(error)", choice(CUT_POLICIES))


def _flag(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise fail(path, f"must be true or false, got {value!r}")
    return value


_flag.rule = "true or false"


def _open_fraction(value: Any, path: str) -> float:
    parsed = number(value, path)
    if not 0 < parsed < 1:
        raise fail(path, f"must be in (0, 1), got {value!r}")
    return parsed


_open_fraction.rule = "number in (0, 1)"


EARLY_RULES = ("reference", "own")
"""How the stopper predicts a run's final loss (orchestrator/early_stop.py): ``reference`` from the
finished runs of its sweep with the same schedule (fitting.reference_curves), falling back to
``own`` (its own curve, fitting.curve_prediction) where none can serve."""


@dataclass(frozen=True)
class EarlyPrediction:
    """Stop a run once its outcome is known from its curve (orchestrator/early_stop.py); off by
    default, so a plain reproduction trains every run to its end. The defaults are the setting
    pre-registered on the benchmark's 112 runs and confirmed on 160 new ones: 33.5 % of the compute
    saved for +6.7 % held-out error of the fitted L(N, D) (README, Sweeps; bench/early_prediction.py)."""

    enabled: bool = option(False, "stop runs whose final loss is predicted well enough", _flag)
    min_fraction: float = option(0.5, "never before this fraction of the run's planned steps",
                                 _open_fraction)
    rel_ci: float = option(0.05, "stop when the predicted final loss's 90% interval half-width, "
                                 "relative to the loss, is at most this", positive)
    rule: str = option("reference", "predict from the sweep's finished runs with the same schedule "
                                    "(reference; the run's own curve where none can serve, the reason "
                                    "in predicted_method) or from the run's own curve alone (own)",
                       choice(EARLY_RULES))


AGGREGATE_COLUMNS = RUN_COLUMNS  # the runs-table columns a sweep's fit may aggregate over (their owner: fitting.aggregate)


def _columns_item(value: Any, path: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    values = value if isinstance(value, (list, tuple)) else [value]
    seen: list[str] = []
    for i, column in enumerate(values):
        where = f"{path}[{i}]" if isinstance(value, (list, tuple)) else path
        if column not in AGGREGATE_COLUMNS:
            raise fail(where, f"unknown column {column!r}; one of {', '.join(AGGREGATE_COLUMNS)}")
        if column in seen:
            raise fail(where, f"column {column!r} is named twice")
        seen.append(column)
    return tuple(seen)


_columns_item.rule = f"any of {', '.join(AGGREGATE_COLUMNS)}, or a list of them"


@dataclass(frozen=True)
class FitAggregate:
    """How several runs per (N, D) become one cell wherever the sweep fits (the active designer's
    online fit, the report): the best setting of best_over after averaging over mean_over
    (fitting/aggregate.py). A list left out defaults from the axes: best over lr and batch_tokens
    and mean over seeds, each when its axis has more than one value; [] turns one off."""

    best_over: tuple[str, ...] | None = option(
        None, "columns whose best (lowest mean loss) setting represents the cell, e.g. [lr, "
              "batch_tokens]; default: those of lr and batch_tokens the axes sweep",
        _columns_item, optional=True)
    mean_over: tuple[str, ...] | None = option(
        None, "columns averaged over first (their spread widens the cell's noise), e.g. [seed]; "
              "default: seed when axes.seeds has more than one value", _columns_item, optional=True)


@dataclass(frozen=True)
class FitSpec:
    aggregate: FitAggregate = option(default_factory=FitAggregate,
                                     doc="hyperparameter axes aggregated per (N, D) cell (below)",
                                     shown_default="from the axes")
    headline: str = option("main", "the law whose exponents the report states first: main (the law of N "
                                   "and D, `report --law`), kaplan_n (L(N) on the best loss per model size), "
                                   "kaplan_d (L(D) on the best loss per dataset size), kaplan_c (L(C_min) "
                                   "on the compute frontier of the curves) or kaplan_ns (L(N, S_min) on every "
                                   "curve point); pick one the design identifies",
                           choice(HEADLINES))


def ladder_multiplier(value: Any, path: str) -> float:
    """K of a scaling ladder: a number > 1 (the ladder predicts beyond the sweep, never inside it)."""
    parsed = number(value, path)
    if not parsed > 1:
        raise fail(path, f"must be a number > 1 (the ladder's compute over the sweep's largest run), got {value!r}")
    return parsed


ladder_multiplier.rule = "number > 1"


@dataclass(frozen=True)
class LadderSpec:
    """A scaling ladder (orchestrator/ladder.py): after the sweep, train the compute-optimal run the
    sweep's fitted law predicts at `multiplier` x its largest run's compute, and score the prediction."""

    multiplier: float = option(4.0, "the ladder run's compute over the largest fitted run's", ladder_multiplier)
    allow_at_bounds: bool = option(False, "train even when the fitted law has parameters at their bounds "
                                          "(by default the ladder refuses: its interval is unreliable)", _flag)


@dataclass(frozen=True)
class SweepSpec:
    name: str = option(doc="the sweep's name (letters, digits, '.', '_', '-'); runs land in "
                           "<storage>/<name>/", parse=text)
    storage: str = option(doc="metrics store root: a local path (made absolute) or a pyarrow.fs "
                              "URI (s3://, gs://, hdfs://, ...)", parse=text)
    corpus: CorpusSpec = option(doc="training corpus: a source string or the mapping below",
                                shown_default="builtin, byte")
    axes: Axes = option(doc="the grid (below)")
    trainer: Mapping[str, Any] = option(hash=False, doc="TrainConfig settings shared by every "
                                        "trial (below)", shown_default="{}")
    resources: Resources = option(doc="per trial (below)", shown_default="1 worker, 1 CPU")
    search: SearchSpec = option(doc="how runs are chosen (below)", shown_default="kind: grid")
    budget: Budget = option(doc="compute limit (below)")
    early_prediction: EarlyPrediction = option(default_factory=EarlyPrediction,
                                               doc="stopping runs whose outcome is known (below)",
                                               shown_default="enabled: false")
    fit: FitSpec = option(default_factory=FitSpec, doc="how the sweep's runs are fitted (below)",
                          shown_default="aggregate from the axes")
    ladder: LadderSpec | None = option(None, "a scaling ladder that `scalesweep run` trains after the sweep "
                                             "ends with exit 0 (below); null: none (`scalesweep ladder` "
                                             "runs one on demand)", optional=True)
    sub_sweeps: Mapping[str, Axes] = option(
        hash=False, default_factory=dict, shown_default="{}",
        doc="named extra grids run in the same sweep and budget, each the main axes with the axes it "
            "gives replaced, e.g. {shape: {target_params: 1e5, aspect_ratio: [4, 16, 64]}, lstm: {family: "
            "lstm}}; a run repeated across grids runs once; runs record the name in the runs column "
            "sub_sweep (main grid: main); fits use the main grid's runs (`fit --sub-sweep` picks others)")

    def aggregation(self):
        """The `fitting.aggregate.Aggregation` the sweep's fits use: `fit.aggregate`, each list
        left out taken from the axes (`fitting.aggregate.default_aggregation`)."""
        from fitting.aggregate import Aggregation, default_aggregation

        given = self.fit.aggregate
        auto = default_aggregation({"lr": self.axes.lr, "batch_tokens": self.axes.batch_tokens,
                                    "seed": self.axes.seeds})
        best = given.best_over if given.best_over is not None else \
            tuple(c for c in auto.best_over if c not in (given.mean_over or ()))
        mean = given.mean_over if given.mean_over is not None else \
            tuple(c for c in auto.mean_over if c not in best)
        return Aggregation(best, mean)

    @property
    def vocab_size(self) -> int:
        return corpus_vocab_size(self.corpus)
