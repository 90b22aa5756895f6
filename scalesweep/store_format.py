"""Metrics store format: the on-disk contract shared by the writer and the readers.

Schemas (`RUNS_SCHEMA`, `curves_schema`, the required columns, the schema version), the name and
part-file rules, and the filesystem helpers: `resolve` (local path or pyarrow.fs URI),
`validate_name`, the atomic part write, part listing and schema conformance. The contract itself
is described in `scalesweep.store` (docs/architecture.md §3); the writer is `scalesweep.store_writer`.
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

from scalesweep.statuses import RUN_STATUSES  # noqa: F401  (re-exported: part of the store contract)

# Bump only for a change an older reader would misread (a column renamed, retyped or removed);
# such a reader skips newer parts. Added nullable columns keep the version: an older reader keeps
# them as extra columns, a newer one fills nulls for parts written before them.
SCHEMA_VERSION = 1
SCHEMA_VERSION_KEY = b"scalesweep.schema_version"
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
    return False


# Columns every part must hold: the writer's identity columns (dedupe keys) and the required ones.
_READER_REQUIRED = {
    "runs": ("trial_id", "attempt", *REQUIRED_RUN_COLUMNS),
    "curves": ("trial_id", "attempt", *REQUIRED_CURVE_COLUMNS),
}


def read_part(fs: pafs.FileSystem, path: str, kind: str, base: pa.Schema) -> pa.Table | str:
    """One part with its contract columns in ``base``'s types, or why it is unusable.

    Unusable: not Parquet (empty, truncated, other format), a schema version this reader does
    not know, a required column missing, or a contract column of another type (`castable`).
    Raises `PartVanished` if the file was deleted after it was listed.
    """
    try:
        # ParquetFile.read is ~3x cheaper per small file than pq.read_table (no dataset layer).
        if isinstance(fs, pafs.LocalFileSystem):
            table = pq.ParquetFile(path).read(use_threads=False)
        else:
            with fs.open_input_file(path) as handle:
                table = pq.ParquetFile(handle).read(use_threads=False)
    except FileNotFoundError:
        raise PartVanished(path) from None
    except (OSError, pa.ArrowException) as err:
        return f"not a readable Parquet file ({err})"
    version = (table.schema.metadata or {}).get(SCHEMA_VERSION_KEY)
    if version is not None:  # files rewritten by other tools may drop the metadata: trust the columns
        try:
            number = int(version)
        except ValueError:
            return f"schema version {version!r} is not an integer"
        if not 1 <= number <= SCHEMA_VERSION:
            return f"schema version {number} is not one this reader knows (1..{SCHEMA_VERSION})"
    names = set(table.column_names)
    missing = [c for c in _READER_REQUIRED[kind] if c not in names]
    if missing:
        return f"missing required columns {missing}"
    for index, stored in enumerate(table.schema):  # cast only what differs (cheap per small part)
        index_in_base = base.get_field_index(stored.name)
        if index_in_base < 0:
            continue
        target = base.field(index_in_base).type
        if stored.type == target:
            continue
        if not castable(stored.type, target):
            return f"schema conflict: column {stored.name!r} is {stored.type}, the contract says {target}"
        table = table.set_column(index, stored.name, table.column(index).cast(target))
    return table


class PartVanished(Exception):
    """A listed part was deleted before it was read (merged by `TrialWriter.compact_curves`)."""


def _conform(table: pa.Table, base: pa.Schema) -> pa.Table:
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
    tail = [_SEQ] if _SEQ in table.column_names else []
    for name in sorted(set(table.column_names) - set(base.names) - {_SEQ}) + tail:
        columns.append(table[name])
        fields.append(table.schema.field(name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=_METADATA))
