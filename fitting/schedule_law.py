"""A run's final loss from a learning-curve law fitted jointly to the runs of its model size.

Tissue et al. 2024 ("Scaling Law with Learning Rate Annealing", eq. 1): a model's validation loss
after s updates of any LR schedule η is

    L(s) = L0 + A·S1(s)^(−α) − C·S2(s),
    S1(s) = Σ_{i<s} η_i / η_max                      (forward area: LR-weighted progress)
    S2(s) = Σ_{i<s} m_i,  m_i = λ·m_{i−1} + (η_{i−1} − η_i)/η_max   (annealing area, momentum λ)

with (L0, A, α, C) properties of the model and data, not of the schedule. Runs of one sweep with
the same N but different D train the same model on warmup + cosine schedules of different lengths:
the shorter ones finish first, and their ends carry the annealing drop that a longer run stopped at
30 % of its steps has not reached. :func:`joint_prediction` fits the law to all such curves at
once — the run's own evaluations so far and those of the same-N runs as far as they have got —
and predicts the run's loss at its planned last step: its own early curve pins L0 + A·S1^(−α) on
its own data order, the finished runs pin C and λ.

Fitting: for each (α, λ) on a grid the law is linear in (L0, A, C), solved by non-negative least
squares in loss over the points after each curve's warmup; the (α, λ) of least squared error wins.
``offsets`` gives each curve its own L0 (a seed's or a data order's constant shift) — the shared L0
is then the predicted run's. The interval is calibrated, not modelled: the same joint fit
predicts each finished same-N run from the evaluations it had made at the run's own fraction of
its steps (the others as they are now), and the half-width is t·rms of those log errors, t on
as many degrees of freedom as errors, the `level` quantile (fewer than :data:`MIN_CALIBRATION`
finished same-N runs: ValueError, no stop without evidence).
``amplitudes`` instead fits the runs of one *schedule* across N: α, λ, C shared, L0 and A per curve.

Measured (bench/early_rules.py, causal replay on the 48 stored runs of /work/earlybench4; rms
error of the final loss from 30 / 50 / 70 % of a run): same-N joint fit 11.4 / 8.0 / 5.4 %, one
shared L0 9.0 / 6.7 / 4.6 %, ``amplitudes`` 4.4 / 3.2 / 2.3 % — better than the run's own curve
(50.7 / 9.4 / 2.5 %, one wild fit at 30 %) but worse than the shared-curve rule
(`fitting.reference_curves`: 2.0 / 1.0 / 0.5 %). Why: the same-N runs that finish before a long
run's decision are its shorter-schedule siblings, whose forward area S1 never reaches the S1 the
long run must be extrapolated to (a 1538-step run at 30 % is at S1 ≈ 404 of its final 843; its 769-step sibling
ends at S1 ≈ 420), so they pin the annealing term but not the power law's reach; and the law
misfits these tiny models' curves by ~1 % rms (plateaus and bumps that the same-schedule runs share
— they see the same data in the same order — and the shared-curve rule copies). Not wired into
sweeps. Units: steps are optimizer steps, losses nats/token; η any scale (normalised to its peak).
Pure numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import optimize, stats

from fitting.curve_prediction import CurvePrediction

__all__ = ["Curve", "fit_joint", "joint_prediction", "schedule_areas", "MIN_CALIBRATION"]

ALPHAS = np.geomspace(0.05, 2.0, 40)
LAMBDAS = (0.0, 0.9, 0.97, 0.99, 0.995)
MIN_CALIBRATION = 2
"""Fewest finished same-N runs whose errors calibrate the interval."""


@dataclass(frozen=True)
class Curve:
    """One run's evaluations so far: steps (increasing, optimizer steps), validation losses
    (nats/token), and its LR multiplier at each update 0 .. planned − 1 (`lr`, len = planned
    steps; the last update's LR is lr[s − 1] after s steps)."""

    steps: np.ndarray
    losses: np.ndarray
    lr: np.ndarray

    @property
    def planned(self) -> int:
        return int(self.lr.size)

    def upto(self, step: float) -> "Curve":
        keep = self.steps <= step
        return Curve(self.steps[keep], self.losses[keep], self.lr)


def schedule_areas(lr: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(S1, S2) after s = 1 .. len(lr) updates, eq. 1 of Tissue et al. 2024 (module docstring);
    lr normalised to its peak. Shapes (len(lr),); index s − 1 holds the value after s updates."""
    eta = np.asarray(lr, float) / np.max(lr)
    s1 = np.cumsum(eta)
    drop = np.diff(eta, prepend=eta[0]) * -1.0  # η_{i−1} − η_i, 0 at i = 0
    m = np.empty_like(eta)
    acc = 0.0
    for i, d in enumerate(drop):
        acc = lam * acc + d
        m[i] = acc
    return s1, np.cumsum(m)


def _points(curve: Curve, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S1, S2, loss) of a curve's evaluations after its warmup (the LR's peak)."""
    s1, s2 = schedule_areas(curve.lr, lam)
    warm = int(np.argmax(curve.lr)) + 1
    keep = (curve.steps >= warm) & (curve.steps <= curve.planned) & np.isfinite(curve.losses) & (curve.losses > 0)
    at = curve.steps[keep].astype(int) - 1
    return s1[at], s2[at], curve.losses[keep]


@dataclass(frozen=True)
class JointFit:
    """The law's parameters (α, λ, C, A, each curve's L0) and its rms residual (nats/token)."""

    alpha: float
    lam: float
    A: np.ndarray
    C: float
    L0: np.ndarray
    rms: float

    def predict(self, curve_index: int, lr: np.ndarray, step: int) -> float:
        s1, s2 = schedule_areas(lr, self.lam)
        return float(self.L0[curve_index] + self.A[curve_index] * s1[step - 1] ** -self.alpha - self.C * s2[step - 1])


def fit_joint(curves: Sequence[Curve], offsets: bool = True, weights: Sequence[float] | None = None,
              amplitudes: bool = False) -> JointFit:
    """Least-squares fit of the law (module docstring) to `curves` jointly: α, λ, A, C shared,
    L0 per curve with `offsets` (else shared). weights: per curve, on its squared residuals
    (None: 1). Raises ValueError when the curves hold fewer points after warmup than parameters + 2."""
    weights = np.ones(len(curves)) if weights is None else np.asarray(weights, float)
    best = None
    for lam in LAMBDAS:
        pts = [_points(c, lam) for c in curves]
        n = sum(p[2].size for p in pts)
        k = (len(curves) if offsets else 1) + (len(curves) if amplitudes else 1) + 1
        if n < k + 3:
            raise ValueError(f"{n} curve points after warmup, need at least {k + 3} to fit the joint law")
        s1 = np.concatenate([p[0] for p in pts])
        s2 = np.concatenate([p[1] for p in pts])
        y = np.concatenate([p[2] for p in pts])
        w = np.sqrt(np.concatenate([np.full(p[2].size, wi) for p, wi in zip(pts, weights)]))
        which = np.concatenate([np.full(p[2].size, j) for j, p in enumerate(pts)])
        base = np.eye(len(curves))[which] if offsets else np.ones((y.size, 1))
        for alpha in ALPHAS:
            power = (np.eye(len(curves))[which] if amplitudes else np.ones((y.size, 1))) * (s1 ** -alpha)[:, None]
            X = np.column_stack([base, power, -s2]) * w[:, None]
            coef, resid = optimize.nnls(X, y * w)
            if best is None or resid < best[0]:
                best = (resid, alpha, lam, coef, n, k)
    resid, alpha, lam, coef, n, k = best
    L0 = coef[:len(curves)] if offsets else np.full(len(curves), coef[0])
    A = coef[-1 - len(curves):-1] if amplitudes else np.full(len(curves), coef[-2])
    return JointFit(float(alpha), float(lam), A, float(coef[-1]), L0,
                    float(resid / np.sqrt(max(n - k - 2, 1))))


def _predict_log(run: Curve, others: Sequence[Curve], offsets: bool, amplitudes: bool) -> float:
    fit = fit_joint([run, *others], offsets, amplitudes=amplitudes)
    return float(np.log(fit.predict(0, run.lr, run.planned)))


def joint_prediction(run: Curve, others: Sequence[Curve], *, level: float = 0.9,
                     offsets: bool = True, amplitudes: bool = False) -> CurvePrediction:
    """Predicted loss of `run` at its planned last step from the joint law fitted to it and the
    same-N curves `others` (finished ones whole, running ones as far as they have got), method
    ``joint_schedule``; interval calibrated on the finished others (module docstring). Raises
    ValueError with too few points or fewer than :data:`MIN_CALIBRATION` finished others."""
    log_loss = _predict_log(run, others, offsets, amplitudes)
    fraction = run.steps[-1] / run.planned
    finished = [j for j, c in enumerate(others) if c.steps.size and c.steps[-1] >= c.planned]
    errors = []
    for j in finished:
        ref = others[j]
        rest = [run, *(c for i, c in enumerate(others) if i != j)]
        try:
            errors.append(_predict_log(ref.upto(fraction * ref.planned), rest, offsets, amplitudes) - np.log(ref.losses[-1]))
        except ValueError:
            continue
    if len(errors) < MIN_CALIBRATION:
        raise ValueError(f"{len(errors)} finished runs among the others calibrate the interval, need at least {MIN_CALIBRATION}")
    errors = np.array(errors)
    half = float(stats.t.ppf(0.5 + level / 2, errors.size) * np.sqrt(np.mean(errors ** 2)))
    fit = fit_joint([run, *others], offsets, amplitudes=amplitudes)
    return CurvePrediction(loss=float(np.exp(log_loss)), lo=float(np.exp(log_loss - half)),
                           hi=float(np.exp(log_loss + half)), level=float(level), method="joint_schedule",
                           n_points=int(run.steps.size), eval_log_sd=fit.rms / float(np.exp(log_loss)))
