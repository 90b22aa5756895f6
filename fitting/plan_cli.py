"""``scalesweep plan``: the compute-optimal allocation at a budget, from a fit of runs (fitting.cli's
table and fit flags) or from given parameters (``--params``, no fit: the fit's flags are refused)."""

from __future__ import annotations

import json
import os

from fitting.cli import (add_data_args, add_parameter_part_arg, check_parameter_part, json_safe, law_from_args,
                         parameter_part_from_args)
from scalesweep.argtypes import positive

#: plan's flags that --params (given parameters: no fit, no intervals) still reads; any other one
#: set away from its default is refused (it would be read by nothing)
PARAMS_READ = {"help", "law", "compute", "params", "unique_tokens", "flops_per_token", "json"}


def register(subparsers) -> None:
    p = subparsers.add_parser("plan", help="compute-optimal N, D and loss at a compute budget",
                              description="Fit (or take parameters) and print the compute-optimal allocation. "
                                          "Runs that cannot identify it (one model size, one tokens-per-parameter "
                                          "ratio, ...) are refused: exit 2, with the fit and the reason.")
    add_data_args(p, False)
    p.add_argument("--compute", type=positive, required=True, action="append", help="FLOP budget (repeatable)")
    p.add_argument("--params", help="fitted parameters: a JSON object or a file written by `fit --json`")
    p.add_argument("--unique-tokens", "--u", dest="unique_tokens", type=positive,
                   help="unique tokens U held fixed when planning the data_constrained law")
    add_parameter_part_arg(p)  # every loss interval plan prints takes it
    fit_only = [a for a in p._actions if a.option_strings and a.dest not in PARAMS_READ]
    p.set_defaults(func=lambda args: cmd_plan(args, fit_only))


def _read_params(spec: str):
    if "://" in spec:  # a `fit --json` output kept in object storage
        from metrics import resolve

        fs, path = resolve(spec)
        try:
            with fs.open_input_stream(path) as stream:
                obj = json.loads(stream.read())
        except (OSError, ValueError) as err:
            raise ValueError(f"--params: cannot read {spec} ({str(err).splitlines()[0] if str(err) else err})") from None
    elif os.path.isfile(spec):
        with open(spec) as fh:
            obj = json.load(fh)
    else:
        try:
            obj = json.loads(spec)
        except json.JSONDecodeError as err:
            raise ValueError(f"--params is neither a file nor JSON: {err}") from err
    if not isinstance(obj, dict):
        raise ValueError("--params must be a JSON object")
    if obj.get("identified") is False:  # a `fit --json` the runs could not identify: no number to plan from
        raise ValueError(f"--params: the fit was NOT IDENTIFIED by its runs "
                         f"({obj.get('unidentified_reason') or 'see fit'}); no compute-optimal allocation")
    law = obj.get("law")
    params = obj.get("params", obj)
    params = {k: float(v) for k, v in params.items() if isinstance(v, (int, float))}
    return law, params


def _check_unique_tokens(args, law) -> None:
    """``--unique-tokens`` fixes U: refused (ValueError) for a law without that input, which read nothing."""
    if args.unique_tokens and "U" not in law.inputs:
        raise ValueError(f"--unique-tokens fixes U, an input of the data_constrained law; law {law.name!r} has no U")


def _check_law(law, flag: str) -> None:
    """Before any fitting: a law plan can allocate for (fitting.allocate.allocatable), else a
    ValueError naming the flag that chose it (--law, or --params's "law")."""
    from fitting.allocate import allocatable

    if not allocatable(law):
        raise ValueError(f"{flag}: law {law.name!r} has neither N and D inputs nor C: nothing to allocate "
                         f"(e.g. chinchilla, kaplan, data_constrained)")


def _params_law(args, law_name: str | None):
    """The law of --params: the one its ``law`` names (a `fit --json`), unless --law says otherwise,
    which must then be the same law; a law plan cannot allocate for is refused naming its flag."""
    from fitting.laws import get_law

    if law_name and args.law == "chinchilla":  # --law not given: the law the parameters name
        try:
            law = get_law(law_name)
        except ValueError as err:
            raise ValueError(f"--params: {err}") from None
        _check_law(law, f"--params (its law {law_name!r})")
        return law
    law = law_from_args(args)
    if law_name and law.name != law_name:
        raise ValueError(f"--law {args.law}: --params holds parameters of law {law_name!r}; drop --law, or give "
                         f"that law's parameters")
    _check_law(law, f"--law {args.law}")
    return law


def cmd_plan(args, fit_only=()) -> int:
    """``fit_only``: plan's argparse actions that --params leaves unread (refused when set)."""
    from fitting.allocate import compute_optimal_allocation
    from scalesweep.cli import changed_flags

    fixed = {"U": args.unique_tokens} if args.unique_tokens else None
    check_parameter_part(args)  # before any fitting
    if not args.params:
        law = law_from_args(args)
        _check_law(law, f"--law {args.law}")
        _check_unique_tokens(args, law)
    if args.params:
        if args.runs or args.example:
            raise ValueError("give --params or RUNS/--example, not both")
        unread = changed_flags(args, fit_only)  # e.g. --bootstrap 100: a bootstrap needs runs
        if unread:
            one = len(unread) == 1
            raise ValueError(f"{', '.join(unread)} {'is a setting' if one else 'are settings'} of the fit of RUNS; "
                             f"--params plans without intervals, from given parameters (no fit): give RUNS (or "
                             f"--example) to fit, or drop {'it' if one else 'them'}")
        law_name, params = _read_params(args.params)
        law = _params_law(args, law_name)
        try:
            law.as_array(params)
        except ValueError as err:  # a parameter missing or misspelt
            raise ValueError(f"--params: {err}") from None
        _check_unique_tokens(args, law)
        allocations = [compute_optimal_allocation(law=law, params=params, compute=c, level=args.level, fixed=fixed,
                                                  flops_per_token=args.flops_per_token) for c in args.compute]
        fit = None
    elif args.runs or args.example:
        from fitting.cli import fit_from_args
        from fitting.extrapolation import calibrate_misfit

        fit = fit_from_args(args)
        identified = fit.identifiability.identified
        part = parameter_part_from_args(args, fit)
        misfit = (calibrate_misfit(fit, parameter_part=part) if identified and {"N", "D"} <= set(fit.law.inputs)
                  else None)
        allocations = [compute_optimal_allocation(fit, c, level=args.level, fixed=fixed, seed=args.seed,
                                                  flops_per_token=args.flops_per_token, misfit_calibration=misfit,
                                                  parameter_part=part)
                       for c in args.compute]
    else:
        raise ValueError("plan needs RUNS to fit (or --example NAME), or --params")
    refused = [a for a in allocations if not a.identified]
    if args.json:
        obj = {"law": allocations[0].law, "plans": [json_safe(a.to_dict()) for a in allocations]}
        if fit is not None:
            obj["fit"] = json_safe(fit.to_dict())
        if len(allocations) == 1:
            obj.update(json_safe(allocations[0].to_dict()))
        print(json.dumps(obj))
    else:
        if fit is not None:
            print(fit.summary())
            print()
        for allocation in allocations if not refused else []:
            _print_allocation(allocation, args.level)
    if refused:
        raise ValueError(f"no compute-optimal allocation: {refused[0].unidentified_reason}")
    return 0


def _print_allocation(p, level: float) -> None:
    from fitting.uncertainty import interval_text

    lvl = int(round(level * 100))
    iv = p.intervals
    fmt = lambda k, v: f"{v:.4g}" + (f"  {interval_text(*iv[k])}" if k in iv else "")
    print(f"compute {p.compute:.3g} FLOPs ({p.law}; {p.sources()})")  # where each interval below comes from
    print(f"  N_opt             {fmt('N_opt', p.N_opt)}")
    print(f"  D_opt             {fmt('D_opt', p.D_opt)}")
    print(f"  tokens/param      {fmt('tokens_per_param', p.tokens_per_param)}")
    # The interval to act on (Allocation.loss_interval, the one every command and the report print
    # for the loss at C), named for what it holds; beside it only its own parameter part, which lies inside.
    if p.loss_interval:
        lo, hi = p.loss_interval
        here = (f"; sd {p.misfit_sd_here:.3g} (log loss) of the extrapolation error at this point, grown with its "
                f"distance beyond the runs; {p.misfit_source}" if p.loss_misfit_interval and p.misfit_sd_here is not None else "")
        print(f"  loss              {p.loss:.4g}  {interval_text(lo, hi)}  ({lvl}% {p.loss_interval_kind}{here})")
        if "loss" in iv:
            print(f"                    its parameter part alone: {interval_text(*iv['loss'])}"
                  + (f" ({p.parameter_part})" if p.parameter_part else ""))
    else:
        print(f"  loss              {fmt('loss', p.loss)}")
    print(f"  a (N_opt ∝ C^a)   {fmt('exponent_a', p.exponent_a)}")
    for note in p.notes:
        print(f"  warning: {note}")
