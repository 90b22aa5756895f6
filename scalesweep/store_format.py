"""Metrics store format: the on-disk contract shared by the writer and the readers.

Schemas (`RUNS_SCHEMA`, `curves_schema`, the required columns, the schema version), the name and
part-file rules, and the filesystem helpers: `resolve` (local path or pyarrow.fs URI),
`validate_name`, the atomic part write, part listing and schema conformance. The contract itself
is described in `scalesweep.store` (DESIGN.md §3); the writer is `scalesweep.store_writer`.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from typing import Sequence

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

SCHEMA_VERSION = 1
SCHEMA_VERSION_KEY = b"scalesweep.schema_version"
RUN_STATUSES = ("completed", "early_stopped", "diverged", "failed", "budget_stopped", "interrupted")
EXTRA_EVAL_PREFIX = "val_loss_"

_METADATA = {SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()}
_SEQ = "__seq"  # reader-internal ordering column, never returned
_TIMESTAMP = pa.timestamp("us", tz="UTC")

_CURVE_FIELDS = [
    ("sweep", pa.string()),
    ("trial_id", pa.string()),
    ("attempt", pa.int64()),
    ("step", pa.int64()),
    ("tokens_seen", pa.int64()),
    ("flops", pa.float64()),  # float: exceeds int64 comfort at large scale and is an estimate anyway
    ("train_loss", pa.float64()),
    ("val_loss", pa.float64()),
    ("lr", pa.float64()),
    ("grad_noise_scale", pa.float64()),
    ("tokens_per_s", pa.float64()),
    ("mfu", pa.float64()),
    ("wall_s", pa.float64()),
    ("timestamp", _TIMESTAMP),
]
REQUIRED_CURVE_COLUMNS = ("step", "tokens_seen", "flops", "val_loss")

RUNS_SCHEMA = pa.schema(
    [
        ("sweep", pa.string()),
        ("trial_id", pa.string()),
        ("attempt", pa.int64()),
        ("status", pa.string()),
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
    ],
    metadata=_METADATA,
)
# A failed or diverged attempt still knows its configuration and how far it got; losses, MFU and
# provenance may be missing.
REQUIRED_RUN_COLUMNS = (
    "status", "n_layer", "d_model", "n_heads", "d_ff", "n_ctx", "vocab_size",
    "non_embedding_params", "dataset_tokens", "regime", "batch_tokens", "lr", "seed",
    "tokens_seen", "steps", "flops", "wall_s",
)

# Path components: no separators, no '=', not hidden, not number-like (hive type inference).
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_NUMBER_LIKE_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_CURVE_PART_RE = re.compile(r"^part-(\d+)-(\d+)\.parquet$")
_RUN_PART_RE = re.compile(r"^part-(\d+)\.parquet$")


def curves_schema(extra_evals: Sequence[str] = ()) -> pa.Schema:
    """Curves schema with one float64 ``val_loss_<name>`` column per extra eval set."""
    extra = []
    for name in extra_evals:
        column = name if name.startswith(EXTRA_EVAL_PREFIX) else EXTRA_EVAL_PREFIX + name
        if not re.fullmatch(r"[A-Za-z0-9_]+", column[len(EXTRA_EVAL_PREFIX):] or "-"):
            raise ValueError(f"extra eval name {name!r}: use letters, digits and '_'")
        extra.append((column, pa.float64()))
    return pa.schema(_CURVE_FIELDS + sorted(set(extra)), metadata=_METADATA)


# --------------------------------------------------------------------------------------------
# Filesystem helpers


def resolve(storage: str, *parts: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or a pyarrow.fs URI (s3://, gs://, file://, ...)."""
    if "://" in storage:
        fs, root = pafs.FileSystem.from_uri(storage)
    else:
        fs, root = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(storage))
    return fs, "/".join([root.rstrip("/")] + [p for p in parts if p])


def validate_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value) or _NUMBER_LIKE_RE.match(value):
        raise ValueError(
            f"{kind} {value!r}: must start with a letter or digit, use only letters, digits and "
            "'._+-', and not be a bare number (it becomes a hive partition directory)"
        )
    return value


def _write_atomic(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    """Write ``table`` so readers see either no file or the whole file at ``path``."""
    directory, name = path.rsplit("/", 1)
    fs.create_dir(directory, recursive=True)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    payload = buffer.getvalue()
    if isinstance(fs, pafs.LocalFileSystem):
        temp = f"{directory}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            with fs.open_output_stream(temp) as out:
                out.write(payload)
            fs.move(temp, path)  # rename(2): atomic within one directory
        except BaseException:
            if fs.get_file_info(temp).type != pafs.FileType.NotFound:
                fs.delete_file(temp)  # no hidden debris from a failed write
            raise
    else:  # object store: the object appears only when the upload completes
        with fs.open_output_stream(path) as out:
            out.write(payload)


def _list_parts(fs: pafs.FileSystem, directory: str) -> list[pafs.FileInfo]:
    """Visible ``*.parquet`` files below ``directory`` (hidden temp files are skipped)."""
    selector = pafs.FileSelector(directory, allow_not_found=True, recursive=True)
    return [
        info
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File
        and info.base_name.endswith(".parquet")
        and not info.base_name.startswith((".", "_"))
    ]


def _conform(table: pa.Table, base: pa.Schema) -> pa.Table:
    """Contract columns first, in contract order and types; extra columns follow, sorted."""
    columns, fields = [], []
    for field in base:
        if field.name in table.column_names:
            columns.append(table[field.name].cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
        fields.append(field)
    tail = [_SEQ] if _SEQ in table.column_names else []
    for name in sorted(set(table.column_names) - set(base.names) - {_SEQ}) + tail:
        columns.append(table[name])
        fields.append(table.schema.field(name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=_METADATA))
