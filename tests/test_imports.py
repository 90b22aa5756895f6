"""What imports what: `scalesweep validate` and the fitting package load no engine (torch,
DeepSpeed) and no Ray, and no module of a package imports itself back through another, not even
through an import inside a function."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "deepspeed")


def heavy_modules_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter at the repo root; the HEAVY modules it left loaded."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_validate_loads_no_torch_ray_or_deepspeed():
    # The whole CLI path (every package registers its commands), data checks included.
    code = """
import contextlib, io
from scalesweep.cli import main
with contextlib.redirect_stdout(io.StringIO()) as text:
    for args in (["examples/demo.yaml"], ["examples/active_demo.yaml"], ["examples/isoflop.yaml"],
                 ["examples/kaplan_small.yaml", "--defer-data-checks"], ["--reference"]):
        assert main(["validate", *args]) == 0, args
assert "N2.5e4" in text.getvalue()  # the demo grid really was printed
"""
    assert heavy_modules_after(code) == set()


def test_fitting_and_the_counting_math_load_no_torch_ray_or_deepspeed():
    modules = sorted(f"fitting.{p.stem}" for p in (REPO / "fitting").glob("*.py") if p.stem != "__init__")
    code = "import importlib, fitting, trainers.shapes\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    assert heavy_modules_after(code) == set()


def _imports(path: Path, package: str) -> set[str]:
    """Modules of ``package`` that ``path`` imports anywhere (module level or inside functions),
    leaving out `if TYPE_CHECKING:` blocks, which never run."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from fitting import data`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name.startswith(package + ".")}


def import_cycles(package: str) -> list[list[str]]:
    """Every cycle (as a path a -> ... -> a) in the graph of imports among ``package``'s modules."""
    modules = {f"{package}.{p.stem}": p for p in (REPO / package).glob("*.py") if p.stem != "__init__"}
    graph = {m: sorted(_imports(p, package) & modules.keys()) for m, p in modules.items()}
    cycles, state = [], {}  # state: 1 on the current path, 2 done

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in graph[module]:
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                walk(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    return cycles


def test_the_cycle_check_sees_imports_inside_functions(tmp_path, monkeypatch):
    # design -> allocate -> extrapolation -> design was hidden in function-level imports.
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (pkg / "b.py").write_text("from pkg import a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert import_cycles("pkg") == [["pkg.a", "pkg.b", "pkg.a"]]


@pytest.mark.parametrize("package", sorted(p.parent.name for p in REPO.glob("*/__init__.py")))
def test_no_package_has_an_import_cycle(package):
    assert import_cycles(package) == []


def test_building_the_cli_parser_imports_no_scipy():
    """Every `scalesweep` command (`run` included) builds the whole parser first; scipy.stats,
    which the design modules import, cost each one ~3 s of start-up. The replay command's
    strategy choices are the strategies' own names."""
    code = ("import sys\nfrom scalesweep.cli import build_parser\nbuild_parser()\n"
            "assert not [m for m in sys.modules if m.split('.')[0] == 'scipy'], 'scipy imported'\n"
            "from fitting.strategies import STRATEGIES\nfrom fitting.strategy_names import STRATEGY_NAMES\n"
            "assert tuple(STRATEGIES) == STRATEGY_NAMES\n")
    assert heavy_modules_after(code) == set()
