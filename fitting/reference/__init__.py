"""Reference tables shipped with the package (source, commit, md5 and columns: ``README.md`` here).

>>> from fitting import reference
>>> reference.load("epoch-chinchilla", law="chinchilla")   # doctest: +SKIP
FitData(...)  # 240 runs: Epoch's 245 less the 5 highest-loss ones, as Epoch fits them

The same tables are what ``scalesweep fit|plan|replay --example NAME`` reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Example", "EXAMPLES", "get", "path", "table", "load"]

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Example:
    """A shipped table and how its source fits it."""

    name: str
    file: str  # beside this module
    description: str
    drop_top_loss: int = 0  # highest-loss rows the source drops before fitting
    holdout_compute: float | None = None  # replay: runs above this compute (FLOPs) are the targets


EXAMPLES: dict[str, Example] = {
    "epoch-chinchilla": Example(
        name="epoch-chinchilla", file="epoch_chinchilla.csv",
        description="245 Chinchilla runs (Hoffmann et al. 2022, fig. 4) as extracted by Epoch AI "
                    "(Besiroglu et al. 2024); Epoch drops the 5 highest-loss rows",
        drop_top_loss=5, holdout_compute=1e21),
}


def get(name: str) -> Example:
    """The :class:`Example` called ``name``; ValueError naming the choices otherwise."""
    try:
        return EXAMPLES[name]
    except KeyError:
        raise ValueError(f"unknown example {name!r}; choose from {sorted(EXAMPLES)}") from None


def path(name: str) -> Path:
    """Path of the installed file of example ``name`` (e.g. ``"epoch-chinchilla"``)."""
    p = HERE / get(name).file
    if not p.is_file():  # a broken install: say which file is missing, not a parser error later
        raise FileNotFoundError(f"reference data {p} is missing from the installed package")
    return p


def table(name: str) -> dict[str, np.ndarray]:
    """Example ``name`` as read from its file: column name → numpy array, nothing dropped."""
    from fitting.data import read_table

    return read_table(path(name))[0]


def load(name: str, law="chinchilla", drop_top_loss: int | None = None, **columns):
    """Example ``name`` as :class:`fitting.data.FitData` for ``law``, with the source's own
    preprocessing (``drop_top_loss`` defaults to the example's, 5 for Epoch). ``columns`` go to
    :func:`fitting.data.load_fit_data` (``n_col=``, ``extra_cols=``...)."""
    from fitting.data import load_fit_data

    ex = get(name)
    return load_fit_data(path(name), law=law, drop_top_loss=ex.drop_top_loss if drop_top_loss is None else drop_top_loss,
                         **columns)
