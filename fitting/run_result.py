"""Which loss a scaling-law fit takes from a run, and with what weight (issue 12 item 4).

A run that trained to its end, or stopped by patience, contributes the loss it reached, weight 1.
A run that early prediction stopped (``stop_reason`` in `metrics.statuses.PREDICTED_LOSS_REASONS`)
contributes its *predicted* final loss, down-weighted by the width of its prediction interval:
a log-loss residual's variance is taken as sd_obs² for an observed loss and sd_obs² + sd_pred² for
a predicted one, where sd_pred is the prediction's log-space sd, ln(hi/lo)/(2·z) at its level.
The weight is the ratio of the two variances. sd_obs is the run's own evaluation scatter about its
fitted curve (``eval_log_sd``, measured by the predictor from the curve it stopped on), or
REFERENCE_LOG_SD where the row does not carry it (rows written before it was stored).
``misfit_log_sd`` (optional, 0 by default) adds the law's own misfit to both variances: a run's
residual about the fitted law is misfit + noise, and where the misfit dominates (the bench's tiny
runs: 1.6 % rms against 0.3-0.6 % scatter) a prediction 0.6 % off is almost as good as an
observation; the plain ratio weighed such runs ~0.5, and that re-weighting alone moved the
held-out error of the bench's near-L1 Chinchilla fit by +16-23 % with observed losses
(bench/early_prediction.py, ``--weights``). A store's fit (`fitting.data.load_fit_data`) estimates
it from the store itself, `law_misfit` of a first fit with the plain weights, and weighs the
predicted runs with it; the bench's ``misfit`` weights are the same two steps. Pure Python + numpy; used by `fitting.data.load_fit_data` (stores) and the active
designer (`orchestrator.active_search`).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Mapping

import numpy as np

from metrics.statuses import PREDICTED_LOSS_REASONS

REFERENCE_LOG_SD = 0.01
"""Assumed sd of an observed final loss in log space (1 %: the order of seed-to-seed scatter of
small-LM losses) where a row carries no measured ``eval_log_sd``; a prediction as precise as the
observed loss gets weight 1/2. An assumption, not a fit."""


def prediction_weight(lo: float, hi: float, level: float, eval_log_sd: float | None = None,
                      misfit_log_sd: float = 0.0) -> float:
    """Relative weight (0, 1] of a predicted loss whose `level` interval is [lo, hi], against an
    observed loss whose log-space sd is `eval_log_sd` (None or not a positive number:
    REFERENCE_LOG_SD); `misfit_log_sd`, the law's misfit sd in log loss, adds to both variances."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    sd = math.log(hi / lo) / (2 * z)
    observed = _observed_sd(eval_log_sd) ** 2 + misfit_log_sd ** 2
    return observed / (observed + sd ** 2)


def law_misfit(predicted, observed, weights=None) -> float:
    """The law's misfit sd in log loss on the rows a fit took: the (weighted) rms of log(predicted /
    observed) over them. predicted, observed: (n,) losses of the fit and of the rows (a predicted
    run's: its predicted loss); weights: (n,) the fit's row weights (None: 1), so a prediction
    counts as much as the fit let it. ValueError for no rows or a non-positive loss."""
    predicted, observed = np.asarray(predicted, float).ravel(), np.asarray(observed, float).ravel()
    w = np.ones_like(observed) if weights is None else np.asarray(weights, float).ravel()
    if observed.size == 0 or not ((predicted > 0).all() and (observed > 0).all()):
        raise ValueError("law_misfit needs rows with positive losses")
    r = np.log(predicted / observed)
    return float(np.sqrt(w @ r ** 2 / w.sum()))


def _observed_sd(eval_log_sd) -> float:
    usable = isinstance(eval_log_sd, (int, float)) and math.isfinite(eval_log_sd) and eval_log_sd > 0
    return float(eval_log_sd) if usable else REFERENCE_LOG_SD


def _weight(row: Mapping, misfit_log_sd: float = 0.0) -> float:
    """`prediction_weight` of a predicted row (`is_predicted`), with its measured scatter if any."""
    return prediction_weight(row["predicted_lo"], row["predicted_hi"], row["predicted_level"], row.get("eval_log_sd"),
                             misfit_log_sd)


def is_predicted(row: Mapping) -> bool:
    """Whether a runs row's result is a predicted loss with a usable interval."""
    if row.get("stop_reason") not in PREDICTED_LOSS_REASONS:
        return False
    values = [row.get(k) for k in ("predicted_loss", "predicted_lo", "predicted_hi", "predicted_level")]
    return all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values) and \
        row["predicted_lo"] <= row["predicted_loss"] <= row["predicted_hi"] and row["predicted_level"] < 1


_PLANNED_END = ("best_val_loss", "final_val_loss", "steps", "tokens_seen", "flops", "flops_6n")
"""The columns `as_fitted` changes for a prediction-stopped run."""


def as_fitted(row: Mapping, misfit_log_sd: float = 0.0) -> tuple[Mapping, float]:
    """(row, weight) as a fit reads it. A prediction-stopped run stands for the run it planned:
    its losses (best_val_loss, final_val_loss) become the predicted loss, and its steps, tokens and
    FLOPs those of its planned end (the prediction is the loss *there*), scaled by
    planned_steps/steps; its weight is `prediction_weight` (with `misfit_log_sd`). Any other row:
    itself, weight 1."""
    if not is_predicted(row) or not row.get("steps") or not row.get("planned_steps"):
        return row, 1.0
    scale = row["planned_steps"] / row["steps"]
    out = dict(row, best_val_loss=float(row["predicted_loss"]), final_val_loss=float(row["predicted_loss"]),
               steps=int(row["planned_steps"]))
    for name in ("tokens_seen", "flops", "flops_6n"):
        if isinstance(row.get(name), (int, float)):
            out[name] = row[name] * scale
    return out, _weight(row, misfit_log_sd)


def fitted_columns(cols: Mapping[str, np.ndarray], misfit_log_sd: float = 0.0) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """`as_fitted` over a store's runs columns: (columns, per-row weights or None if every row
    counts fully)."""
    cols = dict(cols)
    if "stop_reason" not in cols:
        return cols, None
    rows = [i for i, reason in enumerate(cols["stop_reason"]) if reason in PREDICTED_LOSS_REASONS]
    if not rows:
        return cols, None
    weights = np.ones(len(cols["stop_reason"]))
    changed = [name for name in _PLANNED_END if name in cols]
    for name in changed:
        cols[name] = np.array(cols[name], dtype=float)  # nulls read as NaN, as numeric_column does
    for i in rows:
        fitted, weights[i] = as_fitted({name: column[i] for name, column in cols.items()}, misfit_log_sd)
        for name in changed:
            cols[name][i] = fitted[name]
    return cols, (weights if (weights < 1).any() else None)


def result_loss(row: Mapping, metric: str = "best_val_loss", misfit_log_sd: float = 0.0) -> tuple[float | None, float]:
    """(loss, weight) a fit takes from a runs row (or a trial's final Tune result): `as_fitted`'s
    `metric` (a prediction-stopped run's predicted loss) and weight (`misfit_log_sd`: as in
    `prediction_weight`)."""
    if is_predicted(row):  # a Tune result has no steps to rescale; the loss is all it needs
        return float(row["predicted_loss"]), _weight(row, misfit_log_sd)
    return row.get(metric), 1.0
