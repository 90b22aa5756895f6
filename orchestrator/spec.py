"""Sweep spec: a YAML file -> validated, typed dataclasses -> the list of trials to run.

Everything here runs before Ray starts (no Ray import): a spec that cannot run fails with a
`SpecError` whose message has one line per problem, each starting with the field path, e.g.
``axes.dataset_tokens[2]: must be a positive integer, got -5``; unknown keys list the allowed
ones, and a key written twice in the YAML is refused. Sections are parsed independently, so one
run of `scalesweep validate` reports the problems of every section. The budget is enforced at
expansion: a grid that does not fit is cut (cheapest first, largest first, or refused) and the
cut is reported.

Numbers: PyYAML reads ``2e5`` (no dot) as a string, so numeric fields also accept strings that
parse as numbers; integer fields accept integral floats (``2.0e5``). Relative local paths
(storage, corpus) are made absolute against the current directory, because Ray trials run in
their own working directories.

Modules: the dataclasses live in `orchestrator.spec_types` (field docs: docs/spec_reference.md),
the field parsers in `trainers.fields` (the spec's structural ones in `orchestrator.spec_fields`),
the grid expansion and budget cut (`expand_grid`, `TrialSpec`, `Grid`) in `orchestrator.grid`,
the corpus checks in `orchestrator.spec_data`; import each from its owner. This module holds
`load_spec`, `validate_spec`, `validate_command` and `format_grid` (the table `validate` prints).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Mapping

from metrics import validate_name
from metrics.schema import MAIN_GRID, SUB_SWEEP_COLUMN
from orchestrator.budget import budget_fraction
from orchestrator.grid import Grid, TrialSpec, budget_text, cut_lines, expand_grid, ladder_estimate
from trainers.shapes import non_embedding_params
from orchestrator.isoflop import ISOFLOP_KEYS, format_isoflop_plan, parse_isoflop
from orchestrator.spec_data import DATA_CHECKS, check_data
from orchestrator.spec_fields import Problems, axis
from orchestrator.spec_types import (
    ACTIVE_LAWS, AXES_KEYS, CUT_POLICIES, SEARCH_COSTS, SEARCH_KINDS, TRAINER_KEYS, Axes, Budget,
    EarlyPrediction, FitAggregate, FitSpec, HEADLINES, LadderSpec, Resources, SearchSpec, SweepSpec,
)
from orchestrator.target import parse_stop_when, parse_target
from fitting.laws import get_law
from trainers.config import TrainConfig, corpus_from
from trainers.data import CorpusSpec, unread_text_field
from trainers.fields import (
    SpecError, choice, fail, load_yaml, mapping, non_negative, positive, positive_int,
)

__all__ = ["load_spec", "validate_spec", "validate_command", "STORAGE_SCHEMES"]

STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")

_TOP_KEYS = ("name", "storage", "corpus", "axes", "sub_sweeps", "trainer", "resources", "search", "budget",
             "early_prediction", "fit", "ladder")


# --------------------------------------------------------------------------------------------
# Parsing


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


def _corpus(raw: Any, where: str = "corpus") -> CorpusSpec:
    """The trainer's corpus parser; a local source is made absolute (trials run elsewhere).
    Whether it exists is a data check (`orchestrator.spec_data`), which can be deferred."""
    corpus = corpus_from("builtin" if raw is None else raw, where)
    if (why := unread_text_field(corpus)):
        raise fail(f"{where}.text_field", why)
    if corpus.source != "builtin" and "://" not in corpus.source:
        corpus = dataclasses.replace(corpus, source=os.path.abspath(os.path.expanduser(corpus.source)))
    return corpus


def _axes(raw: Any, problems: Problems, isoflop: bool = False, section: str = "axes") -> Axes:
    """Each axis parsed by its field's parser (`Axes` metadata); every bad axis is reported.
    With `isoflop` (search.kind: isoflop) the plan sets N and D, so those axes are refused.
    ``section`` is the mapping's path in error messages (a sub-sweep's: ``sub_sweeps.<name>``)."""
    raw = mapping(raw, section, AXES_KEYS, required=() if isoflop else ("dataset_tokens",))
    owned = [key for key in ("target_params", "shapes", "dataset_tokens") if key in raw]
    if isoflop and owned:
        raise fail(f"{section}.{owned[0]}", "not with search.kind: isoflop (its plan sets N and D per budget)")
    if not isoflop and ("target_params" in raw) == ("shapes" in raw):
        raise fail(section, "give exactly one of target_params (N targets) or shapes (explicit)")
    if "head_dim" in raw and "n_heads" in raw:
        raise fail(section, "give head_dim or n_heads, not both")
    values = {f.name: problems.parse(axis, raw, f.name, f.metadata["parse"], f.default, section, default=f.default)
              for f in dataclasses.fields(Axes)}
    return Axes(**values)


# Keys of which an axes mapping holds one: a sub-sweep giving either replaces the main grid's.
_EITHER_OR = (("target_params", "shapes"), ("head_dim", "n_heads"))


def _sub_sweeps(raw: Any, raw_axes: Mapping, problems: Problems, isoflop: bool) -> dict[str, Axes]:
    """``sub_sweeps: {name: {axis: values, ...}}``: each a grid of the main ``axes`` with the
    given axes replaced (Kaplan's shape, LSTM and batch-size sweeps beside the N x D grid)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not raw:
        raise fail("sub_sweeps", f"must be a mapping of names to axes overrides, e.g. "
                                 f"{{shape: {{aspect_ratio: [4, 16, 64]}}}}; got {raw!r}")
    if isoflop:
        raise fail("sub_sweeps", "not with search.kind: isoflop (its plan sets N and D per budget)")
    out = {}
    for name, override in raw.items():
        section = f"sub_sweeps.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise fail(section, f"a sub-sweep's name is letters, digits, '_' or '-', got {name!r}")
        if name == MAIN_GRID:
            raise fail(section, f"{MAIN_GRID!r} names the main axes grid; give the sub-sweep another name")
        override = mapping(override, section, AXES_KEYS)
        if not override:
            raise fail(section, "must replace at least one axis of the main grid")
        merged = dict(raw_axes)
        for pair in _EITHER_OR:
            if any(key in override for key in pair):
                for key in pair:
                    merged.pop(key, None)
        merged.update(override)
        out[name] = problems.parse(_axes, merged, problems, False, section)
    return out


_TRAINER_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _trainer(raw: Any, problems: Problems) -> dict:
    """Each setting parsed by the trainer's own field parser (TrainConfig's metadata), so the
    error names the spec field even for a grid that would be cut to nothing; the cross-field
    rules run per trial in `orchestrator.grid`."""
    trainer = mapping(raw, "trainer", TRAINER_KEYS)
    for key, value in trainer.items():
        meta = _TRAINER_FIELDS[key].metadata
        if key == "extra_evals":
            if not isinstance(value, Mapping):
                problems.add(fail("trainer.extra_evals", f"must be a mapping of name -> corpus, "
                                                         f"got {value!r}"))
                continue
            trainer[key] = {name: problems.parse(_corpus, spec, f"trainer.extra_evals.{name}")
                            for name, spec in value.items()}
        elif value is None and meta["optional"]:
            continue
        elif meta["parse"] is not None:
            trainer[key] = problems.parse(meta["parse"], value, f"trainer.{key}", default=value)
    return trainer


def _section(cls: type, raw: Any, path: str, problems: Problems) -> Any:
    """A flat spec section: each key parsed by its dataclass field's parser."""
    raw = mapping(raw, path, [f.name for f in dataclasses.fields(cls)])
    return cls(**{key: problems.parse(cls.__dataclass_fields__[key].metadata["parse"], value, f"{path}.{key}")
                  for key, value in raw.items()})


# The search keys each kind reads; any other key is refused, naming the kind it belongs to.
_KIND_KEYS = {"grid": (), "isoflop": ISOFLOP_KEYS,
              "active": tuple(f.name for f in dataclasses.fields(SearchSpec)
                              if f.name not in ("kind", *ISOFLOP_KEYS))}


def _search(raw: Any) -> SearchSpec:
    raw = mapping(raw, "search", [f.name for f in dataclasses.fields(SearchSpec)])
    kind = choice(SEARCH_KINDS)(raw.get("kind", "grid"), "search.kind")
    extra = sorted(set(raw) - {"kind", *_KIND_KEYS[kind]})
    if extra:
        owner = next(k for k, keys in _KIND_KEYS.items() if extra[0] in keys)
        raise fail(f"search.{extra[0]}", f"only for search.kind: {owner}")
    if kind == "grid":
        return SearchSpec()
    if kind == "isoflop":
        return parse_isoflop(raw)
    law = choice(ACTIVE_LAWS)(raw.get("law") or "chinchilla", "search.law")
    if raw.get("max_trials") is None:
        raise fail("search.max_trials", "required for search.kind: active")
    target = parse_target(raw.get("target"), law)  # the searcher's own interpreter
    stop_when = parse_stop_when(raw.get("stop_when"), "search.stop_when")
    if "stop_when" in target:
        if stop_when:
            raise fail("search.target.stop_when", "give stop_when once (search.stop_when or here)")
        stop_when = target.pop("stop_when")
    seed_runs = None if raw.get("seed_runs") is None else positive_int(raw["seed_runs"], "search.seed_runs")
    need = get_law(law).min_runs  # the online fitter's minimum (ActiveSearcher._no_fit_reason)
    if seed_runs is not None and seed_runs < need:
        # fewer would not change anything: without a fit the designer keeps seeding anyway
        raise fail("search.seed_runs", f"{seed_runs} is fewer than the {need} runs a fit of law {law} needs "
                                       f"(its parameters + 1); the designer seeds until it has a fit")
    misfit = raw.get("misfit")
    return SearchSpec(kind=kind, law=law, target=target,
                      max_trials=positive_int(raw["max_trials"], "search.max_trials"),
                      stop_when=stop_when,
                      seed_runs=seed_runs,
                      misfit=None if misfit is None else non_negative(misfit, "search.misfit"),
                      cost=choice(SEARCH_COSTS)(raw.get("cost", "flops"), "search.cost"))


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


def _fit(raw: Any, problems: Problems) -> FitSpec:
    raw = mapping(raw, "fit", [f.name for f in dataclasses.fields(FitSpec)])
    aggregate = _section(FitAggregate, raw.get("aggregate"), "fit.aggregate", problems)
    both = sorted(set(aggregate.best_over or ()) & set(aggregate.mean_over or ()))
    if both:
        raise fail("fit.aggregate", f"column {both[0]!r} is in both best_over and mean_over (a column is "
                                    f"either optimised over or averaged over)")
    return FitSpec(aggregate=aggregate, headline=choice(HEADLINES)(raw.get("headline", "main"), "fit.headline"))


def load_spec(path_or_dict: str | os.PathLike | Mapping) -> SweepSpec:
    """Parse and validate a sweep spec (YAML path or already-loaded mapping). Every section is
    parsed even when another fails; the SpecError lists one problem per line."""
    raw = path_or_dict if isinstance(path_or_dict, Mapping) else load_yaml(path_or_dict)
    raw = mapping(raw, "", _TOP_KEYS, required=("name", "storage", "axes"))
    problems = Problems()
    search = raw.get("search")
    isoflop = isinstance(search, Mapping) and search.get("kind") == "isoflop"
    parts = {
        "name": problems.parse(_name, raw["name"], "name"),
        "storage": problems.parse(_storage, raw["storage"], "storage"),
        "corpus": problems.parse(_corpus, raw.get("corpus")),
        "axes": problems.parse(_axes, raw["axes"], problems, isoflop),
        "sub_sweeps": {},
        "trainer": problems.parse(_trainer, raw.get("trainer"), problems),
        "resources": problems.parse(_section, Resources, raw.get("resources"), "resources", problems),
        "search": problems.parse(_search, raw.get("search")),
        "budget": problems.parse(_budget, raw.get("budget")),
        "early_prediction": problems.parse(_section, EarlyPrediction, raw.get("early_prediction"),
                                           "early_prediction", problems),
        "fit": problems.parse(_fit, raw.get("fit"), problems, default=FitSpec()),
        "ladder": None if raw.get("ladder") is None else problems.parse(
            _section, LadderSpec, raw["ladder"], "ladder", problems),
    }
    if parts["axes"] is not None and raw.get("sub_sweeps") is not None:  # after the main grid parses
        parts["sub_sweeps"] = problems.parse(_sub_sweeps, raw["sub_sweeps"], raw["axes"], problems, isoflop,
                                             default={})
    axes, trainer = parts["axes"], parts["trainer"]
    regimes = set(axes.regime if axes else ()).union(*(a.regime for a in parts["sub_sweeps"].values() if a))
    if axes and trainer is not None and "dataset" in regimes and trainer.get("max_steps") is None:
        problems.add(fail("trainer.max_steps", "required in the dataset regime (it caps the "
                                               "repeated passes over D and sets the LR schedule length)"))
    if axes and isoflop and "dataset" in axes.regime:
        problems.add(fail("axes.regime", "dataset does not fit search.kind: isoflop (a dataset-regime "
                                         "run's FLOPs follow trainer.max_steps and early stopping, not D)"))
    problems.raise_any()
    return SweepSpec(**parts)


def validate_spec(spec: SweepSpec | str | os.PathLike | Mapping, *, check_corpus: bool = True,
                  check_storage: bool = True, prepare: bool = True,
                  report: list | None = None) -> tuple[SweepSpec, Grid]:
    """The one validation pass `validate` and `run` share, before Ray starts: parse the spec,
    build every trial's TrainConfig and batch geometry (the trainer's own checks), the budget
    cut and the search target, then (unless `check_corpus` is False) the data checks: the corpus
    exists, its token count holds every trial's dataset_tokens plus the validation split, and
    each extra-eval set can be read; and (unless `check_storage` is False) that the storage is
    reachable from here (`metrics.check_reachable`: the driver reads and writes the store).
    ``prepare`` False (`validate`) tokenises nothing (an unprepared corpus's sizes are not
    checked); ``report`` receives one line per corpus (`orchestrator.spec_data.check_data`) and one
    for a ``ladder:`` section, whose estimated cost must fit the budget with the grid
    (`orchestrator.grid.ladder_estimate`).
    Raises SpecError, one line per problem."""
    from metrics import check_reachable

    from orchestrator.early_stop import check_evaluations

    spec = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    grid = expand_grid(spec)
    check_evaluations(spec.early_prediction, grid.trials, spec.resources.workers)
    ladder = ladder_estimate(spec, grid)  # a ladder the budget cannot pay is refused before the sweep
    if ladder and report is not None:
        report.append(ladder)
    storage_problem = None
    if check_storage:  # first: the data checks look for the sweep's prepared corpora there
        try:
            check_reachable(spec.storage)
        except ValueError as err:
            storage_problem = str(err)
    problems = []
    if check_corpus:
        try:
            (report if report is not None else []).extend(
                check_data(spec, grid, prepare, in_storage=check_storage and storage_problem is None))
        except SpecError as err:
            problems.append(str(err))
    problems += [storage_problem] if storage_problem else []
    if problems:
        raise SpecError("\n".join(problems))
    return spec, grid


def validate_command(path: str | os.PathLike, *, check_corpus: bool = True) -> str:
    """What `scalesweep validate <spec>` prints; raises SpecError (a ValueError) on a bad spec.
    Resources are checked by `run`, against the cluster it attaches to."""
    from metrics import join

    # a cluster-only spec: its storage may answer only there (`run` always checks it)
    corpora: list[str] = []
    spec, grid = validate_spec(path, check_corpus=check_corpus, check_storage=check_corpus,
                               prepare=False, report=corpora)
    lines = [f"sweep {spec.name} -> {join(spec.storage, spec.name)}/", format_grid(grid)]
    if spec.search.kind == "isoflop":
        lines.append(format_isoflop_plan(grid.trials))
    if spec.search.kind == "active":
        lines += active_plan_lines(spec.search, grid.trials)
    lines += corpora
    aggregation = spec.aggregation()
    if aggregation:  # several runs per (N, D): say how each cell is represented in the fits
        given = spec.fit.aggregate.best_over is not None or spec.fit.aggregate.mean_over is not None
        lines.append(f"fit: each (N, D) cell aggregated, {aggregation.describe()} "
                     f"({'fit.aggregate' if given else 'default: the axes sweep them'})")
    if not check_corpus:
        lines.append("data checks deferred (each trial runs them when it loads the corpus): "
                     + "; ".join(DATA_CHECKS) + "; storage not checked from here (`run` checks it)")
    lines.append("resources are checked by `scalesweep run` against the cluster it runs on")
    return "\n".join(lines)


def active_plan_lines(search: SearchSpec, trials) -> list[str]:
    """What an active search can do with its limits: the runs a fit of its law needs (its
    parameters + 1, at as many distinct (N, D) points: runs at one point at several lrs or
    seeds are one fitted cell; ActiveSearcher._no_fit_reason), against max_trials and the
    planned runs and points; a warning where the sweep would end without any fit, or seed_runs
    exceeds max_trials (it was accepted silently and found out at the end)."""
    need = get_law(search.law).min_runs
    n_planned = len(trials)
    n_points = len({(t.non_embedding_params, t.dataset_tokens) for t in trials})
    at = f" at {n_points} (N, D) points" if n_points != n_planned else ""
    lines = [f"active: law {search.law} needs {need} runs at distinct (N, D) points for a fit; max_trials "
             f"{search.max_trials}, {n_planned} planned runs{at}"]
    if n_points < need <= min(search.max_trials, n_planned):
        lines.append(f"warning: the plan has {n_points} distinct (N, D) points, fewer than the {need} a fit needs: "
                     f"the sweep will end without a fit")
    if min(search.max_trials, n_planned) < need:
        limit = "max_trials" if search.max_trials <= n_planned else "the plan"
        lines.append(f"warning: search.max_trials: at most {min(search.max_trials, n_planned)} runs ({limit}), fewer "
                     f"than the {need} a fit needs: the sweep will end without a fit (only seed runs)")
    if search.seed_runs is not None and search.seed_runs > min(search.max_trials, n_planned):
        lines.append(f"warning: search.seed_runs: {search.seed_runs} seed runs asked, at most "
                     f"{min(search.max_trials, n_planned)} can run: every run will be a seed run")
    return lines


def format_grid(grid: Grid) -> str:
    """The table `scalesweep validate` prints."""
    header = ("trial", "n_layer", "d_model", "heads", "d_ff", "N", "N/target", "D", "regime",
              "tokens", "FLOPs", "lr")

    def row(t: TrialSpec) -> tuple[str, ...]:
        n = non_embedding_params(t.shape)
        ratio = f"{n / t.target_params:.2f}" if t.target_params else "-"
        # "-": an LSTM has no heads or d_ff
        return (t.trial_key, str(t.shape.n_layer), str(t.shape.d_model), str(t.shape.n_heads or "-"),
                str(t.shape.d_ff or "-"), f"{n:.3g}", ratio, f"{t.dataset_tokens:.3g}", t.regime,
                f"{t.planned_tokens:.3g}", f"{t.planned_flops:.3g}", f"{t.lr:.3g}")

    rows = [header] + [row(t) for t in grid.trials]
    if any(SUB_SWEEP_COLUMN in t.run_columns for t in grid.trials):  # which grid each run serves
        rows = [r + (g,) for r, g in zip(rows, ["grid"] + [t.run_columns.get(SUB_SWEEP_COLUMN, MAIN_GRID)
                                                           for t in grid.trials])]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    used = budget_fraction(grid.budget, grid.total_flops) if grid.trials else 0.0
    lines.append(f"{len(grid.trials)} trials, {grid.total_flops:.3g} FLOPs planned = "
                 f"{used:.1%} of {budget_text(grid.budget)} (search: {grid.search.kind})")
    lines += cut_lines(grid.cut)
    return "\n".join(lines)
