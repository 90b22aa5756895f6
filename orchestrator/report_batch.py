"""The report's batch-size trade-off (Kaplan et al. 2020, fig. 11; McCandlish et al. 2018 eq. 2.11):
runs that differ only in batch size, the steps S and tokens E each needed to reach a loss, and
the critical batch B_crit = E_min/S_min that follows (`fitting.batch_tradeoff`), beside the one
the gradient noise scale gives (the "Critical batch size" section's fig. 10)."""

from __future__ import annotations

import numpy as np

from orchestrator import report_figures as figs
from orchestrator.report_data import usable_runs

# Everything but the batch (and what follows from it) that makes two runs comparable.
_SAME = ("family", "n_layer", "d_model", "n_heads", "d_ff", "n_ctx", "dataset_tokens", "regime", "lr", "seed")
MIN_BATCHES = 3
"""Fewest batch sizes a group needs: S = S_min + E_min/B has two unknowns."""


def batch_groups(runs: list[dict]) -> list[list[dict]]:
    """Groups of usable runs equal in every `_SAME` column and spanning at least `MIN_BATCHES`
    batch sizes (one run per batch: the first), largest group first."""
    groups: dict[tuple, dict[int, dict]] = {}
    for r in usable_runs(runs):
        groups.setdefault(tuple(r.get(k) for k in _SAME), {}).setdefault(int(r["batch_tokens"]), r)
    found = [list(g.values()) for g in groups.values() if len(g) >= MIN_BATCHES]
    return sorted(found, key=len, reverse=True)


def tradeoffs(group: list[dict], curves: dict, levels=(1.0, 1.04, 1.08)) -> list:
    """`fitting.batch_tradeoff.BatchTradeoff` of one group at loss targets ``levels`` x the
    highest of the runs' best curve losses (the lowest loss every run reached); a target the fit
    cannot use (steps that do not fall with the batch) is left out."""
    from fitting.batch_tradeoff import tradeoff_from_curves

    by_batch = {}
    for r in group:
        m = curves["trial_id"] == r["trial_id"]
        if m.sum() >= 2:
            by_batch[float(r["batch_tokens"])] = (curves["step"][m], curves["val_loss"][m])
    if len(by_batch) < MIN_BATCHES:
        return []
    floor = max(float(np.nanmin(loss)) for _, loss in by_batch.values())
    out = []
    for level in levels:
        try:
            out.append(tradeoff_from_curves(by_batch, floor * level))
        except ValueError:
            continue
    return out


def steps_vs_tokens(runs: list[dict], curves: dict):
    """Kaplan fig. 11: for the largest group of runs that differ only in batch size, the steps
    against the tokens each run took to reach a few losses, with the fitted trade-off
    S/S_min − 1 = (E/E_min − 1)^−1 (dashed) and each B_crit. → (figure or message, rows) where rows
    are (target loss, S_min, E_min, B_crit) for the table under it."""
    groups = batch_groups(runs)
    if not groups:
        return (f"no runs that differ only in batch size at {MIN_BATCHES} or more sizes (a batch_tokens "
                f"sub-sweep at one N and D gives them)"), []
    fits = tradeoffs(groups[0], curves)
    if not fits:
        return "the batch-size runs' curves do not give steps that fall as the batch grows", []
    fig, (ax,) = figs._figure(colorbar=False)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for fit, color in zip(fits, colors):
        ok = np.isfinite(fit.steps)
        E, S = fit.batch_tokens[ok] * fit.steps[ok], fit.steps[ok]
        ax.plot(E, S, "o", color=color, label=f"L = {fit.target_loss:.3f}: B_crit {fit.b_crit:.3g} tokens")
        B = np.geomspace(fit.batch_tokens.min() / 4, fit.batch_tokens.max() * 4, 60)
        ax.plot(fit.e_min * (1 + B / fit.b_crit), fit.s_min * (1 + fit.b_crit / B), "--", color=color, lw=1.2)
    n = groups[0][0]
    figs._finish(fig, ax, "training tokens E to reach the loss", "optimizer steps S to reach the loss",
                 f"Steps vs tokens across batch sizes (N {float(n['non_embedding_params']):.3g}, "
                 f"D {float(n['dataset_tokens']):.3g})")
    return fig, [(f.target_loss, f.s_min, f.e_min, f.b_crit) for f in fits]
