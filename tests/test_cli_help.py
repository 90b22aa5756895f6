"""Every flag and argument of every `scalesweep` sub-command has help text, and the spec field
reference in docs/ is the one the spec's dataclasses generate."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.spec_reference import reference_markdown
from scalesweep.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def sub_commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: sub for action in actions for name, sub in action.choices.items()}


def test_every_cli_flag_has_help():
    commands = sub_commands(build_parser())
    assert {"train", "fit", "plan", "replay", "validate", "run", "report", "demo"} <= set(commands)
    missing = [f"{name} {'/'.join(action.option_strings) or action.dest}"
               for name, parser in commands.items() for action in parser._actions
               if not isinstance(action, argparse._HelpAction)
               and (not action.help or action.help == argparse.SUPPRESS)]
    assert not missing, f"flags without help text: {missing}"


def test_spec_reference_is_generated_from_the_dataclasses():
    committed = (REPO / "docs" / "spec_reference.md").read_text()
    assert committed == reference_markdown(), (
        "docs/spec_reference.md is stale: python -m orchestrator.spec_reference > docs/spec_reference.md")
    for key in ("`axes.dataset_tokens`", "`trainer.weight_decay`", "`search.target`", "`budget.cut`",
                "`resources.gpus_per_worker`", "`corpus.tokenizer`"):
        assert key in committed


def test_validate_reference_prints_the_reference(capsys):
    from scalesweep.cli import main

    assert main(["validate", "--reference"]) == 0
    assert capsys.readouterr().out == reference_markdown()


def test_every_sub_commands_help_prints(capsys):
    """`--help` of each command renders (argparse expands % in help strings: a bare one in
    frontier's --tolerance text crashed `scalesweep frontier --help` with a traceback)."""
    for name, parser in sub_commands(build_parser()).items():
        text = parser.format_help()
        assert name in text and "usage:" in text, name
