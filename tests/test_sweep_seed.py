"""Stored runs feed the designer (issue 10 item 4): runs already in `<storage>/<sweep>/runs/`
count in the ledger and enter the active searcher's fitter when a sweep is extended with a
larger budget or re-run after Tune could not restore it. Real local Ray, tiny models."""

import shutil

import pytest

from orchestrator.grid import expand_grid
from orchestrator.spec import load_spec
from metrics import load_runs
from test_sweep import tiny_spec

pytestmark = pytest.mark.usefixtures("local_ray")  # one Ray for the module's sweeps


def active_spec(storage, flops: float, **search) -> dict:
    return tiny_spec(storage, name="seeded", search={"kind": "active", "law": "chinchilla", **search},
                     budget={"flops": flops})


def run_capturing(spec, **kwargs):
    """run_sweep, returning the searcher it built (the one Tune runs when nothing is restored)."""
    from orchestrator.sweep import _make_searcher, run_sweep

    made = []
    summary = run_sweep(spec, num_cpus=2, verbose=0, **kwargs,
                        make_searcher=lambda *a: made.append(_make_searcher(*a)) or made[-1])
    return summary, made[0]


def first_sweep(tmp_path):
    """An active sweep whose budget affords only the cheapest run; returns (spec raw, runs)."""
    raw = tiny_spec(tmp_path / "store")
    cheapest = min(t.planned_flops for t in expand_grid(load_spec(raw)).trials)
    raw = active_spec(tmp_path / "store", 1.5 * cheapest, max_trials=4)
    summary, searcher = run_capturing(load_spec(raw))
    runs = load_runs(str(tmp_path / "store"), "seeded").to_pylist()
    assert summary.completed == len(runs) >= 1 and len(searcher.choices) == len(runs)
    return raw, runs


@pytest.mark.slow
def test_resumed_without_a_tune_experiment_then_extended_the_sweep_starts_from_every_stored_run(tmp_path):
    raw, before = first_sweep(tmp_path)
    fresh_seed = before[0]["trial_id"]

    # --resume after Tune's experiment is lost: nothing retrained, the ledger and the fit hold
    # every stored run
    shutil.rmtree(tmp_path / "store" / "seeded" / "tune")  # Tune cannot restore
    summary, searcher = run_capturing(load_spec(raw), resume=True)
    after = load_runs(str(tmp_path / "store"), "seeded").to_pylist()
    assert {r["trial_id"]: r["attempt"] for r in after} == {r["trial_id"]: r["attempt"] for r in before}
    assert {r["trial_id"] for r in before} <= set(searcher.fitter.run_ids)
    assert searcher.ledger.spent == pytest.approx(sum(r["flops"] for r in before))
    assert summary.spent_flops == pytest.approx(sum(r["flops"] for r in before))

    # extended with a larger budget: the designer starts from every stored run and buys more
    raw["budget"] = {"flops": 1e13}
    raw["search"] = {**raw["search"], "max_trials": 1}
    summary, searcher = run_capturing(load_spec(raw))
    after = {r["trial_id"]: r for r in load_runs(str(tmp_path / "store"), "seeded").to_pylist()}
    for row in before:  # no finished run is retrained
        assert after[row["trial_id"]]["attempt"] == row["attempt"]
    stored = {r["trial_id"] for r in before}
    assert stored <= set(searcher.fitter.run_ids)  # the fit starts from every stored run
    assert searcher.fitter.n_runs == len(after)
    assert searcher.ledger.spent == pytest.approx(sum(r["flops"] for r in after.values()))
    picked = [c["trial_key"] for c in searcher.choices]
    assert len(picked) == 1 and picked[0] not in stored and picked[0] != fresh_seed
