"""Active experiment design: which run to buy next for a scaling-law fit.

The model is the *linearised (Laplace/Fisher) posterior* of the law in its transformed
parameters z: with J the Jacobian of log L̂ (:func:`fitting.fit.log_jacobian`) at the current
optimum and s the run-to-run scatter of log loss,

    Σ = (Jᵀ_obs J_obs / s² + Λ₀)⁻¹,   Var[log L̂(x)] = g(x)ᵀ Σ g(x).

Observing a candidate c (gradient g_c) shrinks Σ by the rank-one update Σ g_c g_cᵀ Σ/(s² + g_cᵀΣg_c)
(whatever the value observed: fantasised observations are free in a linear model), so the
expected reduction of the summed predictive variance of log loss over the *target region* T is

    gain(c) = Σ_t w_t (g_tᵀ Σ g_c)² / (s² + g_cᵀ Σ g_c) = g_cᵀ M g_c / (s² + g_cᵀ Σ g_c),
    M = Σ G_Tᵀ W G_T Σ,

which is an O(K·P²) vectorised pass over K candidates. The active score is gain / cost. Batches
are greedy: after each pick Σ is updated with the fantasised observation, so concurrent slots
get diverse runs. Variance of *log* loss is relative error squared, so targets at different
loss scales are weighed alike.

Baselines share the same interface (:class:`Strategy`): full grid (coarse-to-fine space-filling
order), random, cost-weighted random, cheapest-first, D-optimal (log-det gain per cost) and
V-optimal (average variance over the whole candidate space per cost).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from fitting.fit import FitResult, log_jacobian
from fitting.laws import Law, get_law

__all__ = [
    "Candidates",
    "TargetRegion",
    "DesignState",
    "Strategy",
    "ActiveDesign",
    "DOptimal",
    "VOptimal",
    "RandomOrder",
    "CostWeightedRandom",
    "CheapestFirst",
    "GridOrder",
    "STRATEGIES",
    "make_strategy",
    "seed_design",
    "design_coordinates",
    "log_coordinates",
    "Discrepancy",
    "posterior_cov",
    "target_gain",
    "fantasise",
]


# ====================================================================== inputs
@dataclass(frozen=True)
class Candidates:
    """Runs that could be bought: input columns (the law's inputs) and a cost per row."""

    X: Mapping[str, np.ndarray]
    cost: np.ndarray

    @classmethod
    def from_columns(cls, X: Mapping[str, Sequence[float]], cost=None, flops_per_token: float = 6.0) -> "Candidates":
        cols = {k: np.asarray(v, dtype=float) for k, v in X.items()}
        n = len(next(iter(cols.values())))
        if cost is None:
            if not {"N", "D"} <= set(cols):
                raise ValueError("cost needs N and D columns (6·N·D) or an explicit cost")
            cost = flops_per_token * cols["N"] * cols["D"]
        cost = np.asarray(cost, dtype=float)
        if cost.shape != (n,) or np.any(~np.isfinite(cost)) or np.any(cost <= 0):
            raise ValueError("costs must be positive and finite, one per candidate")
        return cls(cols, cost)

    def __len__(self) -> int:
        return int(self.cost.shape[0])

    def rows(self, idx) -> dict[str, np.ndarray]:
        return {k: v[idx] for k, v in self.X.items()}


@dataclass(frozen=True)
class TargetRegion:
    """Points whose predicted loss we care about, with weights (normalised to sum 1)."""

    X: Mapping[str, np.ndarray]
    weights: np.ndarray

    @classmethod
    def explicit(cls, X: Mapping[str, Sequence[float]], weights=None) -> "TargetRegion":
        cols = {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in X.items()}
        n = len(next(iter(cols.values())))
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
        return cls(cols, w / w.sum())

    @classmethod
    def largest_planned(cls, candidates: Candidates, n: int = 5) -> "TargetRegion":
        """The ``n`` most expensive planned configurations (what the sweep is building toward)."""
        idx = np.argsort(candidates.cost)[::-1][:n]
        return cls.explicit(candidates.rows(idx))

    @classmethod
    def compute_frontier(cls, law, params, compute: float, *, n: int = 5, span: float = 3.0,
                         flops_per_token: float = 6.0, fixed: Mapping[str, float] | None = None) -> "TargetRegion":
        """Compute-optimal (N, D) at ``n`` budgets spanning compute/span … compute·span, under a
        reference parameter guess (e.g. a published fit or the current one)."""
        from fitting.allocate import optimal_allocation

        C = np.geomspace(compute / span, compute * span, n)
        opt = optimal_allocation(get_law(law), params, C, flops_per_token=flops_per_token, fixed=fixed)
        X = {"N": np.asarray(opt["N_opt"], dtype=float), "D": np.asarray(opt["D_opt"], dtype=float)}
        for k, v in (fixed or {}).items():
            X[k] = np.full(n, float(v))
        return cls.explicit(X)


@dataclass
class DesignState:
    """What a strategy sees: the candidates, which are taken, the current fit, the budget."""

    law: Law
    candidates: Candidates
    target: TargetRegion
    taken: np.ndarray  # bool (K,): bought, running or finished
    budget_total: float
    budget_left: float
    fit: FitResult | None = None
    noise_floor: float = 0.005  # s is at least this (log-loss units) so one run never looks exact
    pending: np.ndarray | None = None  # indices bought but not yet observed (running trials)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))


# ====================================================================== geometry
def design_coordinates(X: Mapping[str, np.ndarray]) -> np.ndarray:
    """(log N, log D/N) scaled to [0, 1]: the plane in which seeds should spread out (runs at one
    tokens-per-parameter ratio leave α and β unidentifiable)."""
    if {"N", "D"} <= set(X):
        u = np.column_stack([np.log(X["N"]), np.log(X["D"] / X["N"])])
    else:
        u = np.column_stack([np.log(np.asarray(v, dtype=float)) for v in X.values()])
    lo, hi = u.min(axis=0), u.max(axis=0)
    return (u - lo) / np.where(hi > lo, hi - lo, 1.0)


def _farthest_point_order(U: np.ndarray, start: int, allowed: np.ndarray, k: int, existing=None) -> list[int]:
    """Greedy maximin picks (k of them) among ``allowed`` rows of U, away from ``existing`` rows."""
    d = np.full(U.shape[0], np.inf)
    ref = [start] if existing is None or len(existing) == 0 else list(existing)
    for r in ref:
        d = np.minimum(d, np.sum((U - U[r]) ** 2, axis=1))
    picks: list[int] = [] if ref != [start] else [start]
    d = np.where(allowed, d, -np.inf)
    if picks:
        d[start] = -np.inf
    while len(picks) < k and np.isfinite(d).any() and d.max() > -np.inf:
        j = int(np.argmax(d))
        if d[j] == -np.inf:
            break
        picks.append(j)
        d = np.minimum(d, np.sum((U - U[j]) ** 2, axis=1))
        d[j] = -np.inf
        d = np.where(allowed, d, -np.inf)
    return picks[:k]


def seed_design(candidates: Candidates, n: int, budget: float, rng: np.random.Generator,
                taken: np.ndarray | None = None, method: str = "maximin") -> list[int]:
    """A space-filling seed in log N × log(D/N) that costs at most ``budget``.

    Candidates are limited to those costing ≤ budget/n (so the seed can be bought whole).
    ``method="maximin"`` (default): greedy farthest points from a random start, which reach the
    corners (the widest lever arm for α and β); ``"sobol"``: the candidate nearest each point of
    a scrambled Sobol sample of that region (covers the interior; measured worse on the Epoch
    replay, 1.41 % vs 1.16 % target error at 10 % budget over 10 seeds)."""
    taken = np.zeros(len(candidates), dtype=bool) if taken is None else taken
    free = ~taken
    cap = budget / max(n, 1)
    allowed = free & (candidates.cost <= cap)
    if allowed.sum() < n:  # budget too small for n spread runs: take the n cheapest free ones
        order = np.argsort(np.where(free, candidates.cost, np.inf))
        allowed = np.zeros_like(free)
        allowed[order[: min(n, free.sum())]] = True
    pool = np.flatnonzero(allowed)
    if method == "maximin":
        U = design_coordinates(candidates.X)
        picks = _farthest_point_order(U, int(rng.choice(pool)), allowed, n, existing=np.flatnonzero(taken))
    elif method == "sobol":
        from scipy.stats import qmc

        U = design_coordinates(candidates.rows(pool))  # scaled to the affordable region
        m = int(np.ceil(np.log2(max(n, 2))))
        S = qmc.Sobol(d=U.shape[1], scramble=True, seed=rng).random_base2(m)[:n]
        picks, used = [], np.zeros(pool.size, dtype=bool)
        for point in S:
            d = np.where(used, np.inf, np.sum((U - point) ** 2, axis=1))
            j = int(np.argmin(d))
            if not np.isfinite(d[j]):
                break
            used[j] = True
            picks.append(int(pool[j]))
    else:
        raise ValueError(f"unknown seed method {method!r}: 'sobol' or 'maximin'")
    out, spent = [], 0.0
    for j in picks:
        if spent + candidates.cost[j] <= budget:
            out.append(j)
            spent += candidates.cost[j]
    return out


# ====================================================================== linear algebra (pure)
def posterior_cov(J_obs: np.ndarray, s2: float, prior_sd: float | np.ndarray = 3.0) -> np.ndarray:
    """Σ = (JᵀJ/s² + I/prior_sd²)⁻¹ in z space; the weak prior keeps Σ finite on tiny designs."""
    P = J_obs.shape[1]
    prec = J_obs.T @ J_obs / s2 + np.diag(np.broadcast_to(1.0 / np.asarray(prior_sd, dtype=float) ** 2, (P,)))
    return np.linalg.inv(prec)


def target_gain(Sigma: np.ndarray, G_T: np.ndarray, w_T: np.ndarray, G_C: np.ndarray, s2: float) -> np.ndarray:
    """Expected reduction of Σ_t w_t Var[log L̂(t)] from observing each candidate (rows of G_C)."""
    A = Sigma @ (G_T.T * w_T) @ G_T @ Sigma  # M = Σ G_Tᵀ W G_T Σ
    num = _quad_rows(G_C, A)
    den = s2 + _quad_rows(G_C, Sigma)
    return num / den


def _quad_rows(G: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Row-wise quadratic forms gᵀ A g (one BLAS matmul; einsum's loop is ~10× slower here)."""
    return np.sum((G @ A) * G, axis=1)


def fantasise(Sigma: np.ndarray, g: np.ndarray, s2: float) -> np.ndarray:
    """Posterior covariance after one more observation with gradient ``g`` (rank-one update)."""
    Sg = Sigma @ g
    return Sigma - np.outer(Sg, Sg) / (s2 + g @ Sg)


# ====================================================================== strategies
class Strategy:
    """Chooses which candidates to buy next. ``select(state, k)`` → up to k indices, each
    affordable within ``state.budget_left`` together, none already taken."""

    name = "strategy"

    def select(self, state: DesignState, k: int = 1) -> list[int]:
        raise NotImplementedError

    @staticmethod
    def _affordable(state: DesignState, left: float) -> np.ndarray:
        return ~state.taken & (state.candidates.cost <= left)


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
            if not state.taken[j] and state.candidates.cost[j] <= left:
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
        return -(-np.log(state.candidates.cost) + state.rng.gumbel(size=len(state.candidates)))


class CheapestFirst(_OrderStrategy):
    name = "cheapest"

    def priority(self, state):
        return state.candidates.cost


class GridOrder(_OrderStrategy):
    """The full grid, bought coarse-to-fine (maximin order in log N × log D/N) so that a budget
    cut leaves an evenly spread sub-grid; at budget fraction 1 it is the whole grid."""

    name = "grid"

    def priority(self, state):
        cands = state.candidates
        U = design_coordinates(cands.X)
        start = int(np.argmin(cands.cost))
        order = _farthest_point_order(U, start, np.ones(len(cands), dtype=bool), len(cands))
        rank = np.full(len(cands), len(cands), dtype=float)
        rank[order] = np.arange(len(order))
        return rank


def log_coordinates(X: Mapping[str, np.ndarray]) -> np.ndarray:
    """Unscaled design coordinates: (ln N, ln D/N) for (N, D) laws, else ln of every input."""
    if {"N", "D"} <= set(X):
        return np.column_stack([np.log(X["N"]), np.log(X["D"] / X["N"])])
    return np.column_stack([np.log(np.asarray(v, dtype=float)) for v in X.values()])


@dataclass(frozen=True)
class Discrepancy:
    """Model error of the law as a smooth Gaussian process in log coordinates, approximated by
    ``n_features`` random Fourier features (so everything stays a linear model of fixed size).

    Without it the linearised model trusts the law everywhere and the optimal design piles up at
    the extremes of the space (maximal leverage), where a real law fits worst; with it a run
    mostly informs targets near it, so runs far from the target region count for less.
    ``amplitude``: prior sd of the error in log loss; ``length``: correlation length in ln units."""

    amplitude: float = 0.01
    length: float = 1.5
    n_features: int = 64
    seed: int = 0

    def features(self, X: Mapping[str, np.ndarray]) -> np.ndarray:
        U = log_coordinates(X)
        rng = np.random.default_rng(self.seed)
        W = rng.standard_normal((U.shape[1], self.n_features)) / self.length
        b = rng.uniform(0, 2 * np.pi, self.n_features)
        return self.amplitude * np.sqrt(2.0 / self.n_features) * np.cos(U @ W + b)


class _ModelStrategy(Strategy):
    """Greedy gain-per-cost under the linearised posterior, with fantasised batch updates.
    Before a fit exists (fewer than P+1 runs) it buys a space-filling seed design.

    Features of a run: the law's log-Jacobian at the current optimum, plus (optionally) the
    :class:`Discrepancy` features; the posterior over their weights is Gaussian."""

    seed_fraction = 0.25  # of the total budget, for the seed design
    cost_power = 0.25  # score = gain / cost^cost_power (1 = per unit cost; see bench/active_vs_grid.py)

    def __init__(self, seed_size: int | None = None, prior_sd: float = 3.0, cost_power: float | None = None,
                 discrepancy: Discrepancy | None = None, seed_method: str = "maximin", n_linearisations: int = 1):
        self.seed_size = seed_size
        self.n_linearisations = int(n_linearisations)
        self.seed_method = seed_method
        self.prior_sd = prior_sd
        self.discrepancy = discrepancy
        if cost_power is not None:
            self.cost_power = cost_power

    def gain(self, Sigma, F_C, s2, state: DesignState, cache: dict) -> np.ndarray:
        raise NotImplementedError

    def features(self, state: DesignState, X, z=None) -> np.ndarray:
        G = log_jacobian(state.law, state.fit.z if z is None else z, X)
        G = np.where(np.isfinite(G), G, 0.0)
        if self.discrepancy is None:
            return G
        return np.hstack([G, self.discrepancy.features(X)])

    def _prior_sd(self, state: DesignState) -> np.ndarray:
        P = state.law.n_params
        R = 0 if self.discrepancy is None else self.discrepancy.n_features
        return np.concatenate([np.full(P, self.prior_sd), np.ones(R)])  # amplitude is in the features

    def _seed(self, state: DesignState, k: int) -> list[int]:
        n_seed = self.seed_size or (state.law.n_params + 3)
        want = max(n_seed - int(state.taken.sum()), 1)
        budget = max(self.seed_fraction * state.budget_total - (state.budget_total - state.budget_left), 0.0)
        budget = min(max(budget, state.budget_left * 0.5), state.budget_left)
        return seed_design(state.candidates, want, budget, state.rng, taken=state.taken, method=self.seed_method)[:k]

    def _linearisation_points(self, state: DesignState) -> list[np.ndarray]:
        """The optimum, plus draws from its sandwich covariance when ``n_linearisations > 1``
        (a mixture of linearisations: a design that is good under several plausible parameter
        values, not only under the current point estimate)."""
        fit = state.fit
        zs = [fit.z]
        if self.n_linearisations > 1 and np.all(np.isfinite(fit.cov_z)):
            lo, hi = state.law.z_bounds.T
            cov = 0.5 * (fit.cov_z + fit.cov_z.T) + 1e-12 * np.eye(fit.z.size)
            draws = state.rng.multivariate_normal(fit.z, cov, size=self.n_linearisations - 1, method="eigh")
            zs += list(np.clip(draws, lo, hi))
        return zs

    def select(self, state: DesignState, k: int = 1) -> list[int]:
        # candidate index -> gain/cost score of the picks just made (seed picks have none); a
        # sweep reports these as "why this run"
        self.last_scores: dict[int, float] = {}
        fit = state.fit
        if fit is None:
            return self._seed(state, k)
        s2 = max(float(fit.sigma), state.noise_floor) ** 2
        cands = state.candidates
        free = np.flatnonzero(~state.taken & (cands.cost <= state.budget_left))
        if free.size == 0:
            return []
        pending = cands.rows(np.asarray(state.pending, dtype=int)) if state.pending is not None and len(state.pending) else None
        views = []  # per linearisation point: [Sigma, candidate features, cache, z]
        for z in self._linearisation_points(state):
            Sigma = posterior_cov(self.features(state, fit.data.X, z), s2, self._prior_sd(state))
            if pending is not None:
                # running trials will be observed: fantasise them so free slots go elsewhere
                for f in self.features(state, pending, z):
                    Sigma = fantasise(Sigma, f, s2)
            views.append([Sigma, self.features(state, cands.rows(free), z), {"z": z}, z])
        cost = cands.cost[free]
        out, left = [], state.budget_left
        alive = np.ones(free.size, dtype=bool)
        for _ in range(k):
            alive &= cost <= left
            if not alive.any():
                break
            gain = np.mean([self.gain(S, F, s2, state, c) for S, F, c, _ in views], axis=0)
            score = np.where(alive & np.isfinite(gain), gain / cost ** self.cost_power, -np.inf)
            j = int(np.argmax(score))
            if score[j] == -np.inf:
                break
            out.append(int(free[j]))
            self.last_scores[int(free[j])] = float(score[j])
            left -= cost[j]
            alive[j] = False
            for view in views:
                view[0] = fantasise(view[0], view[1][j], s2)
        return out


class ActiveDesign(_ModelStrategy):
    """Expected reduction of target-region predictive variance per cost^cost_power, with the
    law's discrepancy modelled (see :class:`Discrepancy`) unless ``discrepancy=False``."""

    name = "active"

    def __init__(self, *args, discrepancy: Discrepancy | bool | None = True, **kwargs):
        if discrepancy is True:
            discrepancy = Discrepancy()
        super().__init__(*args, discrepancy=discrepancy or None, **kwargs)

    def gain(self, Sigma, F_C, s2, state, cache):
        if "F_T" not in cache:
            cache["F_T"] = self.features(state, state.target.X, cache["z"])
        return target_gain(Sigma, cache["F_T"], state.target.weights, F_C, s2)


class VOptimal(_ModelStrategy):
    """Average predictive variance over the whole candidate space (≤ 512 rows sampled), per cost."""

    name = "v_optimal"

    def gain(self, Sigma, F_C, s2, state, cache):
        if "F_V" not in cache:
            K = len(state.candidates)
            idx = np.arange(K) if K <= 512 else state.rng.choice(K, 512, replace=False)
            cache["F_V"] = self.features(state, state.candidates.rows(idx), cache["z"])
        F_V = cache["F_V"]
        return target_gain(Sigma, F_V, np.full(F_V.shape[0], 1.0 / F_V.shape[0]), F_C, s2)


class DOptimal(_ModelStrategy):
    """Information gain log det: log(1 + g Σ gᵀ / s²) per cost."""

    name = "d_optimal"

    def gain(self, Sigma, F_C, s2, state, cache):
        return np.log1p(_quad_rows(F_C, Sigma) / s2)


STRATEGIES: dict[str, type[Strategy]] = {
    "active": ActiveDesign,
    "random": RandomOrder,
    "cost_random": CostWeightedRandom,
    "cheapest": CheapestFirst,
    "grid": GridOrder,
    "d_optimal": DOptimal,
    "v_optimal": VOptimal,
}


def make_strategy(name: str, **kwargs) -> Strategy:
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}") from None
    return cls(**kwargs)
