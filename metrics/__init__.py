"""metrics: the metrics store, Arrow/Parquet files under ``<storage>/<sweep>/`` (docs/architecture.md §3).

Layout (hive-partitioned by trial, one writer per trial, append-only)::

    <storage>/<sweep>/runs/trial_id=<id>/part-<attempt>.parquet            one row per ended attempt
    <storage>/<sweep>/curves/trial_id=<id>/part-<attempt>-<seq:06d>.parquet  eval rows, one file per flush

Contract choices (and why):

* ``trial_id`` is stored *both* as the hive directory value and as a column inside every file,
  with identical values. Readers that ignore the directory (``pq.read_table`` on one file,
  polars/pandas on a file list) still see it, and hive-aware readers agree with it: DuckDB
  ``hive_partitioning=true``, polars ``hive_partitioning=True``, ``pd.read_parquet``/
  ``pq.read_table`` on the folder, ``pyarrow.dataset`` with
  ``partitioning=ds.HivePartitioning.discover(infer_dictionary=True)``. Inside the file it is
  ``dictionary<int32, string>``, the type pyarrow gives the directory value (a plain string there
  made pandas fail with "string vs dictionary"; stores written so still load with `load_runs`);
  the loaders return it as ``string``.
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

Modules (the ground floor: ``metrics`` imports no other package of this project, and every
package may import it): ``metrics.statuses`` (the run-status vocabulary), ``metrics.schema``
(schemas, version, conformance), ``metrics.fs`` (``resolve``, ``join``, ``check_reachable``, names, part listing and the
project's one atomic-write helper), ``metrics.writer`` (``TrialWriter``, ``write_ladder_row``) and ``metrics.readers``
(``load_runs``, ``load_curves``, ``load_ladder``, ``list_sweeps``, ``require_sweep``, the part reader). The public
API below is imported lazily, so ``import metrics.statuses`` costs no pyarrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from metrics.statuses import ENDED_STATUSES, PREDICTED_LOSS_REASONS, RUN_STATUSES, STOP_REASONS, USABLE_STATUSES

_PUBLIC = {
    "SCHEMA_VERSION": "metrics.schema", "SCHEMA_VERSION_KEY": "metrics.schema",
    "EXTRA_EVAL_PREFIX": "metrics.schema", "RUNS_SCHEMA": "metrics.schema",
    "REQUIRED_CURVE_COLUMNS": "metrics.schema", "REQUIRED_RUN_COLUMNS": "metrics.schema",
    "curves_schema": "metrics.schema", "LADDER_SCHEMA": "metrics.schema",
    "resolve": "metrics.fs", "join": "metrics.fs", "check_reachable": "metrics.fs",
    "validate_name": "metrics.fs", "write_atomically": "metrics.fs",
    "TrialWriter": "metrics.writer", "write_ladder_row": "metrics.writer", "load_ladder": "metrics.readers",
    "load_runs": "metrics.readers", "load_curves": "metrics.readers", "list_sweeps": "metrics.readers",
    "require_sweep": "metrics.readers", "SkippedPart": "metrics.readers",
    "UnreadablePartWarning": "metrics.readers",
}

__all__ = ["RUN_STATUSES", "ENDED_STATUSES", "USABLE_STATUSES", "STOP_REASONS", "PREDICTED_LOSS_REASONS", *_PUBLIC]

if TYPE_CHECKING:
    from metrics.fs import check_reachable, join, resolve, validate_name, write_atomically
    from metrics.readers import (
        SkippedPart, UnreadablePartWarning, list_sweeps, load_curves, load_ladder, load_runs, require_sweep,
    )
    from metrics.schema import (
        EXTRA_EVAL_PREFIX, LADDER_SCHEMA, REQUIRED_CURVE_COLUMNS, REQUIRED_RUN_COLUMNS, RUNS_SCHEMA, SCHEMA_VERSION,
        SCHEMA_VERSION_KEY, curves_schema,
    )
    from metrics.writer import TrialWriter, write_ladder_row


def __getattr__(name: str):
    """The public API on first use (PEP 562), so importing the statuses costs no pyarrow."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value
