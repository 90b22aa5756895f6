"""Metrics store readers: `load_runs`, `load_curves`, `list_sweeps`, `require_sweep`, and the
one part reader (`read_part`) they and the writer's compaction share. The contract is described
in `metrics` (docs/architecture.md §3).
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
import pyarrow.parquet as pq

from metrics.fs import CURVE_PART_RE, RUN_PART_RE, check_reachable, list_parts, resolve, validate_name
from metrics.schema import (
    LADDER_SCHEMA, REQUIRED_CURVE_COLUMNS, REQUIRED_LADDER_COLUMNS, REQUIRED_RUN_COLUMNS, RUNS_SCHEMA, SCHEMA_VERSION, SCHEMA_VERSION_KEY,
    SEQ_COLUMN, DEFAULT_FAMILY, LADDER_GRID, LADDER_PREFIX, MAIN_GRID, SUB_SWEEP_COLUMN, castable, conform, curves_schema,
)

if TYPE_CHECKING:  # pandas only on request (as_pandas=True)
    import pandas as pd

# Parquet decoding releases the GIL, but on small files Python overhead dominates: measured on
# 2 cores, 2 threads beat 1 by 1.5x and 8 threads were no faster than 1.
_READ_THREADS = max(2, min(8, os.cpu_count() or 2))


# Columns every part must hold: the writer's identity columns (dedupe keys) and the required ones.
_READER_REQUIRED = {
    "runs": ("trial_id", "attempt", *REQUIRED_RUN_COLUMNS),
    "curves": ("trial_id", "attempt", *REQUIRED_CURVE_COLUMNS),
    "ladder": REQUIRED_LADDER_COLUMNS,
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


@dataclass(frozen=True)
class SkippedPart:
    """A file under runs/ or curves/ that a reader left out, and why."""

    path: str
    reason: str


class UnreadablePartWarning(UserWarning):
    """Warned once per skipped file; ``.part`` is the `SkippedPart`."""

    def __init__(self, part: SkippedPart):
        super().__init__(f"metrics: skipping {part.path}: {part.reason}")
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
    for info in list_parts(fs, directory):
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
            tables.append((path, result.append_column(SEQ_COLUMN, pa.array(np.full(result.num_rows, seq, np.int64)))))
    if not tables:
        return base.empty_table().append_column(SEQ_COLUMN, pa.array([], pa.int64()))
    # Parts may differ in extra columns (eval sets, config keys): unify, nulls where absent.
    try:
        table = pa.concat_tables([t for _, t in tables], promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # rare: only then look for the odd parts out
        kept = _agree_on_extra_columns(tables, set(base.names), skipped)
        if not kept:
            return base.empty_table().append_column(SEQ_COLUMN, pa.array([], pa.int64()))
        table = pa.concat_tables(kept, promote_options="permissive")
    return conform(table, base)


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
    table = table.drop_columns([SEQ_COLUMN])
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
    table = _load_parts(storage, sweep, "curves", CURVE_PART_RE, curves_schema(), trial_id, skipped)
    # A step written twice within one attempt (e.g. parts and their compacted copy) counts once.
    group = ("trial_id", "attempt", "step") if all_attempts else ("trial_id", "step")
    order = (SEQ_COLUMN,) if all_attempts else ("attempt", SEQ_COLUMN)
    return _finish(_last_per_group(table, group, order), as_pandas)


def _with_grid(table: pa.Table) -> pa.Table:
    """The runs column ``sub_sweep`` filled: null is the main grid's, or a ladder run's (known by
    its key, from before ladder runs recorded it); added only where a store has either."""
    ids = table["trial_id"]
    ladder = pc.fill_null(pc.starts_with(ids, LADDER_PREFIX), False)
    index = table.schema.get_field_index(SUB_SWEEP_COLUMN)
    if index < 0 and not pc.any(ladder).as_py():
        return table
    given = table[SUB_SWEEP_COLUMN] if index >= 0 else pa.nulls(table.num_rows, pa.string())
    filled = pc.coalesce(given, pc.if_else(ladder, LADDER_GRID, MAIN_GRID))
    return table.set_column(index, SUB_SWEEP_COLUMN, filled) if index >= 0 else table.append_column(SUB_SWEEP_COLUMN, filled)


def load_runs(
    storage: str, sweep: str | None = None, *, all_attempts: bool = False, as_pandas: bool = False,
    trial_id: str | None = None, skipped: list[SkippedPart] | None = None,
) -> pa.Table | pd.DataFrame:
    """One summary row per trial (its latest ended attempt), or every attempt's row. A null
    ``family`` (a row written before the column existed) reads as ``transformer``, and a null
    ``sub_sweep`` as ``main`` (the spec's main grid) or, for a ladder run, ``ladder``.

    ``trial_id``, ``skipped`` and unusable files: as in `load_curves`.
    """
    table = _load_parts(storage, sweep, "runs", RUN_PART_RE, RUNS_SCHEMA, trial_id, skipped)
    index = table.schema.get_field_index("family")  # rows from before the column: transformers
    table = table.set_column(index, "family", pc.fill_null(table["family"], DEFAULT_FAMILY))
    table = _with_grid(table)
    if all_attempts:
        keys = [("trial_id", "ascending"), ("attempt", "ascending")]
        return _finish(table.take(pc.sort_indices(table, sort_keys=keys)), as_pandas)
    return _finish(_last_per_group(table, ("trial_id",), ("attempt",)), as_pandas)


def load_ladder(storage: str, sweep: str | None = None, *, as_pandas: bool = False,
                skipped: list[SkippedPart] | None = None) -> pa.Table | pd.DataFrame:
    """The sweep's ``ladder/`` table (`metrics.LADDER_SCHEMA`): one row per ladder run, sorted by
    trial_id; empty when no ladder ran. ``sweep=None``, ``skipped`` and unusable files: as in
    `load_curves` (each file is one ladder run's row, `metrics.writer.write_ladder_row`)."""
    fs, directory = resolve(storage, sweep or "", "ladder")
    tables, found = [], []
    for info in list_parts(fs, directory):
        try:
            result = read_part(fs, info.path, "ladder", LADDER_SCHEMA)
        except PartVanished:  # replaced by a rerun of the same ladder while listed: its new file is read
            continue
        if isinstance(result, str):
            found.append(SkippedPart(info.path, result))
        else:
            tables.append(result)
    for part in found:
        warnings.warn(UnreadablePartWarning(part), stacklevel=2)
    if skipped is not None:
        skipped += found
    table = LADDER_SCHEMA.empty_table()
    if tables:
        table = conform(pa.concat_tables(tables, promote_options="permissive"), LADDER_SCHEMA)
        table = table.take(pc.sort_indices(table, sort_keys=[("trial_id", "ascending")]))
    return table.to_pandas() if as_pandas else table


def require_sweep(storage: str, sweep: str | None = None) -> None:
    """Raise FileNotFoundError (one line, naming what is missing) unless ``<storage>/<sweep>``
    (or, with ``sweep=None``, ``storage`` itself) is a sweep directory: one holding runs/ or
    curves/. For commands that read a sweep and write outputs, so a typo creates nothing. An
    object store that does not answer is a ValueError naming it (`check_reachable`)."""
    check_reachable(storage)
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
