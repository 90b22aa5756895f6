"""The package layering of docs/architecture.md §2, checked on every module's imports (including
imports inside functions): `metrics` is the ground floor, `fitting` is pure (no sweep driver, no
trainer), `trainers` never import the sweep driver, and no module reaches for another module's
private (underscore) names."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("metrics", "scalesweep", "trainers", "orchestrator", "fitting")

# package -> project packages it must never import
FORBIDDEN = {
    "metrics": {"scalesweep", "trainers", "orchestrator", "fitting"},
    "fitting": {"orchestrator", "trainers"},
    "trainers": {"orchestrator"},
}


def project_files() -> list[str]:
    files = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    return [f for f in files if (REPO / f).exists()]  # a deleted, not yet staged file is gone


def module_name(path: str) -> str:
    parts = path[:-3].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: str) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names taken from it) for every import statement in the file."""
    tree = ast.parse((REPO / path).read_text(), filename=path)
    package = module_name(path) if path.endswith("__init__.py") else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against the importing package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([p for p in base if p] + ([module] if module else []))
            found.append((node.lineno, module, [alias.name for alias in node.names]))
    return found


def test_the_import_parser_sees_imports_inside_functions():
    # the rule must hold for lazy imports too: trial code imports the store inside functions
    lines = [(module, names) for _, module, names in imports("orchestrator/trial.py")]
    assert ("metrics", ["TrialWriter"]) in lines


def test_packages_import_only_the_floors_below_them():
    violations = []
    for path in project_files():
        top = path.split("/")[0]
        if top not in FORBIDDEN:
            continue
        for line, module, _ in imports(path):
            if module.split(".")[0] in FORBIDDEN[top]:
                violations.append(f"{path}:{line} imports {module}")
    assert not violations, "\n".join(violations)


def test_no_module_imports_another_modules_private_names():
    # tests may exercise a module's private helpers; the packages share only public names
    violations = []
    for path in project_files():
        if path.split("/")[0] not in PACKAGES and path.split("/")[0] != "bench":
            continue
        for line, module, names in imports(path):
            if module.split(".")[0] not in PACKAGES:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if module.rpartition(".")[2].startswith("_") and not module.endswith("__init__"):
                private.append(module)
            if private:
                violations.append(f"{path}:{line} from {module} import {private}")
    assert not violations, "\n".join(violations)
