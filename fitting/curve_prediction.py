"""Learning-curve prediction: a run's final loss, with an interval, from the start of its curve.

Three paths (:func:`predict_final_loss`):

* ``power_law`` — before a sweep fit exists: the run's own curve fitted with L(S) = E + A·S^(−α)
  (Kaplan et al. 2020 eq. 1.6 at fixed N, A = S_c^α), extrapolated to the target step. For each
  α on a fine grid, E and A are a linear least-squares fit, so the whole profile over α costs
  one vectorised pass (~1 ms). The interval is the profile of the prediction itself: a value at
  the target is plausible when some (α, E, A) giving it fits within the F threshold (one
  parameter, ``level``) of the best fit; the scatter of one new evaluation adds in quadrature,
  t quantile on n − 3 degrees of freedom; the residual variance is inflated by (1 + ρ)/(1 − ρ),
  ρ ≥ 0 the residuals' lag-1 autocorrelation (real curves misfit in stretches; with independent
  residuals this is ~1). How poorly an early curve pins α dominates the
  extrapolation error, which a delta-method interval at the best α understates (it covered
  ~86 % at 90 % on the synthetic curves of tests/test_curve_prediction.py, against 90–95 %).
* ``lr_schedule`` — the same per-run fit for a run whose learning rate follows a known schedule
  (warmup + cosine decay in trainers/config.py): L(s) = E + A·S1(s)^(−α) + B·η(s), S1 the
  LR-integrated step count Σ_{i<s} η_i/η_max and η(s) the LR of the last update, fitted on the
  points after warmup. This is Tissue et al. 2024 ("Scaling Law with Learning Rate Annealing",
  L = L0 + A·S1^(−α) − C·S2) with their annealing momentum's decay λ = 0, where the annealing
  area S2 = η_max − η(s): the loss follows the LR-weighted progress plus a floor proportional to
  the current LR, so the cosine's final drop is predicted. A power law in plain steps is biased
  low on such curves (it takes warmup's and the first steps' fast fall as the trend): on the 16
  curves of the bench sweep (bench/early_prediction.py) its mean error of the final loss is
  −19 % from 30 % of the curve and −7 % from 50 %, this law's −6.5 % (median −2.3 %) and +0.8 %.
  B (≥ 0) is pinned only as the LR starts to fall, so early in a run the interval is wide.
* ``kaplan_ns`` — with the sweep's fitted L(N, S_min) (a :class:`SweepCurveLaw`): the law's shape
  at the run's N, shifted by the run's mean log residual over the points seen (each run sits a
  little above or below the sweep's surface: seed, data order), with S mapped to S_min through the
  sweep's B_crit(L) (:mod:`fitting.dynamics`) at the curve's own loss. The interval: the law's parameter variance of that
  shifted prediction (delta method with the sweep fit's covariance, when given) plus the run's
  residual variance times (1 + 1/n), t quantile on n − 1 degrees of freedom.

All intervals are for the loss the run will *record* at the target step (its evaluation noise
included). Units: steps are optimizer steps, losses nats/token, batch sizes tokens. Pure numpy/
scipy; no torch, no Ray (``orchestrator`` calls this from its Tune scheduler).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy import optimize, stats

from fitting.dynamics import b_crit_from, min_steps
from fitting.laws import kaplan_ns
from fitting.objective import log_jacobian

__all__ = ["CurvePrediction", "SweepCurveLaw", "predict_final_loss", "MIN_CURVE_POINTS"]

#: Fewest usable curve points (step > 0, finite positive loss) either path predicts from: the
#: per-run law has 3 parameters and its interval needs residual degrees of freedom to spare.
MIN_CURVE_POINTS = 5

_ALPHA_GRID = np.geomspace(0.03, 3.0, 2000)  # exponents in steps; Kaplan's alpha_S is 0.76


@dataclass(frozen=True)
class CurvePrediction:
    """A predicted loss at ``target_step`` with a central ``level`` interval (nats/token)."""

    loss: float  # predicted loss at target_step
    lo: float  # lower end of the `level` interval
    hi: float  # upper end
    level: float  # e.g. 0.9
    method: str  # "power_law", "lr_schedule" (per-run fits) or "kaplan_ns" (the sweep's fitted L(N, S_min))
    n_points: int  # curve points used
    # sd of one evaluation about the fitted curve, in log space (residual sd, dof-corrected): the
    # run's own evaluation scatter, what one observed loss of this run is uncertain by
    eval_log_sd: float | None = None

    @property
    def rel_half_width(self) -> float:
        return (self.hi - self.lo) / (2 * self.loss)


@dataclass(frozen=True)
class SweepCurveLaw:
    """The sweep's fitted L(N, S_min) and what places one run on it.

    ``params``: the ``kaplan_ns`` law's parameters (N_c, alpha_N, S_c, alpha_S; with E for
    ``kaplan_ns+E``). ``N``: the run's non-embedding parameters. ``batch_tokens``: its batch B in
    tokens. ``critical_batch``: the fitted ``critical_batch`` law's ``{"B_star", "alpha_B"}``
    (None: S is used as S_min, as the fit did for runs without a noise scale). ``cov_z``: the
    sweep fit's covariance in the law's transformed parameter space (``FitResult.cov_z``; None: no
    parameter uncertainty). :meth:`from_fit` fills it from a :class:`~fitting.fit.FitResult`."""

    params: Mapping[str, float]
    N: float
    batch_tokens: float
    critical_batch: Mapping[str, float] | None = None
    cov_z: np.ndarray | None = None

    @classmethod
    def from_fit(cls, fit, N: float, batch_tokens: float, critical_batch: Mapping[str, float] | None = None):
        """From a ``kaplan_ns`` :class:`~fitting.fit.FitResult` (its params and covariance)."""
        if not fit.law.name.startswith("kaplan_ns"):
            raise ValueError(f"SweepCurveLaw needs a kaplan_ns fit, got {fit.law.name!r}")
        return cls(dict(fit.params), float(N), float(batch_tokens),
                   None if critical_batch is None else dict(critical_batch), np.array(fit.cov_z))

    @property
    def law(self):
        return kaplan_ns(irreducible="E" in self.params)

    def s_min(self, steps, losses):
        """S_min of each (step, loss) of this run: S/(1 + B_crit(L)/B), or S without B_crit."""
        steps = np.asarray(steps, dtype=float)
        if self.critical_batch is None:
            return steps
        return min_steps(steps, self.batch_tokens, b_crit_from(losses, self.critical_batch))


def _usable(steps, losses) -> tuple[np.ndarray, np.ndarray]:
    """Points a power law in steps can use: step > 0 (S^-α) and a finite positive loss."""
    s = np.asarray(steps, dtype=float).ravel()
    y = np.asarray(losses, dtype=float).ravel()
    if s.shape != y.shape:
        raise ValueError(f"steps ({s.size}) and losses ({y.size}) differ in length")
    ok = (s > 0) & np.isfinite(s) & np.isfinite(y) & (y > 0)
    return s[ok], y[ok]


def _interval(log_mean: float, se_log: float, dof: int, level: float, method: str, n: int,
              eval_log_sd: float) -> CurvePrediction:
    q = stats.t.ppf(0.5 + level / 2, max(dof, 1))
    return CurvePrediction(float(np.exp(log_mean)), float(np.exp(log_mean - q * se_log)),
                           float(np.exp(log_mean + q * se_log)), float(level), method, int(n), float(eval_log_sd))


def _profile_law(x: np.ndarray, y: np.ndarray, xt: float, extra: np.ndarray, extra_t: np.ndarray,
                 level: float, method: str) -> CurvePrediction:
    """y = E + A·x^(−α) + Σ_j B_j·extra_j with a profile interval over α (module docstring).

    x: the curve's time axis (steps, or LR-integrated steps), > 0; extra: (k, n) further columns
    whose coefficients must be ≥ 0 (k = 0 for the plain power law); xt, extra_t: their values at
    the target. E ≥ 0, A > 0: loss falls with x towards a non-negative floor."""
    n, k = y.size, extra.shape[0]
    p = 2 + k  # linear parameters at fixed α
    # One linear least-squares problem per α, all at once: design [1, x^-α, extra] per grid point.
    X = np.empty((_ALPHA_GRID.size, n, p))
    X[:, :, 0] = 1.0
    X[:, :, 1] = x[None, :] ** -_ALPHA_GRID[:, None]
    X[:, :, 2:] = extra.T[None, :, :]
    # centred columns keep the normal equations well conditioned (x^-α spans decades)
    mean = X.mean(axis=1, keepdims=True)
    Xc = (X - mean)[:, :, 1:]
    XcT = Xc.transpose(0, 2, 1)
    inv_gram = np.linalg.inv(XcT @ Xc)  # (G, p-1, p-1)
    ym = y.mean()
    coef = (inv_gram @ (XcT @ (y - ym))[:, :, None])[:, :, 0]  # (G, p-1): A, B_j
    intercept = ym - (mean[:, 0, 1:] * coef).sum(axis=1)  # E
    rss = ((y[None, :] - intercept[:, None] - (X[:, :, 1:] @ coef[:, :, None])[:, :, 0]) ** 2).sum(axis=1)
    usable = (coef[:, 0] > 0) & (intercept >= 0) & (coef[:, 1:] >= 0).all(axis=1)
    if not usable.any():
        usable = coef[:, 0] > 0
    if not usable.any():  # a flat or rising curve: its level is the prediction
        usable = np.ones(rss.size, dtype=bool)
    best = int(np.flatnonzero(usable)[np.argmin(rss[usable])])
    rss_min = rss[best]
    dof = max(n - p - 1, 1)  # α is a parameter too
    # the residual variance as an independent-noise fit would see it, inflated for runs of residuals
    residuals = y - intercept[best] - X[best, :, 1:] @ coef[best]
    eval_log_sd = float(np.sqrt(np.sum((residuals / (y - residuals)) ** 2) / dof))  # r/L̂ ≈ log L − log L̂
    sigma2 = max(rss_min / dof, 1e-12 * ym ** 2) * _inflation(residuals)
    # The profile of the prediction itself: a value v at the target is plausible when some α and
    # linear parameters with that prediction fit within the F threshold of the best fit. At fixed
    # α the least RSS with the prediction pinned to v is rss(α) + (v − pred(α))²/u(α)², u² the
    # unit-variance leverage of the target, so v ranges over pred(α) ± u(α)·sqrt(slack(α)).
    threshold = rss_min + stats.f.ppf(level, 1, dof) * sigma2
    plausible = usable & (rss <= threshold)
    xt_row = np.concatenate([(xt ** -_ALPHA_GRID)[:, None], np.broadcast_to(extra_t, (_ALPHA_GRID.size, k))], axis=1)
    pred = intercept + (xt_row * coef).sum(axis=1)
    d = xt_row - mean[:, 0, 1:]
    unit = np.sqrt(1.0 / n + (d * (inv_gram @ d[:, :, None])[:, :, 0]).sum(axis=1))
    reach = unit * np.sqrt(np.clip(threshold - rss, 0.0, None))
    loss = float(pred[best])
    below = loss - float(np.min((pred - reach)[plausible]))
    above = float(np.max((pred + reach)[plausible])) - loss
    # The final evaluation is itself a noisy observation: its scatter adds in quadrature.
    noise = stats.t.ppf((1 + level) / 2, dof) * np.sqrt(sigma2)
    lo, hi = loss - float(np.hypot(below, noise)), loss + float(np.hypot(above, noise))
    return CurvePrediction(loss=loss, lo=min(lo, loss), hi=max(hi, loss), level=level, method=method, n_points=n,
                           eval_log_sd=eval_log_sd)


def _inflation(r: np.ndarray) -> float:
    """(1 + ρ)/(1 − ρ), ρ the lag-1 autocorrelation of the residuals r clipped to [0, 0.9]: the
    variance of a mean of AR(1) residuals over that of independent ones (n/n_eff). A real curve's
    residuals run in stretches (the law misfits smoothly, and every evaluation uses the same
    validation tokens), so treating them as independent overstates what the curve pins down."""
    r = r - r.mean()
    rho = float(np.clip((r[1:] @ r[:-1]) / max(r @ r, 1e-300), 0.0, 0.9))
    return (1 + rho) / (1 - rho)


def _power_law(s: np.ndarray, y: np.ndarray, target_step: float, level: float) -> CurvePrediction:
    """L(S) = E + A·S^(−α) in optimizer steps (a constant learning rate's curve)."""
    return _profile_law(s, y, float(target_step), np.empty((0, s.size)), np.empty(0), level, "power_law")


def _lr_schedule_law(s: np.ndarray, y: np.ndarray, target_step: float, level: float,
                     lr_schedule: np.ndarray) -> CurvePrediction:
    """L(s) = E + A·S1(s)^(−α) + B·η(s) after warmup (module docstring, ``lr_schedule``)."""
    target = int(target_step)
    eta = np.asarray(lr_schedule, dtype=float).ravel()
    if eta.size < target or not (np.isfinite(eta[:target]).all() and (eta[:target] > 0).all()):
        raise ValueError(f"lr_schedule must hold a positive LR multiplier for each of the {target} steps "
                         f"before the target, got {eta.size} values")
    eta = eta[:target] / eta[:target].max()
    area = np.cumsum(eta)  # area[s - 1] = S1(s): the LR-integrated steps after s updates
    warmup_end = int(np.argmax(eta)) + 1  # steps with a rising LR: not on the decay law
    keep = (s >= warmup_end) & (s <= target)
    if keep.sum() < MIN_CURVE_POINTS:
        raise ValueError(f"too few curve points after warmup (step {warmup_end}) to predict the final loss: "
                         f"{int(keep.sum())} usable evaluations, need at least {MIN_CURVE_POINTS}")
    steps = s[keep].astype(int)
    seen, at_target = eta[steps - 1], eta[target - 1]
    if np.ptp(seen) > 1e-9:
        extra, extra_t = seen[None, :], np.array([at_target])
    elif abs(at_target - seen[0]) <= 1e-9:  # a constant LR: the power law in S1 alone
        extra, extra_t = np.empty((0, steps.size)), np.empty(0)
    else:
        raise ValueError("the LR has been constant over the curve so far but changes before the target: "
                         "the loss's response to it (B) cannot be fitted yet")
    return _profile_law(area[steps - 1], y[keep], float(area[target - 1]), extra, extra_t, level, "lr_schedule")


def _run_curve(sweep: SweepCurveLaw, steps: np.ndarray, offset: float) -> np.ndarray:
    """log L of the run at ``steps`` with L = exp(offset)·L_law(N, S_min(S, L)). S_min depends on
    the loss through B_crit(L), so each L is a fixed point; log L − that is increasing in L (a
    higher loss means a smaller B_crit, a larger S_min, a lower law value): bisection, vectorised.
    Mapping with the curve's own loss rather than the noisy observed one keeps the evaluation
    noise out of S_min (there it would be amplified ~1/alpha_B-fold)."""
    law, theta = sweep.law, sweep.law.as_array(sweep.params)
    N = np.full(steps.size, float(sweep.N))

    def law_log(log_l):
        return np.log(law.predict(theta, {"N": N, "S": sweep.s_min(steps, np.exp(log_l))}))

    if sweep.critical_batch is None:
        return offset + law_log(np.zeros(steps.size))
    lo, hi = np.full(steps.size, np.log(1e-6)), np.full(steps.size, np.log(1e6))
    for _ in range(60):  # 12 decades / 2^60: far below float resolution of log L
        mid = 0.5 * (lo + hi)
        up = mid - offset - law_log(mid) > 0
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    return 0.5 * (lo + hi)


def _sweep_law(s: np.ndarray, y: np.ndarray, target_step: float, level: float, sweep: SweepCurveLaw) -> CurvePrediction:
    law = sweep.law
    ly = np.log(y)
    # the run's offset from the sweep's surface: the shift whose curve has zero mean residual
    # (the mean residual falls as the offset grows, so Brent brackets it)
    offset = optimize.brentq(lambda o: float(np.mean(ly - _run_curve(sweep, s, o))), -3.0, 3.0, xtol=1e-10)
    curve = _run_curve(sweep, np.append(s, float(target_step)), offset)
    r = ly - curve[:-1]
    n = len(y)
    eval_var = float(np.sum(r * r) / (n - 1))
    var = eval_var * (1.0 + 1.0 / n)  # evaluation noise at the target + the offset's
    if sweep.cov_z is not None:
        # d/dz [log L(target) − mean_i log L(s_i)]: the offset cancels what the points share with the target
        smin = sweep.s_min(np.append(s, float(target_step)), np.exp(curve))
        X = {"N": np.full(smin.size, float(sweep.N)), "S": smin}
        J = log_jacobian(law, law.to_z(law.as_array(sweep.params)), X)
        g = J[-1] - J[:-1].mean(axis=0)
        var += float(g @ np.asarray(sweep.cov_z, dtype=float) @ g)
    return _interval(float(curve[-1]), float(np.sqrt(var)), n - 1, level, "kaplan_ns", n, np.sqrt(eval_var))


def predict_final_loss(steps, losses, target_step, *, level=0.9, sweep_law=None, lr_schedule=None) -> CurvePrediction:
    """Predict a run's loss at ``target_step`` from its curve so far.

    steps: 1-D int array of optimizer steps of the evaluations so far (increasing); losses: the
    validation losses there (nats/token); target_step: the step whose loss is wanted (the run's
    planned total). sweep_law: optional :class:`SweepCurveLaw` — when given the prediction uses
    L(N, S_min) fitted across the sweep (method ``kaplan_ns``); otherwise a per-run power law in
    steps (``power_law``), or with ``lr_schedule`` (the LR multiplier of each optimizer step 0 ..
    target_step − 1, any scale: the schedule the run trains on) the per-run law in LR-integrated
    steps with the annealing term, fitted after warmup (``lr_schedule``).
    Points at step 0 or with a non-finite loss are not used.
    Raises ValueError (message names what is missing) when fewer than :data:`MIN_CURVE_POINTS`
    usable points remain, or when ``level`` is not in (0, 1) or ``target_step`` not positive.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if not np.isfinite(target_step) or target_step <= 0:
        raise ValueError(f"target_step must be a positive step, got {target_step!r}")
    s, y = _usable(steps, losses)
    if s.size < MIN_CURVE_POINTS:
        raise ValueError(f"too few curve points to predict the final loss: {s.size} usable evaluations "
                         f"(step > 0, finite loss) of {np.size(steps)}, need at least {MIN_CURVE_POINTS}")
    if sweep_law is not None:
        return _sweep_law(s, y, target_step, level, sweep_law)
    if lr_schedule is not None:
        return _lr_schedule_law(s, y, target_step, level, lr_schedule)
    return _power_law(s, y, target_step, level)
