"""Loading and validating fit inputs: tables of runs → named columns + target.

``load_fit_data(source, ...)`` accepts a pyarrow Table, a pandas DataFrame, a mapping of
columns, a CSV/Parquet path, or a sweep's metrics directory (read with
``metrics.load_runs``). Rows with a non-numeric cell, NaN/inf or a non-positive value
in a used column are dropped *with a warning that says how many and why*; a missing column is an
error naming the file and the columns that exist. Inputs in implausible units are warned about
(:mod:`fitting.checks`); repeated (N, D) configurations are aggregated into cells when asked
(:mod:`fitting.aggregate`: best over lr, mean over seed) and warned about when not.
Which column is each input (aliases, a store's defaults, its flag): :mod:`fitting.columns`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from fitting.columns import column_flag, numeric_column, pick_column, resolve_columns
from metrics.statuses import USABLE_STATUSES

__all__ = ["FitData", "load_fit_data", "read_table", "DataWarning"]


class DataWarning(UserWarning):
    """Rows were dropped or the input looks suspicious."""


@dataclass
class FitData:
    """Validated inputs: ``X`` maps input names (N, D, U, ...) to float arrays; ``y`` is the target."""

    X: dict[str, np.ndarray]
    y: np.ndarray
    columns: dict[str, str] = field(default_factory=dict)
    n_dropped: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)
    source: str = ""
    index: np.ndarray | None = None  # positions of these rows in the source table
    weights: np.ndarray | None = None  # per-row fit weights (None: all 1; fitting/run_result.py)
    aggregation: str | None = None  # "60 rows → 12 cells, best over lr" when rows were aggregated
    best: dict[str, np.ndarray] = field(default_factory=dict)  # best_over column → each cell's best value
    C: np.ndarray | None = None  # the table's own compute column (FLOPs) per row, when it has one

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, mask) -> "FitData":
        mask = np.asarray(mask)
        return FitData({k: v[mask] for k, v in self.X.items()}, self.y[mask], dict(self.columns),
                       self.n_dropped, dict(self.drop_reasons), self.source,
                       None if self.index is None else self.index[mask],
                       None if self.weights is None else self.weights[mask], self.aggregation,
                       {k: v[mask] for k, v in self.best.items()}, None if self.C is None else self.C[mask])

    def compute(self, flops_per_token: float = 6.0) -> np.ndarray:
        """Training compute per run (FLOPs): the table's own C column (a law input, or kept beside
        the inputs by `load_fit_data`) if it has one, else ``flops_per_token·N·D``. What every
        selection on C reads (`--train "C <= x"`, `--fit-max-compute`, the frontier's budgets)."""
        if "C" in self.X:
            return self.X["C"]
        if self.C is not None:
            return self.C
        if "N" in self.X and "D" in self.X:
            return flops_per_token * self.X["N"] * self.X["D"]
        raise ValueError("no compute: need a C column or both N and D")


def read_table(source) -> tuple[dict[str, np.ndarray], str, bool]:
    """→ (columns as numpy arrays, description, is_store)."""
    if isinstance(source, FitData):
        raise TypeError("already FitData")
    if isinstance(source, Mapping):
        return {str(k): np.asarray(v) for k, v in source.items()}, "mapping", False
    mod = type(source).__module__
    if mod.startswith("pyarrow"):
        return {n: source.column(n).to_numpy(zero_copy_only=False) for n in source.column_names}, "pyarrow table", False
    if mod.startswith("pandas"):
        return {str(c): source[c].to_numpy() for c in source.columns}, "pandas frame", False
    if isinstance(source, (str, os.PathLike)):
        return _read_path(os.fspath(source))
    raise TypeError(f"cannot read runs from {type(source).__name__}")


def _read_path(path: str) -> tuple[dict[str, np.ndarray], str, bool]:
    """A CSV/TSV/Parquet file, a folder of them, or a sweep's store directory: a local path or a
    pyarrow.fs URI (s3://bucket/runs.csv, s3://bucket/prefix/sweep)."""
    from pyarrow import fs as pafs

    from metrics import load_runs, require_sweep
    from metrics.fs import file_info

    fs, fs_path, info = file_info(path, "runs input")  # an object store that does not answer: one line
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"runs input not found: {path}")
    if info.type == pafs.FileType.Directory:
        listed = fs.get_file_info(pafs.FileSelector(fs_path))
        if not any(f.base_name.endswith((".parquet", ".csv")) for f in listed):
            require_sweep(path)  # a store root or a stray directory is named, not read as empty
            tab = load_runs(path)
            return {n: tab.column(n).to_numpy(zero_copy_only=False) for n in tab.column_names}, path, True
        # else a folder of plain tables, read below as a dataset
    csv = path.endswith((".csv", ".csv.gz", ".tsv"))
    try:  # a parse error names the file (pyarrow's ArrowInvalid is a ValueError; I/O errors are OSError)
        if csv:
            import pyarrow.csv as pcsv

            opts = pcsv.ParseOptions(delimiter="\t") if path.endswith(".tsv") else None
            with fs.open_input_stream(fs_path) as stream:  # compression detected from the extension
                tab = pcsv.read_csv(stream, parse_options=opts)
        else:
            import pyarrow.parquet as pq

            tab = pq.read_table(fs_path, filesystem=fs)
    except (ValueError, OSError) as err:
        raise ValueError(f"cannot read {path} as a {'CSV' if csv else 'Parquet'} table: {err}") from err
    return {n: tab.column(n).to_numpy(zero_copy_only=False) for n in tab.column_names}, path, False


def _keep_grid(cols: dict, sub_sweep: str | None, is_store: bool, desc: str, drop) -> None:
    """Drop the rows outside the wanted grid of a store with sub-sweeps (see `load_fit_data`)."""
    from metrics.schema import MAIN_GRID, SUB_SWEEP_COLUMN

    grids = ([MAIN_GRID if g is None else str(g) for g in cols[SUB_SWEEP_COLUMN]]
             if is_store and SUB_SWEEP_COLUMN in cols else [])
    wanted = sub_sweep or MAIN_GRID
    if wanted == "all":
        return
    if wanted not in set(grids) | {MAIN_GRID}:
        held = ", ".join(sorted(set(grids))) or "only its main grid"
        raise ValueError(f"--sub-sweep: {desc} has no sub-sweep {wanted!r} (it holds {held})")
    if grids:
        drop(np.asarray(grids) != wanted, f"outside the {wanted} grid (--sub-sweep NAME or all picks others)")


def load_fit_data(
    source,
    *,
    n_col: str | None = None,
    d_col: str | None = None,
    loss_col: str | None = None,
    c_col: str | None = None,
    extra_cols: Mapping[str, str] | None = None,
    law=None,
    inputs: tuple[str, ...] | None = None,
    flops_per_token: float = 6.0,
    statuses: tuple[str, ...] | None = USABLE_STATUSES,
    drop_top_loss: int = 0,
    best_per_config: bool = False,
    aggregate=None,
    weights=None,
    require_loss: bool = True,
    name: str | None = None,
    family: str | None = None,
    sub_sweep: str | None = None,
    curve_points: bool = False,
    misfit_log_sd: float | None = None,
    misfit_of=None,
    store_units: bool = False,
) -> FitData:
    """Read and validate a table of runs for fitting ``law`` (or the given ``inputs``): the one
    column-mapping path of every command that reads a table (fit, plan, replay, report).

    Column names: ``n_col``/``d_col``/``loss_col``/``c_col`` and ``extra_cols`` (logical input
    → column, e.g. ``{"U": "unique_tokens"}``) override the guesses in :data:`fitting.columns.ALIASES`.
    If the law needs D and there is no D column but a compute column, D = C/(flops_per_token·N)
    (the Epoch file's convention). A metrics directory keeps rows whose ``status`` is in ``statuses``.
    Cells that are not numbers (empty, ``nan``, ``diverged``), NaN/inf and non-positive values
    drop their row, counted in one :class:`DataWarning`; a column with no number at all is a
    ValueError naming it. Inputs that look like other units (:func:`fitting.checks.unit_notes`;
    not for a metrics directory, whose units the store fixes, nor with ``store_units`` for rows a
    caller read from one, such as the report's) are warned about. Rows repeating
    another row's inputs (a hyperparameter sweep) become one row per cell when ``aggregate`` (a
    :class:`fitting.aggregate.Aggregation`: best over lr, mean over seed) is given, or
    ``best_per_config`` (its shorthand: the lowest-loss row of each cell); without either they
    are warned about. ``FitData.aggregation`` then says what was done and ``FitData.best`` holds
    each cell's best setting. An aggregation column missing from the table, or one that is an
    input of the law, is a ValueError naming it. ``weights``: per source-row fit weights (a
    metrics directory's prediction-stopped runs get theirs from `fitting.run_result`).
    ``family`` (a metrics directory) keeps that model family's runs; without it, a store holding
    several families is fitted whole with a DataWarning. ``sub_sweep`` (a metrics directory
    whose spec had ``sub_sweeps``) keeps that grid's runs, ``all`` every grid's; default the main
    grid's (a shape or batch-size sub-sweep varies what the law does not model).
    ``drop_top_loss`` then drops that many highest-loss rows (cells) (Epoch drops 5). With
    ``require_loss=False`` (prediction targets) the loss column is optional (``y`` is NaN where
    absent) and never drops a row. ``name`` describes the source in messages (default: its path).
    ``FitData.index`` holds the kept rows' positions in the source table. ``curve_points``: the
    rows are points of training curves (`fitting.dynamics.curve_rows`), not runs, so rows sharing
    inputs (runs of one N evaluated at the same step) are expected and not warned about as an
    unaggregated hyperparameter sweep. ``misfit_log_sd``: the law's misfit that a metrics
    directory's prediction-stopped runs are weighed with (`fitting.run_result.prediction_weight`);
    None: with a ``law`` and ``misfit_of`` (a function (law, FitData) -> misfit sd, e.g.
    `fitting.fit.store_misfit`, passed in so that this module need not import the fitter),
    estimated from the directory itself (`_with_misfit`), else 0.
    """
    call = dict(locals())  # the arguments, for the second pass of `_with_misfit`
    if isinstance(source, FitData):
        return source
    from fitting.aggregate import EVERY_ROW, Aggregation
    from fitting.checks import unit_notes
    from fitting.laws import get_law

    if law is not None:
        law = get_law(law)
        inputs = law.inputs
    inputs = tuple(inputs) if inputs is not None else ("N", "D")
    if best_per_config and aggregate:
        raise ValueError("give --best-per-config or --best-over/--mean-over, not both")
    aggregate = Aggregation((EVERY_ROW,)) if best_per_config else aggregate or None
    cols, desc, is_store = read_table(source)
    if is_store:  # a prediction-stopped run stands for its planned end, down-weighted
        from fitting.run_result import fitted_columns

        cols, store_weights = fitted_columns(cols, misfit_log_sd or 0.0)
        if store_weights is not None:
            weights = store_weights if weights is None else np.asarray(weights, dtype=float) * store_weights
    desc = name or desc
    explicit = {"N": n_col, "D": d_col, "C": c_col, "loss": loss_col, **(extra_cols or {})}
    n_rows = len(next(iter(cols.values()))) if cols else 0
    keep = np.ones(n_rows, dtype=bool)
    reasons: dict[str, int] = {}

    def drop(bad, why):
        bad = np.asarray(bad, dtype=bool) & keep
        if bad.any():
            reasons[why] = reasons.get(why, 0) + int(bad.sum())
            keep[bad] = False

    if is_store and statuses and "status" in cols:  # named per status: "2 for status diverged" says which runs
        status = np.asarray(cols["status"]).astype(str)
        for value in sorted(set(status) - set(statuses)):
            drop(status == value, f"status {value} (fitted: {', '.join(statuses)})")
    _keep_grid(cols, sub_sweep, is_store, desc, drop)  # before the family check: it speaks of the kept rows
    if family is not None and not (is_store and "family" in cols):
        raise ValueError(f"--family {family}: {desc} records no model family (only a sweep's metrics directory does)")
    if is_store and "family" in cols:  # a law describes one model family (Kaplan fig. 7 fits each)
        families = np.asarray(cols["family"]).astype(str)
        if family is not None and family not in set(families[keep]):  # not "all rows dropped (family not X)"
            held = ", ".join(sorted(set(families[keep]))) or "none"
            raise ValueError(f"--family {family}: {desc} holds no {family} runs (its families: {held})")
        if family is not None:
            drop(families != family, f"family not {family}")
        elif len(set(families[keep])) > 1:
            counts = ", ".join(f"{int((families[keep] == f).sum())} {f}" for f in sorted(set(families[keep])))
            warnings.warn(DataWarning(f"{desc}: runs of several model families ({counts}) are fitted "
                                      "together; a law describes one family"), stacklevel=2)

    mapping, derive_d = resolve_columns(cols, inputs, explicit, is_store, desc, require_loss)
    _check_aggregation(aggregate, cols, mapping, desc)
    arrays = {}
    for key, col in mapping.items():
        try:
            arrays[key], bad, examples = numeric_column(cols[col], col, desc)
        except ValueError as err:  # no number at all: a column the user named is named by its flag
            if explicit.get(key) is None:
                raise
            raise ValueError(f"{column_flag(key, col)}: {err}") from None
        if key != "loss" or require_loss:
            drop(bad, f"non-numeric {col} (e.g. {', '.join(repr(e) for e in examples)})")
    if derive_d:
        arrays["D"] = arrays["C"] / (flops_per_token * arrays["N"])
        mapping["D"] = f"{mapping['C']}/({flops_per_token:g}*{mapping['N']})"
    if "C" in inputs and "C" not in mapping:
        arrays["C"] = flops_per_token * arrays["N"] * arrays["D"]
        mapping["C"] = f"{flops_per_token:g}*N*D"
    table_c = None if is_store else _table_compute(cols, arrays, mapping, explicit, desc, flops_per_token)
    if "loss" not in arrays:
        arrays["loss"] = np.full(n_rows, np.nan)
    checked = list(inputs) + (["loss"] if require_loss else [])
    for key in checked:
        a = arrays[key]
        drop(~np.isfinite(a), f"NaN/inf in {mapping[key]}")
        drop(a <= 0, f"non-positive {mapping[key]}")
    kept = np.where(keep)[0]
    X, y, index, best, message = {k: arrays[k][kept] for k in inputs}, arrays["loss"][kept], kept, {}, None
    weights = None if weights is None else np.asarray(weights, dtype=float)[kept]
    if require_loss and kept.size:
        if aggregate:
            from fitting.aggregate import aggregate_rows

            cells = aggregate_rows(X, y, {c: np.asarray(cols[c])[kept] for c in aggregate.columns}, aggregate,
                                   weights, f"({', '.join(inputs)})")
            for note in cells.notes:
                warnings.warn(f"{desc}: {note}", DataWarning, stacklevel=2)
            X, y, index, weights, best, message = (cells.X, cells.y, kept[cells.index], cells.weights, cells.best,
                                                   cells.message)
        elif not curve_points:
            _warn_repeats(X, cols, kept, mapping, inputs, desc)
    n_dropped = int((~keep).sum())
    if drop_top_loss:
        worst = np.argsort(y)[::-1][: int(drop_top_loss)]
        sel = np.ones(len(y), dtype=bool)
        sel[worst] = False
        reasons[f"{int(drop_top_loss)} highest-loss {'cells' if message else 'rows'} (--drop-top-loss)"] = len(worst)
        X, y, index = {k: v[sel] for k, v in X.items()}, y[sel], index[sel]
        weights = None if weights is None else weights[sel]
        best = {k: v[sel] for k, v in best.items()}
        n_dropped += len(worst)
    if n_dropped:
        why = "; ".join(f"{v} for {k}" for k, v in reasons.items())
        warnings.warn(f"dropped {n_dropped} of {keep.size} rows from {desc}: {why}", DataWarning, stacklevel=2)
    if not n_rows:
        raise ValueError(f"no usable rows in {desc}: it has no rows (only a header?)")
    if not len(y):
        why = "; ".join(f"{v} for {k}" for k, v in reasons.items())
        raise ValueError(f"no usable rows in {desc}: all {n_rows} dropped ({why})")
    for note in [] if is_store or store_units else unit_notes(X, mapping):  # a metrics store's units are its contract's
        warnings.warn(f"{desc}: {note}", DataWarning, stacklevel=2)
    data = FitData(X=X, y=y, columns=mapping, n_dropped=n_dropped, drop_reasons=reasons, source=str(desc),
                   index=index, weights=weights, aggregation=message, best=best,
                   C=None if table_c is None else table_c[index])
    if (is_store and store_weights is not None and misfit_log_sd is None and misfit_of is not None
            and law is not None and require_loss):
        return _with_misfit(data, law, call)
    return data


def _with_misfit(data: FitData, law, call: dict) -> FitData:
    """A store with prediction-stopped runs, re-read with their weights counting the law's misfit:
    ``call["misfit_of"]`` (law, `data` with their plain weights) -> the misfit, then load again
    (`call`: load_fit_data's arguments) with it. No misfit (too few rows to fit): `data` as it
    is. Bench/early_prediction.py's ``misfit`` weights are these two steps."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the first pass already said what it dropped
        misfit = call["misfit_of"](law, data)
        if misfit is None:
            return data
        return load_fit_data(**{**call, "misfit_log_sd": misfit})


def _check_aggregation(aggregate, cols: Mapping[str, Any], mapping: Mapping[str, str], desc: str) -> None:
    """An aggregation column must exist and must not be one the law reads (an input or the loss)."""
    if not aggregate:
        return
    for col in aggregate.columns:
        which = aggregate.source(col)
        if col not in cols:
            raise ValueError(f"{which} {col}: no column {col!r} in {desc}; available columns: {sorted(cols)}")
        used = [k for k, v in mapping.items() if v == col]
        if used:
            raise ValueError(f"{which} {col}: column {col!r} is the law's {used[0]} column in {desc}: a law input "
                             f"cannot also be aggregated over")


def _warn_repeats(X: Mapping[str, np.ndarray], cols: Mapping[str, Any], kept: np.ndarray,
                  mapping: Mapping[str, str], inputs, desc: str) -> None:
    """Several rows per configuration and no aggregation: say so, which hyperparameter columns
    vary within a configuration, and the flags that aggregate them."""
    from fitting.aggregate import HYPERPARAMETER_COLUMNS, swept_in_cells
    from fitting.checks import repeated_configs

    n_configs, _ = repeated_configs(X)
    n_kept = kept.size
    if n_configs >= n_kept:
        return
    what = f"({', '.join(inputs)})"
    used = set(mapping.values())
    swept = swept_in_cells(X, {c: np.asarray(cols[c])[kept] for c in HYPERPARAMETER_COLUMNS
                               if c in cols and c not in used})
    varying = f"; {', '.join(swept)} vary within a {what}" if swept else ""
    warnings.warn(f"{desc}: {n_kept - n_configs} of {n_kept} rows repeat the {what} of another row "
                  f"({n_configs} distinct {what}); they are fitted as independent runs{varying}. For a "
                  f"hyperparameter sweep aggregate each {what} cell: --best-over COL (e.g. lr) keeps its best "
                  f"setting, --mean-over COL (e.g. seed) averages replicates first, --best-per-config keeps its "
                  f"best row", DataWarning, stacklevel=3)


def _table_compute(cols, arrays, mapping, explicit: Mapping[str, str | None], desc: str,
                   k: float) -> np.ndarray | None:
    """The table's own compute column per source row (None when it has none): kept beside the law's
    inputs so that selections on C read the user's numbers (`FitData.compute`). A cell that is not
    a positive number takes k·N·D. Warns once when the column disagrees with k·N·D (> 1 % on some
    row), naming which one is used for what. Not for a metrics directory: its ``flops`` counts
    attention too, and its C stays k·N·D."""
    ccol = (mapping["C"] if mapping.get("C") in cols else pick_column(cols, "C", explicit.get("C"), False, desc))
    if ccol is None:
        return None
    C = arrays["C"] if mapping.get("C") == ccol else numeric_column(cols[ccol], ccol, desc)[0]
    # N and D as the table has them, whether or not the law reads them (kaplan_n reads N alone)
    nd = {}
    for key in ("N", "D"):
        col = mapping.get(key) if mapping.get(key) in cols else pick_column(cols, key, explicit.get(key), False, desc)
        nd[key] = arrays.get(key) if col == mapping.get(key) and key in arrays else (
            None if col is None else numeric_column(cols[col], col, desc)[0])
    if nd["N"] is None or nd["D"] is None or mapping.get("D", "").startswith(f"{ccol}/"):
        return np.where(np.isfinite(C) & (C > 0), C, np.nan)
    with np.errstate(all="ignore"):
        knd = k * nd["N"] * nd["D"]
        ok = np.isfinite(C) & (C > 0)
        ratio = C / knd
    off = ok & np.isfinite(ratio) & (np.abs(ratio - 1) > 0.01)
    if off.any():
        warnings.warn(DataWarning(
            f"{desc}: compute column {ccol!r} differs from {k:g}·N·D by more than 1 % in {int(off.sum())} of "
            f"{int(ok.sum())} rows (C/({k:g}·N·D) from {np.nanmin(ratio[off]):.3g} to {np.nanmax(ratio[off]):.3g}); "
            f"{ccol!r} is the C that selections on C use (--train/--test 'C ...', --fit-max-compute, the "
            f"frontier's budgets){', and the law reads it' if mapping.get('C') == ccol else ''}; "
            f"the law reads N and D as given"), stacklevel=3)
    return np.where(ok, C, knd)
