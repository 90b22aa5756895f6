"""A real tiny isoFLOP sweep (2 budgets x 3 sizes) through a local Ray Tune with the DeepSpeed
trainer and the Parquet store, run once per module: every planned run ends, carries its budget in
the runs table (float64 `isoflop_budget`), spends that budget within `ISOFLOP_RTOL`, and the sizes
of a budget are distinct. The `isoflop_sweep` fixture's store is the input of later commands
(e.g. `scalesweep frontier`) on the same runs."""

from __future__ import annotations

import pyarrow as pa
import pytest

from metrics import load_runs
from orchestrator.grid import expand_grid
from orchestrator.isoflop import ISOFLOP_RTOL
from orchestrator.spec import load_spec
from tests.test_spec_isoflop import iso_spec


@pytest.fixture(scope="module")
def isoflop_sweep(tmp_path_factory):
    """(spec, grid, summary, runs table) of the finished sweep; the store is spec.storage/spec.name."""
    from orchestrator.sweep import run_sweep

    spec = load_spec(iso_spec(tmp_path_factory.mktemp("isoflop") / "store"))
    grid = expand_grid(spec)
    summary = run_sweep(spec, num_cpus=2, verbose=0)
    return spec, grid, summary, load_runs(spec.storage, spec.name)


def test_every_planned_run_finished(isoflop_sweep):
    spec, grid, summary, runs = isoflop_sweep
    assert summary.completed == len(grid.trials) == 6 and summary.failed == 0
    assert sorted(runs.column("trial_id").to_pylist()) == sorted(t.trial_key for t in grid.trials)
    assert set(runs.column("status").to_pylist()) == {"completed"}


def test_each_run_records_its_budget_and_spends_it(isoflop_sweep):
    spec, grid, _, runs = isoflop_sweep
    assert runs.schema.field("isoflop_budget").type == pa.float64()
    planned = {t.trial_key: t.run_columns["isoflop_budget"] for t in grid.trials}
    for row in runs.to_pylist():
        assert row["isoflop_budget"] == planned[row["trial_id"]]
        assert abs(row["flops"] / row["isoflop_budget"] - 1) <= ISOFLOP_RTOL, row


def test_sizes_per_budget_are_distinct(isoflop_sweep):
    spec, _, _, runs = isoflop_sweep
    by_budget: dict[float, list[int]] = {}
    for row in runs.to_pylist():
        by_budget.setdefault(row["isoflop_budget"], []).append(row["non_embedding_params"])
    assert sorted(by_budget) == sorted(spec.search.budgets)
    for sizes in by_budget.values():
        assert len(sizes) == len(set(sizes)) == spec.search.sizes_per_budget
