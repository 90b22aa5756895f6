"""Learning-curve prediction: a run's final loss, with an interval, from the start of its curve.

Two routes (Kaplan et al. 2020 §5):

- ``power_law`` (no sweep fit yet): the run's own curve fitted as L(S) = L_inf + A·S^(−α),
  the form eq. (1.6) takes at fixed N with S_min ∝ S. The interval is a profile over α: every
  α whose residual sum of squares passes the F test (one parameter, `level`) against the best
  one is plausible, and the interval is the profile of the prediction over α and (L_inf, A)
  together, widened by the scatter of one new evaluation. Extrapolation error is dominated by how poorly
  the early curve pins α, which is what the profile measures; a Wald interval at the best α
  alone is far too narrow.
- ``kaplan_ns`` (a sweep fit exists): L(N, S_min) = (N_c/N)^α_N + (S_c/S_min)^α_S fitted across
  the sweep (`SweepCurveLaw`), with S_min = S/(1 + B_crit(L)/B) when a critical-batch law is
  given. The run's own points fix one multiplicative offset (its loss level relative to the
  sweep's law, in log space); the interval adds the run's scatter around the shifted law, the
  offset's uncertainty and the law's stated misfit.

Pure numpy; units: steps are optimizer steps, batch sizes and B_crit in tokens, losses in nats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from scipy import stats

from fitting.allocate import critical_batch, s_min

__all__ = ["MIN_CURVE_POINTS", "CurvePrediction", "SweepCurveLaw", "predict_final_loss"]

MIN_CURVE_POINTS = 4
"""Fewest evaluations a prediction is made from: three parameters (L_inf, A, α) and one residual."""

_ALPHA_GRID = np.geomspace(0.03, 3.0, 2000)  # exponents in steps; Kaplan's α_S is 0.76


@dataclass(frozen=True)
class CurvePrediction:
    """A predicted loss at a target step with its interval."""

    loss: float
    """Predicted loss at the target step (nats)."""
    lo: float
    """Lower end of the ``level`` interval."""
    hi: float
    """Upper end of the ``level`` interval."""
    level: float
    """Interval coverage, e.g. 0.9."""
    method: str
    """``power_law`` (the run's own curve) or ``kaplan_ns`` (the sweep's fitted L(N, S_min))."""
    n_points: int
    """Curve points used."""

    @property
    def rel_half_width(self) -> float:
        """Half the interval's width relative to the prediction."""
        return (self.hi - self.lo) / (2 * self.loss)


@dataclass(frozen=True)
class SweepCurveLaw:
    """The sweep's fitted L(N, S_min) (Kaplan eq. 1.6), as one run sees it."""

    params: Mapping[str, float]
    """Fitted ``kaplan_ns`` parameters: N_c, alpha_N, S_c, alpha_S (optionally E)."""
    non_embedding_params: float
    """N of the run."""
    batch_tokens: float
    """The run's batch size B in tokens."""
    critical_batch_params: Mapping[str, float] | None = None
    """Fitted ``critical_batch`` parameters (B_star, alpha_B); None: S is used as S_min."""
    misfit_sd: float = 0.0
    """The law's misfit as a standard deviation of log loss (added to the interval)."""
    extra: Mapping[str, float] = field(default_factory=dict)

    def loss_at(self, steps: np.ndarray, losses: np.ndarray | None = None) -> np.ndarray:
        """The law's loss at ``steps``; S_min uses B_crit at ``losses`` when given (observed
        points) or at the law's own loss there (a fixed point, three iterations)."""
        p = self.params
        steps = np.asarray(steps, dtype=float)
        level = (p["N_c"] / self.non_embedding_params) ** p["alpha_N"] + p.get("E", 0.0)

        def law(s_minimum):
            return level + (p["S_c"] / s_minimum) ** p["alpha_S"]

        if not self.critical_batch_params:
            return law(steps)
        b = self.critical_batch_params
        loss = np.asarray(losses, dtype=float) if losses is not None else law(steps)
        for _ in range(1 if losses is not None else 3):
            loss_new = law(s_min(steps, self.batch_tokens, critical_batch(loss, b["B_star"], b["alpha_B"])))
            if losses is None:
                loss = loss_new
        return loss_new


def predict_final_loss(steps, losses, target_step, *, level: float = 0.9,
                       sweep_law: SweepCurveLaw | None = None) -> CurvePrediction:
    """Predict the loss at ``target_step`` from a run's evaluations so far.

    steps: 1-D optimizer steps of the evaluations (increasing); losses: validation losses there
    (nats); target_step: the step whose loss is wanted (the run's planned last step).
    sweep_law: the sweep's fitted L(N, S_min) for this run; None: the run's own power law.

    Raises ValueError when fewer than MIN_CURVE_POINTS finite points exist, when the steps are
    not positive and increasing, or when ``level`` is not in (0, 1).
    """
    steps = np.asarray(steps, dtype=float).ravel()
    losses = np.asarray(losses, dtype=float).ravel()
    if steps.shape != losses.shape:
        raise ValueError(f"steps and losses differ in length ({steps.size} vs {losses.size})")
    if not 0 < level < 1:
        raise ValueError(f"level: must be in (0, 1), got {level}")
    ok = np.isfinite(steps) & np.isfinite(losses) & (losses > 0)
    steps, losses = steps[ok], losses[ok]
    if steps.size < MIN_CURVE_POINTS:
        raise ValueError(f"{steps.size} finite curve points; a prediction needs at least {MIN_CURVE_POINTS}")
    if steps[0] <= 0 or np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be positive and increasing")
    if sweep_law is not None:
        return _predict_with_sweep_law(steps, losses, float(target_step), level, sweep_law)
    return _predict_power_law(steps, losses, float(target_step), level)


def _predict_power_law(steps, losses, target, level) -> CurvePrediction:
    """L(S) = L_inf + A·S^(−α); profile interval over α (module docstring)."""
    n = steps.size
    # One linear least-squares problem per α, all at once: design [1, S^-α] per grid point.
    x = steps[None, :] ** -_ALPHA_GRID[:, None]  # (G, n)
    xm = x.mean(axis=1, keepdims=True)
    ym = losses.mean()
    sxx = ((x - xm) ** 2).sum(axis=1)
    slope = ((x - xm) * (losses - ym)).sum(axis=1) / sxx  # A
    intercept = ym - slope * xm[:, 0]  # L_inf
    rss = ((losses[None, :] - intercept[:, None] - slope[:, None] * x) ** 2).sum(axis=1)
    usable = (slope > 0) & (intercept >= 0)  # loss falls with steps towards a non-negative floor
    if not usable.any():
        usable = slope > 0
    if not usable.any():  # a flat or rising curve: its level is the prediction
        usable = np.ones_like(slope, dtype=bool)
    rss_min = rss[usable].min()
    dof = max(n - 3, 1)
    sigma2 = max(rss_min / dof, 1e-12 * ym ** 2)
    # The profile of the prediction itself: a value v at the target is plausible when some α and
    # (L_inf, A) with that prediction fit within the F threshold of the best fit. At fixed α the
    # least RSS with the prediction pinned to v is rss(α) + (v − pred(α))²/u(α)², u² the
    # unit-variance leverage of the target, so v ranges over pred(α) ± u(α)·sqrt(slack(α)).
    threshold = rss_min + stats.f.ppf(level, 1, dof) * sigma2
    plausible = usable & (rss <= threshold)
    xt = target ** -_ALPHA_GRID
    pred = intercept + slope * xt
    unit = np.sqrt(1.0 / n + (xt - xm[:, 0]) ** 2 / sxx)
    reach = unit * np.sqrt(np.clip(threshold - rss, 0.0, None))
    best = int(np.flatnonzero(usable)[np.argmin(rss[usable])])
    loss = float(pred[best])
    below = loss - float(np.min((pred - reach)[plausible]))
    above = float(np.max((pred + reach)[plausible])) - loss
    # The final evaluation is itself a noisy observation: its scatter adds in quadrature.
    noise = stats.t.ppf((1 + level) / 2, dof) * np.sqrt(sigma2)
    lo, hi = loss - float(np.hypot(below, noise)), loss + float(np.hypot(above, noise))
    return CurvePrediction(loss=loss, lo=min(lo, loss), hi=max(hi, loss), level=level, method="power_law",
                           n_points=n)


def _predict_with_sweep_law(steps, losses, target, level, law: SweepCurveLaw) -> CurvePrediction:
    """The sweep's law shifted by the run's own log offset (module docstring)."""
    expected = law.loss_at(steps, losses)
    residual = np.log(losses) - np.log(expected)
    offset = float(residual.mean())
    n = steps.size
    scatter = float(residual.std(ddof=1)) if n > 1 else 0.0
    # The last points say most about where the run is heading; weight nothing, but let the
    # interval carry the offset's standard error, the point scatter and the law's misfit.
    sd = np.sqrt(scatter ** 2 * (1 + 1 / n) + law.misfit_sd ** 2)
    loss = float(law.loss_at(np.array([target]))[0] * np.exp(offset))
    z = stats.t.ppf((1 + level) / 2, max(n - 1, 1))
    return CurvePrediction(loss=loss, lo=loss * float(np.exp(-z * sd)), hi=loss * float(np.exp(z * sd)),
                           level=level, method="kaplan_ns", n_points=n)
