"""Sweep spec: a YAML file -> validated, typed dataclasses -> the list of trials to run.

Everything here runs before Ray starts (no Ray import): a spec that cannot run fails with a
`SpecError` whose message starts with the field path, e.g.
``axes.dataset_tokens[2]: must be a positive integer, got -5``, and unknown keys list the
allowed ones. The budget is enforced at expansion: a grid that does not fit is cut (cheapest
first, largest first, or refused) and the cut is reported.

Numbers: PyYAML reads ``2e5`` (no dot) as a string, so numeric fields also accept strings that
parse as numbers; integer fields accept integral floats (``2.0e5``). Relative local paths
(storage, corpus) are made absolute against the current directory, because Ray trials run in
their own working directories.
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from scalesweep.store import validate_name
from trainers.config import PRECISIONS, REGIMES, ZERO_STAGES, TrainConfig
from trainers.data import CorpusSpec
from orchestrator.spec_fields import (
    SpecError, axis, choice, fail, mapping, non_negative, non_negative_int, positive, positive_int,
)
from trainers.model import ModelShape, kaplan_lr, non_embedding_params, shape_for_params, train_flops

SEARCH_KINDS = ("grid", "active")
ACTIVE_LAWS = ("chinchilla", "kaplan")
CUT_POLICIES = ("cheapest_first", "largest_first", "error")
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
TOKENIZER_VOCAB = {"byte": 256, "tiktoken:gpt2": 50257}  # plus "bpe:<vocab>"

# Trainer settings a spec may set: every TrainConfig field the grid axes, corpus and budget do
# not own. Derived, so a new trainer option is accepted here without a second list to keep in sync.
_AXIS_OWNED = {"shape", "dataset_tokens", "regime", "corpus", "batch_tokens", "lr", "seed",
               "budget_flops"}
TRAINER_KEYS = tuple(sorted(f.name for f in dataclasses.fields(TrainConfig) if f.name not in _AXIS_OWNED))

_TOP_KEYS = ("name", "storage", "corpus", "axes", "trainer", "resources", "search", "budget")
_AXES_KEYS = ("target_params", "shapes", "aspect_ratio", "d_ff_ratio", "head_dim", "n_heads",
              "n_ctx", "dataset_tokens", "regime", "seeds", "lr", "batch_tokens")
_SHAPE_KEYS = ("n_layer", "d_model", "n_heads", "d_ff", "d_attn")


# --------------------------------------------------------------------------------------------
# Typed spec


@dataclass(frozen=True)
class Axes:
    """Grid axes; the trial grid is their Cartesian product. Either target_params (shapes made by
    `shape_for_params` for each aspect_ratio x d_ff_ratio x head_dim/n_heads) or explicit shapes."""

    target_params: tuple[float, ...] = ()
    shapes: tuple[Mapping[str, int], ...] = ()
    aspect_ratio: tuple[float, ...] = (64.0,)
    d_ff_ratio: tuple[float, ...] = (4.0,)
    head_dim: tuple[int, ...] = (64,)
    n_heads: tuple[int, ...] = ()  # alternative to head_dim: fixed head counts
    n_ctx: tuple[int, ...] = (1024,)
    dataset_tokens: tuple[int, ...] = ()
    regime: tuple[str, ...] = ("tokens",)
    seeds: tuple[int, ...] = (0,)
    lr: tuple[float | None, ...] = (None,)  # None: Kaplan's rule from the trial's actual N
    batch_tokens: tuple[int, ...] = (8192,)


@dataclass(frozen=True)
class Resources:
    """Per trial: `workers` data-parallel ranks, each with these CPUs and GPUs."""

    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    workers: int = 1


@dataclass(frozen=True)
class SearchSpec:
    kind: str = "grid"
    law: str | None = None  # active only
    max_trials: int | None = None  # active only
    target: Mapping[str, Any] = field(default_factory=dict, hash=False)  # active only, not interpreted here
    stop_when: Mapping[str, float] = field(default_factory=dict, hash=False)  # active only: {rel_pred_ci: x}
    seed_runs: int | None = None  # active only: size of the space-filling seed (default 2·(params + 1))
    misfit: float | None = None  # active only: prior sd of the law's misfit in log loss (0: trust it exactly)


@dataclass(frozen=True)
class Budget:
    """Limits on planned compute. GPU-hours are planned FLOPs / (gpu_flops_per_s * 3600): the
    sustained per-GPU throughput is the user's estimate, so it must be stated with gpu_hours."""

    flops: float | None = None
    gpu_hours: float | None = None
    gpu_flops_per_s: float | None = None
    cut: str = "cheapest_first"

    def cost_fraction(self, flops: float) -> float:
        """Planned FLOPs as a fraction of the tightest limit."""
        fractions = []
        if self.flops is not None:
            fractions.append(flops / self.flops)
        if self.gpu_hours is not None:
            fractions.append(flops / self.gpu_flops_per_s / 3600 / self.gpu_hours)
        return max(fractions)


@dataclass(frozen=True)
class SweepSpec:
    name: str
    storage: str
    corpus: CorpusSpec
    axes: Axes
    trainer: Mapping[str, Any] = field(hash=False)
    resources: Resources
    search: SearchSpec
    budget: Budget

    @property
    def vocab_size(self) -> int:
        return _vocab_size(self.corpus)


@dataclass(frozen=True)
class TrialPlan:
    """One run of the grid."""

    trial_key: str  # stable, readable id from the config; the trial_id across resumes
    shape: ModelShape
    dataset_tokens: int
    regime: str
    seed: int
    lr: float  # resolved (Kaplan's rule unless the spec gives one)
    batch_tokens: int
    planned_flops: int  # train_flops(shape, planned_tokens)
    planned_tokens: int = 0  # tokens regime: D (capped by max_steps); dataset regime: max_steps * batch
    target_params: float | None = None  # None for explicit shapes
    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    trainer: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def non_embedding_params(self) -> int:
        return non_embedding_params(self.shape)

    def train_config_dict(self) -> dict:
        """Plain data `trainers.config.TrainConfig.from_dict` accepts."""
        return {
            **dict(self.trainer),
            "shape": dataclasses.asdict(self.shape),
            "dataset_tokens": self.dataset_tokens,
            "regime": self.regime,
            "corpus": dataclasses.asdict(self.corpus),
            "batch_tokens": self.batch_tokens,
            "lr": self.lr,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class CutTrial:
    trial: TrialPlan
    reason: str


@dataclass(frozen=True)
class GridPlan:
    trials: tuple[TrialPlan, ...]  # kept, in grid order
    cut: tuple[CutTrial, ...]  # dropped by the budget
    total_flops: int  # planned FLOPs of the kept trials
    budget: Budget
    search: SearchSpec = field(default_factory=SearchSpec)


def _lr_item(value: Any, path: str) -> float | None:
    if value in (None, "kaplan"):
        return None
    return positive(value, path)


def _name(value: Any, path: str) -> str:
    try:  # the store's rule: the name becomes a directory
        return validate_name("sweep name", value)
    except ValueError as err:
        raise fail(path, str(err)) from None


def _storage(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise fail(path, f"must be a local path or a URI, got {value!r}")
    if "://" not in value:
        return os.path.abspath(os.path.expanduser(value))
    scheme = value.split("://", 1)[0].lower()
    if scheme not in STORAGE_SCHEMES:
        raise fail(path, f"URI scheme {scheme!r} is not one of {', '.join(STORAGE_SCHEMES)}")
    return value


def _vocab_size(corpus: CorpusSpec) -> int:
    tokenizer_vocab = TOKENIZER_VOCAB.get(corpus.tokenizer) or int(corpus.tokenizer[4:])
    return max(tokenizer_vocab, corpus.vocab_size or 0)


def _corpus(raw: Any) -> CorpusSpec:
    if isinstance(raw, str):
        raw = {"source": raw}
    fields = [f.name for f in dataclasses.fields(CorpusSpec)]
    spec = mapping(raw, "corpus", fields)
    source = spec.get("source", "builtin")
    if not isinstance(source, str) or not source:
        raise fail("corpus.source", f"must be 'builtin' or a path/glob, got {source!r}")
    if source != "builtin":
        source = os.path.abspath(os.path.expanduser(source))
        if not glob.glob(source):
            raise fail("corpus.source", f"no file matches {source!r} (or use 'builtin')")
    tokenizer = spec.get("tokenizer", "byte")
    is_bpe = isinstance(tokenizer, str) and tokenizer.startswith("bpe:") and tokenizer[4:].isdigit()
    if tokenizer not in TOKENIZER_VOCAB and not (is_bpe and int(tokenizer[4:]) >= 257):
        raise fail("corpus.tokenizer", f"must be one of byte, bpe:<vocab >= 257>, tiktoken:gpt2; "
                                        f"got {tokenizer!r}")
    vocab = spec.get("vocab_size")
    vocab = None if vocab is None else positive_int(vocab, "corpus.vocab_size")
    if source.endswith(".bin") and vocab is None:
        raise fail("corpus.vocab_size", "required for a pre-tokenised .bin corpus")
    text_field = spec.get("text_field", "text")
    if not isinstance(text_field, str) or not text_field:
        raise fail("corpus.text_field", f"must be a non-empty string, got {text_field!r}")
    return CorpusSpec(source=source, tokenizer=tokenizer, text_field=text_field, vocab_size=vocab)


def _shape_item(value: Any, path: str) -> Mapping[str, int]:
    raw = mapping(value, path, _SHAPE_KEYS, required=("n_layer", "d_model", "n_heads", "d_ff"))
    return {key: positive_int(item, f"{path}.{key}") for key, item in raw.items()}


def _axes(raw: Any) -> Axes:
    raw = mapping(raw, "axes", _AXES_KEYS, required=("dataset_tokens",))
    if ("target_params" in raw) == ("shapes" in raw):
        raise fail("axes", "give exactly one of target_params (N targets) or shapes (explicit)")
    if "head_dim" in raw and "n_heads" in raw:
        raise fail("axes", "give head_dim or n_heads, not both")
    default = Axes()
    return Axes(
        target_params=axis(raw, "target_params", positive, ()),
        shapes=axis(raw, "shapes", _shape_item, ()),
        aspect_ratio=axis(raw, "aspect_ratio", positive, default.aspect_ratio),
        d_ff_ratio=axis(raw, "d_ff_ratio", positive, default.d_ff_ratio),
        head_dim=axis(raw, "head_dim", positive_int, default.head_dim),
        n_heads=axis(raw, "n_heads", positive_int, ()),
        n_ctx=axis(raw, "n_ctx", positive_int, default.n_ctx),
        dataset_tokens=axis(raw, "dataset_tokens", positive_int, ()),
        regime=axis(raw, "regime", choice(REGIMES), default.regime),
        seeds=axis(raw, "seeds", non_negative_int, default.seeds),
        lr=axis(raw, "lr", _lr_item, default.lr),
        batch_tokens=axis(raw, "batch_tokens", positive_int, default.batch_tokens),
    )


def _trainer(raw: Any) -> dict:
    trainer = mapping(raw, "trainer", TRAINER_KEYS)
    # The choices are checked here too so the error names the spec field even for a grid that
    # would be cut to nothing; the rest is checked per trial by TrainConfig itself.
    if "zero_stage" in trainer:
        choice(ZERO_STAGES)(trainer["zero_stage"], "trainer.zero_stage")
    if "precision" in trainer:
        choice(PRECISIONS)(trainer["precision"], "trainer.precision")
    for key in ("eval_every", "patience", "max_steps", "val_tokens", "eval_tokens", "threads",
                "micro_batch_size"):
        if trainer.get(key) is not None:
            trainer[key] = positive_int(trainer[key], f"trainer.{key}")
    return trainer


def _resources(raw: Any) -> Resources:
    raw = mapping(raw, "resources", [f.name for f in dataclasses.fields(Resources)])
    default = Resources()
    return Resources(
        cpus_per_worker=positive(raw.get("cpus_per_worker", default.cpus_per_worker),
                                  "resources.cpus_per_worker"),
        gpus_per_worker=non_negative(raw.get("gpus_per_worker", default.gpus_per_worker),
                                      "resources.gpus_per_worker"),
        workers=positive_int(raw.get("workers", default.workers), "resources.workers"),
    )


def _search(raw: Any) -> SearchSpec:
    raw = mapping(raw, "search", [f.name for f in dataclasses.fields(SearchSpec)])
    kind = choice(SEARCH_KINDS)(raw.get("kind", "grid"), "search.kind")
    if kind == "grid":
        extra = sorted(set(raw) - {"kind"})
        if extra:
            raise fail(f"search.{extra[0]}", "only for search.kind: active")
        return SearchSpec()
    law = choice(ACTIVE_LAWS)(raw.get("law", "chinchilla"), "search.law")
    if raw.get("max_trials") is None:
        raise fail("search.max_trials", "required for search.kind: active")
    target = raw.get("target") or {}
    if not isinstance(target, Mapping):
        raise fail("search.target", f"must be a mapping, got {target!r}")
    stop_when = mapping(raw.get("stop_when") or {}, "search.stop_when", ["rel_pred_ci"])
    seed_runs = raw.get("seed_runs")
    misfit = raw.get("misfit")
    return SearchSpec(kind=kind, law=law, target=dict(target),
                      max_trials=positive_int(raw["max_trials"], "search.max_trials"),
                      stop_when={k: positive(v, f"search.stop_when.{k}") for k, v in stop_when.items()},
                      seed_runs=None if seed_runs is None else positive_int(seed_runs, "search.seed_runs"),
                      misfit=None if misfit is None else non_negative(misfit, "search.misfit"))


def _budget(raw: Any) -> Budget:
    if raw is None:
        raise fail("budget", "required: set flops and/or gpu_hours (enforced before any trial runs)")
    raw = mapping(raw, "budget", [f.name for f in dataclasses.fields(Budget)])
    flops = raw.get("flops")
    gpu_hours = raw.get("gpu_hours")
    if flops is None and gpu_hours is None:
        raise fail("budget", "set flops and/or gpu_hours")
    rate = raw.get("gpu_flops_per_s")
    if gpu_hours is not None and rate is None:
        raise fail("budget.gpu_flops_per_s", "required with budget.gpu_hours (sustained FLOP/s per GPU)")
    return Budget(
        flops=None if flops is None else positive(flops, "budget.flops"),
        gpu_hours=None if gpu_hours is None else positive(gpu_hours, "budget.gpu_hours"),
        gpu_flops_per_s=None if rate is None else positive(rate, "budget.gpu_flops_per_s"),
        cut=choice(CUT_POLICIES)(raw.get("cut", "cheapest_first"), "budget.cut"),
    )


def load_spec(path_or_dict: str | os.PathLike | Mapping) -> SweepSpec:
    """Parse and validate a sweep spec (YAML path or already-loaded mapping)."""
    if isinstance(path_or_dict, Mapping):
        raw = path_or_dict
    else:
        try:
            with open(path_or_dict) as handle:
                raw = yaml.safe_load(handle)
        except yaml.YAMLError as err:
            raise SpecError(f"{path_or_dict}: not valid YAML: {err}") from None
    raw = mapping(raw, "", _TOP_KEYS, required=("name", "storage", "axes"))
    spec = SweepSpec(
        name=_name(raw["name"], "name"),
        storage=_storage(raw["storage"], "storage"),
        corpus=_corpus(raw.get("corpus", "builtin")),
        axes=_axes(raw["axes"]),
        trainer=_trainer(raw.get("trainer")),
        resources=_resources(raw.get("resources")),
        search=_search(raw.get("search")),
        budget=_budget(raw.get("budget")),
    )
    if "dataset" in spec.axes.regime and spec.trainer.get("max_steps") is None:
        raise fail("trainer.max_steps", "required in the dataset regime (it caps the repeated "
                                         "passes over D and sets the LR schedule length)")
    return spec


# --------------------------------------------------------------------------------------------
# Grid expansion


def _compact(value: float) -> str:
    """Exact, short number text for trial keys: 20000 -> 2e4, 250000 -> 2.5e5, 4096 -> 4096."""
    if float(value).is_integer() and abs(value) < 1e18:
        digits = str(int(value))
        significant = digits.rstrip("0")
        if len(digits) - len(significant) < 3:
            return digits
        mantissa = significant[0] + ("." + significant[1:] if len(significant) > 1 else "")
        return f"{mantissa}e{len(digits) - 1}"
    return repr(float(value)).replace("e-0", "e-")


@dataclass(frozen=True)
class _ShapeChoice:
    shape: ModelShape
    key: str  # trial-key prefix naming how the shape was chosen
    target_params: float | None


def _shape_choices(axes: Axes, n_ctx: int, vocab: int) -> list[_ShapeChoice]:
    """Every model shape of the grid at one context length."""
    default = Axes()
    if axes.shapes:
        choices = []
        for i, raw in enumerate(axes.shapes):
            try:
                shape = ModelShape(**raw, n_ctx=n_ctx, vocab_size=vocab)
            except ValueError as err:
                raise fail(f"axes.shapes[{i}]", str(err)) from None
            key = f"L{shape.n_layer}-d{shape.d_model}-h{shape.n_heads}-ff{shape.d_ff}"
            key += f"-da{shape.d_attn}" if shape.d_attn != shape.d_model else ""
            choices.append(_ShapeChoice(shape, key, None))
        return choices
    heads = [("n_heads", i, n) for i, n in enumerate(axes.n_heads)] or \
            [("head_dim", i, h) for i, h in enumerate(axes.head_dim)]
    choices = []
    for target, aspect, ff_ratio, (head_axis, head_index, head) in itertools.product(
        axes.target_params, axes.aspect_ratio, axes.d_ff_ratio, heads
    ):
        head_dim = head if head_axis == "head_dim" else 8  # n_heads: any width multiple of 8
        try:
            shape = shape_for_params(target, aspect_ratio=aspect, d_ff_ratio=ff_ratio,
                                     head_dim=head_dim, n_ctx=n_ctx, vocab_size=vocab)
        except ValueError as err:
            raise fail(f"axes.{head_axis}[{head_index}]", str(err)) from None
        key = f"N{_compact(target)}"
        key += f"-ar{_compact(aspect)}" if aspect != default.aspect_ratio[0] else ""
        key += f"-ff{_compact(ff_ratio)}" if ff_ratio != default.d_ff_ratio[0] else ""
        if head_axis == "n_heads":
            if shape.d_model % head:
                raise fail(f"axes.n_heads[{head_index}]",
                            f"{head} heads do not divide d_model={shape.d_model} of the shape "
                            f"for target_params {target:g}")
            shape = dataclasses.replace(shape, n_heads=head)
            key += f"-h{head}"
        elif head != default.head_dim[0]:
            key += f"-hd{head}"
        choices.append(_ShapeChoice(shape, key, target))
    return choices


def _planned_tokens(regime: str, dataset_tokens: int, batch_tokens: int, max_steps: int | None) -> int:
    if regime == "dataset":
        return max_steps * batch_tokens  # repeats D until early stopping; max_steps is the cap
    return dataset_tokens if max_steps is None else min(dataset_tokens, max_steps * batch_tokens)


def _config_error_path(message: str) -> str:
    field_name = message.split(":", 1)[0].strip()
    if field_name in TRAINER_KEYS:
        return f"trainer.{field_name}"
    if field_name in _AXES_KEYS:
        return f"axes.{field_name}"
    return "axes"


def _trials(spec: SweepSpec) -> list[TrialPlan]:
    axes, default = spec.axes, Axes()
    max_steps = spec.trainer.get("max_steps")
    trials = []
    for n_ctx in axes.n_ctx:
        for shape_choice, dataset_tokens, regime, batch_tokens, lr, seed in itertools.product(
            _shape_choices(axes, n_ctx, spec.vocab_size), axes.dataset_tokens, axes.regime,
            axes.batch_tokens, axes.lr, axes.seeds,
        ):
            key = shape_choice.key
            key += f"-c{n_ctx}" if n_ctx != default.n_ctx[0] else ""
            key += f"-D{_compact(dataset_tokens)}"
            key += f"-{regime}" if regime != default.regime[0] else ""
            key += f"-B{_compact(batch_tokens)}" if batch_tokens != default.batch_tokens[0] else ""
            key += f"-lr{_compact(lr)}" if lr is not None else ""
            key += f"-s{seed}"
            tokens = _planned_tokens(regime, dataset_tokens, batch_tokens, max_steps)
            trial = TrialPlan(
                trial_key=key, shape=shape_choice.shape, dataset_tokens=dataset_tokens, regime=regime,
                seed=seed, lr=lr if lr is not None else kaplan_lr(non_embedding_params(shape_choice.shape)),
                batch_tokens=batch_tokens, planned_flops=train_flops(shape_choice.shape, tokens),
                planned_tokens=tokens, target_params=shape_choice.target_params, corpus=spec.corpus,
                trainer=spec.trainer,
            )
            _check_trial(trial, spec.resources)
            trials.append(trial)
    keys = [t.trial_key for t in trials]
    duplicates = sorted({k for k in keys if keys.count(k) > 1}) if len(set(keys)) < len(keys) else []
    if duplicates:
        raise fail("axes", f"the grid repeats a configuration (trial key {duplicates[0]})")
    return trials


def _check_trial(trial: TrialPlan, resources: Resources) -> None:
    """The trainer's own validation, with errors mapped back to spec fields."""
    try:
        TrainConfig.from_dict(trial.train_config_dict())
    except ValueError as err:
        raise fail(_config_error_path(str(err)), f"(trial {trial.trial_key}) {err}") from None
    sequences = trial.batch_tokens // trial.shape.n_ctx
    if sequences % resources.workers:
        raise fail("axes.batch_tokens", f"(trial {trial.trial_key}) {trial.batch_tokens} tokens "
                    f"= {sequences} sequences, not divisible by resources.workers={resources.workers}")


def _apply_budget(trials: list[TrialPlan], budget: Budget, search: SearchSpec):
    cheapest = min(trials, key=lambda t: t.planned_flops)
    if budget.cost_fraction(cheapest.planned_flops) > 1:
        raise fail("budget", f"below the cheapest run ({cheapest.trial_key} plans "
                              f"{cheapest.planned_flops:.3g} FLOPs); {_budget_text(budget)}")
    total = sum(t.planned_flops for t in trials)
    if search.kind == "active" or budget.cost_fraction(total) <= 1:
        return trials, []  # active search spends the budget trial by trial, as it goes
    if budget.cut == "error":
        raise fail("budget", f"the grid plans {total:.3g} FLOPs, over {_budget_text(budget)}; "
                              "set budget.cut to cheapest_first or largest_first to cut it")
    order = sorted(trials, key=lambda t: t.planned_flops, reverse=budget.cut == "largest_first")
    kept, cut, committed = set(), [], 0
    for trial in order:  # greedy: take in policy order, skip what no longer fits
        if budget.cost_fraction(committed + trial.planned_flops) <= 1:
            kept.add(trial.trial_key)
            committed += trial.planned_flops
        else:
            reason = (f"budget.cut={budget.cut}: {committed:.3g} FLOPs already planned + "
                      f"{trial.planned_flops:.3g} exceeds {_budget_text(budget)}")
            cut.append(CutTrial(trial, reason))
    return [t for t in trials if t.trial_key in kept], cut


def _budget_text(budget: Budget) -> str:
    parts = []
    if budget.flops is not None:
        parts.append(f"budget.flops={budget.flops:.3g}")
    if budget.gpu_hours is not None:
        parts.append(f"budget.gpu_hours={budget.gpu_hours:g} at {budget.gpu_flops_per_s:.3g} FLOP/s/GPU")
    return " and ".join(parts)


def expand_grid(spec: SweepSpec) -> GridPlan:
    """All trials of the grid, each validated by the trainer's config, cut to the budget."""
    kept, cut = _apply_budget(_trials(spec), spec.budget, spec.search)
    return GridPlan(trials=tuple(kept), cut=tuple(cut), budget=spec.budget, search=spec.search,
                    total_flops=sum(t.planned_flops for t in kept))


def format_grid(plan: GridPlan) -> str:
    """The table `scalesweep validate` prints."""
    header = ("trial", "n_layer", "d_model", "heads", "d_ff", "N", "N/target", "D", "regime",
              "tokens", "FLOPs", "lr")

    def row(t: TrialPlan) -> tuple[str, ...]:
        n = non_embedding_params(t.shape)
        ratio = f"{n / t.target_params:.2f}" if t.target_params else "-"
        return (t.trial_key, str(t.shape.n_layer), str(t.shape.d_model), str(t.shape.n_heads),
                str(t.shape.d_ff), f"{n:.3g}", ratio, f"{t.dataset_tokens:.3g}", t.regime,
                f"{t.planned_tokens:.3g}", f"{t.planned_flops:.3g}", f"{t.lr:.3g}")

    rows = [header] + [row(t) for t in plan.trials]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    used = plan.budget.cost_fraction(plan.total_flops) if plan.trials else 0.0
    lines.append(f"{len(plan.trials)} trials, {plan.total_flops:.3g} FLOPs planned = "
                 f"{used:.1%} of {_budget_text(plan.budget)} (search: {plan.search.kind})")
    if plan.cut:
        lines.append(f"cut by the budget ({len(plan.cut)}):")
        lines += [f"  {c.trial.trial_key}: {c.reason}" for c in plan.cut]
    return "\n".join(lines)


def validate_command(path: str | os.PathLike) -> str:
    """What `scalesweep validate <spec>` prints; raises SpecError (a ValueError) on a bad spec."""
    spec = load_spec(path)
    return f"sweep {spec.name} -> {spec.storage}\n{format_grid(expand_grid(spec))}"
