"""Replay a design strategy against runs that already exist (or a simulated oracle).

:func:`run_design` is the budgeted buy-reveal-refit loop shared by ``scalesweep replay``, the
tests and ``bench/active_vs_grid.py``: the strategy picks candidates, the *reveal* callback
returns their losses (a pool lookup, or an oracle that simulates training), the
:class:`~fitting.online.OnlineFitter` refits, until nothing affordable is left. Every strategy
ends with the same full multi-start refit, so strategies are compared on equal footing.

``scalesweep replay POOL.csv --targets TARGETS.csv --law chinchilla --budget-fraction 0.1 ...``
(the command: :mod:`fitting.replay_cli`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from fitting.cost import affordable
from fitting.design import Candidates, DesignState, TargetRegion
from fitting.fit import FitResult
from fitting.laws import get_law
from fitting.online import OnlineFitConfig, OnlineFitter
from fitting.strategies import Strategy

__all__ = ["DesignRun", "SimulatedOracle", "undertraining_misfit", "run_design", "target_metrics"]


@dataclass
class DesignRun:
    """Outcome of one budgeted design: what was bought, at what cost, and the final fit. ``seeded``:
    the runs a strategy that needs a fit bought as its seed design (before its first fit, and up to
    an explicit seed size)."""

    bought: list[int]
    spent: float
    budget: float
    fit: FitResult | None
    fitter: OnlineFitter
    seeded: int = 0


def run_design(law, candidates: Candidates, reveal: Callable[[np.ndarray], np.ndarray], strategy: Strategy,
               budget: float, target: TargetRegion | None = None, *, batch: int = 1, seed: int = 0,
               fit_config: OnlineFitConfig | None = None, noise_floor: float = 0.01) -> DesignRun:
    """Buy candidates with ``strategy`` until ``budget`` is spent; return the final fit.

    ``reveal(idx) -> losses`` (NaN marks a failed run: paid for, not fitted). ``noise_floor``: the
    least run-to-run scatter (log loss) the design assumes, whatever the fit's residuals say."""
    law = get_law(law)
    if len(candidates) == 0:
        raise ValueError("empty candidate pool")
    if not affordable(candidates.cost.min(), budget, budget):
        raise ValueError(f"budget {budget:.4g} is below the cheapest candidate's cost {candidates.cost.min():.4g}")
    target = target or TargetRegion.largest_planned(candidates)
    fitter = OnlineFitter(law, fit_config or OnlineFitConfig(seed=seed))
    state = DesignState(law=law, candidates=candidates, target=target, taken=np.zeros(len(candidates), dtype=bool),
                        budget_total=float(budget), budget_left=float(budget), rng=np.random.default_rng(seed),
                        noise_floor=noise_floor)
    needs_fit = getattr(strategy, "needs_fit", False)
    bought: list[int] = []
    seeded = 0
    while True:
        seeding = needs_fit and strategy.seeding(state)
        picks = strategy.select(state, batch)
        if not picks:
            break
        seeded += len(picks) if seeding else 0
        idx = np.asarray(picks, dtype=int)
        losses = np.asarray(reveal(idx), dtype=float)
        state.taken[idx] = True
        state.budget_left -= float(candidates.cost[idx].sum())
        bought.extend(int(i) for i in idx)
        fitter.add_many(candidates.rows(idx), losses, run_ids=[str(i) for i in idx])
        if needs_fit:
            state.fit = fitter.fit
    fit = fitter.final_fit()
    return DesignRun(bought=bought, spent=float(budget - state.budget_left), budget=float(budget), fit=fit,
                     fitter=fitter, seeded=seeded)


@dataclass
class SimulatedOracle:
    """A known loss surface plus multiplicative log-normal noise: "training" without training.

    ``misfit`` (optional): a function of the inputs giving how far (in log loss) the truth strays
    from the law, e.g. :func:`undertraining_misfit`; None makes the law exactly true."""

    law: object
    params: Mapping[str, float]
    noise: float = 0.015  # sd of log loss (≈ 1.5 % run-to-run scatter)
    seed: int = 0
    misfit: Callable[[Mapping[str, np.ndarray]], np.ndarray] | None = None

    def __post_init__(self):
        self.law = get_law(self.law)
        self._rng = np.random.default_rng(self.seed)

    def truth(self, X) -> np.ndarray:
        mu = self.law.predict(self.params, X)
        return mu if self.misfit is None else mu * np.exp(self.misfit(X))

    def observe(self, X) -> np.ndarray:
        mu = self.truth(X)
        return mu * np.exp(self.noise * self._rng.standard_normal(mu.shape))

    def observe_rows(self, candidates: Candidates) -> Callable[[np.ndarray], np.ndarray]:
        """A ``reveal`` for :func:`run_design`: one noisy outcome per candidate, drawn now, so
        every strategy replayed against it sees the same run give the same loss."""
        y = self.observe(candidates.X)
        return lambda idx: y[np.asarray(idx)]


def undertraining_misfit(amplitude: float = 0.02, knee: float = 2.5) -> Callable[[Mapping[str, np.ndarray]], np.ndarray]:
    """The misfit the Epoch Chinchilla runs show against their own Chinchilla fit: runs with few
    tokens per parameter read high (residuals of runs with D/N < e average +0.9 %, sd 1.7 %;
    with D/N > e^2.5 they are flat, sd 0.4 %). Modelled as amplitude·(1 − ln(D/N)/knee)² log
    loss below D/N = e^knee (≈ 12), zero above: +2 % at D/N = 1, +0.7 % at D/N = e."""

    def misfit(X):
        tokens_per_param = np.log(np.asarray(X["D"], dtype=float) / np.asarray(X["N"], dtype=float))
        return amplitude * np.clip(1.0 - tokens_per_param / knee, 0.0, None) ** 2

    return misfit


def target_metrics(pred: np.ndarray, truth: np.ndarray, lower=None, upper=None) -> dict[str, float]:
    """R² (of loss), mean absolute relative error and, with bounds, interval coverage."""
    pred, truth = np.asarray(pred, dtype=float), np.asarray(truth, dtype=float)
    ss_tot = float(((truth - truth.mean()) ** 2).sum())
    out = {
        "r2": float(1 - ((pred - truth) ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
        "mean_are": float(np.mean(np.abs(pred / truth - 1))),
    }
    if lower is not None and upper is not None:
        out["coverage"] = float(np.mean((truth >= lower) & (truth <= upper)))
    return out
