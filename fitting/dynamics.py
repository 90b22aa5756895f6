"""Training dynamics (Kaplan et al. 2020, §5): the critical batch size and the step and compute
a run would have needed at the ideal batch size.

* :func:`b_crit` — B_crit(L) = B*/L^(1/α_B), tokens (eq. 5.1; the ``critical_batch`` law's form).
* :func:`min_steps` — S_min = S/(1 + B_crit/B) (eq. 5.4): the fewest optimizer steps that reach
  the same loss, at a batch far above B_crit.
* :func:`min_compute` — C_min = C/(1 + B/B_crit) (eq. 5.5): the least compute that reaches the
  same loss, at a batch far below B_crit.

These are pure numpy on arrays (broadcasting); B, B_crit in tokens, S in optimizer steps, C in
FLOPs. From a sweep's curves (:func:`curve_rows`, what ``scalesweep fit STORE --law kaplan_ns |
critical_batch | kaplan_c`` fits): B_crit(L) fitted on the (loss, grad_noise_scale) points
(Kaplan fig. 10), every curve mapped to S_min and C_min, the rows of L(N, S_min) and of the
compute-efficient frontier L(C_min) (:func:`frontier`; Kaplan fig. 1 left, fig. 13).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

__all__ = ["b_crit", "b_crit_from", "min_steps", "min_compute", "KAPLAN_B_STAR", "KAPLAN_ALPHA_B", "CURVE_LAWS",
           "CurveRows", "is_sweep_dir", "read_curves", "fit_critical_batch", "frontier", "curve_rows"]

#: Kaplan et al. 2020, eq. (5.1) / fig. 10: B* ≈ 2e8 tokens, α_B ≈ 0.21 (L in nats/token).
KAPLAN_B_STAR = 2e8
KAPLAN_ALPHA_B = 0.21


def b_crit(loss, B_star: float = KAPLAN_B_STAR, alpha_B: float = KAPLAN_ALPHA_B):
    """Critical batch size in tokens at loss ``loss`` (nats/token): B*/L^(1/α_B) (Kaplan eq. 5.1).
    ``B_star``/``alpha_B`` may also come as the ``critical_batch`` law's fitted params
    (see :func:`b_crit_from`)."""
    return float(B_star) / np.asarray(loss, dtype=float) ** (1.0 / float(alpha_B))


def b_crit_from(loss, params: Mapping[str, float]):
    """:func:`b_crit` with the ``critical_batch`` law's parameter dict ``{"B_star", "alpha_B"}``."""
    return b_crit(loss, params["B_star"], params["alpha_B"])


def min_steps(steps, batch_tokens, critical_batch_tokens):
    """S_min = S/(1 + B_crit/B) (Kaplan eq. 5.4): optimizer steps → the minimum steps to the same
    loss. ``batch_tokens`` B and ``critical_batch_tokens`` B_crit in tokens."""
    B = np.asarray(batch_tokens, dtype=float)
    return np.asarray(steps, dtype=float) / (1.0 + np.asarray(critical_batch_tokens, dtype=float) / B)


def min_compute(compute, batch_tokens, critical_batch_tokens):
    """C_min = C/(1 + B/B_crit) (Kaplan eq. 5.5): FLOPs → the minimum compute to the same loss.
    ``batch_tokens`` B and ``critical_batch_tokens`` B_crit in tokens."""
    Bc = np.asarray(critical_batch_tokens, dtype=float)
    return np.asarray(compute, dtype=float) / (1.0 + np.asarray(batch_tokens, dtype=float) / Bc)


# ====================================================================== a store's curves → law rows
#: Laws whose rows come from a sweep's curves (not its runs table) when `fit` reads a store.
CURVE_LAWS = ("kaplan_ns", "critical_batch", "kaplan_c")


@dataclass
class CurveRows:
    """What one law is fitted to, built from a store's curves: ``columns`` for
    :func:`fitting.data.load_fit_data` (a mapping source), ``note`` the line saying which rows
    were used, ``warnings`` (fallbacks), ``critical_batch`` the fitted B_crit params (or None)."""

    columns: dict[str, np.ndarray]
    note: str
    warnings: list[str] = field(default_factory=list)
    critical_batch: dict[str, float] | None = None


def is_sweep_dir(path) -> bool:
    """Whether ``path`` (local or pyarrow.fs URI) is a sweep's metrics directory (runs/ or curves/)."""
    from pyarrow import fs as pafs

    from metrics.fs import file_info

    fs, root, info = file_info(str(path), "runs input")
    if info.type != pafs.FileType.Directory:
        return False
    return any(c.type == pafs.FileType.Directory for c in fs.get_file_info([f"{root}/runs", f"{root}/curves"]))


def read_curves(sweep_dir: str, family: str | None = None, notes: list[str] | None = None,
                sub_sweep: str | None = None) -> dict[str, np.ndarray]:
    """A sweep's evaluation rows joined to its runs: trial_id, step, tokens_seen, flops, val_loss,
    grad_noise_scale (tokens; NaN where not measured), N (non_embedding_params) and batch_tokens
    (tokens) per row. Only trials whose run row has a usable status are kept (the runs reader's
    latest attempt), of the spec's main grid (``sub_sweep``: another grid, or ``all``; as
    `fitting.data.load_fit_data`) and of one model family: ``family``, or by default the
    transformer's where the store holds several (a law describes one family; the runs left out
    are said in ``notes``). Raises ValueError naming the store when no curve row remains."""
    from metrics import load_curves, load_runs
    from metrics.schema import MAIN_GRID, SUB_SWEEP_COLUMN, fitted_family
    from metrics.statuses import USABLE_STATUSES

    runs = load_runs(sweep_dir)
    curves = load_curves(sweep_dir)
    col = lambda t, c: np.asarray(t.column(c).to_numpy(zero_copy_only=False))
    wanted_grid = sub_sweep or MAIN_GRID
    if SUB_SWEEP_COLUMN in runs.column_names and wanted_grid != "all":
        in_grid = col(runs, SUB_SWEEP_COLUMN).astype(str) == wanted_grid
        if notes is not None and not in_grid.all():
            notes.append(f"curves of the {wanted_grid} grid's runs only ({int((~in_grid).sum())} runs of other "
                         f"grids left out: --sub-sweep NAME or all picks others)")
        runs = runs.filter(in_grid)
    families = col(runs, "family").astype(str)
    present = set(families[np.isin(col(runs, "status"), list(USABLE_STATUSES))])
    wanted = family or fitted_family(present)
    others = sorted(present - {wanted})
    if others and notes is not None:
        notes.append(f"curves of {wanted} runs only; {', '.join(others)} runs left out (a law describes one "
                     f"model family: --family picks another)")
    usable = {tid: (float(n), float(b)) for tid, st, fam, n, b in zip(
        col(runs, "trial_id"), col(runs, "status"), families, col(runs, "non_embedding_params"),
        col(runs, "batch_tokens"))
        if st in USABLE_STATUSES and fam == wanted and n is not None and b is not None}
    tid = col(curves, "trial_id").astype(str) if curves.num_rows else np.array([], dtype=str)
    keep = np.isin(tid, list(usable))
    if not keep.any():
        raise ValueError(f"{sweep_dir}: no curves of usable runs ({wanted} family, statuses {list(USABLE_STATUSES)}): "
                         f"{curves.num_rows} curve rows, {runs.num_rows} runs")
    out = {"trial_id": tid[keep]}
    for c in ("step", "tokens_seen", "flops", "val_loss", "grad_noise_scale"):
        out[c] = np.array([np.nan if v is None else float(v) for v in col(curves, c)[keep]], dtype=float)
    out["N"] = np.array([usable[t][0] for t in out["trial_id"]])
    out["batch_tokens"] = np.array([usable[t][1] for t in out["trial_id"]])
    return out


def fit_critical_batch(loss, noise_scale, **fit_kw):
    """Fit B_crit(L) = B*/L^(1/α_B) to (loss, gradient noise scale in tokens) points (Kaplan
    fig. 10: B_crit ≈ B_noise), through :func:`fitting.fit.fit_law`. → FitResult."""
    from fitting.fit import fit_law
    from fitting.laws import critical_batch

    return fit_law(critical_batch, {"L": np.asarray(loss, float), "loss": np.asarray(noise_scale, float)}, **fit_kw)


def frontier(compute, loss, run, points_per_decade: int = 8, *, detail: bool = False):
    """The compute-efficient frontier (Kaplan fig. 1 left / fig. 13): on a log grid of compute,
    the lowest loss any run reaches there, each run's curve interpolated (in log C) only inside
    its own compute range. ``run`` labels each point. A level whose lowest loss is not below
    every cheaper level's is dropped: a run that ended at less compute reached a lower loss, so
    that level's covering runs are not efficient there (the frontier, the lowest loss C buys,
    is decreasing; a user saw it rise where only the largest run covered the compute).
    → (C grid, frontier loss), finite only; with ``detail`` also the run attaining each frontier
    point and how many runs cover it (Hoffmann et al. 2022's approach 1 reads N_opt off the
    winners: :mod:`fitting.frontier`)."""
    C, L, run = np.asarray(compute, float), np.asarray(loss, float), np.asarray(run)
    ok = np.isfinite(C) & np.isfinite(L) & (C > 0) & (L > 0)
    C, L, run = C[ok], L[ok], run[ok]
    lo, hi = np.log10(C.min()), np.log10(C.max())
    grid_c = 10 ** np.linspace(lo, hi, max(int((hi - lo) * points_per_decade), 1) + 1)
    best = np.full(grid_c.size, np.inf)
    winner = np.full(grid_c.size, -1)
    cover = np.zeros(grid_c.size, dtype=int)
    labels = np.unique(run)
    for j, r in enumerate(labels):
        m = run == r
        order = np.argsort(C[m])
        c, l = np.log(C[m][order]), L[m][order]
        inside = (np.log(grid_c) >= c[0]) & (np.log(grid_c) <= c[-1])
        at = np.interp(np.log(grid_c[inside]), c, l)
        cover[inside] += 1
        better = at < best[inside]
        winner[np.where(inside)[0][better]] = j
        best[inside] = np.minimum(best[inside], at)
    cheaper_best = np.minimum.accumulate(np.r_[np.inf, best[:-1]])  # grid_c ascends
    keep = np.isfinite(best) & (best < cheaper_best)
    if detail:
        return grid_c[keep], best[keep], labels[winner[keep]], cover[keep]
    return grid_c[keep], best[keep]


def curve_rows(sweep_dir: str, law_name: str, family: str | None = None, sub_sweep: str | None = None,
               **fit_kw) -> CurveRows:
    """Rows for fitting ``law_name`` (a :data:`CURVE_LAWS` form, ``+E`` allowed) from a sweep's
    curves. critical_batch: every (val_loss, grad_noise_scale) point. kaplan_ns: every curve
    point as (N, S_min, val_loss); kaplan_c: the frontier of (C_min, val_loss). S_min and C_min
    use B_crit(L) fitted on the noise-scale points; the curves of runs without any noise scale
    keep S and C (warned, with the count). ``family``, ``sub_sweep``: as in `read_curves`. Raises ValueError (one line) for no curves, no
    noise-scale point for critical_batch, or curves from one run only."""
    base = law_name.split("+")[0]
    if base not in CURVE_LAWS:
        raise ValueError(f"law {law_name!r} is not fitted from curves ({', '.join(CURVE_LAWS)} are)")
    notes: list[str] = []
    cur = read_curves(sweep_dir, family, notes, sub_sweep)
    runs = np.unique(cur["trial_id"])
    loss, noise = cur["val_loss"], cur["grad_noise_scale"]
    has_noise = np.isfinite(noise) & (noise > 0) & np.isfinite(loss) & (loss > 0)
    if base == "critical_batch":
        if not has_noise.any():
            raise ValueError(f"{sweep_dir}: grad_noise_scale is missing in all {loss.size} curve rows; "
                             f"critical_batch needs the gradient noise scale (the trainer logs it every "
                             f"trainer.noise_scale_every steps)")
        n_runs = np.unique(cur["trial_id"][has_noise]).size
        return CurveRows({"L": loss[has_noise], "loss": noise[has_noise]},
                         f"critical_batch: {int(has_noise.sum())} noise-scale points from {n_runs} runs", notes)
    if runs.size < 2:
        raise ValueError(f"{sweep_dir}: curves from one run only ({runs[0]}); {base} needs several runs")
    measured = np.isin(cur["trial_id"], np.unique(cur["trial_id"][has_noise]))
    bc_params, how = None, "no B_crit (no noise-scale points): S and C used as S_min and C_min"
    if has_noise.sum() >= 3:
        bc = fit_critical_batch(loss[has_noise], noise[has_noise], **fit_kw)
        bc_params = dict(bc.params)
        how = f"S_min and C_min via B_crit fitted on {int(has_noise.sum())} noise-scale points"
    else:
        measured[:] = False
    n_fallback = np.unique(cur["trial_id"][~measured]).size
    if n_fallback:
        notes.append(f"{n_fallback} of {runs.size} runs have no grad_noise_scale: their curves use S and C "
                     f"as S_min and C_min")
    S, C = cur["step"].copy(), cur["flops"].copy()
    if bc_params is not None:
        bcrit = b_crit_from(loss[measured], bc_params)
        S[measured] = min_steps(S[measured], cur["batch_tokens"][measured], bcrit)
        C[measured] = min_compute(C[measured], cur["batch_tokens"][measured], bcrit)
    if base == "kaplan_ns":
        cols = {"N": cur["N"], "S": S, "loss": loss}
        note = f"kaplan_ns: {loss.size} curve points from {runs.size} runs; {how}"
    else:
        fc, fl = frontier(C, loss, cur["trial_id"])
        cols = {"C": fc, "loss": fl}
        note = (f"kaplan_c: frontier at {fc.size} C_min levels (8 per decade, each the lowest loss there and below "
                f"every cheaper level's) from {loss.size} curve points of {runs.size} runs; {how}")
    return CurveRows(cols, note, notes, bc_params)
