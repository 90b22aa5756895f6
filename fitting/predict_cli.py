"""``scalesweep predict``: the held-out check. Fit a law on the rows a selection picks, predict the
others (or a targets table), and print each target's prediction, interval and error, with the
mean error and the interval coverage.

``scalesweep predict RUNS --train "N <= 4.2e8" [--test "N > 4.2e8" | --targets FILE] --law chinchilla``

Selections are a small safe grammar, never ``eval``: clauses ``COLUMN OP NUMBER`` (OP one of
< <= > >= ==) joined by ``and`` or ``&``; COLUMN is a law input (N, D, ...), C (compute:
the table's own C column when it has one, else k·N·D; `FitData.compute`) or loss. Reuses the table reader (:func:`fitting.cli.load_table`), the fitter
(:func:`fitting.fit.fit_law`), the misfit-widened prediction interval
(:func:`fitting.extrapolation.extrapolation_interval`) and the replay metrics.
"""

from __future__ import annotations

import json
import re
import warnings

import numpy as np

from scalesweep.argtypes import positive

__all__ = ["select_rows", "register"]

_CLAUSE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|==|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_OPS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal, "==": np.equal}


def select_rows(expr: str, columns: dict[str, np.ndarray], flag: str = "--train") -> np.ndarray:
    """Boolean mask of the rows where every clause of ``expr`` holds. Raises ValueError naming
    ``flag`` and the clause for anything outside the grammar or an unknown column."""
    clauses = [c for c in re.split(r"\s+and\s+|&", expr.strip())]
    if not expr.strip() or any(not c.strip() for c in clauses):
        raise ValueError(f"{flag}: empty clause in {expr!r}; write e.g. 'N <= 4.2e8 and D > 1e9'")
    n = len(next(iter(columns.values())))
    mask = np.ones(n, dtype=bool)
    for clause in clauses:
        m = _CLAUSE.match(clause)
        if m is None:
            raise ValueError(f"{flag}: cannot read {clause.strip()!r}; a clause is COLUMN OP NUMBER with OP one of "
                             f"< <= > >= ==")
        col, op, value = m.groups()
        if col not in columns:
            raise ValueError(f"{flag}: unknown column {col!r}; available: {', '.join(sorted(columns))}")
        with np.errstate(invalid="ignore"):
            mask &= _OPS[op](np.asarray(columns[col], dtype=float), float(value))
    return mask


def _columns(data, k: float) -> dict[str, np.ndarray]:
    """The columns a selection may name: the law's inputs, C (`FitData.compute`: the table's own
    compute column, else k·N·D; absent for a law of N alone on a table without C) and loss."""
    cols = {c: np.asarray(v, dtype=float) for c, v in data.X.items()}
    try:
        cols["C"] = data.compute(k)
    except ValueError:
        pass  # no compute to select on; naming C is then "unknown column", with what there is
    return {**cols, "loss": data.y}


def register(subparsers) -> None:
    from fitting.cli import add_data_args, add_parameter_part_arg

    p = subparsers.add_parser(
        "predict", help="fit on a subset of runs and predict the rest (held-out check)",
        description="Fit the law on the rows --train selects and predict the rows --test selects (default: "
                    "every other row) or a --targets table: each target's prediction, interval and error, then "
                    "the mean error and the interval coverage. Selections: 'N <= 4.2e8 and D > 1e9' (columns: "
                    "the law's inputs, C (the table's compute column, else k·N·D), loss; ops < <= > >= ==; join with 'and' or '&').")
    add_data_args(p, True)
    p.add_argument("--train", metavar="EXPR", help="rows to fit on")
    p.add_argument("--test", metavar="EXPR", help="rows to predict (default: the rows --train leaves out)")
    p.add_argument("--targets", metavar="FILE", help="a table of runs to predict instead of --test")
    p.add_argument("--fit-max-compute", type=positive, metavar="C",
                   help="shorthand for --train 'C <= C' (and, without --test/--targets, the rest as targets)")
    p.add_argument("--interval", choices=["misfit", "plain"], default="misfit",
                   help="prediction intervals widened by the calibrated law misfit (default) or plain")
    add_parameter_part_arg(p)
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args) -> int:
    from fitting.checks import range_note, user_messages
    from fitting.cli import (check_parameter_part, check_training_rows, huber_delta, json_safe, law_from_args,
                              load_table, parameter_part_from_args, table_source)
    from fitting.extrapolation import calibrate_misfit, describe_parameter_part, extrapolation_interval
    from fitting.fit import fit_law
    from fitting.replay import target_metrics
    from fitting.uncertainty import interval_text, open_sides

    check_parameter_part(args)
    flag, selection = "--train", f"--train {args.train!r}"  # what the user typed, for messages
    if args.fit_max_compute is not None:
        if args.train:
            raise ValueError("give --train or --fit-max-compute, not both")
        args.train = f"C <= {args.fit_max_compute!r}"
        flag, selection = "--fit-max-compute", f"--fit-max-compute {args.fit_max_compute:g}"
    if not args.train:
        raise ValueError("predict needs --train EXPR (or --fit-max-compute C)")
    if args.test and args.targets:
        raise ValueError("give --test or --targets, not both")
    law = law_from_args(args)
    source, drop, name = table_source(args.runs, args, "RUNS")
    data, notes = load_table(source, args, law, drop_top_loss=drop, name=name)
    cols = _columns(data, args.flops_per_token)
    train = select_rows(args.train, cols, flag)
    in_train = 0  # targets the fit also saw (none for a --targets table: it is not the runs' rows)
    if args.targets:
        targets, more = load_table(args.targets, args, law, require_loss=False, flag="--targets")
        notes += more
    else:
        test = select_rows(args.test, cols, "--test") if args.test else ~train
        targets = data.subset(test)
        if (in_train := int((test & train).sum())):  # a held-out check that is not held out says so
            notes.append(f"{in_train} of the {int(test.sum())} --test rows are also --train rows: the fit saw "
                         f"them, so their errors and coverage are in-sample, not a held-out check")
    check_training_rows(data, law, train, selection)
    if len(targets) == 0:
        raise ValueError("no targets to predict: " + ("--targets has no usable row" if args.targets else
                         f"--test {args.test!r} selects no run" if args.test else f"{selection} selects every run"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_law(law, data.subset(train), loss=args.objective, delta=huber_delta(args), level=args.level,
                      seed=args.seed, screen=None if args.exhaustive else "auto", n_bootstrap=args.bootstrap,
                      intervals=args.intervals)
    notes += [m for m in user_messages(caught) if m not in fit.warnings] + fit.notes()  # with the verdicts' note
    far = range_note(targets.X, fit.data.X)
    notes += [far] if far else []
    part = parameter_part_from_args(args, fit)
    calibration = (calibrate_misfit(fit, parameter_part=part)
                   if args.interval == "misfit" else None)
    iv = (extrapolation_interval(fit, targets.X, level=args.level, calibration=calibration, parameter_part=part)
          if calibration else fit.interval(targets.X, level=args.level))
    y = np.asarray(targets.y, dtype=float)
    scored = np.isfinite(y) & (y > 0)
    m = target_metrics(iv.mean[scored], y[scored], iv.lo[scored], iv.hi[scored]) if scored.any() else {}
    rows = [{**{c: float(v[i]) for c, v in targets.X.items()}, "loss": float(y[i]) if scored[i] else None,
             "predicted": float(iv.mean[i]), "lower": float(iv.lo[i]), "upper": float(iv.hi[i]),
             "open": open_sides(iv.lo[i], iv.hi[i]),
             "rel_error": float(iv.mean[i] / y[i] - 1) if scored[i] else None,
             "covered": bool(iv.lo[i] <= y[i] <= iv.hi[i]) if scored[i] else None} for i in range(len(targets))]
    summary = {"n_train": int(train.sum()), "n_targets": len(targets), "n_targets_in_train": in_train,
               "n_scored": int(scored.sum()),
               "mean_abs_rel_error": m.get("mean_are"), "coverage": m.get("coverage"), "r2": m.get("r2"),
               "level": args.level, "interval": iv.method,
               # named as the text names it ("extrapolation error sd"); was "misfit"
               "extrapolation_error_sd": calibration.amplitude if calibration else None,
               "extrapolation_error": calibration.describe() if calibration else None,
               "parameter_part": describe_parameter_part(fit, part) if calibration else None,
               "parameter_method": part if calibration else None}
    if args.json:
        print(json.dumps(json_safe({"law": law.name, "params": fit.params,
                                    "not_identified": fit.not_identified(args.level), "warnings": notes, **summary,
                                 "aggregation": data.aggregation, "targets": rows})))
        return 0
    for note in notes:
        print(f"warning: {note}")
    if data.aggregation:
        print(f"rows: {data.aggregation}")
    print(f"fit on {summary['n_train']} of {len(data)} runs ({args.train}): "
          + ", ".join(f"{k}={v:.4g}" for k, v in fit.params.items()))
    if calibration:
        print(f"intervals: {describe_parameter_part(fit, part)}")
        print(f"intervals: {calibration.describe()}")
    else:  # --interval plain: named too, so no interval is printed without its source
        from fitting.cli import PLAIN_SOURCE

        print(f"intervals: {PLAIN_SOURCE[iv.method]}")
    lvl = int(round(args.level * 100))
    for r in rows:
        where = ", ".join(f"{c}={r[c]:.4g}" for c in targets.X)
        err = f"loss {r['loss']:.4f}, error {r['rel_error']:+.2%}{'' if r['covered'] else ' (outside)'}" \
            if r["loss"] is not None else "no loss"
        print(f"  {where}: predicted {r['predicted']:.4f}, {lvl}% {interval_text(r['lower'], r['upper'], '.4f')}; {err}")
    if m:
        print(f"targets with a known loss, {summary['n_scored']} of {len(targets)}: mean abs rel error "
              f"{m['mean_are']:.2%}, {lvl}% interval coverage {m['coverage']:.2%}, R2 {m['r2']:.4f}")
    return 0
