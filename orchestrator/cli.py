"""`scalesweep validate`, `scalesweep run` and `scalesweep ladder`: the sweep driver's command line."""

from __future__ import annotations

import argparse
import shlex
import sys

from scalesweep.argtypes import count, fraction, number, positive_count

RUN_DEFAULTS = {"max_failures": 2}

_DEFER_HELP = ("do not read the corpus (for a corpus that exists only on the cluster's nodes): "
               "defer the data checks (the source exists and reads, it holds every trial's "
               "dataset_tokens plus the validation split, the extra-eval sets) to the trials; "
               "validate also skips the storage check (run always checks it); everything else is "
               "still checked. run still prepares a raw corpus once, from the driver, into the "
               "sweep's storage, so the driver must see its files")


def _validate(args: argparse.Namespace) -> int:
    if args.reference:
        if args.spec is not None or args.defer_data_checks:  # read by nothing: it prints and exits
            raise ValueError(f"--reference prints the spec field reference and checks no spec: drop "
                             f"{'SPEC ' + repr(args.spec) if args.spec is not None else '--defer-data-checks'}, "
                             f"or --reference")
        from orchestrator.spec_reference import reference_markdown

        print(reference_markdown(), end="")
        return 0
    if args.spec is None:
        raise ValueError("validate: give a spec file (or --reference)")
    from orchestrator.spec import validate_command

    print(validate_command(args.spec, check_corpus=not args.defer_data_checks))
    return 0


def resume_command(args: argparse.Namespace) -> str:
    """The `scalesweep run` line that continues this sweep: the same spec and flags, plus --resume."""
    words = ["scalesweep", "run", args.spec, "--resume"]
    if args.address:
        words += ["--address", args.address]
    if args.num_cpus is not None:
        words += ["--num-cpus", str(args.num_cpus)]
    if args.max_failures != RUN_DEFAULTS["max_failures"]:
        words += ["--max-failures", str(args.max_failures)]
    if args.quiet:
        words.append("--quiet")
    if args.defer_data_checks:
        words.append("--defer-data-checks")
    return shlex.join(words)


def _run(args: argparse.Namespace) -> int:
    """Exit status: `SweepSummary.exit_code` (0 done, 1 a run failed, 128 + signal number when
    interrupted by SIGINT or SIGTERM, with the line that resumes it)."""
    from orchestrator.cluster import check_num_cpus
    from orchestrator.interrupt import SweepInterrupted, exit_status
    from orchestrator.sweep import run_sweep

    check_num_cpus(args.address, args.num_cpus)  # before the spec is read, Ray imported or the store touched
    try:
        summary = run_sweep(args.spec, resume=args.resume, address=args.address, num_cpus=args.num_cpus,
                            max_failures=args.max_failures, verbose=0 if args.quiet else 1,
                            check_corpus=not args.defer_data_checks)
    except KeyboardInterrupt as stop:  # stopped at once: the state Tune saved last is kept
        name = stop.signal if isinstance(stop, SweepInterrupted) else "SIGINT"
        print(f"scalesweep run: stopped at once by {name}; continue with:\n  {resume_command(args)}",
              file=sys.stderr, flush=True)
        return exit_status(name)
    if args.quiet:
        print(summary.text())
    if summary.interrupted:
        print(f"scalesweep run: interrupted by {summary.interrupted}; continue the sweep with:\n"
              f"  {resume_command(args)}", file=sys.stderr, flush=True)
    if summary.exit_code == 0:  # a spec's ladder: section trains after a sweep that ended cleanly
        from orchestrator.spec import load_spec

        spec = load_spec(args.spec)
        if spec.ladder is not None:
            return _train_ladder(spec, args)
    return summary.exit_code


def _train_ladder(spec, args: argparse.Namespace, **options) -> int:
    from orchestrator.ladder import run_ladder

    return run_ladder(spec, resume=args.resume, address=args.address, num_cpus=args.num_cpus,
                      max_failures=args.max_failures, verbose=0 if args.quiet else 1,
                      check_corpus=not args.defer_data_checks, **options).exit_code


def _ladder(args: argparse.Namespace) -> int:
    """`scalesweep ladder` (orchestrator/ladder.py): the run's exit status (0: trained and scored)."""
    from orchestrator.cluster import check_num_cpus
    from orchestrator.spec_types import ladder_multiplier

    check_num_cpus(args.address, args.num_cpus)
    if args.multiplier is not None:
        ladder_multiplier(args.multiplier, "--multiplier")  # before the spec or the store is read
    if not 0 < args.level < 1:
        raise ValueError(f"--level: must be in (0, 1), got {args.level}")
    return _train_ladder(args.spec, args, multiplier=args.multiplier, level=args.level,
                         allow_at_bounds=args.allow_at_bounds or None)


def register(subparsers) -> None:
    validate = subparsers.add_parser(
        "validate", help="check a sweep spec and print its grid (no Ray); --reference: the field reference")
    validate.add_argument("spec", nargs="?", help="sweep spec YAML")
    validate.add_argument("--defer-data-checks", action="store_true", help=_DEFER_HELP)
    validate.add_argument("--reference", action="store_true",
                          help="print the spec field reference (docs/spec_reference.md) and exit")
    validate.set_defaults(func=_validate)

    prepare = subparsers.add_parser(
        "prepare", help="tokenise a corpus once into sharded token memmaps + manifest (resumable)",
        description="Tokenise a corpus once into sharded token memmaps and a manifest; a spec then names "
                    "--out as corpus.source. Interrupted, it resumes where it stopped (run it again).")
    prepare.add_argument("corpus", help="builtin | path/glob | *.jsonl | *.parquet")
    prepare.add_argument("--tokenizer", default="byte", help="byte | bpe:<vocab> | tiktoken:gpt2")
    prepare.add_argument("--text-field", default="text", help="JSONL field / Parquet column (default text)")
    prepare.add_argument("--out", required=True, help="directory for the shards and manifest.json")
    prepare.add_argument("--workers", type=positive_count, default=None,
                         help="tokenising processes, or with --engine ray the most tasks at once (default: all CPUs)")
    prepare.add_argument("--engine", choices=("pool", "ray"), default="pool",
                         help="pool: a process pool on this machine (default); ray: a Ray Data job, on the "
                              "cluster at --address (every node must see the corpus and --out at the same "
                              "paths) or on a private local Ray")
    prepare.add_argument("--address", default=None, help="with --engine ray: the cluster ('auto' or host:port)")
    prepare.set_defaults(func=_prepare)

    run = subparsers.add_parser(
        "run", help="run a sweep spec on Ray Tune",
        description="Run a sweep spec on Ray Tune. Ctrl-C or SIGTERM stops it gracefully: running trials are "
                    "recorded as interrupted, it exits 130 (SIGINT) or 143 (SIGTERM) and prints the --resume "
                    "line that continues them (from their last checkpoints). Exit 1: a run failed after its retries; "
                    "diverged runs are results (exit 0), counted in the summary. A spec with a ladder: section then "
                    "trains its ladder run (`scalesweep ladder`).")
    run.add_argument("spec", help="sweep spec YAML")
    add_run_flags(run, "the sweep's")
    run.set_defaults(func=_run)

    ladder = subparsers.add_parser(
        "ladder", help="train the compute-optimal run a finished sweep predicts at K x its largest run; score it",
        description="From a finished sweep: fit its law (search.law or chinchilla), predict the compute-optimal "
                    "N and D at --multiplier x its largest run's compute, train that one run on Ray like any run "
                    "of the sweep (budget, retries, resume), and print predicted vs observed loss with the "
                    "prediction interval and whether it covered it; the row lands in <storage>/<sweep>/ladder/.")
    ladder.add_argument("spec", help="the sweep's spec YAML")
    ladder.add_argument("--multiplier", type=number(float, low=1, low_open=True), default=None,
                        help="K: the ladder's compute over the largest run's (> 1; default: the spec's "
                             "ladder.multiplier, else 4)")
    ladder.add_argument("--allow-at-bounds", action="store_true",
                        help="train even when the fit has parameters at their bounds (default: refuse, exit 2)")
    ladder.add_argument("--level", type=fraction, default=0.9, help="prediction-interval level (default 0.9)")
    add_run_flags(ladder, "the ladder run's")
    ladder.set_defaults(func=_ladder)


def add_run_flags(run: argparse.ArgumentParser, what: str) -> None:
    """The flags of a command that trains on Ray (`run`, `ladder`): resume, cluster, CPUs, retries,
    quiet, deferred data checks. `what` names whose Tune experiment --resume continues."""
    run.add_argument("--resume", action="store_true",
                     help=f"continue {what} Tune experiment (after a kill); ended runs are not re-run")
    run.add_argument("--address", default=None,
                     help="attach to a running Ray cluster ('auto' or host:port; its token is read from "
                          "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token); default: start a "
                          "private local one listening on 127.0.0.1 only")
    run.add_argument("--num-cpus", type=positive_count, default=None, help="CPUs of the local Ray (default: all)")
    run.add_argument("--max-failures", type=count, default=RUN_DEFAULTS["max_failures"],
                     help="retries per trial, each from its latest checkpoint (default 2)")
    run.add_argument("--quiet", action="store_true",
                     help="no progress table and no trial worker output, only the summary")
    run.add_argument("--defer-data-checks", action="store_true", help=_DEFER_HELP)


def _prepare(args: argparse.Namespace) -> int:
    """`scalesweep prepare`: one summary line."""
    from trainers.data import CorpusSpec, unread_text_field
    from trainers.prepare import prepare_corpus

    if args.address and args.engine != "ray":
        raise ValueError("--address: only with --engine ray (the process pool runs on this machine)")
    spec = CorpusSpec(source=args.corpus, tokenizer=args.tokenizer, text_field=args.text_field)
    if (why := unread_text_field(spec)):
        raise ValueError(f"--text-field {args.text_field}: {why}")
    if args.engine == "ray":
        from orchestrator.corpus_ray import prepare_on_ray

        manifest = prepare_on_ray(spec, args.out, address=args.address, workers=args.workers, log=print)
    else:
        manifest = prepare_corpus(spec, args.out, workers=args.workers, log=print)
    held = (f"{manifest['description']}: {manifest['documents']} documents, {manifest['tokens']} "
            f"{manifest['dtype']} tokens in {len(manifest['shards'])} shard(s)")
    if manifest.get("reused"):
        print(f"already prepared: {args.out} holds {held} (same files by size and mtime, same tokenizer); "
              "reused, nothing read")
        return 0
    startup = f" plus {manifest['engine_start_s']} s starting Ray" if manifest.get("engine_start_s") else ""
    print(f"prepared {held} -> {args.out} ({manifest['prepare_s']} s{startup}; "
          f"{manifest['empty_documents_skipped']} empty documents left out)")
    return 0
