"""Hyperparameter axes are aggregated, not mixed in: a table's rows → one row per cell.

A sweep that varies the learning rate, the batch or the seed at each (N, D) has several rows per
configuration of the law's inputs. Fitted as independent runs they bias the law (the bad learning
rates count as much as the good one) and shrink its intervals. The aggregation here (issue 13
item 6) turns them into **cells** (rows equal on every input of the law, e.g. (N, D) for
chinchilla, (N, D, U) for data_constrained) and represents each cell by

1. the mean loss of each ``best_over`` setting (e.g. each lr) over its ``mean_over`` replicates
   (seeds), then
2. the setting with the lowest mean loss.

The seeds' spread is added to the cell's noise: a log-loss residual's variance is
``REFERENCE_LOG_SD²/w̄ + s²/k`` (`fitting.run_result.REFERENCE_LOG_SD`; w̄ the mean fit weight of
the k replicates, 1 for a run that trained to its end; s the sd of their log losses), and the
cell's fit weight is ``REFERENCE_LOG_SD²`` over that, the convention of `fitting.run_result`.

``Aggregation(best_over=("*",))`` (:data:`EVERY_ROW`) makes every row its own setting: the
lowest-loss row of each cell, the ``--best-per-config`` shorthand. Pure numpy; the one owner of
"several rows per configuration" (`fitting.data.load_fit_data` applies it for fit, plan, replay,
predict and every command reading runs through `fitting.cli.load_table`; the report and the
active designer's online fitter call it too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from fitting.checks import repeated_configs
from fitting.run_result import REFERENCE_LOG_SD

__all__ = ["Aggregation", "Cells", "EVERY_ROW", "HYPERPARAMETER_COLUMNS", "RUN_COLUMNS", "aggregate_rows", "default_aggregation",
           "swept_in_cells"]

EVERY_ROW = "*"
"""``best_over`` entry meaning: every row is its own setting (the lowest-loss row of each cell)."""

HYPERPARAMETER_COLUMNS = {"lr": "best_over", "batch_tokens": "best_over", "seed": "mean_over"}
"""The runs table's hyperparameter columns and how a sweep aggregates them by default: best over
the learning rate and the batch, mean over seeds (`default_aggregation`)."""

RUN_COLUMNS = ("lr", "batch_tokens", "seed", "n_ctx", "regime", "n_layer", "d_model", "n_heads", "d_ff", "d_attn")
"""The runs table's columns a sweep's fit may aggregate over (``fit.aggregate`` in a spec, the
report's ``--best-over``/``--mean-over``): every one a sweep's axes set, not N, D or the loss.
Only :data:`HYPERPARAMETER_COLUMNS` are aggregated by default."""


@dataclass(frozen=True)
class Aggregation:
    """Which columns a cell is aggregated over: the best setting of ``best_over`` (after
    averaging over ``mean_over``). Lists are kept as tuples; a column in both lists, or a
    column named twice, is a ValueError naming it. ``names``: what messages call the two lists,
    where the user wrote them (the CLI's ``--best-over``/``--mean-over``; default the field names)."""

    best_over: tuple[str, ...] = ()
    mean_over: tuple[str, ...] = ()
    names: tuple[str, str] = field(default=("best_over", "mean_over"), compare=False)

    def __post_init__(self):
        object.__setattr__(self, "best_over", tuple(self.best_over))
        object.__setattr__(self, "mean_over", tuple(self.mean_over))
        for name, cols in zip(self.names, (self.best_over, self.mean_over)):
            for col in cols:
                if not isinstance(col, str) or not col:
                    raise ValueError(f"{name}: a column name must be a non-empty string, got {col!r}")
            twice = sorted({c for c in cols if cols.count(c) > 1})
            if twice:
                raise ValueError(f"{name}: column {twice[0]!r} is named twice")
        both = sorted(set(self.best_over) & set(self.mean_over))
        if both:
            raise ValueError(f"column {both[0]!r} is in both {self.names[0]} and {self.names[1]} (a column is either "
                             f"optimised over or averaged over)")
        if EVERY_ROW in self.mean_over or (EVERY_ROW in self.best_over and len(self.best_over) > 1):
            raise ValueError(f"{EVERY_ROW!r} (every row its own setting) stands alone in {self.names[0]}")

    def __bool__(self) -> bool:
        return bool(self.best_over or self.mean_over)

    def source(self, col: str) -> str:
        """The list (as :attr:`names` calls it) that holds ``col``: for messages about that column."""
        return self.names[0] if col in self.best_over else self.names[1]

    @property
    def columns(self) -> tuple[str, ...]:
        """The table columns it reads (not :data:`EVERY_ROW`)."""
        return tuple(c for c in self.best_over + self.mean_over if c != EVERY_ROW)

    def describe(self, cell: str = "cell") -> str:
        """``"best over lr, mean over seed"``."""
        if self.best_over == (EVERY_ROW,):
            parts = [f"best row of each {cell}"]
        else:
            parts = [f"best over {', '.join(self.best_over)}"] if self.best_over else []
        if self.mean_over:
            parts.append(f"mean over {', '.join(self.mean_over)}")
        return ", ".join(parts) or "none"


def default_aggregation(values: Mapping[str, Iterable]) -> Aggregation:
    """The default for a sweep: every :data:`HYPERPARAMETER_COLUMNS` column given more than one
    value (``values``: column → the values it takes, e.g. a spec's ``axes.lr``) is aggregated,
    the way that table says. Columns not in ``values`` are left alone."""
    best, mean = [], []
    for col, how in HYPERPARAMETER_COLUMNS.items():
        if col in values and len({_key(v) for v in values[col]}) > 1:
            (best if how == "best_over" else mean).append(col)
    return Aggregation(tuple(best), tuple(mean))


def swept_in_cells(X: Mapping[str, np.ndarray], columns: Mapping[str, Iterable]) -> dict[str, list]:
    """Of ``columns``, those that take more than one value within some cell of ``X`` (a column
    that only changes with N, like Kaplan's learning-rate rule, is not swept) → {column: its
    values}. For :func:`default_aggregation` on a table of runs."""
    if not len(next(iter(X.values()), ())):
        return {}
    _, cell = repeated_configs(X)
    swept = {}
    for col, values in columns.items():
        keys = [_key(v) for v in values]
        if len(set(zip(cell.tolist(), keys))) > len(set(cell.tolist())):
            swept[col] = list(values)
    return swept


@dataclass
class Cells:
    """One row per cell (:func:`aggregate_rows`), in the order of the cells' first rows."""

    X: dict[str, np.ndarray]  # the law's inputs per cell
    y: np.ndarray  # the best setting's mean loss
    sigma: np.ndarray  # its log-loss noise sd: REFERENCE_LOG_SD widened by the replicates' spread
    weights: np.ndarray | None  # REFERENCE_LOG_SD² / sigma² (None: every cell weight 1)
    index: np.ndarray  # per cell, the input row standing for it (the best setting's lowest-loss row)
    best: dict[str, np.ndarray] = field(default_factory=dict)  # best_over column → the best setting's value
    n_rows: int = 0  # input rows
    message: str = ""  # "60 rows → 12 cells, best over lr, mean over seed"
    notes: list[str] = field(default_factory=list)  # warnings (unnamed repeats)

    def __len__(self) -> int:
        return int(self.y.size)


def _key(value):
    """A hashable grouping key for one cell of a hyperparameter column (floats to 10 digits)."""
    if isinstance(value, (float, np.floating)):
        return "nan" if value != value else float(f"{float(value):.10g}")
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value if isinstance(value, (int, str, bool, type(None))) else str(value)


def aggregate_rows(X: Mapping[str, np.ndarray], y, hyper: Mapping[str, Iterable], aggregation: Aggregation,
                   weights=None, inputs_text: str | None = None) -> Cells:
    """Rows → cells (module docstring). ``X``: the law's inputs (positive floats, one array per
    input); ``y``: losses (> 0); ``hyper``: every column ``aggregation`` names → its values per
    row (any type; floats grouped to 10 significant digits); ``weights``: per-row fit weights
    (None: all 1). ``inputs_text`` names a cell in messages (default ``"(N, D)"``-style from X).
    Raises ValueError for a column ``hyper`` lacks."""
    y = np.asarray(y, dtype=float)
    n = y.size
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    missing = [c for c in aggregation.columns if c not in hyper]
    if missing:
        raise ValueError(f"aggregation column {missing[0]!r} not in the table")
    cell_text = inputs_text or f"({', '.join(X)})"
    best_cols = [c for c in aggregation.best_over if c != EVERY_ROW]
    every = EVERY_ROW in aggregation.best_over
    best_keys = {c: [_key(v) for v in hyper[c]] for c in best_cols}
    mean_keys = [[_key(v) for v in hyper[c]] for c in aggregation.mean_over]
    _, cell = repeated_configs(X) if n else (0, np.zeros(0, dtype=int))

    settings: dict[tuple, list[int]] = {}  # (cell, setting) → its rows, in input order
    for i in range(n):
        settings.setdefault((int(cell[i]), i if every else tuple(best_keys[c][i] for c in best_cols)), []).append(i)
    unnamed = 0
    chosen: dict[int, tuple[float, float, int]] = {}  # cell → (mean loss, variance, its lowest-loss row)
    for (c, _), rows in settings.items():
        rows = np.asarray(rows)
        unnamed += rows.size - len({tuple(k[i] for k in mean_keys) for i in rows})
        mean = float(np.sum(w[rows] * y[rows]) / np.sum(w[rows]))  # inverse-variance weighted (all 1: plain)
        spread = float(np.var(np.log(y[rows]), ddof=1)) / rows.size if rows.size > 1 else 0.0
        var = REFERENCE_LOG_SD ** 2 / float(np.mean(w[rows])) + spread
        if c not in chosen or mean < chosen[c][0]:
            chosen[c] = (mean, var, int(rows[np.argmin(y[rows])]))
    first = {}  # cell → its first row, so cells come out in the table's order
    for i in range(n):
        first.setdefault(int(cell[i]), i)
    order = sorted(chosen, key=first.__getitem__)
    mean = np.array([chosen[c][0] for c in order], dtype=float)
    sigma = np.sqrt(np.array([chosen[c][1] for c in order], dtype=float))
    index = np.array([chosen[c][2] for c in order], dtype=int)
    cell_w = REFERENCE_LOG_SD ** 2 / sigma ** 2
    notes = []
    if unnamed:
        named = ", ".join(aggregation.columns) or "no column"
        notes.append(f"{unnamed} of {n} rows repeat the {cell_text} and {named} of another row: averaged as "
                     f"repeats (name the column that tells them apart with --best-over COL or --mean-over COL)")
    return Cells(X={k: np.asarray(v, dtype=float)[index] for k, v in X.items()}, y=mean,
                 sigma=sigma, weights=cell_w if np.any(np.abs(cell_w - 1) > 1e-12) else None, index=index,
                 best={col: np.asarray(hyper[col])[index] for col in best_cols}, n_rows=n,
                 message=f"{n} rows → {len(order)} cells, {aggregation.describe(cell_text)}", notes=notes)
