"""Ranking runs by predicted time: the throughput model recovers a known rate law and never
extrapolates, strategies rank by score_cost while budgets stay in FLOPs, and the active
searcher learns throughput from finished trials and keeps it across save/restore."""

import numpy as np
import pytest

from fitting.cost import ThroughputModel
from fitting.design import Candidates, DesignState, TargetRegion
from fitting.fit import fit_law
from fitting.laws import CHINCHILLA_EPOCH, chinchilla
from fitting.replay import SimulatedOracle
from fitting.strategies import ActiveDesign, CheapestFirst


def test_throughput_model_recovers_a_power_law_and_clamps_outside_the_measured_sizes():
    rng = np.random.default_rng(0)
    N = np.exp(rng.uniform(np.log(1e6), np.log(1e9), 40))
    flops = 6 * N * 1e9
    rate = 2e10 * (N / 1e6) ** 0.35 * np.exp(0.05 * rng.standard_normal(N.size))
    model = ThroughputModel.fit(N, flops, flops / rate)
    assert model.slope == pytest.approx(0.35, abs=0.03)
    assert model.rate(1e6) == pytest.approx(2e10, rel=0.05)
    # beyond the largest measured model the rate plateaus instead of growing without bound
    assert model.rate(1e12) == pytest.approx(model.rate(N.max()), rel=1e-12)
    assert model.seconds([1e8], [1e18])[0] == pytest.approx(1e18 / model.rate(1e8))
    one = ThroughputModel.fit([1e6, 1e6], [1e15, 2e15], [10.0, 20.0])
    assert one.slope == 0.0 and one.rate(1e9) == pytest.approx(1e14)
    with pytest.raises(ValueError, match="no finished run"):
        ThroughputModel.fit([1e6], [1e15], [0.0])


def _state(score_cost=None):
    N, D = np.meshgrid(np.geomspace(1e7, 1e9, 6), np.geomspace(3e8, 1e11, 6), indexing="ij")
    cands = Candidates.from_columns({"N": N.ravel(), "D": D.ravel()})
    rng = np.random.default_rng(0)
    seen = rng.choice(len(cands), 10, replace=False)
    X = cands.rows(seen)
    fit = fit_law("chinchilla", X | {"loss": SimulatedOracle("chinchilla", CHINCHILLA_EPOCH).observe(X)},
                  starts=(), init=CHINCHILLA_EPOCH, loss="ls")
    taken = np.zeros(len(cands), dtype=bool)
    taken[seen] = True
    budget = 0.05 * cands.cost.sum()
    return DesignState(chinchilla, cands, TargetRegion.compute_frontier("chinchilla", CHINCHILLA_EPOCH, 1e22),
                       taken, budget, budget, fit, score_cost=score_cost)


def test_strategies_rank_by_score_cost_but_spend_budget_in_flops():
    base = _state()
    first, second = ActiveDesign(discrepancy=False).select(base, 2)
    # make the runner-up nearly free to run (cost^¼ a thousandth): it is ranked first
    score_cost = base.candidates.cost.copy()
    score_cost[second] *= 1e-12
    assert ActiveDesign(discrepancy=False).select(_state(score_cost), 1) == [second]
    assert CheapestFirst().select(_state(score_cost), 1) == [second]
    # ... but budget is FLOPs: a run cheap to rank yet unaffordable is never bought
    pricey = int(np.argmax(np.where(base.taken, -np.inf, base.candidates.cost)))
    assert base.candidates.cost[pricey] > base.budget_left
    score_cost = base.candidates.cost.copy()
    score_cost[pricey] = 1e-30
    picks = CheapestFirst().select(_state(score_cost), 5)
    assert pricey not in picks and base.candidates.cost[picks].sum() <= base.budget_left
