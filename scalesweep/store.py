"""Metrics store: Arrow/Parquet files under ``<storage>/<sweep>/`` (docs/architecture.md §3).

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
* A file the readers cannot use is skipped, never fatal: not Parquet (empty, truncated, another
  format), an unknown schema version, a required column missing, a contract column stored as
  another type (``lr`` as text), or an extra column whose type conflicts with most parts. Each
  is warned (`UnreadablePartWarning`, naming the path and the reason) and appended to the
  caller's ``skipped`` list, so one bad file never hides the rest of the sweep.

Modules: the schemas, names and filesystem helpers live in ``scalesweep.store_format``, the
writer (``TrialWriter``) in ``scalesweep.store_writer``; both are re-exported here. This module
holds the readers (``load_runs``, ``load_curves``, ``list_sweeps``).
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from scalesweep.store_format import (
    _CURVE_PART_RE, _RUN_PART_RE, _SEQ, EXTRA_EVAL_PREFIX, REQUIRED_CURVE_COLUMNS,
    REQUIRED_RUN_COLUMNS, RUN_STATUSES, RUNS_SCHEMA, SCHEMA_VERSION, SCHEMA_VERSION_KEY, PartVanished,
    _conform, _list_parts, castable, curves_schema, read_part, resolve, validate_name,
)
from scalesweep.store_writer import TrialWriter

if TYPE_CHECKING:  # pandas only on request (as_pandas=True)
    import pandas as pd

__all__ = [
    "SCHEMA_VERSION", "SCHEMA_VERSION_KEY", "RUN_STATUSES", "EXTRA_EVAL_PREFIX", "RUNS_SCHEMA",
    "REQUIRED_CURVE_COLUMNS", "REQUIRED_RUN_COLUMNS", "curves_schema", "resolve", "validate_name",
    "TrialWriter", "load_curves", "load_runs", "list_sweeps", "require_sweep", "SkippedPart",
    "UnreadablePartWarning",
]

# Parquet decoding releases the GIL, but on small files Python overhead dominates: measured on
# 2 cores, 2 threads beat 1 by 1.5x and 8 threads were no faster than 1.
_READ_THREADS = max(2, min(8, os.cpu_count() or 2))


# --------------------------------------------------------------------------------------------
# Readers


@dataclass(frozen=True)
class SkippedPart:
    """A file under runs/ or curves/ that a reader left out, and why."""

    path: str
    reason: str


class UnreadablePartWarning(UserWarning):
    """Warned once per skipped file; ``.part`` is the `SkippedPart`."""

    def __init__(self, part: SkippedPart):
        super().__init__(f"scalesweep.store: skipping {part.path}: {part.reason}")
        self.part = part


_LIST_ATTEMPTS = 3


def _load_parts(storage: str, sweep: str | None, kind: str, name_re: re.Pattern, base: pa.Schema,
                trial_id: str | None, skipped: list[SkippedPart] | None) -> pa.Table:
    fs, directory = resolve(storage, sweep or "", kind)
    if trial_id is not None:
        directory = f"{directory}/trial_id={validate_name('trial_id', trial_id)}"
    for attempt in range(_LIST_ATTEMPTS):
        found: list[SkippedPart] = []
        try:
            table = _load_listed_parts(fs, directory, name_re, kind, base, found)
            break
        except PartVanished:
            if attempt == _LIST_ATTEMPTS - 1:
                raise
            # a writer compacted while we read: its merged part is in a fresh listing
    for part in found:  # reported once, from the listing that was read
        warnings.warn(UnreadablePartWarning(part), stacklevel=3)
    if skipped is not None:
        skipped += found
    return table


def _load_listed_parts(fs: pafs.FileSystem, directory: str, name_re: re.Pattern, kind: str,
                       base: pa.Schema, skipped: list[SkippedPart]) -> pa.Table:
    jobs = []
    for info in _list_parts(fs, directory):
        match = name_re.match(info.base_name)
        if not match or not info.path.rsplit("/", 2)[-2].startswith("trial_id="):
            skipped.append(SkippedPart(info.path, "not a part file name (expected "
                                                  f"trial_id=<id>/{name_re.pattern.strip('^$')})"))
            continue
        jobs.append((info.path, int(match.groups()[-1])))
    with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
        results = list(pool.map(lambda job: read_part(fs, job[0], kind, base), jobs))
    tables = []
    for (path, seq), result in zip(jobs, results):
        if isinstance(result, str):
            skipped.append(SkippedPart(path, result))
        else:
            tables.append((path, result.append_column(_SEQ, pa.array(np.full(result.num_rows, seq, np.int64)))))
    if not tables:
        return base.empty_table().append_column(_SEQ, pa.array([], pa.int64()))
    # Parts may differ in extra columns (eval sets, config keys): unify, nulls where absent.
    try:
        table = pa.concat_tables([t for _, t in tables], promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # rare: only then look for the odd parts out
        kept = _agree_on_extra_columns(tables, set(base.names), skipped)
        if not kept:
            return base.empty_table().append_column(_SEQ, pa.array([], pa.int64()))
        table = pa.concat_tables(kept, promote_options="permissive")
    return _conform(table, base)


def _agree_on_extra_columns(tables: list[tuple[str, pa.Table]], base_names: set[str],
                            skipped: list[SkippedPart]) -> list[pa.Table]:
    """Parts whose extra (non-contract) columns fit the type most parts give them.

    Extra columns have no contract type, so the majority decides: a part storing ``tag`` as
    int64 where most store a string is skipped as a schema conflict (concatenating it would
    make the whole table unreadable); int64 beside float64 reads as float64.
    """
    schemas = Counter(table.schema for _, table in tables)  # typically a handful of distinct ones
    votes: dict[str, Counter] = {}
    for schema, count in schemas.items():
        for field in schema:
            if field.name not in base_names and not pa.types.is_null(field.type):
                votes.setdefault(field.name, Counter())[field.type] += count
    # ties: the type named first alphabetically, so the choice is stable
    wanted = {name: min(counts, key=lambda t: (-counts[t], str(t)))
              for name, counts in votes.items() if len(counts) > 1}
    kept = []
    for path, table in tables:
        clash = next((f"column {f.name!r} is {f.type} here but {wanted[f.name]} in most parts"
                      for f in table.schema if f.name in wanted and not castable(f.type, wanted[f.name])
                      and not castable(wanted[f.name], f.type)), None)
        if clash:
            skipped.append(SkippedPart(path, f"schema conflict: {clash}"))
        else:
            kept.append(table)
    return kept


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
    storage: str, sweep: str | None = None, *, all_attempts: bool = False, as_pandas: bool = False,
    trial_id: str | None = None, skipped: list[SkippedPart] | None = None,
) -> pa.Table | pd.DataFrame:
    """All evaluation rows of a sweep, one per (trial_id, step), from the latest attempt.

    ``sweep=None``: ``storage`` is the sweep directory itself. ``all_attempts=True`` keeps one
    row per (trial_id, attempt, step), sorted that way. ``trial_id`` reads only that trial's
    partition. A missing store reads as an empty table. Unusable files (see `read_part`) are
    left out with an `UnreadablePartWarning` each, and appended to ``skipped`` if given.
    """
    table = _load_parts(storage, sweep, "curves", _CURVE_PART_RE, curves_schema(), trial_id, skipped)
    # A step written twice within one attempt (e.g. parts and their compacted copy) counts once.
    group = ("trial_id", "attempt", "step") if all_attempts else ("trial_id", "step")
    order = (_SEQ,) if all_attempts else ("attempt", _SEQ)
    return _finish(_last_per_group(table, group, order), as_pandas)


def load_runs(
    storage: str, sweep: str | None = None, *, all_attempts: bool = False, as_pandas: bool = False,
    trial_id: str | None = None, skipped: list[SkippedPart] | None = None,
) -> pa.Table | pd.DataFrame:
    """One summary row per trial (its latest ended attempt), or every attempt's row.

    ``trial_id``, ``skipped`` and unusable files: as in `load_curves`.
    """
    table = _load_parts(storage, sweep, "runs", _RUN_PART_RE, RUNS_SCHEMA, trial_id, skipped)
    if all_attempts:
        keys = [("trial_id", "ascending"), ("attempt", "ascending")]
        return _finish(table.take(pc.sort_indices(table, sort_keys=keys)), as_pandas)
    return _finish(_last_per_group(table, ("trial_id",), ("attempt",)), as_pandas)


def require_sweep(storage: str, sweep: str | None = None) -> None:
    """Raise FileNotFoundError (one line, naming what is missing) unless ``<storage>/<sweep>``
    (or, with ``sweep=None``, ``storage`` itself) is a sweep directory: one holding runs/ or
    curves/. For commands that read a sweep and write outputs, so a typo creates nothing."""
    fs, root = resolve(storage)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"storage: {storage} is not a directory")
    if sweep is None:
        children = fs.get_file_info([f"{root}/runs", f"{root}/curves"])
        if any(child.type == pafs.FileType.Directory for child in children):
            return
        known = list_sweeps(storage)
        if known:
            raise FileNotFoundError(f"{storage} is a metrics store, not a sweep: give one of its sweeps' "
                                    f"directories ({', '.join(known)})")
        raise FileNotFoundError(f"{storage} is not a sweep's metrics directory (no runs/ or curves/ in it)")
    if fs.get_file_info(f"{root}/{sweep}").type != pafs.FileType.Directory:
        known = list_sweeps(storage)
        raise FileNotFoundError(f"sweep: no sweep {sweep!r} under {storage}; sweeps there: "
                                + (", ".join(known) if known else "none"))


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
