"""The package layering of docs/architecture.md §2, checked on every module's imports (including
imports inside functions): `metrics` is the ground floor, `fitting` is pure (no sweep driver, no
trainer), `trainers` never import the sweep driver, and no module reaches for another module's
private (underscore) names, and every name is imported from the module that defines it."""

from __future__ import annotations

import ast
import subprocess
import sys
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


def defined_names(path: str) -> set[str]:
    """Names a module itself defines at top level (functions, classes, assignments, also inside
    top-level if/try blocks); names it only imports are not its own."""
    names: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(n.id for target in node.targets for n in ast.walk(target) if isinstance(n, ast.Name))
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, (ast.If, ast.Try)):
                for block in (node.body, node.orelse, getattr(node, "finalbody", [])):
                    visit(block)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse((REPO / path).read_text(), filename=path).body)
    return names


def test_the_owner_check_sees_a_name_passed_through(tmp_path, monkeypatch):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "owner.py").write_text("X = 1\ndef f(): pass\n")
    (tmp_path / "pkg" / "middle.py").write_text("from pkg.owner import X, f\nY = X\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert defined_names("pkg/owner.py") == {"X", "f"}
    assert defined_names("pkg/middle.py") == {"Y"}


def test_every_name_is_imported_from_the_module_that_defines_it():
    # One owner per concept: no module passes on names it imported (the compatibility re-exports
    # left by splits). A package's __init__ is its public API and may gather its modules' names
    # (`metrics`, `scalesweep.load_runs`); a plain module hands out only what it defines.
    files = set(project_files())
    violations = []
    owned: dict[str, set[str]] = {}  # each module parsed once, not once per statement importing it
    for path in files:
        for line, module, names in imports(path):
            source = module.replace(".", "/") + ".py"
            if module.split(".")[0] not in PACKAGES or source not in files:
                continue  # another project's module, or a package's __init__
            if source not in owned:
                owned[source] = defined_names(source)
            passed_on = sorted(set(names) - owned[source] - {"*"})
            if passed_on:
                violations.append(f"{path}:{line} from {module} import {passed_on}")
    assert not violations, "\n".join(violations)
