"""Metrics store schemas: the column contract shared by the writer and the readers.

`RUNS_SCHEMA`, `curves_schema`, the required columns, the schema version, which stored types
read as which contract types (`castable`) and schema conformance (`conform`). The contract
itself is described in `metrics` (docs/architecture.md §3).
"""

from __future__ import annotations

import re
from typing import Sequence

import pyarrow as pa

# Bump for a change an older reader would misread (a column renamed, retyped or removed), or whose
# meaning it would miss; such a reader skips newer parts. A newer reader reads every older
# version, filling nulls for the columns added since.
# 2: early prediction (`stop_reason`, `planned_steps`, `predicted_*`): a v1 reader would fit an
#    `early_stopped` run's loss at its stop as if it were the run's final result.
SCHEMA_VERSION = 2
SCHEMA_VERSION_KEY = b"scalesweep.schema_version"
EXTRA_EVAL_PREFIX = "val_loss_"

SCHEMA_METADATA = {SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()}
"""Arrow schema metadata every part carries (the schema version)."""

SEQ_COLUMN = "__seq"
"""Reader-internal ordering column (a part's sequence number); `conform` keeps it last, the
readers drop it before returning."""

_TIMESTAMP = pa.timestamp("us", tz="UTC")

CURVE_FIELDS = [
    ("sweep", pa.string()),
    ("trial_id", pa.string()),
    ("attempt", pa.int64()),
    ("step", pa.int64()),
    ("tokens_seen", pa.int64()),
    ("flops", pa.float64()),  # float: exceeds int64 comfort at large scale and is an estimate anyway
    ("train_loss", pa.float64()),
    ("val_loss", pa.float64()),
    # the validation loss at each context position 0..n_ctx-1 over the same windows as val_loss
    # (its mean); null in rows written before it was stored
    ("loss_per_position", pa.list_(pa.float64())),
    ("lr", pa.float64()),
    ("grad_noise_scale", pa.float64()),
    ("tokens_per_s", pa.float64()),
    ("mfu", pa.float64()),
    ("wall_s", pa.float64()),
    ("timestamp", _TIMESTAMP),
]
"""(name, type) of the curves table's contract columns, in order (extra evals follow)."""

REQUIRED_CURVE_COLUMNS = ("step", "tokens_seen", "flops", "val_loss")

RUNS_SCHEMA = pa.schema(
    [
        ("sweep", pa.string()),
        ("trial_id", pa.string()),
        ("attempt", pa.int64()),
        ("status", pa.string()),
        # the model family (trainers.shapes.FAMILIES); rows written before it existed were all
        # transformers, and `load_runs` reads their null as DEFAULT_FAMILY
        ("family", pa.string()),
        ("n_layer", pa.int64()),
        ("d_model", pa.int64()),
        ("n_heads", pa.int64()),
        ("d_ff", pa.int64()),
        ("d_attn", pa.int64()),
        ("n_ctx", pa.int64()),
        ("vocab_size", pa.int64()),
        ("non_embedding_params", pa.int64()),
        ("total_params", pa.int64()),
        ("dataset_tokens", pa.int64()),
        ("regime", pa.string()),
        ("batch_tokens", pa.int64()),
        ("micro_batch_size", pa.int64()),  # sequences per rank per micro-step (null: not known)
        ("grad_accum_steps", pa.int64()),  # micro-steps per optimizer step (null: not known)
        ("lr", pa.float64()),
        ("seed", pa.int64()),
        ("zero_stage", pa.int64()),
        ("precision", pa.string()),
        ("world_size", pa.int64()),
        ("tokens_seen", pa.int64()),
        ("steps", pa.int64()),
        ("flops", pa.float64()),
        ("flops_6n", pa.float64()),
        ("wall_s", pa.float64()),
        ("final_val_loss", pa.float64()),
        ("best_val_loss", pa.float64()),
        ("best_step", pa.int64()),
        ("tokens_per_s", pa.float64()),
        ("mfu", pa.float64()),
        ("git_sha", pa.string()),
        ("hostname", pa.string()),
        ("error", pa.string()),
        # why an early_stopped run stopped (STOP_REASONS; null for every other status and in v1 stores)
        ("stop_reason", pa.string()),
        ("planned_steps", pa.int64()),  # the schedule's length; steps < planned_steps: stopped early
        # early prediction: the predicted loss at planned_steps and its `predicted_level` interval
        ("predicted_loss", pa.float64()),
        ("predicted_lo", pa.float64()),
        ("predicted_hi", pa.float64()),
        ("predicted_level", pa.float64()),
        ("predicted_method", pa.string()),  # "power_law", "lr_schedule" or "kaplan_ns" (fitting.curve_prediction)
        # sd of one evaluation about the run's fitted curve, log space (fitting.run_result weighs the
        # prediction against it); null before it was stored: a reader falls back to REFERENCE_LOG_SD
        ("eval_log_sd", pa.float64()),
    ],
    metadata=SCHEMA_METADATA,
)
# A failed or diverged attempt still knows its configuration and how far it got; losses, MFU and
# provenance may be missing.
REQUIRED_RUN_COLUMNS = (
    "status", "n_layer", "d_model", "n_heads", "d_ff", "n_ctx", "vocab_size",
    "non_embedding_params", "dataset_tokens", "regime", "batch_tokens", "lr", "seed",
    "tokens_seen", "steps", "flops", "wall_s",
)
TRANSFORMER_ONLY_RUN_COLUMNS = ("n_heads", "d_ff")
"""Required columns that do not apply to (are null for) an LSTM run."""


DEFAULT_FAMILY = "transformer"
"""The family of a runs row whose ``family`` is null (every row written before the column)."""


def fitted_family(families) -> str:
    """The model family a sweep's laws describe when its runs hold several (a law describes one):
    the transformer where present, else the first by name (``families``: any iterable of names)."""
    present = set(families)
    return DEFAULT_FAMILY if DEFAULT_FAMILY in present or not present else sorted(present)[0]


SUB_SWEEP_COLUMN = "sub_sweep"
"""Extra runs column naming the spec's ``sub_sweeps`` entry a run belongs to; absent or null for
the main grid's runs (`load_runs` reads those as :data:`MAIN_GRID`)."""

MAIN_GRID = "main"
"""The ``sub_sweep`` value of a run of the spec's main ``axes`` grid."""

LADDER_PREFIX = "ladder-x"
"""Trial keys of scaling-ladder runs (orchestrator/ladder.py) start with this."""

LADDER_GRID = "ladder"
"""The ``sub_sweep`` of a ladder run: the test of the sweep's laws, not their data (a ladder row
written before it had the column reads as this too, by its key)."""


def required_run_columns(family: str | None) -> tuple[str, ...]:
    """The columns a runs row of this family must fill (`REQUIRED_RUN_COLUMNS` less those an
    LSTM does not have)."""
    if (family or DEFAULT_FAMILY) == DEFAULT_FAMILY:
        return REQUIRED_RUN_COLUMNS
    return tuple(c for c in REQUIRED_RUN_COLUMNS if c not in TRANSFORMER_ONLY_RUN_COLUMNS)

LADDER_SCHEMA = pa.schema(
    [
        ("sweep", pa.string()),
        ("trial_id", pa.string()),  # the ladder run's trial key in runs/ (e.g. ladder-x4)
        ("multiplier", pa.float64()),  # K: the ladder's compute over the largest fitted run's
        ("reference_compute", pa.float64()),  # the largest fitted run's exact training FLOPs
        ("compute", pa.float64()),  # K x reference_compute: the FLOPs the prediction is for
        ("law", pa.string()),
        ("n_runs", pa.int64()),  # runs the law was fitted to
        ("n_opt", pa.float64()),  # predicted compute-optimal N and D at `compute` (C = 6ND)
        ("d_opt", pa.float64()),
        ("loss_opt", pa.float64()),  # the law's loss at (n_opt, d_opt)
        ("n_actual", pa.int64()),  # the trained shape's N and the tokens it was planned to see
        ("d_actual", pa.int64()),
        ("planned_flops", pa.float64()),  # the ladder run's planned exact FLOPs (budget)
        ("predicted_loss", pa.float64()),  # the law's loss at (n_actual, d_actual) and its
        ("predicted_lo", pa.float64()),  # prediction interval (law misfit included)
        ("predicted_hi", pa.float64()),
        ("predicted_level", pa.float64()),
        ("status", pa.string()),  # the ladder run's status (metrics.RUN_STATUSES)
        ("flops", pa.float64()),  # the ladder run's spent exact FLOPs
        ("final_val_loss", pa.float64()),  # the ladder run's final validation loss
        ("loss_column", pa.string()),  # the runs column the law was fitted to (best_val_loss)
        ("observed_loss", pa.float64()),  # the ladder run's value of loss_column
        ("covered", pa.bool_()),  # predicted_lo <= observed_loss <= predicted_hi (null: no loss)
    ],
    metadata=SCHEMA_METADATA,
)
"""The ``ladder/`` table: one row per ladder run (`scalesweep ladder`, orchestrator/ladder.py)."""

REQUIRED_LADDER_COLUMNS = ("trial_id", "multiplier", "compute", "law", "predicted_loss", "predicted_lo",
                           "predicted_hi", "predicted_level")


def curves_schema(extra_evals: Sequence[str] = ()) -> pa.Schema:
    """Curves schema with one float64 ``val_loss_<name>`` column per extra eval set."""
    extra = []
    for name in extra_evals:
        column = name if name.startswith(EXTRA_EVAL_PREFIX) else EXTRA_EVAL_PREFIX + name
        if not re.fullmatch(r"[A-Za-z0-9_]+", column[len(EXTRA_EVAL_PREFIX):] or "-"):
            raise ValueError(f"extra eval name {name!r}: use letters, digits and '_'")
        extra.append((column, pa.float64()))
    return pa.schema(CURVE_FIELDS + sorted(set(extra)), metadata=SCHEMA_METADATA)


def castable(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether a stored column of type ``source`` reads losslessly as contract type ``target``:
    a wider number of the same kind (or int into float), any string encoding into string, any
    timestamp into timestamp, or all nulls. A number stored as text is a schema conflict."""
    if pa.types.is_dictionary(source):
        source = source.value_type
    if source == target or pa.types.is_null(source):
        return True
    if pa.types.is_floating(target):
        return pa.types.is_floating(source) or pa.types.is_integer(source)
    if pa.types.is_integer(target):
        return pa.types.is_integer(source)
    if pa.types.is_string(target):
        return pa.types.is_string(source) or pa.types.is_large_string(source)
    if pa.types.is_timestamp(target):
        return pa.types.is_timestamp(source)
    if pa.types.is_list(target):
        return ((pa.types.is_list(source) or pa.types.is_large_list(source))
                and castable(source.value_type, target.value_type))
    return False


def conform(table: pa.Table, base: pa.Schema) -> pa.Table:
    """Contract columns first, in contract order and types; extra columns follow, sorted.

    Raises ValueError naming the first contract column whose stored type does not read as the
    contract's (see `castable`).
    """
    columns, fields = [], []
    for field in base:
        if field.name in table.column_names:
            stored = table.schema.field(field.name).type
            if not castable(stored, field.type):
                raise ValueError(f"column {field.name!r} is {stored}, the contract says {field.type}")
            columns.append(table[field.name].cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
        fields.append(field)
    tail = [SEQ_COLUMN] if SEQ_COLUMN in table.column_names else []
    for name in sorted(set(table.column_names) - set(base.names) - {SEQ_COLUMN}) + tail:
        columns.append(table[name])
        fields.append(table.schema.field(name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=SCHEMA_METADATA))
