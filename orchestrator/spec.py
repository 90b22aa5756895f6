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

Modules: the dataclasses live in `orchestrator.spec_types`, the field parsers in
`orchestrator.spec_fields`, the grid expansion and budget cut (`expand_grid`, `TrialPlan`,
`GridPlan`, `format_grid`) in `orchestrator.plan`; all are re-exported here. This module holds
`load_spec` and `validate_command`.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any, Mapping

import yaml

from scalesweep.store import validate_name
from trainers.config import PRECISIONS, REGIMES, ZERO_STAGES
from trainers.data import CorpusSpec
from orchestrator.plan import CutTrial, GridPlan, TrialPlan, expand_grid, format_grid
from orchestrator.spec_fields import (
    SpecError, axis, choice, fail, mapping, non_negative, non_negative_int, positive, positive_int,
)
from orchestrator.spec_types import (
    _AXES_KEYS, TOKENIZER_VOCAB, TRAINER_KEYS, Axes, Budget, Resources, SearchSpec, SweepSpec,
)

__all__ = [
    "SpecError", "SweepSpec", "Axes", "Resources", "SearchSpec", "Budget", "TrialPlan", "CutTrial",
    "GridPlan", "load_spec", "expand_grid", "format_grid", "validate_command", "TRAINER_KEYS",
    "TOKENIZER_VOCAB", "SEARCH_KINDS", "ACTIVE_LAWS", "CUT_POLICIES", "STORAGE_SCHEMES",
]

SEARCH_KINDS = ("grid", "active")
ACTIVE_LAWS = ("chinchilla", "kaplan")
CUT_POLICIES = ("cheapest_first", "largest_first", "error")
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")

_TOP_KEYS = ("name", "storage", "corpus", "axes", "trainer", "resources", "search", "budget")
_SHAPE_KEYS = ("n_layer", "d_model", "n_heads", "d_ff", "d_attn")


# --------------------------------------------------------------------------------------------
# Parsing


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
                      misfit=None if misfit is None else non_negative(misfit, "search.misfit"),
                      cost=choice(("flops", "time"))(raw.get("cost", "flops"), "search.cost"))


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


def validate_command(path: str | os.PathLike) -> str:
    """What `scalesweep validate <spec>` prints; raises SpecError (a ValueError) on a bad spec."""
    spec = load_spec(path)
    return f"sweep {spec.name} -> {spec.storage}\n{format_grid(expand_grid(spec))}"
