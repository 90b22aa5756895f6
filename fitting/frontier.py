"""The compute-optimal frontier three ways (Hoffmann et al. 2022, §3): N_opt ∝ C^a, D_opt ∝ C^b
and N_opt, D_opt, loss at a budget C, each with an interval. Pure numpy; what ``scalesweep
frontier`` prints (:mod:`fitting.frontier_cli`).

* :func:`envelope_frontier` — approach 1: over a sweep's training curves, the lowest loss at each
  FLOPs level (:func:`fitting.dynamics.frontier`) and the run attaining it; N_opt is that run's N,
  D_opt the tokens it had seen there. Only levels at least two runs reach count (above the
  second-largest run's compute the largest run wins by default, not by comparison), and only
  levels won by neither the smallest nor the largest size.
* :func:`isoflop_frontier` — approach 2: runs grouped by budget (the ``isoflop_budget`` column, or
  compute within a tolerance: :func:`group_by_compute`); per budget a parabola of loss against
  ln N, its vertex N* with a bootstrap interval. A budget with < 3 distinct N is skipped, one
  whose profile is not convex or whose vertex lies outside its sampled N is flagged; neither is
  used.
* :func:`parametric_frontier` — approach 3: a fitted law (:func:`fitting.fit.fit_law`) through
  :func:`fitting.allocate.compute_optimal_allocation`.
* :func:`compare_frontiers` — the one-line verdict.

Conventions: C = k·N·D FLOPs (k = ``flops_per_token``, 6 by default) in all three, so their N_opt
at C compare; a and b are slopes of log N_opt and log D_opt against log C fitted by least squares
on the approach's points (envelope levels, budget vertices), and the loss at C extrapolates
L = E + A·C^-γ fitted to the points' losses (E = 0, a pure power law, with fewer than 4 points;
noted). Intervals (``level``, default 90 %) are percentile bootstraps over runs:
approach 1 resamples whole runs (curves); approach 2 resamples runs within each budget and, with
``RESAMPLE_BUDGETS`` budgets or more, the budgets too (fewer would leave too few distinct
budgets in a resample to fit a line and a loss curve); approach 3 uses the fit's own bootstrap/sandwich samples.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

__all__ = ["FrontierResult", "envelope_frontier", "isoflop_frontier", "parametric_frontier", "compare_frontiers",
           "group_by_compute", "unsupported", "frontier_resamples", "AGREE_FACTOR", "DEFAULT_TOLERANCE",
           "MIN_RESAMPLES"]

#: Approaches agree when their a intervals overlap pairwise and their N_opt at C lie within this factor.
AGREE_FACTOR = 2.0
#: Half-width, in decades of compute (log10 C), of a budget when runs are grouped by compute.
DEFAULT_TOLERANCE = 0.05
#: From this many used isoFLOP budgets on, the bootstrap resamples the budgets as well as their runs.
RESAMPLE_BUDGETS = 6
#: Fewest resamples approaches 1 and 2 take (``frontier_resamples``): ``frontier`` and the report alike.
MIN_RESAMPLES = 200


def frontier_resamples(n_bootstrap: int) -> int:
    """Resamples of approaches 1 and 2 for a fit's ``n_bootstrap`` (``--bootstrap``): at least
    ``MIN_RESAMPLES`` (a fit with 0, the sandwich, still gets bootstrap frontier intervals)."""
    return max(int(n_bootstrap), MIN_RESAMPLES)
NAN = float("nan")
NAN2 = (NAN, NAN)


@dataclass
class FrontierResult:
    """One approach's answer. ``a``, ``b``: exponents of N_opt ∝ C^a, D_opt ∝ C^b; ``n_opt``
    (parameters), ``d_opt`` (tokens), ``loss`` (nats/token) at ``compute`` (FLOPs); each ``*_ci``
    a (lo, hi) interval at ``level``. ``supported`` False: ``reason`` says why, numbers are NaN.
    ``floor``: the irreducible loss E of the law behind the answer (parametric only; NaN else).
    ``loss_ci`` is a parameters-only (confidence) interval in every approach, so the verdict
    compares like with like (``loss_kind`` says which); ``loss_prediction_ci`` (parametric only)
    is the prediction interval ``plan`` prints for the same loss (:attr:`fitting.allocate.Allocation.loss_interval`),
    which holds ``loss_ci``. An interval the data cannot give (the resamples cannot move the
    number: an exactly determined fit) is NaN, never zero-width, and a note says why.
    ``points``: the (C, N_opt, D_opt, loss) points the exponents were fitted to; ``profiles``
    (isoFLOP only): per budget its runs, parabola, vertex and status; ``notes``: budgets skipped or
    flagged, and other caveats."""

    approach: str
    supported: bool
    reason: str | None = None
    compute: float = NAN
    a: float = NAN
    a_ci: tuple[float, float] = NAN2
    b: float = NAN
    b_ci: tuple[float, float] = NAN2
    n_opt: float = NAN
    n_opt_ci: tuple[float, float] = NAN2
    d_opt: float = NAN
    d_opt_ci: tuple[float, float] = NAN2
    loss: float = NAN
    loss_ci: tuple[float, float] = NAN2
    level: float = 0.9
    method: str = ""
    notes: list[str] = field(default_factory=list)
    points: dict[str, list[float]] = field(default_factory=dict)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    floor: float = NAN
    loss_kind: str = "confidence, bootstrap over runs"
    loss_prediction_ci: tuple[float, float] = NAN2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def unsupported(approach: str, reason: str, compute: float, level: float, notes=(), profiles=()) -> FrontierResult:
    """An approach the data cannot support: NaN numbers, ``reason`` says why."""
    return FrontierResult(approach, False, reason, compute=float(compute), level=level, notes=list(notes),
                          profiles=list(profiles))


# ====================================================================== shared: power laws in C
def _slopes(C, N, D, L, compute: float) -> np.ndarray:
    """Least squares of ln N, ln D on ln C and :func:`_loss_curve` → [a, b, N(C), D(C), L(C)] at
    ``compute``."""
    x = np.log(np.asarray(C, float))
    out = []
    for y in (N, D):
        slope, icpt = np.polyfit(x, np.log(np.asarray(y, float)), 1)
        out.append((slope, math.exp(icpt + slope * math.log(compute))))
    (a, n), (b, d) = out
    return np.array([a, b, n, d, _loss_curve(x, np.asarray(L, float), math.log(compute))])


def _loss_curve(x, L, x_at: float, n_e: int = 200) -> float:
    """L(C) = E + A·C^-γ through the points (x = ln C), evaluated at ``x_at``: least squares of
    ln(L − E) on x for each E on a grid over [0, min L) and the best E kept (profiling E out keeps
    it linear). Fewer than 4 distinct C: E = 0 (a pure power law)."""
    saturating = np.unique(x).size >= 4
    E = np.linspace(0.0, 0.995 * L.min(), n_e)[:, None] if saturating else np.zeros((1, 1))
    y = np.log(L[None, :] - E)  # (E, points)
    xc = x - x.mean()
    slope = (y - y.mean(1, keepdims=True)) @ xc / (xc @ xc)
    icpt = y.mean(1) - slope * x.mean()
    sse = ((y - icpt[:, None] - slope[:, None] * x[None, :]) ** 2).sum(1)
    j = int(np.argmin(sse))
    return float(E[j, 0] + math.exp(icpt[j] + slope[j] * x_at))


QUANTITIES = ("a", "b", "N_opt", "D_opt", "loss")


def _answer(approach, C, N, D, L, reps: np.ndarray, compute: float, level: float, method: str,
            notes: list[str], profiles=(), no_interval: str | None = None) -> FrontierResult:
    """The point estimate from the points and percentile intervals from bootstrap replicates
    ``reps`` (R, 5) of :func:`_slopes`. ``no_interval``: why the data give no interval at all
    (every interval NaN). A quantity the resamples do not move (zero spread: an exactly
    determined fit, which resampling reproduces) gets no interval either, never a zero-width one."""
    est = _slopes(C, N, D, L, compute)
    ok = np.all(np.isfinite(reps), axis=1)
    q = [(1 - level) / 2, (1 + level) / 2]
    ci = [tuple(float(v) for v in np.quantile(reps[ok, j], q)) if ok.sum() >= 2 and not no_interval else NAN2
          for j in range(5)]
    if no_interval:
        notes = notes + [f"no intervals (not identified): {no_interval}"]
    elif ok.sum() < 2:
        notes = notes + ["too few usable bootstrap resamples for intervals"]
    fixed = [j for j in range(5) if np.isfinite(ci[j][0]) and not ci[j][1] - ci[j][0] > 1e-9 * abs(est[j])]
    if fixed:
        ci = [NAN2 if j in fixed else ci[j] for j in range(5)]
        notes = notes + [f"no interval for {', '.join(QUANTITIES[j] for j in fixed)} (not identified): every resample "
                         f"gives the same value (the points determine it exactly, so resampling cannot move it)"]
    if np.unique(C).size < 4:
        notes = notes + ["loss at C: a pure power law in C (too few points to fit an irreducible term)"]
    return FrontierResult(approach, True, None, float(compute), float(est[0]), ci[0], float(est[1]), ci[1],
                          float(est[2]), ci[2], float(est[3]), ci[3], float(est[4]), ci[4], level,
                          f"{method}; {int(ok.sum())} resamples", notes,
                          {"C": list(map(float, C)), "N_opt": list(map(float, N)), "D_opt": list(map(float, D)),
                           "loss": list(map(float, L))}, list(profiles))


# ====================================================================== approach 1: envelope of curves
def _envelope_points(C, L, N, D, run, points_per_decade: int, min_runs: int):
    from fitting.dynamics import frontier

    grid, best, winner, cover = frontier(C, L, run, points_per_decade, detail=True)
    n_opt = np.empty(grid.size)
    d_opt = np.empty(grid.size)
    for r in np.unique(winner):
        m, w = run == r, winner == r
        order = np.argsort(C[m])
        n_opt[w] = N[m][0]
        d_opt[w] = np.exp(np.interp(np.log(grid[w]), np.log(C[m][order]), np.log(D[m][order])))
    # a level won by the smallest or largest size swept may have its optimum outside the sweep
    keep = (cover >= min_runs) & (n_opt > N.min()) & (n_opt < N.max())
    return grid[keep], n_opt[keep], d_opt[keep], best[keep]


def envelope_frontier(curves: Mapping[str, np.ndarray], compute: float, *, flops_per_token: float = 6.0,
                      n_bootstrap: int = 200, level: float = 0.9, seed: int = 0, points_per_decade: int = 8,
                      min_runs: int = 2) -> FrontierResult:
    """Approach 1 from curve rows (``trial_id``, ``N`` parameters, ``tokens_seen`` tokens,
    ``val_loss``; :func:`fitting.dynamics.read_curves`): C = k·N·tokens_seen per row, the envelope
    on ``points_per_decade`` log-spaced levels that at least ``min_runs`` runs reach, N_opt the
    attaining run's N, D_opt its tokens seen there; levels won by the smallest or the largest size
    are left out (the optimum may lie outside the sizes swept, as a flagged isoFLOP vertex). Intervals: bootstrap over runs
    (``n_bootstrap`` resamples of whole curves). Unsupported (not raised) with fewer than 2
    winning sizes or 3 levels."""
    run = np.asarray(curves["trial_id"]).astype(str)
    N = np.asarray(curves["N"], float)
    D = np.asarray(curves["tokens_seen"], float)
    L = np.asarray(curves["val_loss"], float)
    ok = np.isfinite(N) & np.isfinite(D) & np.isfinite(L) & (N > 0) & (D > 0) & (L > 0)
    run, N, D, L = run[ok], N[ok], D[ok], L[ok]
    C = flops_per_token * N * D
    if np.unique(run).size < 2:
        return unsupported("envelope", f"curves of {np.unique(run).size} run(s); the envelope needs several",
                            compute, level)
    grid, n_opt, d_opt, best = _envelope_points(C, L, N, D, run, points_per_decade, min_runs)
    if grid.size < 3 or np.unique(n_opt).size < 2:
        return unsupported("envelope", f"the envelope has {grid.size} FLOPs levels reached by ≥ {min_runs} runs "
                            f"and {np.unique(n_opt).size} winning size(s); needs ≥ 3 levels and ≥ 2 sizes",
                            compute, level)
    rng = np.random.default_rng(seed)
    labels = np.unique(run)
    reps = np.full((n_bootstrap, 5), np.nan)
    for i in range(n_bootstrap):
        m = np.isin(run, rng.choice(labels, labels.size))  # duplicates do not change a minimum
        g, n, d, l = _envelope_points(C[m], L[m], N[m], D[m], run[m], points_per_decade, min_runs)
        if g.size >= 3 and np.unique(n).size >= 2:
            reps[i] = _slopes(g, n, d, l, compute)
    notes = [f"{grid.size} FLOPs levels from {labels.size} runs' curves, {np.unique(n_opt).size} winning sizes; "
             f"N_opt is the winning run's N (steps between the sizes swept)"]
    return _answer("envelope", grid, n_opt, d_opt, best, reps, compute, level, "bootstrap over runs (curves)", notes)


# ====================================================================== approach 2: isoFLOP profiles
def group_by_compute(compute, tolerance: float = DEFAULT_TOLERANCE) -> np.ndarray:
    """Group labels (−1: no group) for runs by compute: repeatedly the window of width
    2·``tolerance`` decades of log10 C holding the most runs becomes a budget, until no window
    holds two. Greedy by density, so noisy C (runs read off a figure) cluster around the budgets
    actually swept instead of chaining neighbours. Raises ValueError for a tolerance ≤ 0."""
    if not tolerance > 0:
        raise ValueError(f"--tolerance must be positive (decades of log10 compute), got {tolerance}")
    x = np.log10(np.asarray(compute, float))
    label = np.full(x.size, -1)
    order = np.argsort(x)
    g = 0
    while True:
        free = order[label[order] == -1]
        xs = x[free]
        if xs.size < 2:
            break
        counts = np.searchsorted(xs, xs + 2 * tolerance, side="right") - np.arange(xs.size)
        i = int(np.argmax(counts))
        if counts[i] < 2:
            break
        label[free[i:i + counts[i]]] = g
        g += 1
    return label


def _vertex(x, y):
    """Parabola y = p0 x² + p1 x + p2 → (vertex x, vertex y, p) or (NaN, NaN, p) if not convex."""
    p = np.polyfit(x, y, 2)
    if not p[0] > 0:
        return NAN, NAN, p
    xv = -p[1] / (2 * p[0])
    return xv, float(np.polyval(p, xv)), p


def _profile(C_b: float, N, L, n_bootstrap: int, rng) -> dict[str, Any]:
    """One budget's profile: parabola of L on ln N, vertex, bootstrap vertices over its runs."""
    x = np.log(N)
    prof = {"compute": float(C_b), "N": list(map(float, N)), "loss": list(map(float, L)), "used": False}
    n_distinct = np.unique(N).size
    if n_distinct < 3:
        prof["status"] = f"skipped: {n_distinct} distinct N (a parabola needs 3)"
        return prof
    exact = x.size <= 3  # as many runs as the parabola has parameters: every resample refits the same 3 points
    xv, lv, p = _vertex(x, L)
    prof["parabola"] = list(map(float, p))
    if not np.isfinite(xv):
        prof["status"] = "flagged: the profile is not convex (no minimum)"
        return prof
    prof.update(N_opt=math.exp(xv), loss_opt=lv)
    if not x.min() <= xv <= x.max():
        prof["status"] = (f"flagged: vertex N {math.exp(xv):.3g} outside the sampled N "
                          f"[{N.min():.3g}, {N.max():.3g}]")
        return prof
    boot = np.full((n_bootstrap, 2), np.nan)
    for i in range(0 if exact else n_bootstrap):
        j = rng.integers(0, x.size, x.size)
        if np.unique(x[j]).size >= 3:
            bx, bl, _ = _vertex(x[j], L[j])
            boot[i] = (bx, bl)
    prof.update(used=True, status="used (3 runs for a 3-parameter parabola: exactly determined, no vertex interval)"
                if exact else "used", boot=boot, exact=exact)
    return prof


def isoflop_frontier(N, loss, compute, compute_at: float, *, budget=None, tolerance: float = DEFAULT_TOLERANCE,
                     flops_per_token: float = 6.0, n_bootstrap: int = 200, level: float = 0.9,
                     seed: int = 0) -> FrontierResult:
    """Approach 2 from final runs: ``N`` (parameters), ``loss`` (nats/token) and ``compute``
    (FLOPs) per run. ``budget``: the runs' planned budgets (the ``isoflop_budget`` column; NaN for
    a run of no budget) — else runs are grouped by compute within ``tolerance`` decades
    (:func:`group_by_compute`) and a budget's C is its runs' median. Per budget a parabola of loss
    on ln N; the vertices of the used budgets give a, b (D* = C/(k·N*)) and the values at
    ``compute_at``. Unsupported (not raised) with fewer than 2 used budgets, each skip and flag
    named in ``notes``."""
    N, L, C = (np.asarray(v, float) for v in (N, loss, compute))
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    if budget is not None:
        budget = np.asarray(budget, float)
        member = np.isfinite(budget) & (budget > 0)
        if (~member).any():
            notes.append(f"{int((~member).sum())} of {budget.size} runs have no isoflop_budget: not on any profile")
        values = np.unique(budget[member])
        label = np.where(member, np.searchsorted(values, np.where(member, budget, 0)), -1)
        centres = values
        how = "isoflop_budget column"
    else:
        label = group_by_compute(C, tolerance)
        centres = np.array([10 ** np.median(np.log10(C[label == g])) for g in range(label.max() + 1)])
        how = f"compute within ±{tolerance:g} decades"
        if (label < 0).any():
            notes.append(f"{int((label < 0).sum())} of {C.size} runs share no budget (±{tolerance:g} decades of "
                         f"log10 C) with another run")
    profiles = [_profile(centres[g], N[label == g], L[label == g], n_bootstrap, rng) for g in range(len(centres))]
    notes += [f"budget {p['compute']:.3g} FLOPs ({len(p['N'])} runs): {p['status']}" for p in profiles if not p["used"]]
    used = [p for p in profiles if p["used"]]
    if len(used) < 2:
        reason = (f"{len(used)} usable isoFLOP budget(s) of {len(profiles)} grouped by {how}; needs ≥ 2 budgets "
                  f"with ≥ 3 distinct N each and an interior vertex" if profiles else
                  f"no runs share a budget (grouped by {how}); set --tolerance or an isoflop_budget column")
        return unsupported("isoflop", reason, compute_at, level, notes, _plain(profiles))
    Cb = np.array([p["compute"] for p in used])
    xv = np.array([math.log(p["N_opt"]) for p in used])
    lv = np.array([p["loss_opt"] for p in used])
    boot = np.stack([_resample_valid(p, n_bootstrap, rng) for p in used])  # (budgets, B, 2)
    reps = np.full((n_bootstrap, 5), np.nan)
    for i in range(n_bootstrap):
        pick = rng.integers(0, len(used), len(used)) if len(used) >= RESAMPLE_BUDGETS else np.arange(len(used))
        bx, bl = boot[pick, i, 0], boot[pick, i, 1]
        if np.unique(pick).size >= 2 and np.all(np.isfinite(bx)) and np.all(bl > 0):
            n = np.exp(bx)
            reps[i] = _slopes(Cb[pick], n, Cb[pick] / (flops_per_token * n), bl, compute_at)
    notes.insert(0, f"{len(used)} of {len(profiles)} budgets used (grouped by {how})")
    n = np.exp(xv)
    method = "bootstrap over runs within each budget" + (" and over budgets" if len(used) >= RESAMPLE_BUDGETS else "")
    # A budget whose vertex no resample can move has its spread counted as 0 (a new user's 3 sizes
    # per budget gave a [0.765, 0.765]). Resampling the budgets too carries the vertices' scatter
    # between budgets, which holds theirs; without that, the frontier has no interval.
    fixed = [p for p in used if not np.isfinite(p["boot"]).all(axis=1).any()]
    which = ", ".join(f"{p['compute']:.3g}" for p in fixed)
    why = None
    if fixed and len(used) < RESAMPLE_BUDGETS:
        why = (f"no resample moves the vertex of budget(s) {which} FLOPs (a parabola through 3 runs is exactly "
               f"determined) and {len(used)} budgets are too few to resample ({RESAMPLE_BUDGETS} needed); sweep at "
               f"least 4 sizes per budget (search.sizes_per_budget) or repeat seeds")
    elif fixed:
        notes.append(f"budget(s) {which} FLOPs: vertex exactly determined (no resample moves it), held at its point; "
                     f"the resampling of the {len(used)} budgets carries their scatter")
    return _answer("isoflop", Cb, n, Cb / (flops_per_token * n), lv, reps, compute_at, level, method, notes,
                   _plain(profiles), no_interval=why)


def _resample_valid(prof, n: int, rng) -> np.ndarray:
    """``n`` of a budget's bootstrap vertices drawn from its valid ones (a resample with < 3
    distinct N has none), so one small budget does not void a whole replicate; its point vertex
    when none is valid (an exactly determined parabola): that counts its own spread as 0, so
    :func:`isoflop_frontier` reports intervals then only when it resamples the budgets too."""
    boot = prof["boot"]
    valid = boot[np.all(np.isfinite(boot), axis=1)]
    if not len(valid):
        return np.tile([math.log(prof["N_opt"]), prof["loss_opt"]], (n, 1))
    return valid[rng.integers(0, len(valid), n)]


def _plain(profiles):
    """Profiles without their bootstrap arrays (what JSON and the plot need)."""
    return [{k: v for k, v in p.items() if k != "boot"} for p in profiles]


# ====================================================================== approach 3: parametric
def parametric_frontier(fit, compute: float, *, level: float = 0.9, flops_per_token: float = 6.0,
                        seed: int = 0) -> FrontierResult:
    """Approach 3: the fitted law's allocation at ``compute`` FLOPs
    (:func:`fitting.allocate.compute_optimal_allocation`: N_opt, D_opt and a from the fit's bootstrap
    or sandwich samples, the loss's parameter part by the default part's rule; ``method`` says which). b = 1 − a (D = C/(k·N)). Unsupported when the runs cannot identify the
    allocation or the law has no N and D inputs."""
    from fitting.allocate import compute_optimal_allocation

    if not {"N", "D"} <= set(fit.law.inputs):
        return unsupported("parametric", f"law {fit.law.name} has no N and D inputs to allocate", compute, level)
    p = compute_optimal_allocation(fit, compute, level=level, flops_per_token=flops_per_token, seed=seed)
    if not p.identified:
        return unsupported("parametric", f"the fit is not identified: {p.unidentified_reason}", compute, level)
    iv = p.intervals
    a_ci = iv.get("exponent_a", NAN2)
    return FrontierResult("parametric", True, None, float(compute), p.exponent_a, a_ci, 1 - p.exponent_a,
                          (1 - a_ci[1], 1 - a_ci[0]), p.N_opt, iv.get("N_opt", NAN2), p.D_opt, iv.get("D_opt", NAN2),
                          p.loss, iv.get("loss", NAN2), level, f"{fit.law.name} fit; {p.sources(heading=False)}", list(p.notes),
                          floor=float(fit.params.get("E", NAN)),
                          loss_kind="confidence, the parameter part of plan's prediction interval",
                          loss_prediction_ci=tuple(p.loss_interval or NAN2))


# ====================================================================== the verdict
def _disjoint(r: FrontierResult, s: FrontierResult, attr: str) -> bool:
    (lo1, hi1), (lo2, hi2) = getattr(r, attr + "_ci"), getattr(s, attr + "_ci")
    return hi1 < lo2 or hi2 < lo1


def _has_ci(r: FrontierResult, attr: str) -> bool:
    return bool(np.all(np.isfinite(getattr(r, attr + "_ci"))))


def compare_frontiers(results, factor: float = AGREE_FACTOR) -> str:
    """One line: what the approaches agree on and what not, each judged on its own.

    * exponents: every pair's a intervals overlap (pairs without intervals are not compared: an
      unidentified interval is no evidence of agreement);
    * N_opt at C: largest / smallest within ``factor``;
    * loss at C: every pair's parameters-only loss intervals overlap (``loss_ci``, like with like:
      the parametric fit's is the parameter part of its prediction interval; pairs without
      intervals are not compared);
    * no approach's loss lies below another's fitted floor E (`FrontierResult.floor`): a law's own
      irreducible loss is the least it allows at any compute.

    "agree" only when every check passes; else "DISAGREE (what fails, with the numbers)" and, when
    some checks pass, "agree on ..." after it."""
    ok = [r for r in results if r.supported]
    if len(ok) < 2:
        return (f"verdict: only {ok[0].approach} answered; nothing to compare" if ok else
                "verdict: no approach answered")
    names = ", ".join(r.approach for r in ok)
    pairs = [(r, s) for i, r in enumerate(ok) for s in ok[i + 1:]]
    c = f"{ok[0].compute:.3g} FLOPs"
    agree, why = [], []
    with_a = [(r, s) for r, s in pairs if _has_ci(r, "a") and _has_ci(s, "a")]
    apart = [f"{r.approach} vs {s.approach}" for r, s in with_a if _disjoint(r, s, "a")]
    if apart:
        why.append(f"a intervals disjoint for {'; '.join(apart)}")
    elif with_a:
        agree.append("a intervals overlap")
    missing = [f"{attr} of {', '.join(r.approach for r in ok if np.isfinite(getattr(r, attr)) and not _has_ci(r, attr))}"
               for attr in ("a", "loss") if any(np.isfinite(getattr(r, attr)) and not _has_ci(r, attr) for r in ok)]
    unknown = f"; not compared (no interval: not identified): {'; '.join(missing)}" if missing else ""
    n = [r.n_opt for r in ok]
    ratio = max(n) / min(n)
    (agree if ratio <= factor else why).append(
        f"N_opt at {c} within ×{ratio:.2f}, ≤ ×{factor:g}" if ratio <= factor else f"N_opt at {c} spans ×{ratio:.2f} > ×{factor:g}")
    compared = [(r, s) for r, s in pairs if _has_ci(r, "loss") and _has_ci(s, "loss")]
    loss_apart = [f"{r.approach} {r.loss:.4g} [{r.loss_ci[0]:.4g}, {r.loss_ci[1]:.4g}] vs {s.approach} {s.loss:.4g} "
                  f"[{s.loss_ci[0]:.4g}, {s.loss_ci[1]:.4g}]" for r, s in compared if _disjoint(r, s, "loss")]
    if loss_apart:
        why.append(f"loss intervals (parameters only) at {c} disjoint: {'; '.join(loss_apart)}")
    elif compared:
        agree.append("loss intervals (parameters only) overlap")
    why += [f"{r.approach}'s loss {r.loss:.4g} is below {s.approach}'s fitted floor E = {s.floor:.4g}"
            for r in ok for s in ok if r is not s and np.isfinite(s.floor) and r.loss < s.floor]
    if not why:
        return f"verdict: {names} agree ({'; '.join(agree)}){unknown}"
    return (f"verdict: {names} DISAGREE ({'; '.join(why)})" + (f"; agree on: {'; '.join(agree)}" if agree else "")
            + unknown)
