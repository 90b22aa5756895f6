"""The active designer on tiny and degenerate candidate sets, without Ray: 0, 1, 2 and 4
candidates, all taken, budgets below the cheapest run or between the seed's share and the
cheapest run, duplicate candidates, a single N or a single D. The invariant everywhere: no
crash, every pick is free and affordable, and the designer stops only when no free run fits the
budget left. Then the sweep's ActiveSearcher on the 2 x 2 and 3 x 3 grids of the issue: it ends
with a stop reason and says why the law could not be fitted, also after a restore (--resume)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ray.tune.search import Searcher

from fitting.cost import affordable
from fitting.design import Candidates, DesignState, TargetRegion, design_coordinates, seed_design
from fitting.laws import CHINCHILLA_EPOCH, get_law
from fitting.online import OnlineFitConfig, OnlineFitter
from fitting.replay import SimulatedOracle
from fitting.strategies import STRATEGIES, ActiveDesign, make_strategy
from orchestrator.active_search import ActiveSearcher
from orchestrator.budget import BudgetLedger
from orchestrator.trial import TrialConfig
from orchestrator.grid import expand_grid
from orchestrator.spec import load_spec
from test_active_sweep_live import active_demo_spec

LAW = get_law("chinchilla")
FAST = OnlineFitConfig(loss="ls", full_every=16, max_starts=64, screen=4)


def _candidates(N, D) -> Candidates:
    return Candidates.from_columns({"N": np.asarray(N, dtype=float), "D": np.asarray(D, dtype=float)})


def _buy_until_stop(cands: Candidates, budget: float, *, designer=None, seed: int = 0):
    """Ask for one run at a time (as the sweep does), observe it on a Chinchilla surface and
    refit, until the designer picks nothing. Returns (taken, budget left, fitter)."""
    designer = designer or ActiveDesign()
    oracle = SimulatedOracle("chinchilla", CHINCHILLA_EPOCH, noise=0.01, seed=seed)
    fitter = OnlineFitter(LAW, FAST)
    taken = np.zeros(len(cands), dtype=bool)
    target = TargetRegion.explicit({"N": [1e9], "D": [2e10]})
    left = budget
    for step in range(len(cands) + 1):
        state = DesignState(law=LAW, candidates=cands, target=target, taken=taken.copy(), budget_total=budget,
                            budget_left=left, fit=fitter.fit, rng=np.random.default_rng([seed, step]))
        picks = designer.select(state, 1)
        if not picks:
            break
        (j,) = picks
        assert not taken[j] and affordable(cands.cost[j], left, budget), (j, taken, cands.cost[j], left)
        taken[j] = True
        left -= cands.cost[j]
        row = {"N": [cands.X["N"][j]], "D": [cands.X["D"][j]]}
        fitter.add({"N": row["N"][0], "D": row["D"][0]}, float(oracle.observe(row)[0]), run_id=str(j))
    else:
        pytest.fail("the designer picked more runs than there are candidates")
    # it stopped only because nothing free fits the budget left
    assert np.all(taken | ~affordable(cands.cost, left, budget)), (taken, cands.cost, left)
    return taken, left, fitter


@pytest.mark.parametrize("k", [1, 2, 4])
def test_few_candidates_are_all_bought_then_it_stops(k):
    N = np.geomspace(1e6, 1e8, k)
    cands = _candidates(N, 20 * N)
    taken, _, fitter = _buy_until_stop(cands, budget=10 * cands.cost.sum())
    assert taken.all() and fitter.fit is None  # 4 runs cannot fit 5 parameters: no fit, no crash


def test_no_candidates():
    empty = _candidates([], [])
    assert len(empty) == 0 and design_coordinates(empty.X).shape == (0, 2)
    assert seed_design(empty, 3, 1e30, np.random.default_rng(0)) == []
    taken, _, _ = _buy_until_stop(empty, budget=1e30)
    assert taken.size == 0
    with pytest.raises(ValueError, match="target region: no points"):
        TargetRegion.largest_planned(empty, 5)


def test_all_taken_with_and_without_a_fit():
    N = np.repeat(np.geomspace(1e6, 1e8, 3), 3)
    D = N * np.tile([5.0, 20.0, 80.0], 3)
    cands = _candidates(N, D)
    taken, _, fitter = _buy_until_stop(cands, budget=2 * cands.cost.sum())
    assert taken.all() and fitter.fit is not None  # 9 runs: fitted, then nothing left to buy
    state = DesignState(law=LAW, candidates=cands, target=TargetRegion.largest_planned(cands, 2),
                        taken=taken, budget_total=1e30, budget_left=1e30, fit=None)
    assert ActiveDesign().select(state, 3) == []  # all taken, no fit (a restored searcher)


def test_budget_below_the_cheapest_run_buys_nothing():
    N = np.geomspace(1e6, 1e8, 4)
    cands = _candidates(N, 20 * N)
    taken, left, _ = _buy_until_stop(cands, budget=0.5 * cands.cost.min())
    assert not taken.any() and left == 0.5 * cands.cost.min()


def test_budget_between_the_seed_share_and_the_cheapest_run_still_buys():
    """The seed's share of the budget (25 % of the total, at least half of what is left) is below
    the cheapest free run, but what is left affords it: before a fit the seed must buy it."""
    cands = _candidates([1e6, 2e6, 4e6], [2e7, 4e7, 8e7])
    cheapest = cands.cost.min()
    left = 1.5 * cheapest  # half of it (the share) buys nothing
    state = DesignState(law=LAW, candidates=cands, target=TargetRegion.largest_planned(cands, 1),
                        taken=np.zeros(3, dtype=bool), budget_total=100 * cheapest, budget_left=left, fit=None)
    assert ActiveDesign().select(state, 1) == [int(np.argmin(cands.cost))]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_values=st.lists(st.sampled_from([3e5, 1e6, 3e6, 1e7]), min_size=0, max_size=8),
    ratios=st.lists(st.sampled_from([2.0, 20.0, 200.0]), min_size=8, max_size=8),
    fraction=st.sampled_from([0.0, 0.05, 0.3, 1.0, 2.0]),
    misfit=st.sampled_from([None, 0.0]),
)
def test_any_tiny_set_ends_cleanly(n_values, ratios, fraction, misfit):
    """Random tiny candidate sets, duplicates and single-N / single-D sets included, any budget
    (0 up to twice the whole set): the invariant of `_buy_until_stop` holds."""
    N = np.asarray(n_values)
    cands = _candidates(N, N * np.asarray(ratios[: N.size]))
    budget = max(fraction * cands.cost.sum(), 1.0)
    _buy_until_stop(cands, budget, designer=ActiveDesign.with_misfit(misfit))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("k", [0, 1, 2, 4])
def test_every_strategy_on_tiny_sets(name, k):
    """The replay's baselines too (grid order once failed on an empty pool)."""
    N = np.geomspace(1e6, 1e8, k)
    cands = _candidates(N, 20 * N)
    for fraction in (0.0, 0.3, 2.0):
        _buy_until_stop(cands, max(fraction * cands.cost.sum(), 1.0), designer=make_strategy(name))


@pytest.mark.parametrize("shape", ["one N", "one D", "duplicates"])
def test_one_axis_or_duplicates_fit_without_crashing(shape):
    base = np.geomspace(1e6, 1e8, 8)
    N, D = {"one N": (np.full(8, 1e7), base * 20), "one D": (base, np.full(8, 2e9)),
            "duplicates": (np.repeat(base[:4], 2), np.repeat(base[:4] * 20, 2))}[shape]
    cands = _candidates(N, D)
    taken, _, fitter = _buy_until_stop(cands, budget=2 * cands.cost.sum())
    assert taken.all() and fitter.n_runs == 8


# -- the sweep's searcher on the grids -----------------------------------------------------
def _searcher(raw, limit, **kw):
    trials = expand_grid(load_spec(raw)).trials
    search = raw["search"]
    return ActiveSearcher(trials, law="chinchilla", target=dict(search["target"]), max_trials=search.get("max_trials"),
                          settings=TrialConfig(sweep=raw["name"], storage="unused"),
                          ledger=BudgetLedger(limit_flops=limit), max_concurrent=2, fit_config=FAST,
                          strategy=ActiveDesign.with_misfit(None, seed_size=search.get("seed_runs")), **kw)


def _drive(searcher, seed=0):
    """Tune's loop: fill the slots, end the oldest trial (status completed), until FINISHED."""
    oracle = SimulatedOracle("chinchilla", CHINCHILLA_EPOCH, noise=0.01, seed=seed)
    n, finished = 0, False
    while True:
        while not finished:
            config = searcher.suggest(f"t{n}")
            if config is None:
                break
            finished = config == Searcher.FINISHED
            n += 0 if finished else 1
        if not searcher.live:
            return
        trial_id = sorted(searcher.live)[0]
        trial = searcher.live[trial_id]
        loss = float(oracle.observe({"N": [trial.non_embedding_params], "D": [trial.dataset_tokens]})[0])
        searcher.on_trial_complete(trial_id, {"best_val_loss": loss, "flops": trial.planned_flops,
                                              "status": "completed"})


def _grid(n, d, budget):
    raw = active_demo_spec("unused")
    axes = {**raw["axes"], "target_params": raw["axes"]["target_params"][:n],
            "dataset_tokens": raw["axes"]["dataset_tokens"][:d]}
    return {**raw, "axes": axes, "budget": {"flops": budget}}


def test_2x2_active_takes_all_four_says_why_no_fit_and_resumes(tmp_path):
    searcher = _searcher(_grid(2, 2, 4.5e11), 4.5e11)
    _drive(searcher)
    assert searcher.stop_reason == "all_taken" and len(searcher.finished_keys) == 4
    lines = searcher.summary_lines()
    assert "stopped by all_taken (every one of the 4 planned runs was chosen)" in lines[0]
    assert "4 of 4 planned runs chosen (4 completed)" in lines[0]
    assert "no fit (4 usable runs, needs 6; the plan has only 4 runs)" in lines[1]
    path = tmp_path / "searcher.pkl"
    searcher.save(str(path))
    restored = _searcher(_grid(2, 2, 4.5e11), 4.5e11)
    restored.restore(str(path))
    assert restored.suggest("after-resume") == Searcher.FINISHED
    assert restored.summary_lines()[:2] == lines[:2]


def test_3x3_small_budget_spends_until_no_run_fits():
    """Budget 2e11 on the 9 candidates (7.0e11 in all): it stops by budget only when the cheapest
    run left exceeds what remains, and says that no 6 runs fit the budget."""
    searcher = _searcher(_grid(3, 3, 2e11), 2e11)
    _drive(searcher)
    free = [p.planned_flops for p in searcher.trials if p.trial_key not in searcher.finished_keys]
    assert searcher.stop_reason == "budget" and min(free) > searcher.ledger.remaining
    cheapest6 = sum(sorted(p.planned_flops for p in searcher.trials)[:6])
    assert cheapest6 > 2e11
    lines = searcher.summary_lines()
    assert f"needs {min(free):.3g} FLOPs" in lines[0]
    assert "the budget affords at most 5 of the planned runs" in lines[1]
