"""The sweep report's figures (Kaplan et al. 2020's figures, from one sweep's store).

One function per figure. Each takes plain tables (lists of run rows as the store's runs table
holds them, dicts of numpy arrays as ``orchestrator.report_data`` builds them) and a fitted law
or None, and returns a matplotlib Figure, or a one-line message (str) when the input cannot make
the figure (empty, one point, nothing varied). Never a figure of nothing, never a traceback.
Axes: logarithmic with readable ticks (:func:`_log_axis`), units in the labels, legends outside
the data, points as markers and fitted laws as lines.
"""

from __future__ import annotations

import math

import numpy as np

Figure = object  # matplotlib.figure.Figure (imported lazily: Agg backend, files only)


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _figure(ncols: int = 1, colorbar: bool = True):
    """A row of ``ncols`` axes, room on the right for a colour bar when there is one."""
    width = (6.4 if ncols == 1 else 4.4) * ncols + (1.4 if colorbar else 0.0)
    fig, axes = _plt().subplots(1, ncols, figsize=(width, 4.4), squeeze=False, layout="constrained")
    return fig, list(axes[0])


def _log_axis(axis, limits) -> None:
    """Readable labels on a log axis, chosen from its final limits: decades over more than two,
    1-3-10 over one to two, 1-2-3-5 over half to one, else a few evenly spaced numbers
    (matplotlib's default labels every minor tick of a short log axis, and they overlap)."""
    from matplotlib import ticker

    lo, hi = sorted(limits)
    span = math.log10(hi / lo) if lo > 0 and hi > 0 else 0.0
    axis.set_minor_formatter(ticker.NullFormatter())
    if span > 2.0:
        axis.set_major_locator(ticker.LogLocator(base=10, numticks=8))
        axis.set_major_formatter(ticker.LogFormatterSciNotation())
    elif span > 0.5:
        axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 3.0) if span > 1.0 else (1.0, 2.0, 3.0, 5.0)))
        axis.set_major_formatter(ticker.FuncFormatter(_tick_label))
    else:
        axis.set_major_locator(ticker.MaxNLocator(nbins=5, min_n_ticks=3))
        axis.set_major_formatter(ticker.FuncFormatter(_tick_label))


def _tick_label(value: float, _pos=None) -> str:
    """3, 0.2, 3×10⁵: plain between 1e-3 and 1e4, else mantissa × power of ten (as the decades)."""
    if value <= 0 or 1e-3 <= value < 1e4:
        return f"{value:.3g}"
    exponent = math.floor(math.log10(value))
    mantissa = round(value / 10**exponent, 2)
    return f"$10^{{{exponent}}}$" if mantissa == 1 else f"${mantissa:g}\\times10^{{{exponent}}}$"


def _finish(fig, ax, xlabel: str, ylabel: str, title: str, logy: bool = True) -> None:
    """Log axes with readable ticks, labels, and the legend below the plot (never over the data)."""
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, which="major", alpha=0.3)
    _log_axis(ax.xaxis, ax.get_xlim())  # the limits after autoscaling to everything drawn
    if logy:
        _log_axis(ax.yaxis, ax.get_ylim())
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=min(len(handles), 3), frameon=False)


def _positive(*arrays) -> np.ndarray:
    """Mask of rows where every array is finite and > 0 (what a log-log plot can show)."""
    ok = np.ones(np.asarray(arrays[0]).shape, dtype=bool)
    for a in arrays:
        a = np.asarray(a, dtype=float)
        ok &= np.isfinite(a) & (a > 0)
    return ok


def _colors(values):
    """A colour per distinct value (viridis over log value) and the norm, for a colour bar."""
    from matplotlib import cm, colors

    v = np.unique(np.asarray(values, dtype=float))
    norm = colors.LogNorm(v.min(), v.max() if v.max() > v.min() else v.min() * 1.01)
    return {x: cm.viridis(norm(x) * 0.9) for x in v}, norm


def _colorbar(fig, axes, norm, label: str) -> None:
    from matplotlib import cm

    bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap="viridis"), ax=axes, pad=0.02)
    bar.set_label(label)
    _log_axis(bar.ax.yaxis, (norm.vmin, norm.vmax))


def _law_line(ax, fit, columns: dict, x, color="black", label: str | None = None) -> None:
    """The fitted law's prediction as a dashed line (points are markers: the two never look alike)."""
    with np.errstate(all="ignore"):
        y = np.asarray(fit.predict({k: v for k, v in columns.items() if k in fit.law.inputs}), dtype=float)
    ok = _positive(x, y)
    ax.plot(np.asarray(x)[ok], y[ok], "--", color=color, lw=1.6, label=label)


def _run_curves(curves: dict, x_key: str, what: str):
    """Each run's validation loss against ``curves[x_key]``, coloured by its N: → (fig, ax, x values,
    colour norm), or the message when fewer than 2 points have a positive x and loss."""
    ok = _positive(curves.get(x_key, []), curves.get("val_loss", []))
    if ok.sum() < 2:
        return f"no curve points with {what} and a loss: nothing to plot"
    X, L, N, tid = (np.asarray(curves[k])[ok] for k in (x_key, "val_loss", "N", "trial_id"))
    palette, norm = _colors(N)
    fig, (ax,) = _figure()
    for t in np.unique(tid):
        m = tid == t
        order = np.argsort(X[m])
        ax.plot(X[m][order], L[m][order], "-", marker=".", ms=3, color=palette[N[m][0]], lw=1.0)
    return fig, ax, X, norm


def loss_vs_compute(curves: dict, frontier: dict | None, fit, xlabel: str = "compute C (FLOPs)") -> Figure | str:
    """Kaplan fig. 1 left: every run's validation loss vs training compute, the compute-efficient
    frontier (C, loss) and the fitted L(C_min). ``curves``: trial_id, flops, val_loss, N; its
    ``flops`` on the frontier's axis (C_min where B_crit is known: report_data.with_min_compute)."""
    drawn = _run_curves(curves, "flops", "positive compute")
    if isinstance(drawn, str):
        return drawn
    fig, ax, C, norm = drawn
    if frontier is not None and len(frontier.get("C", ())):
        ax.plot(frontier["C"], frontier["loss"], "o", ms=4, mfc="none", color="crimson", label="frontier (C_min, best loss)")
    if fit is not None:
        grid = np.geomspace(C.min(), C.max() * 10, 60)
        _law_line(ax, fit, {"C": grid}, grid, label=f"fit L(C_min), α_C = {fit.params['alpha_C']:.3g}")
    _finish(fig, ax, xlabel, "validation loss (nats/token)", "Loss vs compute")
    _colorbar(fig, [ax], norm, "non-embedding parameters N")
    return fig


def loss_vs_variable(points: dict, key: str, fit, xlabel: str, title: str) -> Figure | str:
    """Kaplan fig. 1 centre/right: the best loss at each value of ``key`` (N or D) with the fitted
    one-variable power law. ``points``: {key: values, "loss": best losses}."""
    x, y = np.asarray(points.get(key, []), float), np.asarray(points.get("loss", []), float)
    ok = _positive(x, y)
    if ok.sum() < 2:
        return f"fewer than 2 distinct {xlabel.split(' (')[0]} values with a usable loss: nothing to plot"
    x, y = x[ok], y[ok]
    fig, (ax,) = _figure(colorbar=False)
    ax.plot(x, y, "o", color="tab:blue", label="best run at each value")
    if fit is not None:
        grid = np.geomspace(x.min() / 2, x.max() * 4, 60)
        exponent = next(v for k, v in fit.params.items() if k.startswith("alpha"))
        _law_line(ax, fit, {fit.law.inputs[0]: grid}, grid, label=f"fit {fit.law.name}, exponent {exponent:.3g}")
    _finish(fig, ax, xlabel, "best validation loss (nats/token)", title)
    return fig


def _by_data(runs: list[dict]):
    from orchestrator.report_data import usable_runs

    rows = [r for r in usable_runs(runs) if r["non_embedding_params"] and r["dataset_tokens"]]
    return rows, sorted({float(r["dataset_tokens"]) for r in rows})


def loss_vs_size_per_data(runs: list[dict], fit) -> Figure | str:
    """Kaplan fig. 4 left / fig. 9 left: loss vs N for each dataset size D, with the fitted L(N, D)
    surface at each D (at the mean tokens seen of its runs)."""
    rows, ds = _by_data(runs)
    if len(rows) < 2:
        return "fewer than 2 usable runs: nothing to plot"
    palette, norm = _colors(ds)
    fig, (ax,) = _figure()
    for d in ds:
        group = sorted((r for r in rows if float(r["dataset_tokens"]) == d), key=lambda r: r["non_embedding_params"])
        n = np.array([r["non_embedding_params"] for r in group], float)
        ax.plot(n, [r["best_val_loss"] for r in group], "o", color=palette[d])
        if fit is not None and {"N", "D"} <= set(fit.law.inputs):
            grid = np.geomspace(n.min() / 2, n.max() * 2, 50)
            seen = float(np.mean([r["tokens_seen"] for r in group]))
            _law_line(ax, fit, {"N": grid, "D": np.full_like(grid, seen)}, grid, color=palette[d])
    _finish(fig, ax, "non-embedding parameters N",
            "best validation loss (nats/token)", "L(N, D): points measured, dashed lines the fitted surface")
    _colorbar(fig, [ax], norm, "dataset size D (tokens)")
    return fig


def overfitting_penalty(runs: list[dict], fit) -> Figure | str:
    """Kaplan fig. 9 right: L(N, D)/L(N, ∞) − 1 against N^0.74/D, L(N, ∞) from the fitted surface
    with D → ∞ (the paper predicts one curve for every N). Needs a fit of N and D and runs that
    repeat their data (the dataset regime: the paper's early-stopped runs); a message otherwise."""
    if fit is None or not {"N", "D"} <= set(fit.law.inputs):
        return "needs a fitted law of N and D (L(N, ∞) comes from it)"
    if not any(r.get("regime") == "dataset" for r in runs):
        return ("no overfitting penalty: no run repeats its data (every run is in the tokens regime, each token "
                "once), so L(N, D)/L(N, ∞) − 1 is the fit's finite-data term, not overfitting")
    rows, _ = _by_data(runs)
    if len(rows) < 2:
        return "fewer than 2 usable runs: nothing to plot"
    N = np.array([r["non_embedding_params"] for r in rows], float)
    D = np.array([r["dataset_tokens"] for r in rows], float)
    L = np.array([r["best_val_loss"] for r in rows], float)
    with np.errstate(all="ignore"):
        inf = np.asarray(fit.predict({"N": N, "D": np.full_like(N, 1e30)}), float)
    excess = L / inf - 1
    x = N**0.74 / D
    ok = _positive(x, excess)
    if ok.sum() < 2:
        return (f"no run sits above the fitted L(N, ∞) ({int((excess > 0).sum())} of {excess.size} runs): "
                f"no overfitting penalty to plot on a log axis")
    palette, norm = _colors(N[ok])
    fig, (ax,) = _figure()
    ax.scatter(x[ok], excess[ok], c=[palette[v] for v in N[ok]], s=28, zorder=3)
    grid_x = np.geomspace(x[ok].min() / 2, x[ok].max() * 2, 50)
    for n in np.unique(N[ok]):
        d = n**0.74 / grid_x
        with np.errstate(all="ignore"):
            pred = np.asarray(fit.predict({"N": np.full_like(d, n), "D": d}), float)
            base = np.asarray(fit.predict({"N": np.full_like(d, n), "D": np.full_like(d, 1e30)}), float)
        y = pred / base - 1
        keep = _positive(grid_x, y)
        ax.plot(grid_x[keep], y[keep], "--", color=palette[n], lw=1.2)
    _finish(fig, ax, "N^0.74 / D  (parameters^0.74 per token)", "L(N, D) / L(N, ∞) − 1",
            "Overfitting penalty (points measured, dashed lines the fit)")
    _colorbar(fig, [ax], norm, "non-embedding parameters N")
    return fig


def learning_curves(curves: dict) -> Figure | str:
    """Kaplan fig. 2: validation loss vs tokens processed, one curve per run coloured by N
    (larger models reach a loss with fewer tokens)."""
    drawn = _run_curves(curves, "tokens_seen", "tokens seen")
    if isinstance(drawn, str):
        return drawn
    fig, ax, _, norm = drawn
    _finish(fig, ax, "tokens processed", "validation loss (nats/token)", "Learning curves (colour: model size)")
    _colorbar(fig, [ax], norm, "non-embedding parameters N")
    return fig


def loss_vs_min_steps(rows: dict | None, fit) -> Figure | str:
    """Kaplan fig. 4 right: loss vs S_min (optimizer steps at the ideal batch) per model size,
    with the fitted L(N, S_min). ``rows``: N, S, loss (fitting.dynamics.curve_rows' kaplan_ns)."""
    if rows is None:
        return "no curve rows for L(N, S_min)"
    ok = _positive(rows.get("N", []), rows.get("S", []), rows.get("loss", []))
    if ok.sum() < 2:
        return "fewer than 2 curve points with steps and a loss: nothing to plot"
    N, S, L = (np.asarray(rows[k], float)[ok] for k in ("N", "S", "loss"))
    palette, norm = _colors(N)
    fig, (ax,) = _figure()
    for n in np.unique(N):
        m = N == n
        ax.plot(S[m], L[m], "o", ms=3, color=palette[n], alpha=0.7)
        if fit is not None:
            grid = np.geomspace(S[m].min(), S[m].max(), 40)
            _law_line(ax, fit, {"N": np.full_like(grid, n), "S": grid}, grid, color=palette[n])
    _finish(fig, ax, "minimum optimizer steps S_min (steps)", "validation loss (nats/token)",
            "L(N, S_min): points measured, dashed lines the fit")
    _colorbar(fig, [ax], norm, "non-embedding parameters N")
    return fig


#: shape quantity → (label, how to compute it from a run row)
SHAPE_AXES = {
    "aspect": ("aspect ratio d_model / n_layer", lambda r: r["d_model"] / r["n_layer"]),
    "ff": ("feed-forward ratio d_ff / d_model", lambda r: r["d_ff"] / r["d_model"]),
    "heads": ("attention head width d_model / n_heads", lambda r: r["d_model"] / r["n_heads"]),
}


def shape_groups(runs: list[dict], tolerance: float = 0.4) -> list[list[dict]]:
    """Usable transformer runs grouped at (about) fixed N and the same D, regime, batch and seed
    (runs that differ in those are not shape variants): sizes within ``tolerance`` (relative) of
    the group's smallest. Only groups of at least 2 runs (Kaplan fig. 5 compares shapes at one N)."""
    from orchestrator.report_data import usable_runs

    def setting(r):
        return (r["dataset_tokens"], str(r.get("regime")), r.get("batch_tokens") or 0, r.get("seed") or 0)

    groups: list[list[dict]] = []
    shaped = [r for r in usable_runs(runs) if r.get("d_ff") is not None and r.get("n_heads") is not None]
    for r in sorted(shaped, key=lambda r: (setting(r), r["non_embedding_params"])):
        g = groups[-1] if groups else None
        if g and setting(g[0]) == setting(r) and r["non_embedding_params"] <= (1 + tolerance) * g[0]["non_embedding_params"]:
            g.append(r)
        else:
            groups.append([r])
    return [g for g in groups if len(g) >= 2]


def _panel_runs(group: list[dict]) -> dict[str, list[dict]]:
    """Which runs of a shape group each panel shows. Runs of named sub-sweeps (runs column
    ``sub_sweep``) go to the panel of the quantity that varies most (in log range) across the
    sub-sweep and the group's main-grid runs, shown beside those; without sub-sweeps every panel
    shows every run (the sweep varied the quantities together)."""
    grids: dict[str, list[dict]] = {}
    for r in group:
        grids.setdefault(r.get("sub_sweep") or "main", []).append(r)
    if set(grids) <= {"main"}:
        return {key: group for key in SHAPE_AXES}
    reference = grids.pop("main", [])
    panels: dict[str, list[dict]] = {key: list(reference) for key in SHAPE_AXES}
    for members in grids.values():
        both = members + reference
        span = {k: np.ptp(np.log([f(r) for r in both])) for k, (_, f) in SHAPE_AXES.items()}
        panels[max(span, key=span.get)] += members
    return panels


def shape_dependence(runs: list[dict]) -> Figure | str:
    """Kaplan fig. 5: loss relative to the best shape at (about) the same N and D, against aspect
    ratio, feed-forward ratio and head width; one panel per quantity the sweep varies at fixed N
    (each sub-sweep in its quantity's panel: `_panel_runs`)."""
    groups = shape_groups(runs)
    panels = [_panel_runs(g) for g in groups]
    varied = [k for k, (_, f) in SHAPE_AXES.items() if any(len({f(r) for r in p[k]}) > 1 for p in panels)]
    if not varied:
        return "the sweep varies no shape (aspect ratio, d_ff ratio, heads) at a fixed N and D"
    sizes = [float(np.mean([r["non_embedding_params"] for r in g])) for g in groups]
    palette, norm = _colors(sizes)
    fig, axes = _figure(len(varied))
    for ax, key in zip(axes, varied):
        label, f = SHAPE_AXES[key]
        for g, p, size in zip(groups, panels, sizes):
            best = min(r["best_val_loss"] for r in g)
            pts = sorted((f(r), r["best_val_loss"] / best) for r in p[key])
            if len({q[0] for q in pts}) < 2:
                continue
            # markers only: the other shape quantities vary too, so a line would join unlike runs
            ax.plot([q[0] for q in pts], [q[1] for q in pts], "o", color=palette[size], ms=5)
        ax.set_xscale("log")
        _log_axis(ax.xaxis, ax.get_xlim())
        ax.ticklabel_format(axis="y", useOffset=False)  # ratios as such, not "+1.056" and a 1e-4 scale
        ax.set(xlabel=label, ylabel="loss / best loss at this N and D" if key == varied[0] else "",
               title=label.split(" d_")[0].split(" n_")[0])
        ax.grid(True, alpha=0.3)
    if len(sizes) > 1:
        _colorbar(fig, axes, norm, "non-embedding parameters N")
    else:  # one group: a colour bar of one colour says nothing
        fig.suptitle(f"shapes at N ≈ {sizes[0]:.3g}, D = {groups[0][0]['dataset_tokens']:.3g} tokens")
    return fig


def critical_batch_vs_loss(rows: dict | None, fit) -> Figure | str:
    """Kaplan fig. 10: the gradient noise scale (≈ B_crit, tokens) against the loss it was measured
    at, with the fitted B_crit(L) and the paper's B*/L^(1/0.21) for reference."""
    from fitting.dynamics import b_crit

    if rows is None:
        return "no gradient noise scale in the curves (the trainer logs it every trainer.noise_scale_every steps)"
    ok = _positive(rows.get("L", []), rows.get("loss", []))
    if ok.sum() < 2:
        return "fewer than 2 noise-scale points: nothing to plot"
    L, B = np.asarray(rows["L"], float)[ok], np.asarray(rows["loss"], float)[ok]
    fig, (ax,) = _figure(colorbar=False)
    ax.plot(L, B, "o", ms=3, alpha=0.6, color="tab:blue", label="measured noise scale")
    grid = np.geomspace(L.min(), L.max(), 40)
    if fit is not None:
        _law_line(ax, fit, {"L": grid}, grid, label=f"fit, α_B = {fit.params['alpha_B']:.3g}")
    ax.plot(grid, b_crit(grid), ":", color="grey", label="Kaplan et al. (B* 2e8, α_B 0.21)")
    _finish(fig, ax, "validation loss (nats/token)", "critical batch B_crit (tokens)",
            "Critical batch size vs loss")
    return fig


def loss_per_position(curves: dict) -> Figure | str:
    """Kaplan fig. 20 (and fig. 7 right): each run's loss at each context position (its last
    evaluation that stored one), coloured by N, LSTM runs dashed; only the runs at one dataset
    size, the one with the most families, then the most runs (all positions are scored on the same validation windows, so runs of
    one D compare like with like and the page stays readable). Needs the curves column
    ``loss_per_position`` (a list per eval row)."""
    if "loss_per_position" not in curves:
        return "the store has no loss_per_position column (written by trainers that record per-position loss)"
    per, tid, N, step = curves["loss_per_position"], curves["trial_id"], curves["N"], curves["step"]
    family = curves.get("family", np.full(tid.size, "transformer"))
    data = curves.get("dataset_tokens", np.zeros(tid.size))
    last: dict[str, tuple[float, float, np.ndarray, str, float]] = {}
    for i, values in enumerate(per):
        if values is None or len(values) < 2:
            continue
        if tid[i] not in last or step[i] > last[tid[i]][0]:
            last[tid[i]] = (step[i], N[i], np.asarray(values, float), str(family[i]), float(data[i]))
    if not last:
        return "no evaluation stored a per-position loss with at least 2 positions"
    sizes = [v[4] for v in last.values()]
    kinds = {d: len({v[3] for v in last.values() if v[4] == d}) for d in set(sizes)}  # families at each D
    common = max(set(sizes), key=lambda d: (kinds[d], sizes.count(d), d))
    shown = [v for v in last.values() if v[4] == common]
    palette, norm = _colors([v[1] for v in shown])
    fig, (ax,) = _figure()
    styles = {"lstm": "--"}
    for _, n, values, fam, _ in sorted(shown, key=lambda v: v[1]):
        pos = np.arange(1, values.size + 1)
        ok = _positive(values)
        ax.plot(pos[ok], values[ok], styles.get(fam, "-"), color=palette[n], lw=1.0)
    families = sorted({v[3] for v in shown})
    if len(families) > 1:  # legend entries only (drawn below the plot by _finish)
        for f in families:
            ax.plot([], [], styles.get(f, "-"), color="0.3", label=f)
    what = f"D = {common:.3g} tokens, " if common else ""
    _finish(fig, ax, "position in context (tokens)", "loss at position (nats/token)",
            f"Per-position loss ({what}last evaluation of each run)")
    _colorbar(fig, [ax], norm, "non-embedding parameters N")
    return fig


def loss_vs_size_per_family(runs: list[dict]) -> Figure | str:
    """Kaplan fig. 7 left: best loss vs N per model family (runs column ``family``), at the one
    dataset size and regime where the most families have runs (a family's runs at other D, or a
    ladder run, would zigzag its line)."""
    from orchestrator.report_data import usable_runs

    rows = [r for r in usable_runs(runs) if r.get("sub_sweep") != "ladder"]
    families = sorted({r.get("family") for r in rows if r.get("family")})
    if len(families) < 2:
        return (f"one model family ({families[0]}): the comparison needs runs of at least two" if families else
                "the runs carry no `family` column: every run is one model family, nothing to compare")
    settings = {(r["dataset_tokens"], r.get("regime")) for r in rows}
    at = max(settings, key=lambda k: (len({r.get("family") for r in rows if (r["dataset_tokens"], r.get("regime")) == k}),
                                      sum((r["dataset_tokens"], r.get("regime")) == k for r in rows), k[0]))
    rows = [r for r in rows if (r["dataset_tokens"], r.get("regime")) == at]
    fig, (ax,) = _figure(colorbar=False)
    for fam, marker in zip(families, "os^dv"):
        best: dict[float, float] = {}
        for r in rows:
            if r.get("family") == fam:
                n = float(r["non_embedding_params"])
                best[n] = min(best.get(n, math.inf), float(r["best_val_loss"]))
        if best:
            ax.plot(sorted(best), [best[n] for n in sorted(best)], marker + "-", label=fam)
    _finish(fig, ax, "non-embedding parameters N", "best validation loss (nats/token)",
            f"Transformer vs LSTM (D = {at[0]:.3g} tokens, {at[1]} regime)")
    return fig


def overfitting_penalty_measured(runs: list[dict]) -> Figure | str:
    """Kaplan fig. 9 right from dataset-regime runs alone: L(N, D)/L(N, D_max) − 1 against
    N^0.74/D, each N's run at its largest D standing in for L(N, ∞) (no fitted law needed)."""
    from orchestrator.report_data import usable_runs

    rows = [r for r in usable_runs(runs) if r.get("regime") == "dataset"]
    by_n: dict[float, list[dict]] = {}
    for r in rows:
        by_n.setdefault(float(r["non_embedding_params"]), []).append(r)
    pts = []
    for n, group in by_n.items():
        ref = max(group, key=lambda r: r["dataset_tokens"])
        pts += [(n, n**0.74 / r["dataset_tokens"], r["best_val_loss"] / ref["best_val_loss"] - 1)
                for r in group if r is not ref]
    if len(pts) < 2:
        return "fewer than 2 dataset-regime runs below their size's largest D: no overfitting penalty to plot"
    N, x, y = (np.array(v, float) for v in zip(*pts))
    ok = _positive(x, y)
    if ok.sum() < 2:
        return f"{int((y <= 0).sum())} of {y.size} runs are no worse than at their size's largest D: nothing to plot"
    palette, norm = _colors(N[ok])
    fig, (ax,) = _figure()
    ax.scatter(x[ok], y[ok], c=[palette[v] for v in N[ok]], s=28, zorder=3)
    _finish(fig, ax, "N^0.74 / D  (parameters^0.74 per token)", "L(N, D) / L(N, D_max) − 1",
            "Overfitting penalty, dataset regime (each N against its largest D)")
    _colorbar(fig, [ax], norm, "non-embedding parameters N")
    return fig


def ladder_prediction(rows: list[dict]) -> Figure | str:
    """The scaling ladder's check: each ladder run's predicted loss with its interval against the
    observed one, by the ladder's compute (rows of the ``ladder/`` table)."""
    rows = [r for r in rows if r.get("predicted_loss") is not None and r.get("compute")]
    if not rows:
        return "no ladder run with a prediction"
    fig, (ax,) = _figure(colorbar=False)
    C = np.array([r["compute"] for r in rows], dtype=float)
    pred = np.array([r["predicted_loss"] for r in rows], dtype=float)
    lo = np.array([r["predicted_lo"] for r in rows], dtype=float)
    hi = np.array([r["predicted_hi"] for r in rows], dtype=float)
    ax.errorbar(C, pred, yerr=[np.maximum(pred - lo, 0), np.maximum(hi - pred, 0)], fmt="o", color="C0",
                capsize=5, label=f"predicted ({int(round(100 * rows[0]['predicted_level']))} % interval)")
    seen = [(c, r["observed_loss"]) for c, r in zip(C, rows) if r.get("observed_loss") is not None]
    if seen:
        ax.plot(*zip(*seen), "x", color="C3", ms=10, mew=2, label="observed (best validation loss)")
    ax.set_xscale("log")
    _log_axis(ax.xaxis, ax.get_xlim())
    ax.set_xlabel("ladder run's compute C (FLOPs)")
    ax.set_ylabel("loss (nats/token)")
    ax.legend(loc="best")
    return fig


FIGURES = (loss_vs_compute, loss_vs_variable, loss_vs_size_per_data, overfitting_penalty, learning_curves,
           loss_vs_min_steps, shape_dependence, critical_batch_vs_loss, loss_per_position, loss_vs_size_per_family,
           ladder_prediction)
