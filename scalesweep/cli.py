"""`scalesweep` command line. Each package registers its own sub-commands.

A package's ``cli`` module exposes ``register(subparsers)``; it must import heavy
dependencies (torch, DeepSpeed, Ray) inside its handlers so ``scalesweep --help`` and the
pure-numpy commands (``fit``, ``plan``) start fast.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

# Modules whose ``register`` adds sub-commands; a module not present yet is skipped so the
# CLI works while the packages grow.
COMMAND_MODULES = (
    "trainers.cli",        # train
    "fitting.cli",         # fit
    "fitting.plan_cli",    # plan
    "fitting.replay_cli",  # replay
    "fitting.predict_cli", # predict
    "fitting.frontier_cli", # frontier
    "orchestrator.cli",    # validate, run, ladder
    "orchestrator.report", # report, demo
)


# Bad input is the user's to fix: these exceptions print one line and exit 2, no traceback.
USER_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError)
# Faults of the machine, not the input, that the raiser already states in one line (exit 1).
# By name: the CLI imports neither Ray nor the orchestrator before a command needs them.
ENVIRONMENT_ERRORS = ("RayStartError",)  # orchestrator.local_ray


def check_output_file(path: str, flag: str) -> None:
    """Raise FileNotFoundError/IsADirectoryError before any work if ``path`` cannot be written
    as a new or replaced file (its directory is missing, or it is a directory). A pyarrow.fs URI
    (s3://...) is checked on its filesystem (`metrics.check_reachable`, a ValueError)."""
    import os

    if "://" in path:
        from metrics import check_reachable

        check_reachable(path, flag, file=True)
        return

    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{flag}: directory {parent} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{flag}: {path} is a directory, not a file")


def check_plot_file(path: str, flag: str) -> None:
    """:func:`check_output_file`, and its suffix must be a format matplotlib writes: ``--plot x.txt``
    failed only after the whole computation (ValueError naming the flag and the formats)."""
    import os

    from matplotlib.backend_bases import FigureCanvasBase

    check_output_file(path, flag)
    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    if suffix not in formats:
        raise ValueError(f"{flag}: {path!r} needs the suffix of an image format ({', '.join(sorted(formats))})")


def changed_flags(args, actions) -> list[str]:
    """The flags (first option string) of ``actions`` whose value in ``args`` is not the action's
    default: for a command to refuse the flags a mode of it reads by nothing. (A flag typed with its
    default value changes nothing and passes.)"""
    return [a.option_strings[0] for a in actions if getattr(args, a.dest, a.default) != a.default]


class Parser(argparse.ArgumentParser):
    """The parser of ``scalesweep`` and of each sub-command (argparse makes sub-parsers of the
    parent's class). A bad flag is one line naming it, exit 2, as any other bad input (no usage
    block: ``--help`` shows that), and a negative number in exponent form (``--compute -1e22``) is
    read as the flag's value, for its type (:mod:`scalesweep.argtypes`) to judge."""

    # argparse's own pattern (-1, -.5) misses -1e22 and then says "expected one argument"
    _NEGATIVE = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = self._NEGATIVE

    def error(self, message: str):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)

    def add_subparsers(self, **kwargs):
        self._commands = super().add_subparsers(**kwargs)  # for parse_args: which command a flag was given to
        return self._commands

    def parse_args(self, args=None, namespace=None):
        """argparse's, but an unknown flag is reported by the sub-command it was given to
        (``scalesweep plan: error: unrecognized arguments: --bogus``): the top-level parser, which
        argparse has say it, cannot name the command whose ``--help`` lists the flags."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            commands = getattr(self, "_commands", None)
            command = commands and commands.choices.get(getattr(namespace, commands.dest, None))
            (command or self).error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="scalesweep",
        description="Measure scaling laws: train, sweep, fit, plan.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # a real missing dependency inside the module: surface it
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:  # a bad flag, already said in one line (Parser.error): exit 2 as below
            if exit_.code in (0, None):  # --help
                raise
            return int(exit_.code)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        try:
            result = args.func(args)
        except USER_ERRORS as err:
            # Bad input is the user's to fix: one clear line per problem, no traceback.
            for line in str(err).splitlines() or [repr(err)]:
                print(f"scalesweep {args.command}: error: {line}", file=sys.stderr)
            return 2
        except RuntimeError as err:
            if type(err).__name__ not in ENVIRONMENT_ERRORS:
                raise
            print(f"scalesweep {args.command}: error: {err}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        # Ctrl-C is not a crash: no traceback, the shell's exit status for SIGINT. (`run`
        # handles its own, to print the line that resumes the sweep.)
        print("scalesweep: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
