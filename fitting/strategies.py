"""Design strategies: which candidate runs to buy next (see :mod:`fitting.posterior` for the math).

Every strategy has one job, ``select(state, k)`` → up to k candidate indices, affordable
together within ``state.budget_left``, none already taken:

* :class:`ActiveDesign` — expected reduction of the target region's squared error (variance
  plus the bias a misfitting law causes) per cost^cost_power, greedy batches with fantasised
  observations, after a space-filling seed; for a law of more than ``many_params`` parameters
  (or with ``hedge=True``), when the fit's linearisation is unreliable
  (:func:`fitting.design.unreliable_linearisation`) it hedges with D-optimal's criterion, and
  otherwise scores candidates under a mixture of plausible fits (``mixture_draws``), not the one.
* :class:`ReferenceDesign` — the same criterion linearised at fixed, known parameters instead
  of the running fit: the design one would choose knowing the truth (a benchmark bound), or
  from a published fit before any run exists.
* Baselines: full grid (coarse-to-fine), random, cost-weighted random, cheapest-first,
  D-optimal (log-det gain per cost), V-optimal (variance over the whole candidate space).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from fitting.cost import affordable
from fitting.strategy_names import STRATEGY_NAMES
from fitting.design import DesignState, design_coordinates, farthest_point_order, seed_design, unreliable_linearisation
from fitting.posterior import (Discrepancy, LinearPosterior, expected_error_reduction, law_gradients,
                               posterior_draws, quad_rows, target_gain)

__all__ = [
    "Strategy",
    "ActiveDesign",
    "ReferenceDesign",
    "DOptimal",
    "VOptimal",
    "RandomOrder",
    "CostWeightedRandom",
    "CheapestFirst",
    "GridOrder",
    "STRATEGIES",
    "make_strategy",
]


class Strategy:
    """Chooses which candidates to buy next."""

    name = "strategy"
    needs_fit = False  # whether select() reads state.fit (a replay refits after every batch then)

    def select(self, state: DesignState, k: int = 1) -> list[int]:
        raise NotImplementedError


# ====================================================================== fixed orders
class _OrderStrategy(Strategy):
    """Buys candidates in a fixed priority order, skipping what no longer fits."""

    def priority(self, state: DesignState) -> np.ndarray:  # lower = earlier
        raise NotImplementedError

    def select(self, state: DesignState, k: int = 1) -> list[int]:
        order = np.argsort(self.priority(state), kind="stable")
        out, left = [], state.budget_left
        for j in order:
            if len(out) >= k:
                break
            if not state.taken[j] and affordable(state.candidates.cost[j], left, state.budget_total):
                out.append(int(j))
                left -= state.candidates.cost[j]
        return out


class RandomOrder(_OrderStrategy):
    name = "random"

    def priority(self, state):
        return state.rng.random(len(state.candidates))


class CostWeightedRandom(_OrderStrategy):
    """Random with probability ∝ 1/cost (Gumbel-top-k on log weights)."""

    name = "cost_random"

    def priority(self, state):
        return -(-np.log(state.ranking_cost()) + state.rng.gumbel(size=len(state.candidates)))


class CheapestFirst(_OrderStrategy):
    name = "cheapest"

    def priority(self, state):
        return state.ranking_cost()


class GridOrder(_OrderStrategy):
    """The full grid, bought coarse-to-fine (maximin order in log N × log D/N) so that a budget
    cut leaves an evenly spread sub-grid; at budget fraction 1 it is the whole grid."""

    name = "grid"

    def priority(self, state):
        cands = state.candidates
        if len(cands) == 0:
            return np.zeros(0)
        U = design_coordinates(cands.X)
        start = int(np.argmin(cands.cost))
        order = farthest_point_order(U, start, np.ones(len(cands), dtype=bool), len(cands))
        rank = np.full(len(cands), len(cands), dtype=float)
        rank[order] = np.arange(len(order))
        return rank


# ====================================================================== model-based
class _ModelStrategy(Strategy):
    """Greedy gain-per-cost under the linearised posterior, with fantasised batch updates.
    Before a fit exists (fewer than P+1 runs) it buys a space-filling seed design.

    ``discrepancy``: the prior on the law's misfit (:class:`fitting.posterior.Discrepancy`), or
    None for a law trusted exactly. The seed adapts to that choice (both measured in
    bench/active_vs_grid.py): with a misfit prior, ``2·(P + 1)`` runs on a Sobol sample (interior
    runs are robust to misfit; on the Epoch replay at 1 % of the pool's compute the larger seed
    cut the target error from 2.1 % to 1.8 %); for an exact law, ``P + 3`` runs by maximin
    (corners give the longest lever arm, and the model's own picks are worth more than extra
    seed runs: 3.2 % vs 4.1 % at 1 % of the oracle grid, 60 seeds). A law with more than
    ``many_params`` parameters gets the exact law's seed even with a misfit prior: there the
    interior seed's lost lever arm costs more than its misfit robustness buys (the 9-parameter
    ``nine`` oracle at 1 % of the grid, 20 seeds: mean target R² −17.0 with it vs −40.2 with the
    Sobol seed; no law with 6–7 parameters was measured, so the line sits above every built-in
    law). ``seed_size`` and ``seed_method`` override. By default the seed design is laid out for
    that many runs and the model's picks begin at the first fit (P + 1 runs); an explicit
    ``seed_size`` is bought whole first (:meth:`seeding`)."""

    needs_fit = True
    seed_fraction = 0.25  # of the total budget, for the seed design
    cost_power = 0.25  # score = gain / cost^cost_power (1 = per unit cost; see bench/active_vs_grid.py)

    hedges = False  # whether an unreliable fit switches the gain to the parameters' information (ActiveDesign)
    hedge_criterion = "information gain on the law's parameters (D-optimal)"  # what a hedged pick scores, for users
    hedge_always = False  # True (hedge=True): for any law; else only above many_params parameters
    many_params = 7  # above this many parameters the seed is the exact law's (class docstring)
    # Where the hedge rule is on and the fit passes it, gains are averaged over the fit and this
    # many draws from its linearised posterior (sd × mixture_inflation, see _mixture). Chosen on
    # the 9-parameter oracle at 10 % of the grid, 20 seeds, scored on each design's last warm refit
    # (mean / worst-decile target R²: one point −0.54/−5.34; 8 draws at sd ×1 −0.30/−3.91; 16 at
    # ×2 −0.05/−1.79). Not re-tuned since designs are scored on their final full refit; there,
    # with the D-optimal hedge, active is at or within noise of the best baseline at 1-10 %
    # (100 seeds, bench/active_vs_grid.py docstring).
    mixture_draws = 16
    mixture_inflation = 2.0
    mixture_max_step = 2.0  # z units per coordinate (a factor e² for a log-transformed parameter)

    def __init__(self, seed_size: int | None = None, prior_sd: float = 3.0, cost_power: float | None = None,
                 discrepancy: Discrepancy | None = None, seed_method: str | None = None, hedge: bool | None = None):
        self.seed_size = seed_size
        if hedge is not None:
            self.hedges = self.hedge_always = hedge
        self.hedged: str | None = None  # why the last select() hedged (None: it aimed at the targets)
        self.prior_sd = prior_sd
        self.discrepancy = discrepancy
        self.seed_method = seed_method or ("sobol" if discrepancy is not None else "maximin")
        self._seed_method_given = seed_method is not None
        if cost_power is not None:
            self.cost_power = cost_power
        self.last_scores: dict[int, float] = {}

    # -- hooks
    def gain(self, post: LinearPosterior, G_C, Phi_C, state: DesignState, cache: dict) -> np.ndarray:
        raise NotImplementedError

    def linearisation(self, state: DesignState) -> tuple[np.ndarray, float] | None:
        """(z, s²) to linearise at: the current fit and its residual scatter, or None (seed)."""
        fit = state.fit
        if fit is None:
            return None
        return fit.z, max(float(fit.sigma), state.noise_floor) ** 2

    # -- features
    def information_gain(self, post: LinearPosterior, G_C, Phi_C, state: DesignState, cache: dict) -> np.ndarray:
        """D-optimal: the gain in log det of the parameters' information, log(1 + g Σ gᵀ / s²)
        per candidate (G_C: (K, P) law gradients; returns (K,), nats). No target and no
        discrepancy: it is the hedge for a fit too unsure to say where to aim (issue 15 item 6,
        measured in bench/active_vs_grid.py ``nine``: the class docstring of :class:`ActiveDesign`)."""
        return np.log1p(quad_rows(G_C, post.Sigma) / post.s2)

    def law_features(self, state: DesignState, X, z) -> np.ndarray:
        return law_gradients(state.law, z, X)

    def misfit_features(self, X) -> np.ndarray:
        if self.discrepancy is None:
            return np.zeros((len(next(iter(X.values()))), 0))
        return self.discrepancy.features(X)

    def _seed(self, state: DesignState, k: int) -> list[int]:
        P = state.law.n_params
        method, n_seed = self.seed_method, 2 * (P + 1) if self.discrepancy is not None else P + 3
        if self.discrepancy is not None and P > self.many_params and not self._seed_method_given:
            method, n_seed = "maximin", P + 3  # see the class docstring
        n_seed = self.seed_size or n_seed
        want = max(n_seed - int(state.taken.sum()), 1)
        share = max(self.seed_fraction * state.budget_total - (state.budget_total - state.budget_left), 0.0)
        share = min(max(share, state.budget_left * 0.5), state.budget_left)
        # Without a fit there is nothing else to buy: when the seed's share of the budget affords
        # no free candidate, the rest of the budget does (or nothing is affordable). Points of the
        # (N, D) plane that hold no run come first, even at the larger budget: a fit needs as many
        # distinct points as parameters + 1, and another lr at a held point adds none.
        for distinct in (True, False):
            for budget in (share, state.budget_left):
                picks = seed_design(state.candidates, want, budget, state.rng, taken=state.taken, method=method,
                                    budget_total=state.budget_total, distinct=distinct)
                if picks:
                    return picks[:k]
        return []

    def seeding(self, state: DesignState) -> bool:
        """Whether the next picks are the seed design's: until the first fit, and with an explicit
        ``seed_size`` until that many runs were taken (a user's ``seed_runs: 20`` once got 6 seed
        runs, a fit being possible after P + 1). The default seed ends at the first fit: the
        benchmarks that set it (class doc) measured that."""
        return (self.linearisation(state) is None
                or (self.seed_size is not None and int(state.taken.sum()) < self.seed_size))

    def select(self, state: DesignState, k: int = 1) -> list[int]:
        # candidate index -> gain/cost score of the picks just made (seed picks have none); a
        # sweep reports these as "why this run"
        self.last_scores = {}
        if self.seeding(state):
            return self._seed(state, k)
        lin = self.linearisation(state)
        z, s2 = lin
        cands = state.candidates
        free = np.flatnonzero(~state.taken & affordable(cands.cost, state.budget_left, state.budget_total))
        if free.size == 0:
            return []
        X_obs = self.observed_inputs(state)
        post = LinearPosterior.from_runs(self.law_features(state, X_obs, z), self.misfit_features(X_obs), s2,
                                         self.prior_sd)
        cache: dict = {"z": z}
        # A linearisation the fit cannot vouch for (see design.unreliable_linearisation) makes
        # target-aimed gains a bet on one guess; hedge by buying what pins the parameters down
        # wherever the targets are (D-optimal's criterion; issue 15 item 6, ActiveDesign's doc).
        # Only for many-parameter laws by default: on Epoch's Chinchilla replay at a tenth of the
        # pool's compute (tests/test_replay.py, 10 seeds) hedging raised active's target error
        # from 0.76 % to 0.97 % (random: 1.12 %); the 9-parameter oracle is where it pays.
        self.hedged = None
        if self.hedges and state.fit is not None and (self.hedge_always or state.law.n_params > self.many_params):
            cache["G_T"] = self.law_features(state, state.target.X, z)
            target_sd = float(np.sqrt(np.max(quad_rows(cache["G_T"], post.Sigma))))
            self.hedged = unreliable_linearisation(state.fit, state.target.X, np.sqrt(s2), target_sd)
        gain_fn = self.information_gain if self.hedged else self.gain
        X_free = cands.rows(free)
        G_C, Phi_C = self.law_features(state, X_free, z), self.misfit_features(X_free)
        # (posterior, candidate features, cache) per linearisation point: the fit, plus the
        # mixture's draws where the rule is on and the fit passed it
        models = [(post, G_C, cache)]
        if self.hedges and state.fit is not None and not self.hedged and (
                self.hedge_always or state.law.n_params > self.many_params):
            models += self._mixture(state, post, z, s2, X_obs, X_free)
        cost, rank_cost = cands.cost[free], state.ranking_cost()[free]
        out, left = [], state.budget_left
        alive = np.ones(free.size, dtype=bool)
        for _ in range(k):
            alive &= affordable(cost, left, state.budget_total)
            if not alive.any():
                break
            gain = np.mean([gain_fn(p, G, Phi_C, state, c) for p, G, c in models], axis=0)
            score = np.where(alive & np.isfinite(gain), gain / rank_cost**self.cost_power, -np.inf)
            j = int(np.argmax(score))
            if score[j] == -np.inf:
                break
            out.append(int(free[j]))
            self.last_scores[int(free[j])] = float(score[j])
            left -= cost[j]
            alive[j] = False
            for p, G, _ in models:
                p.add(G[j], Phi_C[j])
        return out

    def _mixture(self, state: DesignState, post: LinearPosterior, z, s2: float, X_obs, X_free) -> list:
        """The linearisations at ``mixture_draws`` parameter vectors drawn from the fit's
        linearised posterior (:func:`fitting.posterior.posterior_draws`), each with its own
        posterior over the runs so far and its own candidate features (issue 15 item 6).

        Why: with many parameters a fit that passes :func:`fitting.design.unreliable_linearisation`
        can still be one of many fits the data allow, and gains aimed at the targets from it
        alone bet the budget on that one (the ``nine`` oracle's worst seeds). Averaging the
        expected target-error reduction over plausible fits buys runs that help whichever one is
        true. The draws' generator is seeded by the number of runs taken, so a design is
        reproducible and the draws do not consume ``state.rng``."""
        if self.mixture_draws <= 0:
            return []
        rng = np.random.default_rng(int(state.taken.sum()))
        Z = posterior_draws(z, post.Sigma, self.mixture_draws, rng, inflation=self.mixture_inflation,
                            max_step=self.mixture_max_step, bounds=state.law.z_bounds)
        return [(LinearPosterior.from_runs(self.law_features(state, X_obs, zk), self.misfit_features(X_obs), s2,
                                           self.prior_sd), self.law_features(state, X_free, zk), {"z": zk})
                for zk in Z]

    def observed_inputs(self, state: DesignState) -> Mapping[str, np.ndarray]:
        """The runs the posterior conditions on: every run fitted so far (a history loaded into
        the fitter included) plus the candidates bought but not yet observed (running trials,
        fantasised so that free slots go elsewhere)."""
        fitted = state.fit.data.X
        pending = state.candidates.rows(np.asarray(state.pending if state.pending is not None else [], dtype=int))
        return {c: np.concatenate([np.asarray(fitted[c], dtype=float), pending[c]]) for c in state.law.inputs}


class ActiveDesign(_ModelStrategy):
    """Expected reduction of the target region's squared log-loss error per cost^cost_power,
    with the law's misfit modelled (``discrepancy=True``: :class:`Discrepancy` defaults) unless
    ``discrepancy=False`` (a law trusted exactly, e.g. a simulated oracle).

    Where the hedge rule is on (more than ``many_params`` parameters, or ``hedge=True``) and the
    fit is unreliable (:func:`fitting.design.unreliable_linearisation`), picks are scored by
    :meth:`information_gain`, D-optimal's criterion: runs that pin the parameters down, wherever
    the targets are. Measured on the 9-parameter oracle (bench/active_vs_grid.py ``nine``, seeds
    0-99, each design scored on its final full refit), mean / worst-decile target R² at 5 % and
    10 % of the grid: hedging with D-optimal −2.41/−16.2, −0.456/−5.61; with V-optimal's
    whole-space variance (the hedge before) −2.83/−17.0, −0.665/−5.46; at 1 % the two hedges are
    the two baselines (−31.0/−144.8 and −28.4/−194.7). Every difference lies within the seeds'
    noise (paired-bootstrap intervals in bench/active_vs_grid.py's docstring); the reason to
    prefer D is what the rule detects: a fit the data do not pin down, which is D-optimal's job."""

    name = "active"
    hedges = True

    def __init__(self, *args, discrepancy: Discrepancy | bool | None = True, **kwargs):
        if discrepancy is True:
            discrepancy = Discrepancy()
        super().__init__(*args, discrepancy=discrepancy or None, **kwargs)

    @classmethod
    def with_misfit(cls, misfit: float | None, **kwargs) -> "ActiveDesign":
        """From a misfit amplitude as users give it (spec ``search.misfit``, ``--misfit``): None
        for the default prior, 0 to trust the law exactly."""
        if misfit is None:
            return cls(**kwargs)
        return cls(discrepancy=Discrepancy(amplitude=misfit) if misfit > 0 else False, **kwargs)

    def gain(self, post, G_C, Phi_C, state, cache):
        if "G_T" not in cache:
            cache["G_T"] = self.law_features(state, state.target.X, cache["z"])
        if "Phi_T" not in cache:
            cache["Phi_T"] = self.misfit_features(state.target.X)
        return expected_error_reduction(post.Sigma, post.B, cache["G_T"], cache["Phi_T"], state.target.weights,
                                        G_C, Phi_C, post.s2)


class ReferenceDesign(ActiveDesign):
    """:class:`ActiveDesign` linearised at fixed ``params`` (a published fit, or the truth of a
    simulation) with run-to-run scatter ``noise``: needs no fit and no seed, ignores observed
    losses. With the true parameters it is the design a clairvoyant designer would buy, which
    bounds what any adaptive strategy can reach on a simulated oracle."""

    name = "reference"
    needs_fit = False
    hedges = False  # its linearisation is given, not fitted

    def __init__(self, params, *args, noise: float = 0.015, **kwargs):
        super().__init__(*args, **kwargs)
        self.params = params
        self.noise = noise

    def linearisation(self, state):
        return state.law.to_z(state.law.as_array(self.params)), max(self.noise, state.noise_floor) ** 2

    def observed_inputs(self, state):
        return state.candidates.rows(np.flatnonzero(state.taken))


class VOptimal(_ModelStrategy):
    """Average predictive variance over the whole candidate space (≤ 512 rows sampled), per cost."""

    name = "v_optimal"

    def gain(self, post: LinearPosterior, G_C, Phi_C, state: DesignState, cache: dict) -> np.ndarray:
        """V-optimal: the reduction of the predictive variance averaged over the whole candidate
        space (≤ 512 rows sampled), (K,) in squared log loss."""
        if "G_V" not in cache:
            K = len(state.candidates)
            V = state.candidates.rows(np.arange(K) if K <= 512 else state.rng.choice(K, 512, replace=False))
            cache["G_V"] = self.law_features(state, V, cache["z"])
        G_V = cache["G_V"]
        return target_gain(post.Sigma, G_V, np.full(G_V.shape[0], 1.0 / G_V.shape[0]), G_C, post.s2)


class DOptimal(_ModelStrategy):
    """Information gain log det: log(1 + g Σ gᵀ / s²) per cost."""

    name = "d_optimal"

    def gain(self, post, G_C, Phi_C, state, cache):
        return self.information_gain(post, G_C, Phi_C, state, cache)


STRATEGIES: dict[str, type[Strategy]] = {
    "active": ActiveDesign,
    "random": RandomOrder,
    "cost_random": CostWeightedRandom,
    "cheapest": CheapestFirst,
    "grid": GridOrder,
    "d_optimal": DOptimal,
    "v_optimal": VOptimal,
}
if tuple(STRATEGIES) != STRATEGY_NAMES:  # the CLI reads the names without importing this module
    raise ImportError(f"fitting.strategy_names.STRATEGY_NAMES {STRATEGY_NAMES} != STRATEGIES {tuple(STRATEGIES)}")


def make_strategy(name: str, **kwargs) -> Strategy:
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}") from None
    return cls(**kwargs)
