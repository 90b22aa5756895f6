"""The steps-vs-batch trade-off of runs that differ only in batch size (issue 12 item 5).

McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", eq. 2.11 (Kaplan et al.
2020, fig. 11): to reach a given loss, the optimizer steps S and the training tokens E = B·S of
runs at batch B obey

    S/S_min − 1 = (E/E_min − 1)^−1,   equivalently   S = S_min·(1 + B_crit/B),  E = E_min·(1 + B/B_crit),

with B_crit = E_min/S_min (tokens). So S is linear in 1/B: S = S_min + E_min/B, and a weighted
linear least-squares fit of each run's S against 1/B gives S_min (intercept), E_min (slope) and
B_crit = E_min/S_min, an estimate of the critical batch that does not use the gradient noise
scale (the ``grad_noise_scale`` curve column), against which that estimate can be checked.

Units: batch B in tokens, S in optimizer steps, E in tokens. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

__all__ = ["BatchTradeoff", "steps_to_loss", "fit_batch_tradeoff", "tradeoff_from_curves"]


@dataclass(frozen=True)
class BatchTradeoff:
    target_loss: float  # the loss every run had to reach (nats/token)
    s_min: float  # fewest optimizer steps to reach it (infinite batch)
    e_min: float  # fewest training tokens to reach it (batch → 0)
    b_crit: float  # E_min / S_min, tokens
    batch_tokens: np.ndarray  # the runs' B
    steps: np.ndarray  # the runs' measured S to reach target_loss
    n_unreached: int = 0  # runs left out: they never reached target_loss

    def predicted_steps(self, batch_tokens) -> np.ndarray:
        """S(B) = S_min·(1 + B_crit/B) for batch sizes in tokens."""
        return self.s_min * (1.0 + self.b_crit / np.asarray(batch_tokens, dtype=float))


def steps_to_loss(steps, losses, target_loss: float) -> float:
    """The (fractional) optimizer step at which a curve first reaches `target_loss`: its
    evaluations' best non-increasing fit (isotonic least squares: noise neither crosses twice nor,
    as a running minimum would, reaches the target early), interpolated linearly in log step
    between the two evaluations that bracket the target.
    NaN if the curve never reaches it; the first evaluation's step if it starts below it."""
    steps, losses = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
    finite = np.isfinite(losses) & (steps > 0)
    steps, losses = steps[finite], losses[finite]
    if steps.size == 0:
        return float("nan")
    order = np.argsort(steps)
    steps, best = steps[order], _decreasing_fit(losses[order])
    hit = np.flatnonzero(best <= target_loss)
    if hit.size == 0:
        return float("nan")
    i = int(hit[0])
    if i == 0:
        return float(steps[0])
    l0, l1 = best[i - 1], best[i]
    t = (l0 - target_loss) / (l0 - l1)
    return float(np.exp(np.log(steps[i - 1]) + t * (np.log(steps[i]) - np.log(steps[i - 1]))))


def _decreasing_fit(y: np.ndarray) -> np.ndarray:
    """Least-squares non-increasing sequence closest to `y` (pool adjacent violators)."""
    values, counts = [], []
    for v in y:
        values.append(float(v))
        counts.append(1)
        while len(values) > 1 and values[-2] < values[-1]:  # a rise: pool it with the block before
            total = values[-2] * counts[-2] + values[-1] * counts[-1]
            counts[-2] += counts[-1]
            values[-2] = total / counts[-2]
            values.pop(), counts.pop()
    return np.repeat(values, counts)


def fit_batch_tradeoff(batch_tokens, steps, target_loss: float = float("nan")) -> BatchTradeoff:
    """Fit S = S_min + E_min/B to runs' (B in tokens, S in steps to the target loss).

    Runs whose S is NaN (never reached the target) are left out and counted (`n_unreached`).
    Least squares in relative error (each run weighted by 1/S², so small-batch runs with many
    steps do not dominate). Raises ValueError when fewer than two distinct batch sizes reached the
    target, or when the fit is not a trade-off (S_min or E_min not positive: S did not fall as B
    grew)."""
    B, S = np.asarray(batch_tokens, dtype=float), np.asarray(steps, dtype=float)
    ok = np.isfinite(B) & np.isfinite(S) & (B > 0) & (S > 0)
    unreached = int((~ok).sum())
    B, S = B[ok], S[ok]
    if np.unique(B).size < 2:
        raise ValueError(f"batch trade-off: {np.unique(B).size} distinct batch_tokens reached the target loss "
                         f"{target_loss:g}; need at least 2")
    A = np.stack([np.ones_like(B), 1.0 / B], axis=1) / S[:, None]
    (s_min, e_min), *_ = np.linalg.lstsq(A, np.ones_like(S), rcond=None)
    if not (s_min > 0 and e_min > 0):
        raise ValueError(f"batch trade-off: S = {s_min:.3g} + {e_min:.3g}/B is not a trade-off (S_min and E_min "
                         f"must be positive: steps to loss {target_loss:g} must fall as the batch grows)")
    return BatchTradeoff(float(target_loss), float(s_min), float(e_min), float(e_min / s_min), B, S, unreached)


def tradeoff_from_curves(curves: Mapping[float, tuple[Iterable, Iterable]], target_loss: float | None = None
                         ) -> BatchTradeoff:
    """The trade-off of runs at one N and D that differ in batch: ``curves`` maps each run's
    batch_tokens to its (steps, val_losses). ``target_loss`` None: the highest of the runs' best
    losses (the lowest loss every run reached)."""
    curves = {float(b): (np.asarray(s, dtype=float), np.asarray(l, dtype=float)) for b, (s, l) in curves.items()}
    if target_loss is None:
        target_loss = max(float(np.nanmin(l)) for _, l in curves.values())
    batches = np.array(sorted(curves))
    steps = np.array([steps_to_loss(*curves[b], target_loss) for b in batches])
    return fit_batch_tradeoff(batches, steps, target_loss)
