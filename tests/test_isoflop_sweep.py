"""A real tiny isoFLOP sweep (2 budgets x 3 sizes) through `scalesweep run` on a local Ray Tune
with the DeepSpeed trainer and the Parquet store, run once per module: every planned run ends,
carries its budget in the runs table (float64 `isoflop_budget`), spends it within
`ISOFLOP_RTOL`, and the sizes of a budget are distinct; `scalesweep frontier` on the store
answers, grouping the runs by their budgets. (The scaling ladder has its own sweep in
tests/test_ladder.py: these six runs, whose smallest model wins every budget, fit alpha <= 0 and
so have no compute-optimal allocation, which `ladder` refuses: tests/test_allocate.py.)"""

from __future__ import annotations

import contextlib
import io
import json

import pyarrow as pa
import pytest
import yaml

from metrics import load_runs
from orchestrator.grid import expand_grid
from orchestrator.isoflop import ISOFLOP_RTOL
from orchestrator.spec import load_spec
from scalesweep.cli import main
from tests.test_spec_isoflop import iso_spec

pytestmark = pytest.mark.slow  # real Ray sweeps


@pytest.fixture(scope="module")
def isoflop_sweep(tmp_path_factory):
    """(spec, grid, `run`'s output, runs by trial_id) of the finished sweep; the store is
    spec.storage/spec.name."""
    root = tmp_path_factory.mktemp("isoflop")
    raw = iso_spec(root / "store")
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(raw)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["run", str(path), "--quiet", "--num-cpus", "2"])
    assert code == 0, out.getvalue()[-3000:]
    runs = {r["trial_id"]: r for r in load_runs(spec.storage, spec.name).to_pylist()}
    return spec, expand_grid(spec), out.getvalue(), runs


def test_every_planned_run_finished(isoflop_sweep):
    _, grid, _, runs = isoflop_sweep
    assert sorted(runs) == sorted(t.trial_key for t in grid.trials) and len(runs) == 6
    assert {r["status"] for r in runs.values()} == {"completed"}


def test_each_run_records_its_budget_and_spends_it(isoflop_sweep):
    spec, grid, _, runs = isoflop_sweep
    table = load_runs(spec.storage, spec.name)
    assert table.schema.field("isoflop_budget").type == pa.float64()
    planned = {t.trial_key: t.run_columns["isoflop_budget"] for t in grid.trials}
    for key, row in runs.items():
        assert row["isoflop_budget"] == planned[key]
        assert abs(row["flops"] / row["isoflop_budget"] - 1) <= ISOFLOP_RTOL, row


def test_sizes_per_budget_are_distinct(isoflop_sweep):
    spec, _, _, runs = isoflop_sweep
    by_budget: dict[float, list[int]] = {}
    for row in runs.values():
        by_budget.setdefault(row["isoflop_budget"], []).append(row["non_embedding_params"])
    assert sorted(by_budget) == sorted(spec.search.budgets)
    for sizes in by_budget.values():
        assert len(sizes) == len(set(sizes)) == spec.search.sizes_per_budget


def test_frontier_on_the_sweeps_store_answers_or_says_why_per_approach(isoflop_sweep, capsys):
    """Each approach answers or names why it cannot. These runs are 18-200 steps long, so the
    smallest model wins every budget: no profile has an interior vertex and the fit's alpha is
    not > 0, and `frontier` says so in one line, exit 2 (a real frontier needs runs long enough
    to bracket the optimum: tests/test_frontier.py checks the answers on synthetic stores)."""
    spec = isoflop_sweep[0]
    code = main(["frontier", f"{spec.storage}/{spec.name}", "--bootstrap", "50", "--json"])
    out, err = capsys.readouterr()
    if code == 0:
        result = json.loads(out)
        by_name = {r["approach"]: r for r in result["approaches"]}
        assert set(by_name) == {"envelope", "isoflop", "parametric"} and result["verdict"]
        assert all(r["supported"] or r["reason"] for r in by_name.values())
        iso = by_name["isoflop"]
        assert "isoflop_budget" in (iso["reason"] or "") + " ".join(iso["notes"]), iso
    else:
        assert code == 2 and err.count("\n") == 1, err
        assert "no approach could answer" in err and "grouped by isoflop_budget column" in err
        assert all(f"{name}: " in err for name in ("envelope", "isoflop", "parametric")), err
