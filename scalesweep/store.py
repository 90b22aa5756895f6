"""Metrics store: Arrow/Parquet files under ``<storage>/<sweep>/`` (DESIGN.md §3).

Layout (hive-partitioned by trial, one writer per trial, append-only)::

    <storage>/<sweep>/runs/trial_id=<id>/part-<attempt>.parquet            one row per ended attempt
    <storage>/<sweep>/curves/trial_id=<id>/part-<attempt>-<seq:06d>.parquet  eval rows, one file per flush

Contract choices (and why):

* ``trial_id`` is stored *both* as the hive directory value and as a string column inside every
  file, with identical values. Readers that ignore the directory (``pq.read_table`` on one file,
  polars/pandas on a file list) still see it, and hive-aware readers (DuckDB
  ``hive_partitioning=true``, ``pyarrow.dataset`` with ``partitioning="hive"``) agree with it.
  ``TrialWriter`` rejects ids that would need escaping in a path or that look like numbers, so a
  hive reader never infers a non-string type for the partition.
* ``timestamp`` is ``timestamp[us, tz=UTC]``; writers may pass a ``datetime`` or float seconds
  since the epoch (``time.time()``).
* Every Arrow field is nullable; which columns a writer *must* fill is checked in Python
  (``REQUIRED_CURVE_COLUMNS``, ``REQUIRED_RUN_COLUMNS``), so a partial row fails loudly at the
  trial that wrote it instead of at the reader.
* Files are written under a hidden name (leading ``.``, ignored by DuckDB/pyarrow discovery) and
  renamed into place on local disk. On object stores the rename would be a copy plus delete, so
  the file is uploaded straight to its final key: one PUT / completed multipart upload is atomic.
* Extra eval sets are float64 columns ``val_loss_<name>``; runs accept extra scalar config
  columns. Readers unify schemas across parts and fill what a part lacks with nulls.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import re
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

if TYPE_CHECKING:  # pandas only on request (as_pandas=True)
    import pandas as pd

SCHEMA_VERSION = 1
SCHEMA_VERSION_KEY = b"scalesweep.schema_version"
RUN_STATUSES = ("completed", "early_stopped", "diverged", "failed", "budget_stopped")
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
_WRITER_COLUMNS = ("sweep", "trial_id", "attempt")  # filled by TrialWriter, not by the caller

# Path components: no separators, no '=', not hidden, not number-like (hive type inference).
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_NUMBER_LIKE_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_CURVE_PART_RE = re.compile(r"^part-(\d+)-(\d+)\.parquet$")
_RUN_PART_RE = re.compile(r"^part-(\d+)\.parquet$")
# Parquet decoding releases the GIL, but on small files Python overhead dominates: measured on
# 2 cores, 2 threads beat 1 by 1.5x and 8 threads were no faster than 1.
_READ_THREADS = max(2, min(8, os.cpu_count() or 2))


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


# --------------------------------------------------------------------------------------------
# Writer


def _to_timestamp(value):
    if value is None or isinstance(value, _dt.datetime):
        return value
    if isinstance(value, (int, float)):
        return _dt.datetime.fromtimestamp(float(value), tz=_dt.timezone.utc)
    raise TypeError(f"timestamp: expected datetime or seconds since epoch, got {value!r}")


def _coerce_floats(record: dict, schema: pa.Schema) -> dict:
    """Python ints into float64 columns: FLOP counts pass 2**53 (9e15) at modest scale, and
    Arrow refuses to convert such an int to a double implicitly."""
    for name in record:
        index = schema.get_field_index(name)
        if index >= 0 and pa.types.is_floating(schema.field(index).type) and isinstance(record[name], int):
            record[name] = float(record[name])
    return record


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, np.generic))


class TrialWriter:
    """Appends one trial attempt's rows to the store; touches only ``trial_id=<id>/`` files.

    One writer per attempt and process (in data-parallel training only rank 0 writes). A writer
    re-created for the same attempt continues the part sequence found on storage.
    """

    def __init__(self, storage: str, sweep: str, trial_id: str, attempt: int = 0):
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
            raise ValueError(f"attempt: must be a non-negative integer, got {attempt!r}")
        self.sweep = validate_name("sweep", sweep)
        self.trial_id = validate_name("trial_id", trial_id)
        self.attempt = attempt
        self._fs, sweep_dir = resolve(storage, sweep)
        partition = f"trial_id={trial_id}"
        self._curves_dir = f"{sweep_dir}/curves/{partition}"
        self._runs_dir = f"{sweep_dir}/runs/{partition}"
        self._next_seq = self._scan_next_seq()

    def _scan_next_seq(self) -> int:
        seqs = [
            int(m.group(2))
            for info in _list_parts(self._fs, self._curves_dir)
            if (m := _CURVE_PART_RE.match(info.base_name)) and int(m.group(1)) == self.attempt
        ]
        return max(seqs, default=-1) + 1

    def _identity(self) -> dict:
        return {"sweep": self.sweep, "trial_id": self.trial_id, "attempt": self.attempt}

    def append_curves(self, rows: list[dict]) -> None:
        """Write ``rows`` (one per evaluation) as one new part file."""
        if not rows:
            return
        core = {name for name, _ in _CURVE_FIELDS} - set(_WRITER_COLUMNS)
        extra_evals: set[str] = set()
        identity = self._identity()
        for i, row in enumerate(rows):
            clashes = [c for c in _WRITER_COLUMNS if c in row and row[c] != identity[c]]
            if clashes:
                raise ValueError(f"curves row {i}: {clashes} differ from the writer's; leave them out")
            unknown = set(row) - core - set(_WRITER_COLUMNS)
            extra_evals |= {k for k in unknown if k.startswith(EXTRA_EVAL_PREFIX)}
            unknown -= extra_evals
            if unknown:
                raise ValueError(
                    f"curves row {i}: unknown columns {sorted(unknown)}; allowed: {sorted(core)} "
                    f"and '{EXTRA_EVAL_PREFIX}<name>' for extra eval sets"
                )
            missing = [c for c in REQUIRED_CURVE_COLUMNS if row.get(c) is None]
            if missing:
                raise ValueError(f"curves row {i}: missing required columns {missing}")
        schema = curves_schema(sorted(extra_evals))
        records = [
            _coerce_floats({**row, **identity, "timestamp": _to_timestamp(row.get("timestamp", _now()))}, schema)
            for row in rows
        ]
        table = pa.Table.from_pylist(records, schema=schema)
        name = f"part-{self.attempt}-{self._next_seq:06d}.parquet"
        _write_atomic(self._fs, f"{self._curves_dir}/{name}", table)
        self._next_seq += 1

    def write_run(self, row: dict) -> None:
        """Write this attempt's summary row (overwrites an earlier summary of the same attempt)."""
        missing = [c for c in REQUIRED_RUN_COLUMNS if row.get(c) is None]
        if missing:
            raise ValueError(f"run row: missing required columns {missing}")
        if row["status"] not in RUN_STATUSES:
            raise ValueError(f"run row: status {row['status']!r} not in {list(RUN_STATUSES)}")
        clashes = [c for c in _WRITER_COLUMNS if c in row and row[c] != self._identity()[c]]
        if clashes:
            raise ValueError(f"run row: {clashes} differ from the writer's; leave them out")
        extra = [k for k in row if k not in RUNS_SCHEMA.names]
        bad = [k for k in extra if not _is_scalar(row[k])]
        if bad:
            raise ValueError(f"run row: extra columns {bad} must be scalars (bool/int/float/str)")
        record = _coerce_floats({**row, **self._identity()}, RUNS_SCHEMA)
        core = pa.Table.from_pylist([record], schema=RUNS_SCHEMA)
        for key in extra:  # extra config columns keep their inferred Arrow type
            core = core.append_column(key, pa.array([row[key]]))
        table = core.replace_schema_metadata(_METADATA)
        _write_atomic(self._fs, f"{self._runs_dir}/part-{self.attempt}.parquet", table)
        self.compact_curves()

    def compact_curves(self) -> None:
        """Merge this attempt's curve parts into one part and delete the merged ones.

        Reading cost is per file (~0.5 ms), so an ended attempt keeps one curves file instead of
        one per flush. Safe for concurrent readers: the merged part gets the next sequence number
        and holds the same rows, so until the old parts are gone a reader's dedupe picks the
        merged copies; a part deleted under a reader makes it list again (see `_load_parts`).
        Called by `write_run`, i.e. when the attempt has ended.
        """
        parts = sorted(
            (int(m.group(2)), info.path)
            for info in _list_parts(self._fs, self._curves_dir)
            if (m := _CURVE_PART_RE.match(info.base_name)) and int(m.group(1)) == self.attempt
        )
        if len(parts) < 2:
            return
        tables = []
        for _, path in parts:
            with self._fs.open_input_file(path) as handle:
                tables.append(pq.ParquetFile(handle).read(use_threads=False))
        merged = pa.concat_tables(tables, promote_options="permissive")
        merged = _conform(merged, curves_schema())
        name = f"part-{self.attempt}-{self._next_seq:06d}.parquet"
        _write_atomic(self._fs, f"{self._curves_dir}/{name}", merged)
        self._next_seq += 1
        for _, path in parts:
            self._fs.delete_file(path)


def _now() -> _dt.datetime:
    return _dt.datetime.now(tz=_dt.timezone.utc)


# --------------------------------------------------------------------------------------------
# Readers


def _read_part(fs: pafs.FileSystem, info: pafs.FileInfo, seq: int) -> pa.Table | None:
    """One part file with a reader-internal seq column, or None (warned) if unusable."""
    try:
        # ParquetFile.read is ~3x cheaper per small file than pq.read_table (no dataset layer).
        if isinstance(fs, pafs.LocalFileSystem):
            table = pq.ParquetFile(info.path).read(use_threads=False)
        else:
            with fs.open_input_file(info.path) as handle:
                table = pq.ParquetFile(handle).read(use_threads=False)
    except FileNotFoundError:
        raise _PartVanished(info.path) from None
    except (OSError, pa.ArrowException) as err:
        warnings.warn(f"scalesweep.store: skipping unreadable part {info.path}: {err}",
                      stacklevel=3)
        return None
    version = (table.schema.metadata or {}).get(SCHEMA_VERSION_KEY)
    if version is not None and int(version) > SCHEMA_VERSION:
        warnings.warn(
            f"scalesweep.store: skipping {info.path}: schema version {int(version)} is newer "
            f"than this reader's {SCHEMA_VERSION}",
            stacklevel=3,
        )
        return None
    return table.append_column(_SEQ, pa.array(np.full(table.num_rows, seq, dtype=np.int64)))


class _PartVanished(Exception):
    """A listed part was deleted before it was read (merged by `compact_curves`)."""


_LIST_ATTEMPTS = 3


def _load_parts(
    storage: str, sweep: str | None, kind: str, name_re: re.Pattern, base: pa.Schema
) -> pa.Table:
    fs, directory = resolve(storage, sweep or "", kind)
    for _ in range(_LIST_ATTEMPTS - 1):
        try:
            return _load_listed_parts(fs, directory, name_re, base)
        except _PartVanished:
            continue  # a writer compacted while we read: its merged part is in a fresh listing
    return _load_listed_parts(fs, directory, name_re, base)


def _load_listed_parts(
    fs: pafs.FileSystem, directory: str, name_re: re.Pattern, base: pa.Schema
) -> pa.Table:
    jobs = []
    for info in _list_parts(fs, directory):
        match = name_re.match(info.base_name)
        if not match or not info.path.rsplit("/", 2)[-2].startswith("trial_id="):
            warnings.warn(f"scalesweep.store: skipping stray file {info.path}", stacklevel=3)
            continue
        jobs.append((info, int(match.groups()[-1])))
    with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
        tables = [t for t in pool.map(lambda job: _read_part(fs, *job), jobs) if t is not None]
    if not tables:
        return base.empty_table().append_column(_SEQ, pa.array([], pa.int64()))
    # Parts may differ in extra columns (eval sets, config keys): unify, nulls where absent.
    table = pa.concat_tables(tables, promote_options="permissive")
    return _conform(table, base)


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


def _last_per_group(table: pa.Table, group: Sequence[str], order: Sequence[str]) -> pa.Table:
    """Sort by group + order keys and keep the last row of each group (vectorised, O(n log n))."""
    keys = [(c, "ascending") for c in (*group, *order)]
    table = table.take(pc.sort_indices(table, sort_keys=keys))
    if table.num_rows == 0:
        return table
    changes = np.zeros(table.num_rows - 1, dtype=bool)
    for column in group:
        values = table[column].combine_chunks()
        if pa.types.is_string(values.type):
            values = values.dictionary_encode().indices
        array = values.to_numpy(zero_copy_only=False)
        changes |= array[1:] != array[:-1]
    is_last = np.append(changes, True)
    return table.filter(pa.array(is_last))


def _finish(table: pa.Table, as_pandas: bool):
    table = table.drop_columns([_SEQ])
    return table.to_pandas() if as_pandas else table


def load_curves(
    storage: str, sweep: str | None = None, *, all_attempts: bool = False, as_pandas: bool = False
) -> pa.Table | pd.DataFrame:
    """All evaluation rows of a sweep, one per (trial_id, step), from the latest attempt.

    ``sweep=None``: ``storage`` is the sweep directory itself. ``all_attempts=True`` keeps one
    row per (trial_id, attempt, step), sorted that way. A missing store reads as an empty table.
    """
    table = _load_parts(storage, sweep, "curves", _CURVE_PART_RE, curves_schema())
    # A step written twice within one attempt (e.g. parts and their compacted copy) counts once.
    group = ("trial_id", "attempt", "step") if all_attempts else ("trial_id", "step")
    order = (_SEQ,) if all_attempts else ("attempt", _SEQ)
    return _finish(_last_per_group(table, group, order), as_pandas)


def load_runs(
    storage: str, sweep: str | None = None, *, all_attempts: bool = False, as_pandas: bool = False
) -> pa.Table | pd.DataFrame:
    """One summary row per trial (its latest ended attempt), or every attempt's row."""
    table = _load_parts(storage, sweep, "runs", _RUN_PART_RE, RUNS_SCHEMA)
    if all_attempts:
        keys = [("trial_id", "ascending"), ("attempt", "ascending")]
        return _finish(table.take(pc.sort_indices(table, sort_keys=keys)), as_pandas)
    return _finish(_last_per_group(table, ("trial_id",), ("attempt",)), as_pandas)


def list_sweeps(storage: str) -> list[str]:
    """Names of the sweeps under ``storage`` (directories holding runs/ or curves/)."""
    fs, root = resolve(storage)
    selector = pafs.FileSelector(root, allow_not_found=True, recursive=False)
    sweeps = []
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.Directory or info.base_name.startswith((".", "_")):
            continue
        children = fs.get_file_info([f"{info.path}/runs", f"{info.path}/curves"])
        if any(child.type == pafs.FileType.Directory for child in children):
            sweeps.append(info.base_name)
    return sorted(sweeps)

