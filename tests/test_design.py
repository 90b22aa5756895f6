"""Design: the gains are the exact reductions of expected target error, batches are diverse and
within budget, seeds spread over tokens-per-parameter, and on a simulated oracle active design at
10 % of a grid's compute does as well as a designer that knows the truth."""

import warnings

import numpy as np
import pytest

from fitting.design import Candidates, DesignState, TargetRegion, design_coordinates, seed_design
from fitting.posterior import LinearPosterior, expected_error_reduction, fantasise, posterior_cov, target_gain
from fitting.fit import fit_law
from fitting.laws import CHINCHILLA_EPOCH, chinchilla
from fitting.online import OnlineFitConfig
from fitting.replay import SimulatedOracle, run_design, target_metrics
from fitting.strategies import STRATEGIES, ActiveDesign, ReferenceDesign, make_strategy

FAST = OnlineFitConfig(loss="ls", full_every=16, max_starts=256, screen=8)


def _grid(nN=7, nD=7):
    N, D = np.meshgrid(np.geomspace(1e7, 1e9, nN), np.geomspace(3e8, 1e11, nD), indexing="ij")
    return Candidates.from_columns({"N": N.ravel(), "D": D.ravel()})


def test_gain_is_the_exact_reduction_of_target_variance():
    rng = np.random.default_rng(0)
    P, m, K, s2 = 5, 4, 30, 0.01**2
    Sigma = posterior_cov(rng.standard_normal((12, P)), s2)
    G_T, G_C, w = rng.standard_normal((m, P)), rng.standard_normal((K, P)), rng.dirichlet(np.ones(m))
    gain = target_gain(Sigma, G_T, w, G_C, s2)
    before = np.einsum("tp,pq,tq,t->", G_T, Sigma, G_T, w)
    for c in range(K):
        after_cov = fantasise(Sigma, G_C[c], s2)
        # the rank-one update equals adding the row to the information matrix
        np.testing.assert_allclose(after_cov, np.linalg.inv(np.linalg.inv(Sigma) + np.outer(G_C[c], G_C[c]) / s2),
                                   rtol=1e-6, atol=1e-12)
        after = np.einsum("tp,pq,tq,t->", G_T, after_cov, G_T, w)
        assert gain[c] == pytest.approx(before - after, rel=1e-6)


def _expected_target_error(J, Phi, G_T, Phi_T, w, s2, prior_sd):
    """Σ_t w_t (g_tᵀΣg_t + |Bᵀg_t − φ_t|²) computed from scratch (no rank-one updates)."""
    Sigma = np.linalg.inv(J.T @ J / s2 + np.eye(J.shape[1]) / prior_sd**2)
    B = Sigma @ J.T @ Phi / s2
    var = np.einsum("tp,pq,tq->t", G_T, Sigma, G_T)
    bias = np.sum((G_T @ B - Phi_T) ** 2, axis=1)
    return float(w @ (var + bias))


def test_misspecification_aware_gain_is_the_exact_reduction_of_expected_error():
    """Variance + discrepancy bias: the vectorised gain equals recomputing the expected squared
    target error with the candidate appended, and LinearPosterior.add matches a rebuild."""
    rng = np.random.default_rng(3)
    P, R, n, m, K, s2, prior_sd = 5, 16, 10, 3, 25, 0.01**2, 3.0
    J, Phi = rng.standard_normal((n, P)), 0.02 * rng.standard_normal((n, R))
    G_T, Phi_T, w = rng.standard_normal((m, P)), 0.02 * rng.standard_normal((m, R)), rng.dirichlet(np.ones(m))
    G_C, Phi_C = rng.standard_normal((K, P)), 0.02 * rng.standard_normal((K, R))
    post = LinearPosterior.from_runs(J, Phi, s2, prior_sd)
    gain = expected_error_reduction(post.Sigma, post.B, G_T, Phi_T, w, G_C, Phi_C, s2)
    before = _expected_target_error(J, Phi, G_T, Phi_T, w, s2, prior_sd)
    for c in range(K):
        after = _expected_target_error(np.vstack([J, G_C[c]]), np.vstack([Phi, Phi_C[c]]), G_T, Phi_T, w, s2, prior_sd)
        assert gain[c] == pytest.approx(before - after, rel=1e-6, abs=1e-12)
    assert (gain < 0).any() and (gain > 0).any()  # a misfitting run can make the target worse
    post.add(G_C[0], Phi_C[0])
    rebuilt = LinearPosterior.from_runs(np.vstack([J, G_C[0]]), np.vstack([Phi, Phi_C[0]]), s2, prior_sd)
    np.testing.assert_allclose(post.Sigma, rebuilt.Sigma, rtol=1e-6, atol=1e-14)
    np.testing.assert_allclose(post.B, rebuilt.B, rtol=1e-6, atol=1e-12)
    # with no discrepancy it is the classical reduction of target variance
    none = np.zeros((K, 0))
    np.testing.assert_allclose(
        expected_error_reduction(post.Sigma, np.zeros((P, 0)), G_T, np.zeros((m, 0)), w, G_C, none, s2),
        target_gain(post.Sigma, G_T, w, G_C, s2), rtol=1e-9)


def test_seed_design_spreads_over_tokens_per_parameter_within_budget():
    cands = _grid()
    budget = 0.05 * cands.cost.sum()
    picks = seed_design(cands, 8, budget, np.random.default_rng(1))
    assert len(picks) == 8 and len(set(picks)) == 8
    assert cands.cost[picks].sum() <= budget
    U = design_coordinates(cands.X)[picks]
    ratios = np.unique(np.round(np.log(cands.X["D"][picks] / cands.X["N"][picks]), 3))
    assert ratios.size >= 5  # several tokens-per-parameter ratios, not one
    assert np.ptp(U[:, 0]) > 0.5 and np.ptp(U[:, 1]) > 0.5


@pytest.mark.parametrize("method", ["sobol", "maximin"])
def test_seeds_take_distinct_points_when_an_lr_axis_doubles_every_candidate(method):
    """Two lrs per (N, D): a seed spends no second run on a point it (or a run taken before)
    already holds while a free point remains (a new user's Sobol seed took one cell at two lrs)."""
    grid = _grid()
    twins = Candidates.from_columns({k: np.repeat(v, 2) for k, v in grid.X.items()})  # each point twice
    cell = lambda i: (twins.X["N"][i], twins.X["D"][i])
    for seed in range(10):
        picks = seed_design(twins, 8, twins.cost.sum(), np.random.default_rng(seed), method=method)
        assert len({cell(i) for i in picks}) == 8, (seed, picks)
        taken = np.zeros(len(twins), dtype=bool)
        taken[0: 2 * (len(grid) - 3): 2] = True  # one run at every point but the last three
        picks = seed_design(twins, 3, twins.cost.sum(), np.random.default_rng(seed), taken=taken, method=method)
        assert {cell(i) for i in picks} == {cell(2 * k) for k in range(len(grid) - 3, len(grid))}, (seed, picks)


@pytest.mark.parametrize("seed", range(4))
def test_seeding_takes_every_affordable_point_before_a_second_lr_of_one(seed):
    """3 N x 2 D points, each at two lrs (a new user's active sweep: its seed bought three points
    twice, left the sixth point unbought though affordable, and ended with no fit). Seeding one
    pick at a time, as a live sweep does, the six picks are the six points."""
    N, D = np.meshgrid([8e4, 2e5, 5e5], [1e5, 3e5], indexing="ij")
    twins = Candidates.from_columns({"N": np.repeat(N.ravel(), 2), "D": np.repeat(D.ravel(), 2)})
    budget = twins.cost[::2].sum() * 1.01  # every point once, with no room for a second lr of the largest
    strategy = make_strategy("active")
    taken, spent = np.zeros(len(twins), dtype=bool), 0.0
    for _ in range(6):
        state = DesignState(law=chinchilla, candidates=twins, target=TargetRegion.largest_planned(twins),
                            taken=taken.copy(), budget_total=budget, budget_left=budget - spent, fit=None,
                            rng=np.random.default_rng([seed, int(taken.sum())]))
        (pick,) = strategy.select(state, 1)
        taken[pick], spent = True, spent + twins.cost[pick]
    points = {(twins.X["N"][i], twins.X["D"][i]) for i in np.flatnonzero(taken)}
    assert len(points) == 6 and spent <= budget


def _state(cands, budget, fit=None, seed=0):
    target = TargetRegion.compute_frontier("chinchilla", CHINCHILLA_EPOCH, 1e22)
    return DesignState(law=chinchilla, candidates=cands, target=target, taken=np.zeros(len(cands), dtype=bool),
                       budget_total=budget, budget_left=budget, fit=fit, rng=np.random.default_rng(seed))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_respects_budget_and_never_repeats(name):
    cands = _grid()
    orc = SimulatedOracle("chinchilla", CHINCHILLA_EPOCH, noise=0.01, seed=0)
    budget = 0.05 * cands.cost.sum()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = run_design("chinchilla", cands, orc.observe_rows(cands), make_strategy(name), budget, batch=3,
                         fit_config=FAST)
    assert run.spent <= budget and len(set(run.bought)) == len(run.bought)
    # nothing affordable was left on the table
    left = np.setdiff1d(np.arange(len(cands)), run.bought)
    assert left.size == 0 or cands.cost[left].min() > budget - run.spent


def test_batch_is_diverse_thanks_to_fantasised_observations():
    cands = _grid(12, 12)
    orc = SimulatedOracle("chinchilla", CHINCHILLA_EPOCH, noise=0.01, seed=0)
    rng = np.random.default_rng(0)
    seed_idx = rng.choice(len(cands), 12, replace=False)
    X = cands.rows(seed_idx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_law("chinchilla", X | {"loss": orc.observe(X)}, loss="ls")
    state = _state(cands, 0.2 * cands.cost.sum(), fit)
    state.taken[seed_idx] = True
    batch = ActiveDesign().select(state, 6)
    assert len(set(batch)) == 6
    U = design_coordinates(cands.X)[batch]
    # not six neighbours of the single best point: the picks spread out in the design plane
    assert np.ptp(U, axis=0).max() > 0.25


def test_suggest_at_scale_picks_one_affordable_untaken_run():
    """1,000 completed runs and 10,000 candidates: one pick, affordable and not yet taken (how fast
    it is belongs in a benchmark, not a test)."""
    rng = np.random.default_rng(0)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), 11_000))
    D = N * np.exp(rng.uniform(np.log(1), np.log(500), 11_000))
    cands = Candidates.from_columns({"N": N[1000:], "D": D[1000:]})
    X = {"N": N[:1000], "D": D[:1000]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_law("chinchilla", X | {"loss": SimulatedOracle("chinchilla", CHINCHILLA_EPOCH).observe(X)},
                      starts=(), init=CHINCHILLA_EPOCH, loss="ls")
    state = _state(cands, 0.1 * cands.cost.sum(), fit)
    strategy = ActiveDesign()
    strategy.select(state, 1)  # warm-up (imports, caches)
    pick = strategy.select(state, 1)
    assert len(pick) == 1 and not state.taken[pick[0]]
    assert cands.cost[pick[0]] <= state.budget_left


@pytest.mark.slow
def test_active_at_a_tenth_of_the_grid_compute_on_a_simulated_oracle():
    """Chinchilla surface + 1.5 % noise, cost 6ND, a 7×7 grid; targets: the compute-optimal
    frontier around 1e22 FLOPs (16× beyond the grid's largest run). Mean over 20 seeds.

    No 10 % design can match the full grid here: its largest runs (the single largest is a third
    of its compute) carry the extrapolation. The *clairvoyant* design (the same criterion
    linearised at the true parameters) stays about 1.5× the full grid's error, as the
    linearised bound for any 10 % subset says (1.56×; an exhaustive local search finds 1.60×).
    So the test asserts what is achievable and that it is achieved: active, which starts
    knowing nothing, does as well as the clairvoyant design and far better than random."""
    cands = _grid()
    target = TargetRegion.compute_frontier("chinchilla", CHINCHILLA_EPOCH, 1e22)
    designs = {
        "grid": (lambda: make_strategy("grid"), 1.0),
        "active": (lambda: ActiveDesign(discrepancy=False, cost_power=0.5), 0.1),
        "clairvoyant": (lambda: ReferenceDesign(CHINCHILLA_EPOCH, discrepancy=False, cost_power=0.5), 0.1),
        "random": (lambda: make_strategy("random"), 0.1),
    }
    err = {k: [] for k in designs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in range(20):
            orc = SimulatedOracle("chinchilla", CHINCHILLA_EPOCH, noise=0.015, seed=seed)
            reveal = orc.observe_rows(cands)
            truth = orc.truth(target.X)
            for name, (strategy, frac) in designs.items():
                run = run_design("chinchilla", cands, reveal, strategy(), frac * cands.cost.sum() * (1 + 1e-9), target,
                                 batch=4 if frac < 1 else 64, seed=seed, fit_config=FAST)
                err[name].append(target_metrics(run.fit.predict(target.X), truth)["mean_are"])
    mean = {k: float(np.mean(v)) for k, v in err.items()}
    assert mean["active"] <= 1.1 * mean["clairvoyant"], mean
    assert mean["active"] < 0.8 * mean["random"], mean
    assert mean["clairvoyant"] > 1.25 * mean["grid"], mean  # the full grid is out of reach at 10 %



def test_misfit_amplitude_maps_to_the_designer_and_its_seed():
    """search.misfit / --misfit: None → the default prior, 0 → an exact law (maximin seed of
    P + 3), a > 0 → that amplitude (Sobol seed of 2·(P + 1))."""
    assert ActiveDesign.with_misfit(None).discrepancy.amplitude == pytest.approx(0.04)
    exact = ActiveDesign.with_misfit(0.0)
    assert exact.discrepancy is None and exact.seed_method == "maximin"
    loose = ActiveDesign.with_misfit(0.02, seed_size=7)
    assert loose.discrepancy.amplitude == 0.02 and loose.seed_method == "sobol" and loose.seed_size == 7
    cands = _grid()
    for design, n_seed in ((exact, 8), (ActiveDesign(), 12)):
        state = _state(cands, 0.5 * cands.cost.sum())
        picks = design.select(state, 20)  # no fit yet: the whole batch is the seed
        assert len(picks) == n_seed and design.last_scores == {}
