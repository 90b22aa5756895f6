"""``scalesweep frontier``: the compute-optimal frontier three ways (:mod:`fitting.frontier`),
side by side, with a one-line verdict on whether they agree.

``scalesweep frontier RUNS_OR_STORE [--compute C] [--json] [--plot PNG] [--tolerance T] [--law L]``

Runs are read through the shared table reader (:func:`fitting.cli.load_table`, every column and
aggregation flag of ``fit``); approach 1 reads a store's curves (:func:`fitting.dynamics.read_curves`)
and is unsupported on a table of final runs. Exit 0 when at least one approach answered, 2 when
none could (each reason on its own line).
"""

from __future__ import annotations

import json
import warnings

import numpy as np

from scalesweep.argtypes import positive

__all__ = ["register", "run_frontier"]

ISOFLOP_BUDGET = "isoflop_budget"  # the runs column an isoFLOP sweep writes (planned budget, FLOPs)


def register(subparsers) -> None:
    from fitting.cli import add_data_args
    from fitting.frontier import AGREE_FACTOR, DEFAULT_TOLERANCE, MIN_RESAMPLES

    p = subparsers.add_parser(
        "frontier", help="compute-optimal N_opt(C), D_opt(C) three ways (envelope, isoFLOP, parametric)",
        description="Hoffmann et al. 2022's three approaches side by side: 1 the envelope of a store's training "
                    "curves, 2 isoFLOP profiles (runs grouped by the isoflop_budget column, else by compute within "
                    "--tolerance), 3 the parametric fit (--law). Prints a, b (N_opt ∝ C^a, D_opt ∝ C^b) and N_opt, "
                    "D_opt, loss at --compute with intervals, the approaches the data cannot support with why, and "
                    f"a verdict on what agrees and what does not: a intervals overlap, N_opt within "
                    f"×{AGREE_FACTOR:g}, loss intervals overlap, no loss below the law's fitted floor E. Exit 2 when no approach answered. --bootstrap also sets approaches 1 and "
                    f"2's resamples (at least {MIN_RESAMPLES}).")
    add_data_args(p, True)
    p.add_argument("--compute", type=positive, metavar="C",
                   help="FLOPs budget for N_opt, D_opt and loss (default: the largest run's compute)")
    p.add_argument("--tolerance", type=positive, default=DEFAULT_TOLERANCE, metavar="T",
                   help=f"without an isoflop_budget column, runs within ±T decades of log10 compute share a budget "
                        f"(default {DEFAULT_TOLERANCE:g}, i.e. ±{100 * (10 ** DEFAULT_TOLERANCE - 1):.0f}%%)")
    p.add_argument("--plot", metavar="PNG", help="write the isoFLOP profiles and the frontier lines to this PNG")
    p.set_defaults(func=_cmd_frontier)


def _budgets(source, data):
    """The ``isoflop_budget`` of each kept row, or None when the table has no such column (or
    its rows cannot be matched to the source's)."""
    from fitting.data import read_table

    if data.index is None or isinstance(source, dict):
        return None
    cols, _, _ = read_table(source)
    if ISOFLOP_BUDGET not in cols:
        return None
    values = np.array([np.nan if v is None else float(v) for v in np.asarray(cols[ISOFLOP_BUDGET])[data.index]])
    return values if np.isfinite(values).any() else None


def run_frontier(args) -> tuple[list, list[str]]:
    """Every approach on ``args`` (the parsed flags) → (FrontierResult list, warnings)."""
    from fitting.checks import user_messages
    from fitting.cli import huber_delta, law_from_args, load_table, table_source
    from fitting.dynamics import is_sweep_dir, read_curves
    from fitting.fit import fit_law
    from fitting.frontier import envelope_frontier, frontier_resamples, isoflop_frontier, parametric_frontier, unsupported

    law = law_from_args(args)
    if not {"N", "D"} <= set(law.inputs):
        raise ValueError(f"--law {law.name}: frontier needs a law of N and D (e.g. chinchilla, data_constrained)")
    if not args.tolerance > 0:
        raise ValueError(f"--tolerance must be positive (decades of log10 compute), got {args.tolerance}")
    if args.compute is not None and not args.compute > 0:
        raise ValueError(f"--compute must be a positive number of FLOPs, got {args.compute}")
    huber_delta(args)  # --delta with --loss ls: refused here, not swallowed as one approach's failure
    if args.plot:
        from scalesweep.cli import check_plot_file

        check_plot_file(args.plot, "--plot")
    source, drop, name = table_source(args.runs, args, "RUNS_OR_STORE")
    data, notes = load_table(source, args, law, drop_top_loss=drop, name=name)
    k = args.flops_per_token
    C = data.compute(k)
    at = float(args.compute or C.max())
    boot = dict(n_bootstrap=frontier_resamples(args.bootstrap), level=args.level, seed=args.seed)
    envelope = unsupported("envelope", "no curves: a table of final runs, not a sweep's store", at, args.level)
    if args.runs and is_sweep_dir(source):
        try:
            curves = read_curves(source)
        except ValueError as err:  # a store whose runs logged no usable curve: the other approaches still answer
            envelope = unsupported("envelope", f"no curves: {err}", at, args.level)
        else:
            envelope = envelope_frontier(curves, at, flops_per_token=k, **boot)
    isoflop = isoflop_frontier(data.X["N"], data.y, C, at, budget=_budgets(source, data), tolerance=args.tolerance,
                               flops_per_token=k, **boot)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:  # a table the law cannot be fitted to leaves the other approaches standing
            fit = fit_law(law, data, loss=args.objective, delta=huber_delta(args), level=args.level, seed=args.seed,
                          screen=None if args.exhaustive else "auto", n_bootstrap=args.bootstrap, flops_per_token=k,
                          intervals=args.intervals)  # as plan fits it: --intervals was read by nothing
        except ValueError as err:
            fit, parametric = None, unsupported("parametric", f"{law.name} fit failed: {err}", at, args.level)
        if fit is not None:
            parametric = parametric_frontier(fit, at, level=args.level, flops_per_token=k, seed=args.seed)
            notes += fit.notes()  # with the verdicts' note
    notes += user_messages(caught)
    return [envelope, isoflop, parametric], list(dict.fromkeys(notes))


def _fmt(v, ci, spec=".3g", positive=False):
    """A value with its interval; "(no interval)" where the data give none (not identified). For a
    ``positive`` quantity (N_opt, D_opt, a loss) an end at 0 or inf is a side the data leave open,
    printed so (:func:`fitting.uncertainty.interval_text`), as plan prints it: frontier said "(no
    interval)" for the loss plan printed as [0 (open), inf (open)]."""
    from fitting.uncertainty import interval_text

    if not np.isfinite(v):
        return "—"
    if positive and not np.any(np.isnan(ci)):
        return f"{v:{spec}} {interval_text(ci[0], ci[1], spec)}"
    return f"{v:{spec}} [{ci[0]:{spec}}, {ci[1]:{spec}}]" if np.all(np.isfinite(ci)) else f"{v:{spec}} (no interval)"


def _print(results, verdict: str, notes: list[str], k: float = 6.0) -> None:
    for note in notes:
        print(f"warning: {note}")
    r0 = results[0]
    lvl = int(round(r0.level * 100))
    print(f"compute-optimal frontier at C = {r0.compute:.3g} FLOPs (C = k·N·D, k = {k:g} FLOPs per parameter "
          f"per token: --flops-per-token; {lvl}% intervals)")
    rows = [("a (N_opt ∝ C^a)", "a", ".3f", False), ("b (D_opt ∝ C^b)", "b", ".3f", False),
            ("N_opt (params)", "n_opt", ".3g", True), ("D_opt (tokens)", "d_opt", ".3g", True),
            ("loss, params only", "loss", ".4g", True)]
    ok = [r for r in results if r.supported]
    width = 34
    print(f"  {'':<18}" + "".join(f"{r.approach:<{width}}" for r in ok))
    for label, attr, spec, is_positive in rows:
        print(f"  {label:<18}" + "".join(f"{_fmt(getattr(r, attr), getattr(r, attr + '_ci'), spec, is_positive):<{width}}"
                                          for r in ok))
    # the prediction interval plan prints for the same loss (fitting.allocate.Allocation.loss_interval)
    pred = [_fmt(r.loss, r.loss_prediction_ci, ".4g", True) if np.isfinite(r.loss_prediction_ci[0]) else "—" for r in ok]
    print(f"  {'loss, prediction':<18}" + "".join(f"{cell:<{width}}" for cell in pred))
    kinds = "; ".join(f"{r.approach}: {r.loss_kind}" for r in ok)
    print(f"  loss in nats/token. 'params only': each approach's confidence interval ({kinds}), what the verdict "
          f"compares; 'prediction': run scatter and the law misfit added, as plan prints it")
    for r in ok:
        print(f"  {r.approach}: {r.method}" + "".join(f"\n    {n}" for n in r.notes))
    for r in results:
        if not r.supported:
            print(f"  {r.approach}: unsupported ({r.reason})" + "".join(f"\n    {n}" for n in r.notes))
    print(verdict)


def _cmd_frontier(args) -> int:
    from fitting.cli import json_safe
    from fitting.frontier import compare_frontiers

    results, notes = run_frontier(args)
    if not any(r.supported for r in results):  # nothing to print or plot
        raise ValueError("no approach could answer: " + "; ".join(f"{r.approach}: {r.reason}" for r in results))
    verdict = compare_frontiers(results)
    if args.plot:
        from fitting.frontier_plot import plot_frontiers

        plot_frontiers(results, args.plot)
    if args.json:
        print(json.dumps(json_safe({"compute": results[0].compute, "approaches": [r.to_dict() for r in results],
                                    "verdict": verdict, "warnings": notes})))
    else:
        _print(results, verdict, notes, args.flops_per_token)
    return 0
