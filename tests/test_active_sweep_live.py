"""`search: active` through a real local Ray Tune with the real trainer: the designer picks runs
from a 3 x 3 candidate grid (examples/active_demo.yaml) under a budget smaller than the grid."""

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from orchestrator.grid import expand_grid
from orchestrator.spec import load_spec
from metrics import load_runs
from test_sweep_faults import kill_driver_after_first_run

pytestmark = pytest.mark.usefixtures("local_ray")  # one Ray for the module's in-process sweeps

REPO = Path(__file__).resolve().parents[1]


def active_demo_spec(storage, name="active") -> dict:
    raw = yaml.safe_load((REPO / "examples" / "active_demo.yaml").read_text())
    return {**raw, "name": name, "storage": str(storage)}


@pytest.mark.slow
def test_active_sweep_picks_adaptively_within_budget_and_resumes_after_a_driver_kill(tmp_path):
    """SIGKILL the driver of a live active sweep after its first run; `--resume` restores the
    searcher (fitter, ledger, choices) and finishes without re-running or overspending, having
    picked adaptively: fewer runs than the grid, not in the grid's order, scored once a fit exists.

    Tune deletes a trial's older checkpoint as soon as it registers a new one but saves the
    experiment state that names the latest only now and then, so a kill in between restored a
    trial whose checkpoint was gone (CI once lost a chosen run that way: no row, its partial
    FLOPs left in the ledger, exit 0). Trials now keep their checkpoints in the store by key."""
    from orchestrator.sweep import run_sweep

    raw = active_demo_spec(tmp_path / "store", name="killed_active")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    spec = load_spec(raw)
    grid = expand_grid(spec)
    limit = spec.budget.flops
    assert len(grid.trials) == 9 and sum(t.planned_flops for t in grid.trials) > limit  # the grid does not fit
    before = kill_driver_after_first_run(spec_path, spec)
    assert not list((tmp_path / "store" / spec.name / "tune").glob("*/*/checkpoint_*"))  # none of Tune's
    stored = {p.parent.name for p in (tmp_path / "store" / spec.name / "checkpoints").glob("*/latest.json")}
    assert set(before) <= stored  # a finished run keeps its last checkpoint

    summary = run_sweep(spec, num_cpus=2, verbose=0, resume=True)
    print(summary.text())
    assert summary.exit_code == 0 and summary.failed == 0, summary.text()
    every = load_runs(spec.storage, spec.name, all_attempts=True).to_pylist()
    completed = Counter(r["trial_id"] for r in every if r["status"] == "completed")
    assert completed and set(completed.values()) == {1}, every  # each chosen run ended exactly once
    runs = load_runs(spec.storage, spec.name).to_pylist()
    assert summary.completed == len(runs) and 0 < len(runs) < len(grid.trials)
    assert len(runs) <= spec.search.max_trials
    for row in runs:  # finished before the kill: not trained again
        if row["trial_id"] in before:
            assert row["attempt"] == before[row["trial_id"]]
    spent = sum(r["flops"] for r in runs)
    ledger = json.loads((tmp_path / "store" / spec.name / "ledger.json").read_text())
    rows = {r["trial_id"]: (r["status"], r["flops"]) for r in every}
    assert set(ledger["finished"]) == set(completed), (ledger, rows)  # every chosen run ran to its end
    assert ledger["spent"] == pytest.approx(spent) and spent <= limit, (ledger, rows)
    assert ledger["running"] == {}

    # the report: one line per choice, stop reason budget or max_trials, not the grid's order
    design = "\n".join(summary.design)
    assert "stopped by budget" in design or "stopped by max_trials" in design, design
    chosen = [line.split(": N=")[0].split(". ", 1)[1] for line in summary.design if ": N=" in line]
    assert sorted(chosen) == sorted(r["trial_id"] for r in runs), design
    grid_order = [t.trial_key for t in grid.trials]
    assert chosen != grid_order[: len(chosen)], "designer just walked the grid"
    # with 2 slots the 8th pick comes after >= 6 runs ended: a Chinchilla fit exists, so the
    # designer scores it by gain/cost rather than by the seed design
    if len(chosen) == spec.search.max_trials:
        assert "score " in summary.design[-1] and "law chinchilla (90% CI from the sandwich covariance)" in design, design
        # cost: time — ranked by seconds predicted from the finished trials' measured FLOP/s
        assert "per seconds^0.25" in summary.design[-1] and "throughput (" in design, design


@pytest.mark.slow
def test_active_2x2_takes_every_run_says_why_no_fit_and_resumes(tmp_path):
    """Four candidates cannot fit Chinchilla's 5 parameters: the sweep buys all four, ends with
    the reason and why there is no fit (once crashed with a zero-size reduction), and so does
    --resume, which runs nothing again."""
    from orchestrator.sweep import run_sweep

    raw = active_demo_spec(tmp_path / "store", name="active2x2")
    raw["axes"] = {**raw["axes"], "target_params": raw["axes"]["target_params"][:2],
                   "dataset_tokens": raw["axes"]["dataset_tokens"][:2]}
    spec = load_spec(raw)
    summaries = [run_sweep(spec, num_cpus=2, verbose=0)]
    attempts = {r["trial_id"]: r["attempt"] for r in load_runs(spec.storage, spec.name).to_pylist()}
    summaries.append(run_sweep(spec, num_cpus=2, verbose=0, resume=True))
    assert {r["trial_id"]: r["attempt"] for r in load_runs(spec.storage, spec.name).to_pylist()} == attempts
    assert len(attempts) == 4
    for summary in summaries:
        assert summary.exit_code == 0 and summary.statuses == {"completed": 4}, summary.text()
        assert "stopped by all_taken (every one of the 4 planned runs was chosen)" in summary.design[0]
        assert "no fit (4 usable runs, needs 6; the plan has only 4 runs)" in summary.design[1]
