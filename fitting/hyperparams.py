"""Optimal hyperparameters against scale: value_opt = c · X^k (issue 13 item 6).

DeepSeek LLM (2024, §3.1) fits the best learning rate and batch size against compute as power
laws, η_opt = 0.3118·C^-0.1250 and B_opt = 0.2920·C^0.3271; Porian et al. (2024, "Resolving
discrepancies in compute-optimal scaling") fit them against N. Here: per cell, the best setting
of a ``best_over`` column (`fitting.aggregate.Cells.best`), then an ordinary least-squares line
in log space, ln value = ln c + k·ln X, with Student-t intervals on k and ln c (n − 2 degrees of
freedom; c's interval is exp of ln c's). A grid of learning rates makes the best value discrete,
so the residuals are partly quantisation: the interval says how well the grid pins the trend.
Pure numpy/scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["MIN_DISTINCT", "HyperparameterLaw", "fit_optimal_hyperparameter", "optimal_hyperparameters"]

MIN_DISTINCT = 3
"""Fewest distinct X values a power law is fitted to (two points always lie on a line)."""


@dataclass(frozen=True)
class HyperparameterLaw:
    """value_opt = c · X^k for one hyperparameter column; ``reason`` says why there is no fit."""

    column: str  # e.g. "lr"
    against: str  # "N" or "C"
    n_cells: int
    n_distinct: int  # distinct X values among the cells
    level: float
    k: float = math.nan
    c: float = math.nan
    k_interval: tuple[float, float] = (math.nan, math.nan)
    c_interval: tuple[float, float] = (math.nan, math.nan)
    reason: str | None = None

    @property
    def fitted(self) -> bool:
        return self.reason is None

    def text(self) -> str:
        """``lr_opt ∝ N^-0.300 [90 %: -0.35, -0.25], c = 0.02 [0.01, 0.05] (12 cells)``."""
        name = f"{self.column}_opt"
        if not self.fitted:
            return f"{name} vs {self.against}: not fitted ({self.reason})"
        lvl = round(self.level * 100)
        return (f"{name} ∝ {self.against}^{self.k:.3g} [{lvl} %: {self.k_interval[0]:.3g}, {self.k_interval[1]:.3g}], "
                f"c = {self.c:.3g} [{self.c_interval[0]:.3g}, {self.c_interval[1]:.3g}] ({self.n_cells} cells, "
                f"{self.n_distinct} distinct {self.against})")

    def to_dict(self) -> dict:
        return {"column": self.column, "against": self.against, "k": self.k, "c": self.c,
                "k_interval": list(self.k_interval), "c_interval": list(self.c_interval), "level": self.level,
                "n_cells": self.n_cells, "n_distinct": self.n_distinct, "reason": self.reason}


def fit_optimal_hyperparameter(x, value, *, column: str, against: str = "N", level: float = 0.9) -> HyperparameterLaw:
    """Fit value_opt = c·x^k to the cells' best ``value`` at scale ``x`` (N in parameters or C
    in FLOPs). Cells whose x or value is not a positive finite number are left out. Fewer than
    :data:`MIN_DISTINCT` distinct x, or one best value in every cell (a slope of 1e-17 with an
    interval that excludes 0 was printed), gives a result with ``reason`` set and no numbers
    (not a ValueError: the sweep simply cannot tell)."""
    from scipy import stats

    x, v = np.asarray(x, dtype=float), np.asarray(value, dtype=float)
    ok = np.isfinite(x) & np.isfinite(v) & (x > 0) & (v > 0)
    x, v = x[ok], v[ok]
    n, distinct = int(x.size), len(np.unique(np.round(np.log(x), 9))) if x.size else 0
    base = dict(column=column, against=against, n_cells=n, n_distinct=distinct, level=level)
    if distinct < MIN_DISTINCT:
        return HyperparameterLaw(**base, reason=f"only {distinct} distinct {against} among {n} cells; a power law "
                                                f"needs at least {MIN_DISTINCT}")
    if np.unique(v).size == 1:  # a least-squares slope would be rounding noise with a "significant" interval
        return HyperparameterLaw(**base, reason=f"the best {column} is {v[0]:g} in every one of the {n} cells: "
                                                f"no trend to fit")
    lx, lv = np.log(x), np.log(v)
    design = np.column_stack([np.ones(n), lx - lx.mean()])  # centred: intercept and slope uncorrelated
    coef, *_ = np.linalg.lstsq(design, lv, rcond=None)
    resid = lv - design @ coef
    dof = n - 2  # >= 1: n >= MIN_DISTINCT
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.inv(design.T @ design)
    k = float(coef[1])
    log_c = float(coef[0] - k * lx.mean())
    var_log_c = float(cov[0, 0] + lx.mean() ** 2 * cov[1, 1])  # centred terms are uncorrelated
    t = float(stats.t.ppf(0.5 + level / 2, dof))
    half_k, half_c = t * math.sqrt(cov[1, 1]), t * math.sqrt(var_log_c)
    with np.errstate(over="ignore"):
        c_iv = (float(np.exp(log_c - half_c)), float(np.exp(log_c + half_c)))
    return HyperparameterLaw(**base, k=k, c=math.exp(log_c), k_interval=(k - half_k, k + half_k), c_interval=c_iv)


def optimal_hyperparameters(data, *, level: float = 0.9, flops_per_token: float = 6.0) -> list[HyperparameterLaw]:
    """For each ``best_over`` column of an aggregated `fitting.data.FitData` (its ``best``), the
    power law of the best value against N and against compute C (`FitData.compute`), where the
    data has them. Empty for data that was not aggregated over a named column."""
    out = []
    for column, values in data.best.items():
        try:
            v = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            continue  # a non-numeric setting (an optimizer name) has no power law
        scales = {"N": data.X["N"]} if "N" in data.X else {}
        try:
            scales["C"] = data.compute(flops_per_token)
        except ValueError:
            pass
        out += [fit_optimal_hyperparameter(x, v, column=column, against=k, level=level) for k, x in scales.items()]
    return out
