"""Grid expansion: a validated `SweepSpec` -> the trials to run, cut to the budget.

`expand_grid` builds the Cartesian product of the axes (one `TrialSpec` per run, with a stable
readable trial key), validates each trial with the trainer's own config (errors mapped back to
spec fields), and enforces the budget: a grid that does not fit is cut (cheapest first, largest
first, or refused) and the cut is reported in the `Grid` (`orchestrator.spec.format_grid`
prints it). Runs before Ray starts (no Ray import).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass, field
from typing import Any, Mapping

from trainers.config import TrainConfig, batch_geometry
from trainers.data import CorpusSpec, eval_window_count
from orchestrator.budget import BudgetLedger, limit_flops
from fitting.cost import affordable
from trainers.fields import SpecError, fail
from orchestrator.spec_types import (
    AXES_KEYS, TRAINER_KEYS, Axes, Budget, Resources, SearchSpec, SweepSpec,
)
from orchestrator.isoflop import budget_sizes, isoflop_dataset_tokens, trained_tokens
from orchestrator.target import check_target
from metrics.schema import MAIN_GRID, SUB_SWEEP_COLUMN
from trainers.shapes import ModelShape, kaplan_lr, non_embedding_params, shape_for_params, train_flops


# --------------------------------------------------------------------------------------------
# Trials of the grid


@dataclass(frozen=True)
class TrialSpec:
    """One run of the grid, as the spec describes it (typed): what `train_config` turns into the
    trainer's `TrainConfig`, and what the searchers pick from (`planned_flops` is its cost)."""

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
    trainer: Mapping[str, Any] = field(default_factory=dict, hash=False)  # parsed TrainConfig fields
    run_columns: Mapping[str, float] = field(default_factory=dict, hash=False)  # extra runs columns
    d_field: str = "axes.dataset_tokens"  # the spec field that sets D (an isoFLOP budget's otherwise)

    def field_path(self, message: str) -> str:
        """The spec field a trainer error about this trial names (D's own field for dataset_tokens)."""
        path = _config_error_path(message)
        return self.d_field if path == "axes.dataset_tokens" else path

    @property
    def non_embedding_params(self) -> int:
        return non_embedding_params(self.shape)

    @functools.cached_property
    def train_config(self) -> TrainConfig:
        """The trial's TrainConfig, built once from the typed values by the trainer's own
        validation (errors name spec fields); the searcher hands it to the trial with the trial's
        budget allowance. `trainer` holds TrainConfig field values the spec already parsed."""
        try:
            return TrainConfig(**self.trainer, shape=self.shape, dataset_tokens=self.dataset_tokens,
                               regime=self.regime, corpus=self.corpus, batch_tokens=self.batch_tokens,
                               lr=self.lr, seed=self.seed)
        except ValueError as err:
            raise fail(self.field_path(str(err)), f"(trial {self.trial_key}) {err}") from None


@dataclass(frozen=True)
class CutTrial:
    trial: TrialSpec
    reason: str


@dataclass(frozen=True)
class Grid:
    """The expanded grid: the trials to run and those the budget cut."""

    trials: tuple[TrialSpec, ...]  # kept, in grid order
    cut: tuple[CutTrial, ...]  # dropped by the budget
    total_flops: int  # planned FLOPs of the kept trials
    budget: Budget
    search: SearchSpec = field(default_factory=SearchSpec)


def cut_lines(cut) -> list[str]:
    """What the budget cut before the sweep, as `scalesweep validate` and `scalesweep run` both
    print it: a header with the count, then one ``  <trial key>: <reason>`` line per cut trial
    (`cut`: `CutTrial`s, or ``(trial_key, reason)`` pairs). Empty when nothing was cut."""
    pairs = [(c.trial.trial_key, c.reason) if isinstance(c, CutTrial) else tuple(c) for c in cut]
    if not pairs:
        return []
    return [f"cut by the budget ({len(pairs)}):"] + [f"  {key}: {reason}" for key, reason in pairs]


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


def _shape_choices(axes: Axes, n_ctx: int, vocab: int, family: str) -> list[_ShapeChoice]:
    """Every model shape of the grid at one context length, for one family. An LSTM takes each
    explicit shape's n_layer and d_model (n_heads, d_ff and d_attn are the transformer's), and
    from target_params one shape per aspect ratio (d_ff_ratio and heads do not apply)."""
    default = Axes()
    prefix = "" if family == default.family[0] else f"{family}-"
    if axes.shapes:
        choices = {}
        for i, raw in enumerate(axes.shapes):
            if family == "lstm":
                raw = {key: raw[key] for key in ("n_layer", "d_model")}
            try:
                shape = ModelShape(**raw, n_ctx=n_ctx, vocab_size=vocab, family=family)
            except ValueError as err:
                raise fail(f"axes.shapes[{i}]", str(err)) from None
            key = f"{prefix}L{shape.n_layer}-d{shape.d_model}"
            if family == "transformer":
                key += f"-h{shape.n_heads}-ff{shape.d_ff}"
                key += f"-da{shape.d_attn}" if shape.d_attn != shape.d_model else ""
            choices.setdefault(key, _ShapeChoice(shape, key, None))
        return list(choices.values())
    heads = [("n_heads", i, n) for i, n in enumerate(axes.n_heads)] or \
            [("head_dim", i, h) for i, h in enumerate(axes.head_dim)]
    if family == "lstm":  # one choice per target and aspect ratio
        heads, ff_ratios = heads[:1], axes.d_ff_ratio[:1]
    else:
        ff_ratios = axes.d_ff_ratio
    choices = []
    for target, aspect, ff_ratio, (head_axis, head_index, head) in itertools.product(
        axes.target_params, axes.aspect_ratio, ff_ratios, heads
    ):
        head_dim = head if head_axis == "head_dim" else 8  # n_heads: any width multiple of 8
        try:
            shape = shape_for_params(target, aspect_ratio=aspect, d_ff_ratio=ff_ratio,
                                     head_dim=head_dim, n_ctx=n_ctx, vocab_size=vocab, family=family)
        except ValueError as err:
            field = "target_params" if str(err).startswith("target_params") else f"{head_axis}[{head_index}]"
            raise fail(f"axes.{field}", str(err)) from None
        key = f"{prefix}N{_compact(target)}"
        key += f"-ar{_compact(aspect)}" if aspect != default.aspect_ratio[0] else ""
        if family == "lstm":
            choices.append(_ShapeChoice(shape, key, target))
            continue
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


def _planned_tokens(regime: str, dataset_tokens: int, batch_tokens: int, max_steps: int | None, n_ctx: int) -> int:
    """Tokens the run will train: in the tokens regime the whole batches of (n_ctx + 1)-token
    windows a D-token slice holds (`orchestrator.isoflop.trained_tokens`, what the trainer records
    as tokens_seen), so a planned cost is the cost the run spends and the budget, `validate`'s grid
    and isoFLOP tables all read this one number (they once showed 5.06e9 and 4.98e9 FLOPs for one run)."""
    if regime == "dataset":
        return max_steps * batch_tokens  # repeats D until early stopping; max_steps is the cap
    tokens = trained_tokens(dataset_tokens, n_ctx, batch_tokens)
    return tokens if max_steps is None else min(tokens, max_steps * batch_tokens)


def _config_error_path(message: str) -> str:
    """The spec field a trainer error names: trainer.<key>, axes.<key>, corpus.<key>."""
    field_name = message.split(":", 1)[0].strip()
    head = field_name.split(".", 1)[0].split("[", 1)[0]
    if head in TRAINER_KEYS:
        return f"trainer.{field_name}"
    if head in AXES_KEYS:
        return f"axes.{field_name}"
    if head == "corpus":
        return field_name
    if head == "world_size":
        return "resources.workers"
    return "axes"


def make_trial(spec: SweepSpec, key: str, shape: ModelShape, dataset_tokens: int, *, regime: str,
               batch_tokens: int, lr: float | None, seed: int, target_params: float | None = None,
               run_columns=None, d_field: str = "axes.dataset_tokens") -> TrialSpec:
    """One run as the grid plans it (not yet checked: `check_trial`): its planned tokens and exact
    FLOPs under the spec's trainer.max_steps, and Kaplan's LR for its actual N where `lr` is None.
    The grid's trials and the scaling ladder's run (orchestrator/ladder.py) are built here."""
    tokens = _planned_tokens(regime, dataset_tokens, batch_tokens, spec.trainer.get("max_steps"), shape.n_ctx)
    return TrialSpec(
        trial_key=key, shape=shape, dataset_tokens=dataset_tokens, regime=regime, seed=seed,
        lr=lr if lr is not None else kaplan_lr(non_embedding_params(shape)), batch_tokens=batch_tokens,
        planned_flops=train_flops(shape, tokens), planned_tokens=tokens, target_params=target_params,
        corpus=spec.corpus, trainer=spec.trainer, run_columns=run_columns if run_columns is not None else {},
        d_field=d_field,
    )


@dataclass(frozen=True)
class _Cell:
    """A (shape, D) cell of the plan: D given (grid) or set per batch by an isoFLOP budget."""

    shape_choice: _ShapeChoice
    dataset_tokens: int | None
    budget: float | None = None
    budget_path: str = ""


def _cells(spec: SweepSpec, n_ctx: int, family: str) -> list[_Cell]:
    """The grid's shapes x D, or (search.kind: isoflop) each budget's sizes, made by the same
    shape rules; sizes of one budget that round to one shape are refused."""
    search = spec.search
    if search.kind != "isoflop":
        return [_Cell(choice, d) for choice, d in
                itertools.product(_shape_choices(spec.axes, n_ctx, spec.vocab_size, family),
                                  spec.axes.dataset_tokens)]
    sizes_field = "search.n_range" if search.n_range else "search.n_span_decades"
    cells = []
    for i, budget in enumerate(search.budgets):
        per_size = []  # per target N: its shape under each (aspect, d_ff, heads) variant
        for target in budget_sizes(search, budget):
            try:
                per_size.append(_shape_choices(dataclasses.replace(spec.axes, target_params=(target,)),
                                               n_ctx, spec.vocab_size, family))
            except SpecError as err:
                raise SpecError(str(err).replace("axes.target_params", sizes_field, 1)) from None
        for variant in zip(*per_size):
            seen: dict[ModelShape, _ShapeChoice] = {}
            for b in variant:
                a = seen.setdefault(b.shape, b)
                if a is not b:
                    raise fail(sizes_field, f"sizes {a.target_params:g} and {b.target_params:g} of "
                                            f"search.budgets[{i}] round to the same shape (L{a.shape.n_layer}-"
                                            f"d{a.shape.d_model}-ff{a.shape.d_ff}); widen the range or "
                                            f"lower search.sizes_per_budget")
        cells += [_Cell(dataclasses.replace(choice, key=f"C{_compact(budget)}-{choice.key}"), None, budget,
                        f"search.budgets[{i}]") for choices in per_size for choice in choices]
    return cells


def _trials(spec: SweepSpec) -> list[TrialSpec]:
    """The main grid's trials, then each sub-sweep's (`SweepSpec.sub_sweeps`) that the grids
    before it do not already hold: a configuration in two grids runs once, under the first."""
    trials: dict[str, TrialSpec] = {}
    problems = TrialProblems()
    for name, axes in [(MAIN_GRID, spec.axes), *spec.sub_sweeps.items()]:
        section = "axes" if name == MAIN_GRID else f"sub_sweeps.{name}"
        try:
            part = _grid_trials(dataclasses.replace(spec, axes=axes), section)
        except SpecError as err:
            for line in str(err).splitlines():
                problems.record(SpecError(line), section)
            continue
        before = len(trials)
        for trial in part:
            if name != MAIN_GRID:
                trial = dataclasses.replace(trial, run_columns={**trial.run_columns, SUB_SWEEP_COLUMN: name})
            trials.setdefault(trial.trial_key, trial)
        if name != MAIN_GRID and len(trials) == before:  # likely a typo: it changed nothing
            problems.record(fail(section, "adds no run: every configuration it gives is already in the grids above"))
    problems.raise_any()
    return list(trials.values())


def _grid_trials(spec: SweepSpec, section: str = "axes") -> list[TrialSpec]:
    """One grid's trials (the Cartesian product of ``spec.axes``); SpecError naming fields under
    ``section`` (where those axes sit in the spec)."""
    axes, default = spec.axes, Axes()
    trials, problems = [], TrialProblems(section)
    max_steps = spec.trainer.get("max_steps")
    for n_ctx, family in itertools.product(axes.n_ctx, axes.family):
        for cell, regime, batch_tokens, lr, seed in itertools.product(
            _cells(spec, n_ctx, family), axes.regime, axes.batch_tokens, axes.lr, axes.seeds,
        ):
            shape_choice, dataset_tokens, run_columns = cell.shape_choice, cell.dataset_tokens, {}
            if cell.budget is not None:
                try:
                    dataset_tokens = isoflop_dataset_tokens(shape_choice.shape, cell.budget, batch_tokens,
                                                            cell.budget_path)
                except SpecError as err:
                    problems.record(err)
                    continue
                run_columns = {"isoflop_budget": cell.budget}
                if max_steps is not None and max_steps * batch_tokens < trained_tokens(dataset_tokens, n_ctx,
                                                                                     batch_tokens):
                    problems.record(fail("trainer.max_steps", f"{max_steps} steps cut isoFLOP runs short of "
                                                              f"their budget ({cell.budget_path} = "
                                                              f"{cell.budget:.3g} FLOPs); leave it unset"))
                    continue
            key = shape_choice.key
            key += f"-c{n_ctx}" if n_ctx != default.n_ctx[0] else ""
            key += f"-D{_compact(dataset_tokens)}"
            key += f"-{regime}" if regime != default.regime[0] else ""
            key += f"-B{_compact(batch_tokens)}" if batch_tokens != default.batch_tokens[0] else ""
            key += f"-lr{_compact(lr)}" if lr is not None else ""
            key += f"-s{seed}"
            trial = make_trial(spec, key, shape_choice.shape, dataset_tokens, regime=regime,
                               batch_tokens=batch_tokens, lr=lr, seed=seed,
                               target_params=shape_choice.target_params, run_columns=run_columns,
                               d_field=cell.budget_path or "axes.dataset_tokens")
            problems.check(trial, lambda trial=trial: check_trial(trial, spec.resources))
            trials.append(trial)
    problems.raise_any()
    keys = [t.trial_key for t in trials]
    duplicates = sorted({k for k in keys if keys.count(k) > 1}) if len(set(keys)) < len(keys) else []
    if duplicates:
        raise fail(section, f"the grid repeats a configuration (trial key {duplicates[0]})")
    return trials


class TrialProblems:
    """Per-trial errors, one line per field: the first trial's message and how many more
    trials share the problem (a grid of 40 trials with one bad D gives one line, not 40)."""

    def __init__(self, section: str = "axes") -> None:
        self.section = section  # where the grid's axes sit: axes, or sub_sweeps.<name>
        self.first: dict[str, str] = {}
        self.count: dict[str, int] = {}

    def check(self, trial: TrialSpec, check) -> None:
        """Run `check()` (raises ValueError naming a field, with the trial key in the message)."""
        try:
            check()
        except ValueError as err:
            self.record(err)

    def record(self, err: ValueError, section: str | None = None) -> None:
        text, section = str(err), section or self.section
        if section != "axes" and text.startswith("axes"):  # a sub-sweep's axis: name where it sits
            text = section + text[len("axes"):]
        path = text.split(":", 1)[0]
        self.first.setdefault(path, text)
        self.count[path] = self.count.get(path, 0) + 1

    def lines(self) -> list[str]:
        return [message + (f" (and {self.count[path] - 1} more trials)" if self.count[path] > 1 else "")
                for path, message in self.first.items()]

    def raise_any(self) -> None:
        if self.first:
            raise SpecError("\n".join(self.lines()))


def check_trial(trial: TrialSpec, resources: Resources) -> None:
    """Everything the trainer checks before it reads data, with its own code: the config, the
    batch geometry over `resources.workers` ranks, and the validation windows per rank."""
    config = trial.train_config
    try:
        # The trainer's training split holds exactly dataset_tokens tokens (make_splits), so it
        # has dataset_tokens // (n_ctx + 1) windows, as the trainer computes from the array.
        batch_geometry(config, resources.workers, config.dataset_tokens // (config.shape.n_ctx + 1))
        windows = eval_window_count(config.val_tokens, config.shape.n_ctx, config.eval_tokens)
    except ValueError as err:
        raise fail(trial.field_path(str(err)), f"(trial {trial.trial_key}) {err}") from None
    if windows < resources.workers:  # the trainer's evaluate() shards windows evenly over ranks
        raise fail("trainer.val_tokens", f"(trial {trial.trial_key}) {windows} validation windows of "
                                          f"n_ctx {config.shape.n_ctx} cannot be split over "
                                          f"resources.workers={resources.workers} ranks")


def _apply_budget(trials: list[TrialSpec], budget: Budget, search: SearchSpec):
    cheapest = min(trials, key=lambda t: t.planned_flops)
    limit = limit_flops(budget)
    if not affordable(cheapest.planned_flops, limit, limit):
        raise fail("budget", f"below the cheapest run ({cheapest.trial_key} plans "
                              f"{cheapest.planned_flops:.3g} FLOPs); {budget_text(budget)}")
    total = sum(t.planned_flops for t in trials)
    if search.kind == "active" or affordable(total, limit, limit):
        return trials, []  # active search spends the budget trial by trial, as it goes
    if budget.cut == "error":
        raise fail("budget", f"the grid plans {total:.3g} FLOPs, over {budget_text(budget)}; "
                              "set budget.cut to cheapest_first or largest_first to cut it")
    order = sorted(trials, key=lambda t: t.planned_flops, reverse=budget.cut == "largest_first")
    ledger, cut = BudgetLedger(limit_flops=limit), []
    for trial in order:  # greedy: take in policy order, skip what no longer fits
        if ledger.fits(trial.planned_flops):
            ledger.start(trial.trial_key, trial.planned_flops)
        else:
            reason = (f"budget.cut={budget.cut}: {ledger.committed:.3g} FLOPs already planned + "
                      f"{trial.planned_flops:.3g} exceeds {budget_text(budget)}")
            cut.append(CutTrial(trial, reason))
    kept = ledger.running
    return [t for t in trials if t.trial_key in kept], cut


def budget_text(budget: Budget) -> str:
    parts = []
    if budget.flops is not None:
        parts.append(f"budget.flops={budget.flops:.3g}")
    if budget.gpu_hours is not None:
        parts.append(f"budget.gpu_hours={budget.gpu_hours:g} at {budget.gpu_flops_per_s:.3g} FLOP/s/GPU")
    return " and ".join(parts)


def expand_grid(spec: SweepSpec) -> Grid:
    """All trials of the grid, each validated by the trainer's config, cut to the budget; an
    active search's target region is built as the searcher will build it."""
    trials = _trials(spec)
    if spec.search.kind == "active":
        check_target(spec.search.target, spec.search.law or "chinchilla", trials)
    kept, cut = _apply_budget(trials, spec.budget, spec.search)
    return Grid(trials=tuple(kept), cut=tuple(cut), budget=spec.budget, search=spec.search,
                    total_flops=sum(t.planned_flops for t in kept))


def ladder_estimate(spec: SweepSpec, grid: Grid) -> str | None:
    """Before the sweep (`validate_spec`): the spec's scaling-ladder section (orchestrator/ladder.py),
    estimated at its multiplier x the largest planned run of the main grid, which the sweep's laws
    are fitted to (its exact plan needs the sweep's
    fit). → one line for `validate`, or None without a section. Raises SpecError naming ``budget`` when the grid's
    planned FLOPs plus that estimate exceed the budget: the ladder would be refused only after the
    whole sweep ran. An active search spends the budget as it goes, so its ladder is checked after."""
    if spec.ladder is None or not grid.trials:
        return None
    fitted = [t for t in grid.trials if SUB_SWEEP_COLUMN not in t.run_columns] or grid.trials  # the main grid's
    estimate = spec.ladder.multiplier * max(t.planned_flops for t in fitted)
    line = (f"ladder: after the sweep, one run at {spec.ladder.multiplier:g} x the largest fitted run's compute, "
            f"about {estimate:.3g} FLOPs")
    limit = limit_flops(spec.budget)
    if spec.search.kind == "grid" and not affordable(grid.total_flops + estimate, limit, limit):
        raise fail("budget", f"the grid plans {grid.total_flops:.3g} FLOPs and its ladder (ladder.multiplier "
                             f"{spec.ladder.multiplier:g}) about {estimate:.3g} more, over the limit of {limit:.3g}; "
                             f"raise budget.flops to at least {grid.total_flops + estimate:.3g} or lower "
                             f"ladder.multiplier")
    return line
