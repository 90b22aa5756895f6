"""``scalesweep fit`` and the table and fit flags every command reading runs shares (plan:
fitting/plan_cli.py; pure numpy/scipy, imported lazily)."""

from __future__ import annotations

import argparse
import json
import math
import warnings

from scalesweep.argtypes import count, fraction, positive


def add_table_args(p: argparse.ArgumentParser) -> None:
    """Column-mapping options of every command that reads a table of runs (fit, plan, replay):
    one set of flags feeding :func:`fitting.data.load_fit_data` through :func:`load_table`."""
    from fitting.columns import ALIASES
    from fitting.reference import EXAMPLES

    first = lambda k: f"default: the first of {', '.join(repr(c) if ' ' in c else c for c in ALIASES[k])} found"
    p.add_argument("--example", choices=sorted(EXAMPLES), metavar="NAME",
                   help=f"read a table shipped with scalesweep instead of a file ({', '.join(sorted(EXAMPLES))}; "
                        f"source and columns: fitting/reference/README.md)")
    p.add_argument("--n-col", help=f"column holding N (non-embedding parameters; {first('N')})")
    p.add_argument("--d-col", help=f"column holding D (training tokens; {first('D')})")
    p.add_argument("--c-col", help=f"column holding compute C (FLOPs): what selections on C read (else k·N·D), "
                                   f"and D = C/(k·N) when there is no D column ({first('C')})")
    p.add_argument("--loss-col", help=f"column holding the loss ({first('loss')})")
    p.add_argument("--u-col", help="column holding U (unique tokens; data_constrained)")
    p.add_argument("--s-col", help="column holding S (S_min steps; kaplan_ns)")
    p.add_argument("--col", action="append", default=[], metavar="INPUT=COLUMN",
                   help="map any other law input to a column (repeatable)")
    p.add_argument("--drop-top-loss", type=count, default=None, metavar="K",
                   help="drop the K highest-loss rows (default 0; with --example, what its source does: 5 for "
                        "epoch-chinchilla, as Epoch)")
    p.add_argument("--best-over", action="append", default=[], metavar="COL",
                   help="aggregate a hyperparameter sweep: each cell (rows with the same law inputs, e.g. (N, D)) "
                        "is represented by its best (lowest mean loss) setting of COL, e.g. lr (repeatable; "
                        "fit also prints COL_opt ∝ N^k)")
    p.add_argument("--mean-over", action="append", default=[], metavar="COL",
                   help="average each setting over COL first, e.g. seed (repeatable); the spread widens the "
                        "cell's noise (a lower fit weight)")
    p.add_argument("--best-per-config", action="store_true",
                   help="shorthand: keep the lowest-loss row of each (N, D) cell (every row its own setting)")
    p.add_argument("--flops-per-token", type=positive, default=6.0,
                   help="k in C = k·N·D, FLOPs per parameter per token (default 6: 2 forward + 4 backward); also used to derive D from a compute column")
    p.add_argument("--family", default=None, metavar="NAME",
                   help="a sweep's metrics directory: fit only this model family's runs (transformer | lstm; "
                        "default all, warned when there are several)")
    p.add_argument("--sub-sweep", default=None, metavar="NAME",
                   help="a sweep's metrics directory whose spec had sub_sweeps: fit that grid's runs, or all "
                        "(default: the main grid's)")


def law_from_args(args):
    """The law ``--law`` names (fitting.laws.get_law), its errors (an unknown name, a law file that
    does not load) naming the flag."""
    from fitting.laws import get_law

    try:
        return get_law(args.law)
    except ValueError as err:
        raise ValueError(f"--law {args.law}: {err}") from None


def table_source(path, args, what: str):
    """A positional table path or ``--example`` (exactly one) → (source, drop_top_loss, name for
    messages)."""
    from fitting import reference

    example = getattr(args, "example", None)
    if path and example:
        raise ValueError(f"give {what} or --example, not both")
    drop = args.drop_top_loss
    if example:
        ex = reference.get(example)
        return reference.path(example), ex.drop_top_loss if drop is None else drop, f"example {example}"
    if not path:
        raise ValueError(f"needs {what} (a CSV/Parquet table or a sweep's metrics directory) or --example NAME")
    return path, drop or 0, str(path)


def load_table(source, args, law, *, drop_top_loss: int = 0, require_loss: bool = True, name: str | None = None,
               curve_points: bool = False, flag: str | None = None):
    """Read ``source`` for ``law`` with the column flags of :func:`add_table_args`; ``curve_points``:
    its rows are curve points (fitting.data.load_fit_data); ``flag``: the option that gave ``source``
    (``--targets``), which its errors then name. → (FitData, the warnings it raised as strings)."""
    from fitting.checks import user_messages
    from fitting.columns import COLUMN_FLAGS
    from fitting.data import load_fit_data
    from fitting.fit import store_misfit

    extra = {}
    if args.u_col:
        extra["U"] = args.u_col
    if args.s_col:
        extra["S"] = args.s_col
    for item in args.col:
        if "=" not in item:
            raise ValueError(f"--col expects INPUT=COLUMN, got {item!r}")
        k, v = item.split("=", 1)
        if k.strip() in COLUMN_FLAGS:  # one flag per input, so that messages name the one typed
            raise ValueError(f"--col {item}: {k.strip()} has its own flag: {COLUMN_FLAGS[k.strip()]} {v.strip()}")
        inputs = getattr(law, "inputs", None)
        if inputs is not None and k.strip() not in inputs:  # it was read by nothing, silently
            raise ValueError(f"--col {item}: {k.strip()!r} is not an input of law {law.name!r} "
                             f"(its inputs: {', '.join(inputs)})")
        extra[k.strip()] = v.strip()
    aggregate = table_aggregation(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = load_fit_data(source, n_col=args.n_col, d_col=args.d_col, loss_col=args.loss_col,
                                 c_col=args.c_col, extra_cols=extra, law=law, flops_per_token=args.flops_per_token,
                                 drop_top_loss=drop_top_loss, best_per_config=args.best_per_config,
                                 aggregate=aggregate, require_loss=require_loss, name=name,
                                 family=getattr(args, "family", None), sub_sweep=getattr(args, "sub_sweep", None),
                                 curve_points=curve_points, misfit_of=store_misfit)
        except (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as err:
            if flag is None:
                raise
            raise type(err)(f"{flag}: {err}") from None
    return data, user_messages(caught)


def table_aggregation(args):
    """``--best-over`` / ``--mean-over`` → a :class:`fitting.aggregate.Aggregation` (None when
    neither is given) whose messages (a column in both, or twice, or not in the table) name the flag."""
    from fitting.aggregate import Aggregation

    best, mean = list(getattr(args, "best_over", None) or []), list(getattr(args, "mean_over", None) or [])
    if not best and not mean:
        return None
    return Aggregation(tuple(best), tuple(mean), names=("--best-over", "--mean-over"))


#: Bootstrap resamples behind a fit's intervals unless told otherwise: every command's --bootstrap
#: default (add_bootstrap_arg, `report` included) and build_report's, so the same runs get the same
#: intervals and verdicts everywhere (the report's 200 once flipped a "not identified" verdict the
#: CLI's 1000 gave). Here, not in fitting.uncertainty: building the parser imports no scipy.
DEFAULT_BOOTSTRAP = 1000


#: --delta's default: Hoffmann et al. 2022's Huber threshold on log-loss residuals
HUBER_DELTA = 1e-3


def huber_delta(args) -> float:
    """The Huber threshold ``--delta`` gives (its default when not given). Raises ValueError when it
    was given with ``--loss ls``, which has no threshold: the flag was read by nothing."""
    if args.delta is not None and args.objective != "huber":
        raise ValueError(f"--delta {args.delta:g} sets the Huber threshold; --loss {args.objective} has none")
    return HUBER_DELTA if args.delta is None else args.delta


def add_bootstrap_arg(p: argparse.ArgumentParser) -> None:
    """``--bootstrap B``, one default for every command that prints a fit's intervals (fit, predict,
    plan, frontier, replay): the parameter part of each interval from B resamples."""
    p.add_argument("--bootstrap", type=count, default=DEFAULT_BOOTSTRAP, metavar="B",
                   help=f"bootstrap resamples for SEs/CIs (default {DEFAULT_BOOTSTRAP}; 0 = sandwich covariance only)")


def add_parameter_part_arg(p: argparse.ArgumentParser) -> None:
    """``--parameter-part``, for the commands that print extrapolation intervals (predict, replay, and
    plan's loss at C): which parameter part the interval takes (fitting.extrapolation)."""
    p.add_argument("--parameter-part", choices=["auto", "delta", "profile", "bootstrap"], default="auto",
                   help="the prediction interval's parameter part: auto (default) the profile likelihood below 4 "
                        "runs per parameter, else the delta method (measured coverage: fitting/extrapolation.py; "
                        "the profile costs seconds per target); bootstrap: from the --bootstrap resamples")


def check_parameter_part(args) -> None:
    """Before any fitting: --parameter-part bootstrap needs resamples, and a part is for the misfit
    interval, not --interval plain (the fit's own interval); ValueError naming the flags."""
    if args.parameter_part == "bootstrap" and not args.bootstrap:
        raise ValueError("--parameter-part bootstrap needs --bootstrap B > 0")
    if args.parameter_part != "auto" and getattr(args, "interval", "misfit") == "plain":
        raise ValueError("--parameter-part sets the misfit interval's parameter part; --interval plain prints the "
                         "fit's own interval (sandwich or bootstrap): drop one")


#: What ``--interval plain`` prints (predict, replay), by its Interval.method: the fit's own
#: prediction interval, named like the misfit interval's parts so no interval goes without its source.
PLAIN_SOURCE = {
    "bootstrap": "the fit's own prediction interval (--interval plain): parameter part from the --bootstrap "
                 "resamples, run scatter from the residuals; no law misfit",
    "delta": "the fit's own prediction interval (--interval plain): parameter part from the sandwich covariance "
             "(delta method), run scatter from the residuals; no law misfit",
}


def parameter_part_from_args(args, fit) -> str:
    """--parameter-part for this fit: auto is fitting.extrapolation.default_parameter_part's."""
    from fitting.extrapolation import default_parameter_part

    return default_parameter_part(fit) if args.parameter_part == "auto" else args.parameter_part


def check_training_rows(data, law, selected=None, selection: str | None = None) -> None:
    """Before fitting: the rows of ``data`` (a FitData) that ``selected`` (a mask; None: all) keeps
    must be as many as a fit of ``law`` takes (``law.min_runs``); else a ValueError naming
    ``selection``, the flag and value the user typed (``--fit-max-compute 1e+20``, ``--train 'N <
    1e9'``), and the rows dropped before it and why (``--drop-top-loss``, ``--family``, statuses)."""
    import numpy as np

    kept = len(data) if selected is None else int(np.sum(selected))
    if kept >= law.min_runs:
        return
    rows = "cells" if data.aggregation else "runs"
    what = (f"{selection} selects {kept or 'none'} of the {len(data)} {rows}" if selection else
            f"{data.source} has {kept} usable {rows}")
    why = "; ".join(f"{v} for {k}" for k, v in data.drop_reasons.items())
    dropped = f"; {data.n_dropped} rows were dropped before ({why})" if data.n_dropped else ""
    raise ValueError(f"{what}: too few points for law {law.name!r}, which needs at least {law.min_runs} (its "
                     f"parameters + 1){dropped}")


def add_data_args(p: argparse.ArgumentParser, runs_required: bool) -> None:
    p.add_argument("runs", nargs="?", metavar="RUNS",
                   help="a sweep's metrics directory (its columns are known), or a CSV/Parquet table of runs "
                        "(columns found by name: see --n-col)" +
                        ("" if runs_required else " (or --params)") + "; or --example NAME")
    p.add_argument("--law", default="chinchilla",
                   help="chinchilla | kaplan | kaplan_n | kaplan_d | kaplan_c | kaplan_ns | data_constrained | "
                        "critical_batch (append +E to a Kaplan form for an irreducible term) | file.py:LAW | pkg.module:LAW; "
                        "on a sweep directory kaplan_ns, kaplan_c and critical_batch are fitted to its curves (S_min, "
                        "the C_min frontier, the noise scale)")
    add_table_args(p)
    p.add_argument("--loss", dest="objective", choices=["huber", "ls"], default="huber", help="objective (default huber)")
    p.add_argument("--delta", type=positive, default=None,
                   help=f"Huber delta on log-loss residuals (default {HUBER_DELTA:g}; only with --loss huber)")
    add_bootstrap_arg(p)
    p.add_argument("--intervals", choices=["auto", "profile"], default="auto",
                   help="parameter intervals: auto (bootstrap when --bootstrap > 0, else sandwich; a bootstrap "
                        "interval much narrower than the profile likelihood's is replaced by it) or profile "
                        "(profile likelihood; a side the data leave open is printed as open, to the bound)")
    p.add_argument("--seed", type=count, default=0, help="seed of the bootstrap and of sampled starts (default 0)")
    p.add_argument("--level", type=fraction, default=0.9, help="interval level (default 0.9)")
    p.add_argument("--exhaustive", action="store_true", help="run every start to convergence (no screening)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def register(subparsers) -> None:
    f = subparsers.add_parser("fit", help="fit a scaling law to runs, with uncertainty",
                              description="Fit a scaling law (robust multi-start) and print parameters with CIs.")
    add_data_args(f, True)
    f.add_argument("--fit-max-compute", type=positive, metavar="C",
                   help="fit on runs with C <= this (the table's compute column, else k·N·D) and report "
                        "held-out error on the rest")
    f.set_defaults(func=cmd_fit)


def fit_from_args(args):
    """The fit that ``fit`` prints and ``plan`` plans from: the law, the RUNS table (or a store's
    curves for a training-dynamics law), the training rows and the fit flags of ``args``, with
    every input and fitting warning put first in ``fit.warnings``. Raises ValueError (exit 2)
    for a bad input."""
    from fitting.checks import user_messages
    from fitting.dynamics import CURVE_LAWS, curve_rows, is_sweep_dir
    from fitting.fit import fit_law

    law = law_from_args(args)
    source, drop, name = table_source(args.runs, args, "RUNS")
    rows = None
    if law.name.split("+")[0] in CURVE_LAWS and args.runs and is_sweep_dir(source):
        # a store: these laws describe training dynamics, so their rows are its curves (fitting.dynamics)
        rows = curve_rows(source, law.name, family=getattr(args, "family", None),
                          sub_sweep=getattr(args, "sub_sweep", None), seed=args.seed)
        source, name = rows.columns, f"{name} (curves)"
    data, notes = load_table(source, args, law, drop_top_loss=drop, name=name, curve_points=rows is not None)
    if rows is not None:
        notes[:0] = rows.warnings
    train = {"max_compute": args.fit_max_compute} if getattr(args, "fit_max_compute", None) else None
    if train:
        kept = data.compute(args.flops_per_token) <= args.fit_max_compute
        check_training_rows(data, law, kept, f"--fit-max-compute {args.fit_max_compute:g}")
        if kept.all():  # said with the flag's name, not fit_law's "train selection"
            notes.append(f"--fit-max-compute {args.fit_max_compute:g} keeps every row: nothing is held out")
            train = None
    else:
        check_training_rows(data, law)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_law(law, data, loss=args.objective, delta=huber_delta(args), level=args.level, train=train,
                      seed=args.seed, screen=None if args.exhaustive else "auto", n_bootstrap=args.bootstrap,
                      intervals=args.intervals, flops_per_token=args.flops_per_token)
    notes += [m for m in user_messages(caught) if m not in fit.warnings]
    fit.warnings[:0] = notes
    fit.diagnostics["input_warnings"] = list(notes)  # printed before the table (FitResult.summary)
    if data.best:  # --best-over: the best setting per cell against scale (fitting.hyperparams)
        from fitting.hyperparams import optimal_hyperparameters

        fit.diagnostics["optimal_hyperparameters"] = optimal_hyperparameters(
            data, level=args.level, flops_per_token=args.flops_per_token)
    if rows is not None:
        fit.diagnostics["rows"] = rows.note
    return fit


def json_safe(o):
    """``o`` as plain JSON data: non-finite floats become null, numpy scalars Python numbers."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        try:
            return json_safe(o.item())
        except (ValueError, AttributeError):
            return str(o)
    return o


def cmd_fit(args) -> int:
    fit = fit_from_args(args)
    rows = fit.diagnostics.get("rows")  # which curve rows a store's dynamics law used
    if args.json:
        print(json.dumps(json_safe(dict(fit.to_dict(), **({"rows": rows} if rows else {}))), sort_keys=False))
    else:
        if rows:
            print(rows)
        print(fit.summary())
    return 0
