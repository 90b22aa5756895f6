"""The ``scalesweep frontier --plot`` figure: left, the isoFLOP profiles (loss against N per
budget, the fitted parabolas, their vertices; flagged vertices hollow); right, N_opt(C) of each
approach that answered (its points and fitted power law, out to the asked budget). matplotlib
with the Agg backend (no display), imported only here."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_frontiers"]

COLORS = {"envelope": "tab:green", "isoflop": "tab:blue", "parametric": "tab:red"}
MARKERS = {"envelope": ("o", 10), "isoflop": ("s", 34), "parametric": ("o", 10)}
# what each approach's points on the right panel are (their legend entries)
POINTS = {"envelope": "envelope levels (winning run's N)", "isoflop": "isoFLOP vertices, one per budget used"}
NUDGE = {"envelope": 10 ** -0.12, "isoflop": 1.0, "parametric": 10 ** 0.12}  # interval bars side by side


def profiles_panel(results) -> str | None:
    """None when ``results`` hold isoFLOP profiles to draw (the isoFLOP approach answered, from at
    least one profile it used), else the one line saying why the figure has no profiles panel."""
    iso = next((r for r in results if r.approach == "isoflop"), None)
    if iso is None:
        return "no isoFLOP profiles panel: the isoFLOP approach was not run"
    if not iso.supported:
        return f"no isoFLOP profiles panel: the isoFLOP approach is not supported here ({iso.reason})"
    if not any(p.get("used") for p in iso.profiles):
        return "no isoFLOP profiles panel: no profile was used"
    return None


def plot_frontiers(results, path: str) -> None:
    """Write the figure for ``results`` (:class:`fitting.frontier.FrontierResult` list) to ``path``:
    the isoFLOP profiles (left) only where `profiles_panel` finds them, and N_opt against C."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iso = next((r for r in results if r.approach == "isoflop"), None)
    # the profiles panel only where the isoFLOP approach answered: an unsupported one's groups of
    # runs near one compute are not profiles (a plain grid's stray dots); `profiles_panel` says why
    profiles = iso.profiles if iso is not None and profiles_panel(results) is None else []
    if profiles:
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    else:
        fig, right = plt.subplots(1, 1, figsize=(6.8, 5.2))
        left = None
    cmap = plt.get_cmap("viridis")
    cs = [p["compute"] for p in profiles]
    norm = matplotlib.colors.LogNorm(min(cs), max(cs) * 1.0001) if cs else None
    for p in profiles:
        color = cmap(norm(p["compute"]))
        N, L = np.asarray(p["N"]), np.asarray(p["loss"])
        left.scatter(N, L, s=14, color=color, alpha=0.8 if p["used"] else 0.3)
        if "parabola" in p:
            x = np.linspace(np.log(N.min()), np.log(N.max()), 60)
            left.plot(np.exp(x), np.polyval(p["parabola"], x), color=color, lw=1, alpha=1 if p["used"] else 0.3)
        if "N_opt" in p:
            left.scatter([p["N_opt"]], [p["loss_opt"]], marker="D", s=40, zorder=3,
                         facecolor=color if p["used"] else "none", edgecolor="k")
    if left is not None:
        sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(sm, ax=left, label="budget C (FLOPs)")
        left.set_xscale("log")
        left.set_xlabel("N (parameters)")
        left.set_ylabel("loss (nats/token)")
        left.set_title("isoFLOP profiles (◆ vertex; hollow: flagged, not used)")
    C_at = results[0].compute
    lo = min([min(r.points["C"]) for r in results if r.supported and r.points] or [C_at / 1e3])
    for r in results:
        if not r.supported:
            continue
        color = COLORS.get(r.approach, "k")
        grid = np.geomspace(min(lo, C_at), max(C_at, lo), 50)
        right.plot(grid, r.n_opt * (grid / C_at) ** r.a, color=color, lw=1.5,
                   label=f"{r.approach}: a = {r.a:.3f}")
        if r.points:
            marker, size = MARKERS.get(r.approach, ("o", 10))
            right.scatter(r.points["C"], r.points["N_opt"], s=size, marker=marker, color=color, alpha=0.7, zorder=3,
                          label=POINTS.get(r.approach, f"{r.approach} points"))
        ci = r.n_opt_ci
        # a bootstrap interval need not contain the point estimate: bars stop at the estimate then
        yerr = [[max(0.0, r.n_opt - ci[0])], [max(0.0, ci[1] - r.n_opt)]] if np.all(np.isfinite(ci)) else None
        right.errorbar([C_at * NUDGE.get(r.approach, 1.0)], [r.n_opt], yerr=yerr, fmt="o", color=color, capsize=4,
                       label=f"{r.approach}: N_opt at C" + ("" if yerr else " (no interval)"))
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("compute C (FLOPs, C = k·N·D; k FLOPs per parameter per token, 6 by default)")
    right.set_ylabel("N_opt (parameters)")
    right.set_title(f"compute-optimal N (interval at C = {C_at:.3g})")
    if any(r.supported for r in results):
        right.legend(loc="upper left", fontsize="small")
    for ax in (left, right):
        if ax is not None:
            ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
