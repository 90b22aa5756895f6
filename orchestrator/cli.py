"""`scalesweep validate` and `scalesweep run`: the sweep driver's command line."""

from __future__ import annotations

import argparse

_DEFER_HELP = ("do not read the corpus (for a corpus that exists only on the cluster's nodes): "
               "defer the data checks (the source exists and reads, it holds every trial's "
               "dataset_tokens plus the validation split, the extra-eval sets) to the trials; "
               "everything else is still checked")


def _validate(args: argparse.Namespace) -> int:
    if args.reference:
        from orchestrator.spec_reference import reference_markdown

        print(reference_markdown(), end="")
        return 0
    if args.spec is None:
        raise ValueError("validate: give a spec file (or --reference)")
    from orchestrator.spec import validate_command

    print(validate_command(args.spec, check_corpus=not args.defer_data_checks))
    return 0


def _run(args: argparse.Namespace) -> int:
    from orchestrator.sweep import run_sweep

    summary = run_sweep(args.spec, resume=args.resume, address=args.address, num_cpus=args.num_cpus,
                        max_failures=args.max_failures, verbose=0 if args.quiet else 1,
                        check_corpus=not args.defer_data_checks)
    if args.quiet:
        print(summary.text())
    return 0 if summary.failed == 0 else 1


def register(subparsers) -> None:
    validate = subparsers.add_parser(
        "validate", help="check a sweep spec and print its grid (no Ray); --reference: the field reference")
    validate.add_argument("spec", nargs="?", help="sweep spec YAML")
    validate.add_argument("--defer-data-checks", action="store_true", help=_DEFER_HELP)
    validate.add_argument("--reference", action="store_true",
                          help="print the spec field reference (docs/spec_reference.md) and exit")
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
    run.add_argument("--defer-data-checks", action="store_true", help=_DEFER_HELP)
    run.set_defaults(func=_run)
