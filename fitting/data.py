"""Loading and validating fit inputs: tables of runs → named columns + target.

``load_fit_data(source, ...)`` accepts a pyarrow Table, a pandas DataFrame, a mapping of
columns, a CSV/Parquet path, or a sweep's metrics directory (read with
``scalesweep.store.load_runs``). Rows with NaN/inf or non-positive values in a used column are
dropped *with a warning that says how many and why*; a missing column is an error naming the
columns that exist.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

__all__ = ["FitData", "load_fit_data", "DataWarning", "ALIASES", "STORE_DEFAULTS"]


class DataWarning(UserWarning):
    """Rows were dropped or the input looks suspicious."""


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
#: Defaults for a sweep's metrics directory (``scalesweep.store.load_runs``).
STORE_DEFAULTS = {"N": "non_embedding_params", "D": "tokens_seen", "U": "dataset_tokens",
                  "S": "steps", "B": "batch_tokens", "C": "flops", "loss": "best_val_loss"}
STORE_STATUSES = ("completed", "early_stopped")


@dataclass
class FitData:
    """Validated inputs: ``X`` maps input names (N, D, U, ...) to float arrays; ``y`` is the target."""

    X: dict[str, np.ndarray]
    y: np.ndarray
    columns: dict[str, str] = field(default_factory=dict)
    n_dropped: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, mask) -> "FitData":
        mask = np.asarray(mask)
        return FitData({k: v[mask] for k, v in self.X.items()}, self.y[mask], dict(self.columns),
                       self.n_dropped, dict(self.drop_reasons), self.source)

    def compute(self, flops_per_token: float = 6.0) -> np.ndarray:
        """Training compute per run: the ``C`` column if present, else ``6·N·D``."""
        if "C" in self.X:
            return self.X["C"]
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
        path = os.fspath(source)
        if not os.path.exists(path) and "://" not in path:
            raise FileNotFoundError(f"runs input not found: {path}")
        if os.path.isdir(path) or "://" in path:
            if any(f.endswith((".parquet", ".csv")) for f in os.listdir(path)) if os.path.isdir(path) else False:
                pass  # a folder of plain tables is read below as a dataset
            else:
                try:
                    from scalesweep.store import load_runs, require_sweep
                except ImportError as err:  # pragma: no cover - store written elsewhere
                    raise ValueError(f"{path} is a directory but scalesweep.store is not available: {err}") from err
                require_sweep(path)  # a store root or a stray directory is named, not read as empty
                tab = load_runs(path)
                return {n: tab.column(n).to_numpy(zero_copy_only=False) for n in tab.column_names}, path, True
        if path.endswith(".csv") or path.endswith(".csv.gz") or path.endswith(".tsv"):
            import pyarrow.csv as pcsv

            opts = pcsv.ParseOptions(delimiter="\t") if path.endswith(".tsv") else None
            tab = pcsv.read_csv(path, parse_options=opts)
        else:
            import pyarrow.parquet as pq

            tab = pq.read_table(path)
        return {n: tab.column(n).to_numpy(zero_copy_only=False) for n in tab.column_names}, path, False
    raise TypeError(f"cannot read runs from {type(source).__name__}")


def _pick(cols: Mapping[str, Any], logical: str, explicit: str | None, is_store: bool) -> str | None:
    if explicit is not None:
        if explicit not in cols:
            raise ValueError(f"column {explicit!r} (for {logical}) not found; available: {sorted(cols)}")
        return explicit
    if is_store and STORE_DEFAULTS.get(logical) in cols:
        return STORE_DEFAULTS[logical]
    for cand in ALIASES.get(logical, (logical,)):
        if cand in cols:
            return cand
    return None


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
    statuses: tuple[str, ...] | None = STORE_STATUSES,
    drop_top_loss: int = 0,
) -> FitData:
    """Read and validate a table of runs for fitting ``law`` (or the given ``inputs``).

    Column names: ``n_col``/``d_col``/``loss_col``/``c_col`` and ``extra_cols`` (logical input
    → column, e.g. ``{"U": "unique_tokens"}``) override the guesses in :data:`ALIASES`. If the law
    needs D and there is no D column but a compute column, D = C/(flops_per_token·N) (the Epoch
    file's convention). A metrics directory keeps rows whose ``status`` is in ``statuses``.
    ``drop_top_loss`` drops that many highest-loss rows (Epoch drops 5), with a warning.
    """
    if isinstance(source, FitData):
        return source
    from fitting.laws import get_law

    if law is not None:
        law = get_law(law)
        inputs = law.inputs
    inputs = tuple(inputs) if inputs is not None else ("N", "D")
    cols, desc, is_store = read_table(source)
    explicit = {"N": n_col, "D": d_col, "C": c_col, "loss": loss_col}
    for k, v in (extra_cols or {}).items():
        explicit[k] = v
    keep = np.ones(len(next(iter(cols.values()))) if cols else 0, dtype=bool)
    reasons: dict[str, int] = {}

    if is_store and statuses and "status" in cols:
        st = np.asarray(cols["status"]).astype(str)
        ok = np.isin(st, list(statuses))
        if (~ok).any():
            reasons[f"status not in {list(statuses)}"] = int((~ok).sum())
        keep &= ok

    mapping: dict[str, str] = {}
    need = list(inputs) + ["loss"]
    derive_d = False
    for name in need:
        col = _pick(cols, name, explicit.get(name), is_store)
        if col is None and name == "D":
            ccol = _pick(cols, "C", explicit.get("C"), is_store)
            if ccol is not None and "N" in inputs:
                mapping["C"] = ccol
                derive_d = True
                continue
        if col is None and name == "C" and "N" in cols and "D" in cols:
            col = None  # derived below
        if col is None and name == "L" and "loss" in mapping:
            col = mapping["loss"]
        if col is None and not (name == "C"):
            hint = {"N": "--n-col", "D": "--d-col (or --c-col to derive D = C/(6N))", "loss": "--loss-col",
                    "U": "--u-col", "S": "--s-col"}.get(name, f"extra_cols={{'{name}': ...}}")
            raise ValueError(f"missing column for {name} (set {hint}); available columns: {sorted(cols)}")
        if col is not None:
            mapping[name] = col

    def numeric(col):
        try:
            return np.asarray(cols[col], dtype=float)
        except (TypeError, ValueError) as err:
            raise ValueError(f"column {col!r} is not numeric: {err}") from err

    arrays = {name: numeric(col) for name, col in mapping.items()}
    if derive_d:
        arrays["D"] = arrays["C"] / (flops_per_token * arrays["N"])
        mapping["D"] = f"{mapping['C']}/({flops_per_token:g}*{mapping['N']})"
    if "C" in inputs and "C" not in arrays:
        arrays["C"] = flops_per_token * arrays["N"] * arrays["D"]
        mapping["C"] = f"{flops_per_token:g}*N*D"

    for name in need:
        a = arrays[name]
        bad = ~np.isfinite(a) & keep
        if bad.any():
            reasons[f"NaN/inf in {mapping[name]}"] = int(bad.sum())
            keep &= ~bad
        nonpos = (a <= 0) & keep
        if nonpos.any():
            reasons[f"non-positive {mapping[name]}"] = int(nonpos.sum())
            keep &= ~nonpos
    if drop_top_loss:
        idx = np.where(keep)[0]
        worst = idx[np.argsort(arrays["loss"][idx])[::-1][: int(drop_top_loss)]]
        keep[worst] = False
        reasons[f"{int(drop_top_loss)} highest-loss rows (drop_top_loss)"] = len(worst)

    n_dropped = int((~keep).sum())
    if n_dropped:
        why = "; ".join(f"{v} for {k}" for k, v in reasons.items())
        warnings.warn(f"dropped {n_dropped} of {keep.size} rows from {desc}: {why}", DataWarning, stacklevel=2)
    if not keep.any():
        raise ValueError(f"no usable rows in {desc} (dropped {n_dropped}: {reasons})")
    X = {name: arrays[name][keep] for name in inputs}
    return FitData(X=X, y=arrays["loss"][keep], columns=mapping, n_dropped=n_dropped, drop_reasons=reasons,
                   source=str(desc))
