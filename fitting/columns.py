"""The column mapping: how a table's columns become a law's inputs. The one owner of the
column-name guesses per logical input (:data:`ALIASES`), a sweep's metrics directory's own names
(:data:`STORE_DEFAULTS`), the flag that names each input's column (:data:`COLUMN_FLAGS`,
`column_flag`), picking a column (`pick_column`) and mapping all of a law's inputs (`resolve_columns`:
D derived from a compute column, C from N and D), and reading a column's cells as numbers
(`numeric_column`). Used by :func:`fitting.data.load_fit_data`, the one path that reads a table,
and by the table flags of :mod:`fitting.cli`. Pure Python + numpy.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["ALIASES", "STORE_DEFAULTS", "COLUMN_FLAGS", "column_flag", "pick_column", "numeric_column",
           "resolve_columns"]


#: Column-name guesses per logical input when no explicit name is given (first match wins).
ALIASES: dict[str, tuple[str, ...]] = {
    "N": ("N", "n", "params", "non_embedding_params", "Model Size", "model_size", "n_params"),
    "D": ("D", "tokens", "tokens_seen", "dataset_tokens", "n_tokens"),
    "U": ("U", "unique_tokens", "dataset_tokens"),
    "S": ("S", "S_min", "steps"),
    "B": ("B", "batch_tokens", "batch_size"),
    "C": ("C", "flops", "compute", "Training FLOP", "training_flop"),
    "L": ("L",),
    "loss": ("loss", "best_val_loss", "final_val_loss", "val_loss"),
}
#: Defaults for a sweep's metrics directory (``metrics.load_runs``).
STORE_DEFAULTS = {"N": "non_embedding_params", "D": "tokens_seen", "U": "dataset_tokens",
                  "S": "steps", "B": "batch_tokens", "C": "flops", "loss": "best_val_loss"}


#: The flag that names each logical input's column (fitting.cli.add_table_args); any other input
#: is mapped with ``--col INPUT=COLUMN``. Messages about a column name the flag that set it.
COLUMN_FLAGS = {"N": "--n-col", "D": "--d-col", "C": "--c-col", "loss": "--loss-col", "U": "--u-col", "S": "--s-col"}


def column_flag(logical: str, column: str) -> str:
    """How the user named ``column`` for ``logical``: ``--n-col params`` (:data:`COLUMN_FLAGS`), else
    ``--col INPUT=COLUMN``; messages about that column start with it."""
    flag = COLUMN_FLAGS.get(logical)
    return f"{flag} {column}" if flag else f"--col {logical}={column}"


def pick_column(cols: Mapping[str, Any], logical: str, explicit: str | None, is_store: bool, desc: str) -> str | None:
    """The column for ``logical``: ``explicit`` (an error naming its flag when the table lacks it), else
    a store's default (:data:`STORE_DEFAULTS`), else the first of its :data:`ALIASES` found; None if none."""
    if explicit is not None:
        if explicit not in cols:
            raise ValueError(f"{column_flag(logical, explicit)}: no column {explicit!r} (for {logical}) in {desc}; "
                             f"available: {sorted(cols)}")
        return explicit
    if is_store and STORE_DEFAULTS.get(logical) in cols:
        return STORE_DEFAULTS[logical]
    for cand in ALIASES.get(logical, (logical,)):
        if cand in cols:
            return cand
    return None


def numeric_column(values, col: str, desc: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Cells → floats; a cell that is not a number (empty, null, ``diverged``) becomes NaN.
    → (array, mask of such cells, a few of them). A column with no number at all is an error."""
    a = np.asarray(values).ravel()
    if a.dtype.kind in "fiub":
        return a.astype(float), np.zeros(a.size, dtype=bool), []
    out = np.full(a.size, np.nan)
    bad = np.zeros(a.size, dtype=bool)
    for i, v in enumerate(a):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            bad[i] = True
    if a.size and bad.all():
        raise ValueError(f"column {col!r} in {desc} is not numeric (e.g. {a[0]!r})")
    return out, bad, list(dict.fromkeys(str(v) for v in a[bad]))[:3]


def resolve_columns(cols, inputs, explicit, is_store, desc, require_loss: bool) -> tuple[dict[str, str], bool]:
    """Logical input → column name (``loss`` optional unless ``require_loss``). → (mapping,
    derive_d): D is derived from a compute column when there is none; a missing C is derived
    from N and D (both then mapped)."""
    mapping: dict[str, str] = {}
    derive_d = False
    hint = {**COLUMN_FLAGS, "D": "--d-col (or --c-col and --n-col to derive D = C/(k·N))",
            "C": "--c-col (or N and D columns)"}

    def missing(name):
        return ValueError(f"missing column for {name} in {desc} (set {hint.get(name, f'--col {name}=COLUMN')}); "
                          f"available columns: {sorted(cols)}")

    for name in list(inputs) + ["loss"]:
        col = pick_column(cols, name, explicit.get(name), is_store, desc)
        if col is None and name == "D":  # D = C/(k·N): needs a compute and an N column (read for it alone
            ccol = pick_column(cols, "C", explicit.get("C"), is_store, desc)  # when N is not an input, e.g. kaplan_d)
            ncol = mapping.get("N") or pick_column(cols, "N", explicit.get("N"), is_store, desc)
            if ccol is not None and ncol is not None:
                mapping["C"], mapping["N"] = ccol, ncol
                derive_d = True
                continue
            if ccol is not None:
                raise ValueError(f"missing column for D in {desc}: D = C/(k·N) from compute column {ccol!r} also "
                                 f"needs N (set --n-col), or set --d-col; available columns: {sorted(cols)}")
        if col is None and name == "L" and "loss" in mapping:
            col = mapping["loss"]
        if col is None and name == "C":  # C = k·N·D, derived by the caller
            for nd in ("N", "D"):
                mapping[nd] = mapping.get(nd) or pick_column(cols, nd, explicit.get(nd), is_store, desc) or ""
                if not mapping[nd]:
                    raise missing("C")
            continue
        if col is None and name == "loss" and not require_loss:
            continue  # prediction targets need no loss
        if col is None:
            raise missing(name)
        mapping[name] = col
    return mapping, derive_d
