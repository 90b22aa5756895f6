"""Active experiment design, the pure part: candidates, target regions, seeds and the algebra
of the expected target error. The strategies that use it live in :mod:`fitting.strategies`.

The model is the *linearised (Laplace/Fisher) posterior* of the law in its transformed
parameters z, with J the Jacobian of log L̂ (:func:`fitting.fit.log_jacobian`) at the current
fit and s the run-to-run scatter of log loss. The truth is allowed to differ from the law by a
smooth *discrepancy* δ(x) (a Gaussian process in log N × log D/N, random Fourier features Φ so
everything stays a linear model of fixed size) that the fit does not model, so it leaks into
the fitted parameters. For the law-only estimator the expected squared error of log loss at a
target t is

    E[e_t²] = g_tᵀ Σ g_t + |r_t|²,     Σ = (JᵀJ/s² + Λ₀)⁻¹,   r_t = Bᵀg_t − φ_t,   B = Σ JᵀΦ/s²,

variance plus the squared bias that the discrepancy at the design points (B: parameter shift
per unit discrepancy) causes at t, less the discrepancy at t itself. Observing a candidate c
(law gradient g_c, discrepancy features φ_c) is a rank-one update, u = Σ g_c, d = s² + g_cᵀu:

    Σ' = Σ − u uᵀ/d,   B' = B − u r_cᵀ/d,   r_t' = r_t − β r_c,   β = g_tᵀu/d,

so the expected reduction of the weighted target error is, vectorised over candidates,

    gain(c) = Σ_t w_t [β² (d − |r_c|²) + 2 β r_tᵀr_c]

(O(K·(P² + P·m + R·m))). With no discrepancy (Φ = 0) it is the classical reduction of target
predictive variance; with one, runs whose own misfit would drag the parameters (large |r_c|,
high leverage far from the targets) can score *negative*: the Box–Draper lesson that designs at
the extremes of the space are the least robust to a wrong model. Fantasised observations are
free in a linear model, so batches are greedy with these updates and concurrent slots get
diverse runs. Variance of *log* loss is relative error squared, so targets at different loss
scales are weighed alike.
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
    "seed_design",
    "farthest_point_order",
    "design_coordinates",
    "log_coordinates",
    "Discrepancy",
    "LinearPosterior",
    "law_gradients",
    "posterior_cov",
    "quad_rows",
    "target_gain",
    "expected_error_reduction",
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
        """Raises ValueError for a region with no points (nothing to predict, every gain 0)."""
        cols = {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in X.items()}
        n = len(next(iter(cols.values()))) if cols else 0
        if n == 0:
            raise ValueError("target region: no points")
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
    """What a strategy sees: the candidates, which are taken, the current fit, the budget.

    Budgets are in the unit of ``candidates.cost`` (FLOPs in a sweep). ``score_cost``, when
    given, is what a run costs for *ranking* (e.g. predicted seconds from measured throughput,
    :class:`fitting.cost.ThroughputModel`); affordability is still judged by ``cost``."""

    law: Law
    candidates: Candidates
    target: TargetRegion
    taken: np.ndarray  # bool (K,): bought, running or finished
    budget_total: float
    budget_left: float
    fit: FitResult | None = None
    noise_floor: float = 0.01  # s is at least this (log-loss units): one run never looks exact
    pending: np.ndarray | None = None  # indices bought but not yet observed (running trials)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    score_cost: np.ndarray | None = None

    def ranking_cost(self) -> np.ndarray:
        return self.candidates.cost if self.score_cost is None else np.asarray(self.score_cost, dtype=float)


# ====================================================================== geometry
def log_coordinates(X: Mapping[str, np.ndarray]) -> np.ndarray:
    """Unscaled design coordinates: (ln N, ln D/N) for (N, D) laws, else ln of every input."""
    if {"N", "D"} <= set(X):
        return np.column_stack([np.log(X["N"]), np.log(X["D"] / X["N"])])
    return np.column_stack([np.log(np.asarray(v, dtype=float)) for v in X.values()])


def design_coordinates(X: Mapping[str, np.ndarray]) -> np.ndarray:
    """(log N, log D/N) scaled to [0, 1]: the plane in which seeds should spread out (runs at one
    tokens-per-parameter ratio leave α and β unidentifiable)."""
    u = log_coordinates(X)
    if u.shape[0] == 0:
        return u
    lo, hi = u.min(axis=0), u.max(axis=0)
    return (u - lo) / np.where(hi > lo, hi - lo, 1.0)


def farthest_point_order(U: np.ndarray, start: int, allowed: np.ndarray, k: int, existing=None) -> list[int]:
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

    Candidates are limited to those costing ≤ budget/n (so the seed can be bought whole). Fewer
    than ``n`` (none when nothing free fits ``budget``) when the candidates or the budget run out.
    ``method="maximin"``: greedy farthest points from a random start, which reach the corners
    (the widest lever arm for α and β: best when the law is exactly right); ``"sobol"``: the
    candidate nearest each point of a scrambled Sobol sample of that region, which covers the
    interior (best when the law is only approximately right: the corners are where it fits
    worst; see bench/active_vs_grid.py)."""
    taken = np.zeros(len(candidates), dtype=bool) if taken is None else taken
    free = ~taken
    if n < 1 or not free.any():
        return []
    cap = budget / n
    allowed = free & (candidates.cost <= cap)
    if allowed.sum() < n:  # budget too small for n spread runs: take the n cheapest free ones
        order = np.argsort(np.where(free, candidates.cost, np.inf))
        allowed = np.zeros_like(free)
        allowed[order[: min(n, free.sum())]] = True
    pool = np.flatnonzero(allowed)
    if method == "maximin":
        U = design_coordinates(candidates.X)
        picks = farthest_point_order(U, int(rng.choice(pool)), allowed, n, existing=np.flatnonzero(taken))
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


@dataclass(frozen=True)
class Discrepancy:
    """Prior on how far the truth may stray from the law: a smooth Gaussian process in log
    coordinates (squared-exponential kernel), approximated by ``n_features`` random Fourier
    features. ``amplitude``: prior sd of the misfit in log loss (0.04 = the law may be off by a
    few per cent); ``length``: its correlation length in ln units (2 = a factor e² ≈ 7 in N or
    D/N). Defaults measured on the Epoch replay (bench/active_vs_grid.py): target error is flat
    for amplitude 0.04–0.06 and length 2–3, and much worse with no discrepancy at all."""

    amplitude: float = 0.04
    length: float = 2.0
    n_features: int = 128
    seed: int = 0

    def features(self, X: Mapping[str, np.ndarray]) -> np.ndarray:
        U = log_coordinates(X)
        rng = np.random.default_rng(self.seed)
        W = rng.standard_normal((U.shape[1], self.n_features)) / self.length
        b = rng.uniform(0, 2 * np.pi, self.n_features)
        return self.amplitude * np.sqrt(2.0 / self.n_features) * np.cos(U @ W + b)


# ====================================================================== linear algebra (pure)
def law_gradients(law: Law, z: np.ndarray, X: Mapping[str, np.ndarray]) -> np.ndarray:
    """∂ log L̂ / ∂z at each row of X (non-finite entries, e.g. a term that underflowed, as 0)."""
    if len(next(iter(X.values()))) == 0:
        return np.zeros((0, law.n_params))
    G = log_jacobian(law, z, X)
    return np.where(np.isfinite(G), G, 0.0)


def posterior_cov(J_obs: np.ndarray, s2: float, prior_sd: float | np.ndarray = 3.0) -> np.ndarray:
    """Σ = (JᵀJ/s² + I/prior_sd²)⁻¹ in z space; the weak prior keeps Σ finite on tiny designs."""
    P = J_obs.shape[1]
    prec = J_obs.T @ J_obs / s2 + np.diag(np.broadcast_to(1.0 / np.asarray(prior_sd, dtype=float) ** 2, (P,)))
    return np.linalg.inv(prec)


def quad_rows(G: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Row-wise quadratic forms gᵀ A g (one BLAS matmul; einsum's loop is ~10× slower here)."""
    return np.sum((G @ A) * G, axis=1)


def target_gain(Sigma: np.ndarray, G_T: np.ndarray, w_T: np.ndarray, G_C: np.ndarray, s2: float) -> np.ndarray:
    """Expected reduction of Σ_t w_t Var[log L̂(t)] from observing each candidate (rows of G_C)."""
    A = Sigma @ (G_T.T * w_T) @ G_T @ Sigma  # M = Σ G_Tᵀ W G_T Σ
    return quad_rows(G_C, A) / (s2 + quad_rows(G_C, Sigma))


def expected_error_reduction(Sigma: np.ndarray, B: np.ndarray, G_T: np.ndarray, Phi_T: np.ndarray, w_T: np.ndarray,
                             G_C: np.ndarray, Phi_C: np.ndarray, s2: float) -> np.ndarray:
    """Expected reduction of Σ_t w_t E[(log L̂(t) − log L(t))²] (variance + discrepancy bias, see
    the module docstring) from observing each candidate (rows of G_C, Phi_C)."""
    U = G_C @ Sigma
    d = s2 + np.sum(U * G_C, axis=1)
    R_C = G_C @ B - Phi_C
    R_T = G_T @ B - Phi_T
    beta = (U @ G_T.T) / d[:, None]  # (K, m)
    per_target = beta**2 * (d - np.sum(R_C**2, axis=1))[:, None] + 2.0 * beta * (R_C @ R_T.T)
    return per_target @ w_T


def fantasise(Sigma: np.ndarray, g: np.ndarray, s2: float) -> np.ndarray:
    """Posterior covariance after one more observation with gradient ``g`` (rank-one update)."""
    Sg = Sigma @ g
    return Sigma - np.outer(Sg, Sg) / (s2 + g @ Sg)


@dataclass
class LinearPosterior:
    """Σ and B (see the module docstring) for the runs observed so far, updated in place as runs
    are (really or fantastically) added. ``B`` has zero columns when no discrepancy is modelled."""

    Sigma: np.ndarray
    B: np.ndarray
    s2: float

    @classmethod
    def from_runs(cls, G_obs: np.ndarray, Phi_obs: np.ndarray, s2: float, prior_sd: float = 3.0) -> "LinearPosterior":
        Sigma = posterior_cov(G_obs, s2, prior_sd)
        return cls(Sigma, Sigma @ G_obs.T @ Phi_obs / s2, s2)

    def add(self, g: np.ndarray, phi: np.ndarray) -> None:
        u = self.Sigma @ g
        d = self.s2 + g @ u
        r = self.B.T @ g - phi
        self.Sigma = self.Sigma - np.outer(u, u) / d
        self.B = self.B - np.outer(u, r) / d
