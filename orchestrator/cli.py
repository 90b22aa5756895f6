"""`scalesweep validate` and `scalesweep run`: the sweep driver's command line."""

from __future__ import annotations

import argparse


def _validate(args: argparse.Namespace) -> int:
    from orchestrator.spec import validate_command

    print(validate_command(args.spec))
    return 0


def _run(args: argparse.Namespace) -> int:
    from orchestrator.sweep import run_sweep

    summary = run_sweep(args.spec, resume=args.resume, address=args.address, num_cpus=args.num_cpus,
                        max_failures=args.max_failures, verbose=0 if args.quiet else 1)
    if args.quiet:
        print(summary.text())
    return 0 if summary.failed == 0 else 1


def register(subparsers) -> None:
    validate = subparsers.add_parser("validate", help="check a sweep spec and print its grid")
    validate.add_argument("spec", help="sweep spec YAML")
    validate.set_defaults(func=_validate)

    run = subparsers.add_parser("run", help="run a sweep spec on Ray Tune")
    run.add_argument("spec", help="sweep spec YAML")
    run.add_argument("--resume", action="store_true",
                     help="continue the sweep's Tune experiment (after a kill); ended runs are not re-run")
    run.add_argument("--address", default=None,
                     help="attach to a running Ray cluster ('auto' or host:port); default: start a "
                          "local one bound to 127.0.0.1")
    run.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    run.add_argument("--max-failures", type=int, default=2,
                     help="retries per trial, each from its latest checkpoint (default 2)")
    run.add_argument("--quiet", action="store_true", help="no progress table, only the summary")
    run.set_defaults(func=_run)
