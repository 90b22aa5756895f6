"""Metrics store writer: `TrialWriter` appends one trial attempt's rows (the contract: `metrics`).

Row validation and coercion (int FLOPs into float64 columns, timestamps to UTC), one part file
per flush, the attempt's summary row, and the compaction of an ended attempt's curve parts.
"""

from __future__ import annotations

import datetime as _dt
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from metrics.fs import CURVE_PART_RE, list_parts, resolve, validate_name, write_atomically
from metrics.readers import read_part
from metrics.schema import (
    CURVE_FIELDS, EXTRA_EVAL_PREFIX, LADDER_SCHEMA, REQUIRED_CURVE_COLUMNS, REQUIRED_LADDER_COLUMNS,
    RUNS_SCHEMA,
    SCHEMA_METADATA, conform, curves_schema, required_run_columns,
)
from metrics.statuses import RUN_STATUSES, STOP_REASONS

_WRITER_COLUMNS = ("sweep", "trial_id", "attempt")  # filled by TrialWriter, not by the caller


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
            for info in list_parts(self._fs, self._curves_dir)
            if (m := CURVE_PART_RE.match(info.base_name)) and int(m.group(1)) == self.attempt
        ]
        return max(seqs, default=-1) + 1

    def _identity(self) -> dict:
        return {"sweep": self.sweep, "trial_id": self.trial_id, "attempt": self.attempt}

    def append_curves(self, rows: list[dict]) -> None:
        """Write ``rows`` (one per evaluation) as one new part file."""
        if not rows:
            return
        core = {name for name, _ in CURVE_FIELDS} - set(_WRITER_COLUMNS)
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
        _write_part(self._fs, f"{self._curves_dir}/{name}", table)
        self._next_seq += 1

    def write_run(self, row: dict) -> None:
        """Write this attempt's summary row (overwrites an earlier summary of the same attempt)."""
        missing = [c for c in required_run_columns(row.get("family")) if row.get(c) is None]
        if missing:
            raise ValueError(f"run row: missing required columns {missing}")
        if row["status"] not in RUN_STATUSES:
            raise ValueError(f"run row: status {row['status']!r} not in {list(RUN_STATUSES)}")
        reason = row.get("stop_reason")
        if reason is not None and (reason not in STOP_REASONS or row["status"] != "early_stopped"):
            raise ValueError(f"run row: stop_reason {reason!r} needs status early_stopped and one of "
                             f"{list(STOP_REASONS)} (status {row['status']!r})")
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
        table = core.replace_schema_metadata(SCHEMA_METADATA)
        _write_part(self._fs, f"{self._runs_dir}/part-{self.attempt}.parquet", table)
        self.compact_curves()

    def compact_curves(self) -> None:
        """Merge this attempt's curve parts into one part and delete the merged ones.

        Reading cost is per file (~0.5 ms), so an ended attempt keeps one curves file instead of
        one per flush. Safe for concurrent readers: the merged part gets the next sequence number
        and holds the same rows, so until the old parts are gone a reader's dedupe picks the
        merged copies; a part deleted under a reader makes it list again (see `_load_parts` in
        `metrics.readers`). Called by `write_run`, i.e. when the attempt has ended.
        """
        parts = sorted(
            (int(m.group(2)), info.path)
            for info in list_parts(self._fs, self._curves_dir)
            if (m := CURVE_PART_RE.match(info.base_name)) and int(m.group(1)) == self.attempt
        )
        if len(parts) < 2:
            return
        tables = []
        for _, path in parts:
            table = read_part(self._fs, path, "curves", curves_schema())
            if isinstance(table, str):  # keep every part: the readers skip (and name) the bad one
                warnings.warn(f"metrics: not compacting {self._curves_dir}: {path}: {table}",
                              stacklevel=2)
                return
            tables.append(table)
        merged = pa.concat_tables(tables, promote_options="permissive")
        merged = conform(merged, curves_schema())
        name = f"part-{self.attempt}-{self._next_seq:06d}.parquet"
        _write_part(self._fs, f"{self._curves_dir}/{name}", merged)
        self._next_seq += 1
        for _, path in parts:
            self._fs.delete_file(path)


def write_ladder_row(storage: str, sweep: str, row: dict) -> str:
    """Write one ladder run's row to ``<storage>/<sweep>/ladder/<trial_id>.parquet`` (atomically:
    a rerun of the same ladder replaces its row whole). → the path written. Raises ValueError for
    a missing required column (`REQUIRED_LADDER_COLUMNS`) or a column outside `LADDER_SCHEMA`."""
    missing = [c for c in REQUIRED_LADDER_COLUMNS if row.get(c) is None]
    if missing:
        raise ValueError(f"ladder row: missing required columns {missing}")
    unknown = sorted(set(row) - set(LADDER_SCHEMA.names))
    if unknown:
        raise ValueError(f"ladder row: unknown columns {unknown}; allowed: {LADDER_SCHEMA.names}")
    trial_id = validate_name("trial_id", row["trial_id"])
    fs, directory = resolve(storage, validate_name("sweep", sweep), "ladder")
    record = _coerce_floats({**row, "sweep": sweep}, LADDER_SCHEMA)
    path = f"{directory}/{trial_id}.parquet"
    _write_parquet(fs, path, pa.Table.from_pylist([record], schema=LADDER_SCHEMA))
    return path


def _write_parquet(fs, path: str, table: pa.Table) -> None:
    write_atomically(path, lambda out: pq.write_table(table, out), fs)


#: How ``trial_id`` is stored inside a hive-partitioned part: the type pyarrow's hive discovery
#: gives the ``trial_id=<id>`` directory (``pq.read_table``/``pd.read_parquet`` on a folder infer
#: partitions as ``dictionary<int32, string>``). A plain string column there made those reads fail
#: to merge ("string vs dictionary"); DuckDB and polars read either. The readers' contract type
#: stays ``string`` (`metrics.schema.castable` reads a dictionary as its values).
_PARTITION_TYPE = pa.dictionary(pa.int32(), pa.string())


def _write_part(fs, path: str, table: pa.Table) -> None:
    """Write a runs/ or curves/ part, its ``trial_id`` column typed as its directory reads."""
    index = table.schema.get_field_index("trial_id")
    table = table.set_column(index, pa.field("trial_id", _PARTITION_TYPE), table["trial_id"].cast(_PARTITION_TYPE))
    _write_parquet(fs, path, table)


def _now() -> _dt.datetime:
    return _dt.datetime.now(tz=_dt.timezone.utc)
