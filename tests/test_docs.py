"""docs/architecture.md stays true to the code: every store column and run status is documented,
and every `docs/architecture.md §N` pointer in the code names a section that exists."""

import re
import subprocess
from pathlib import Path

from metrics import LADDER_SCHEMA, RUN_STATUSES, RUNS_SCHEMA, curves_schema

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = REPO / "docs" / "architecture.md"


def _text() -> str:
    return ARCHITECTURE.read_text()


def test_every_store_column_and_status_is_documented():
    text = _text()
    documented = set(re.findall(r"[a-z_0-9]+", text))
    missing = [c for c in RUNS_SCHEMA.names + curves_schema().names + LADDER_SCHEMA.names if c not in documented]
    assert not missing, f"store columns missing from docs/architecture.md §3: {missing}"
    from orchestrator.isoflop import RUN_COLUMNS  # extra runs columns a sweep writes

    extra = [c for c in RUN_COLUMNS if not re.search(rf"^\| {c} \| {RUN_COLUMNS[c]} \|", text, flags=re.M)]
    assert not extra, f"extra runs columns missing from docs/architecture.md §3: {extra}"
    statuses = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.M))
    assert statuses == set(RUN_STATUSES), (statuses, RUN_STATUSES)


def test_section_pointers_resolve():
    sections = {int(n) for n in re.findall(r"^## (\d+)\.", _text(), flags=re.M)}
    files = subprocess.run(["git", "ls-files", "*.py", "*.md", "*.yaml"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    pointers = []
    for name in files:
        for n in re.findall(r"docs/architecture\.md §(\d+)", (REPO / name).read_text()):
            pointers.append((name, int(n)))
    assert pointers, "the code points at docs/architecture.md"
    dangling = [(name, n) for name, n in pointers if n not in sections]
    assert not dangling, dangling
    assert not [f for f in files if "DESIGN.md" in (REPO / f).read_text() and f != "tests/test_docs.py"]


def test_the_status_vocabulary_has_one_owner():
    """Statuses are spelled out only in metrics/statuses.py (and docs/tests), never as a
    second tuple that could drift from it."""
    files = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    status = r"""["'](?:completed|early_stopped|diverged|failed|budget_stopped|interrupted)["']"""
    tuple_of_statuses = re.compile(rf"\(\s*{status}\s*,\s*{status}")
    copies = [f for f in files if not f.startswith("tests/") and f != "metrics/statuses.py"
              and tuple_of_statuses.search((REPO / f).read_text())]
    assert not copies, copies


def test_no_file_holds_a_merge_conflict_marker():
    """A half-resolved merge leaves `<<<<<<< ` lines that no other test of a markdown file sees."""
    import subprocess

    files = subprocess.run(["git", "ls-files", "*.py", "*.md", "*.yaml", "*.toml", "Makefile"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    marked = [f for f in files if (REPO / f).is_file() and any(
        line.startswith(("<<<<<<< ", ">>>>>>> ")) for line in (REPO / f).read_text(errors="replace").splitlines())]
    assert not marked, marked
