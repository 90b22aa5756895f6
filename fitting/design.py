"""Active experiment design, the pure part: candidates, target regions, seeds and their
geometry. The algebra of the expected target error (linearised posterior, misfit, gains) lives
in :mod:`fitting.posterior`; the strategies that use both in :mod:`fitting.strategies`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from fitting.cost import affordable
from fitting.fit import FitResult
from fitting.law import Law
from fitting.laws import get_law
from fitting.objective import params_at_bounds
from fitting.posterior import log_coordinates

__all__ = [
    "Candidates",
    "TargetRegion",
    "DesignState",
    "seed_design",
    "farthest_point_order",
    "design_coordinates",
    "unreliable_linearisation",
]


# ====================================================================== the fit's trustworthiness
MAX_TARGET_SD = 0.05  # log loss: past this the linearised target error is itself unreliable


def unreliable_linearisation(fit: FitResult, X_target: Mapping[str, np.ndarray], scatter: float,
                             target_sd: float | None = None) -> str | None:
    """Why a design should not trust the linearisation at ``fit`` to aim at the targets, or None.

    Three signs (issue 15, measured in bench/active_vs_grid.py's ``nine`` setting): parameters at
    their bounds (:func:`fitting.objective.params_at_bounds`: the Jacobian there says the data
    cannot move them, which is the bound's doing, not the data's); the linearised posterior's own
    target sd (``target_sd``, log loss, the largest over targets) above :data:`MAX_TARGET_SD`,
    where the first-order expansion no longer describes how the parameters move the targets; or
    several multi-start optima with near-equal objective (within 1/(n − P) of the best, relative:
    an F-test's one unit) whose log-loss predictions at the targets differ by more than
    3 × ``scatter`` (log loss): the data do not choose between extrapolations, so gains aimed at
    one of them are aimed at a guess."""
    at = params_at_bounds(fit.law, fit.z, fit.data.X)
    if at:
        return f"parameters at a bound ({', '.join(at)})"
    if target_sd is not None and target_sd > MAX_TARGET_SD:
        return f"linearised target sd {target_sd:.1%} in log loss (> {MAX_TARGET_SD:.0%})"
    Z, f = fit.starts_z, fit.start_objectives
    if Z is None or f is None or len(f) < 2 or not np.isfinite(fit.objective):
        return None
    slack = 1.0 / max(fit.n_points - fit.law.n_params, 1)
    near = np.flatnonzero(np.isfinite(f) & (f <= fit.objective + slack * abs(fit.objective)))
    if near.size < 2:
        return None
    with np.errstate(all="ignore"):
        ref = np.log(fit.predict(X_target))
        spread = max(float(np.nanmax(np.abs(np.log(fit.law.predict_z(Z[i], X_target)) - ref))) for i in near)
    if spread > 3.0 * scatter:
        return f"{near.size} near-equal fit optima disagree at the targets by up to {spread:.1%} in log loss"
    return None


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


def _one_per_point(indices, cell: list) -> list[int]:
    """`indices` in order, each (N, D) point (``cell[i]``) kept at its first index only."""
    seen: set = set()
    return [int(i) for i in indices if not (cell[i] in seen or seen.add(cell[i]))]


def seed_design(candidates: Candidates, n: int, budget: float, rng: np.random.Generator,
                taken: np.ndarray | None = None, method: str = "maximin",
                budget_total: float | None = None, distinct: bool = False) -> list[int]:
    """A space-filling seed in log N × log(D/N) that costs at most ``budget``.

    ``budget_total`` (default ``budget``) is the whole budget ``budget`` is a part of: the
    float tolerance of :func:`fitting.cost.affordable` is relative to it.

    Candidates are limited to those costing ≤ budget/n (so the seed can be bought whole). Fewer
    than ``n`` (none when nothing free fits ``budget``) when the candidates or the budget run out.
    ``method="maximin"``: greedy farthest points from a random start, which reach the corners
    (the widest lever arm for α and β: best when the law is exactly right); ``"sobol"``: the
    candidate nearest each point of a scrambled Sobol sample of that region, which covers the
    interior (best when the law is only approximately right: the corners are where it fits
    worst; see bench/active_vs_grid.py).

    ``distinct``: only points of the (N, D) plane that hold no run yet, at most one pick each
    (candidates that differ only in an lr or seed axis share a point; a second run there adds no
    lever arm: a new user's seed bought three cells twice and never reached a fit); [] when no
    such point is affordable. Without it, an occupied point is only picked after the free ones."""
    taken = np.zeros(len(candidates), dtype=bool) if taken is None else taken
    free = ~taken
    cell = [tuple(row) for row in np.round(log_coordinates(candidates.X), 9)]
    occupied = {cell[i] for i in np.flatnonzero(taken)}
    if distinct:
        free = free & np.array([c not in occupied for c in cell], dtype=bool)
    if n < 1 or not free.any():
        return []
    total = budget if budget_total is None else budget_total
    allowed = free & affordable(candidates.cost, budget / n, total)
    spots = len({cell[i] for i in np.flatnonzero(allowed)}) if distinct else int(allowed.sum())
    if spots < n:  # budget too small for n spread runs: take the n cheapest free ones
        order = np.argsort(np.where(free, candidates.cost, np.inf))[: int(free.sum())]
        if distinct:  # the cheapest candidate of each point
            order = np.array(_one_per_point(order, cell), dtype=int)
        allowed = np.zeros_like(free)
        allowed[order[:n]] = True
    pool = np.flatnonzero(allowed)
    if method == "maximin":
        U = design_coordinates(candidates.X)
        picks = farthest_point_order(U, int(rng.choice(pool)), allowed, n, existing=np.flatnonzero(taken))
    elif method == "sobol":
        from scipy.stats import qmc

        U = design_coordinates(candidates.rows(pool))  # scaled to the affordable region
        m = int(np.ceil(np.log2(max(n, 2))))
        S = qmc.Sobol(d=U.shape[1], scramble=True, seed=rng).random_base2(m)[:n]
        # Candidates that differ only off the (N, D) plane (an lr or seed axis) share a point:
        # a second run there adds nothing to the law's lever arm, so an occupied point (a run
        # taken or picked there) is chosen only when every free point is occupied.
        picks, used = [], np.zeros(pool.size, dtype=bool)
        for point in S:
            crowded = np.array([cell[i] in occupied for i in pool])
            d = np.where(used, np.inf, np.sum((U - point) ** 2, axis=1) + 4.0 * crowded)  # 4 > any distance² in [0,1]²
            j = int(np.argmin(d))
            if not np.isfinite(d[j]):
                break
            used[j] = True
            occupied.add(cell[pool[j]])
            picks.append(int(pool[j]))
    else:
        raise ValueError(f"unknown seed method {method!r}: 'sobol' or 'maximin'")
    if distinct:  # one pick per point (maximin reaches a shared point's twin only when short of points)
        picks = _one_per_point(picks, cell)
    out, spent = [], 0.0
    for j in picks:
        if affordable(candidates.cost[j], budget - spent, total):
            out.append(j)
            spent += candidates.cost[j]
    return out
