"""Grid sweeps through a real local Ray Tune with the real DeepSpeed trainer and Parquet store."""

import json

import pytest

from orchestrator.grid import expand_grid
from orchestrator.spec import load_spec
from metrics import load_curves, load_runs
from trainers.shapes import train_flops

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("local_ray")]  # real Ray sweeps, one Ray

SHAPES = [{"n_layer": 1, "d_model": 32, "n_heads": 2, "d_ff": 128},
          {"n_layer": 2, "d_model": 48, "n_heads": 4, "d_ff": 192}]


def tiny_spec(storage, name="grid", dataset_tokens=(12_000, 24_000), shapes=SHAPES, **overrides) -> dict:
    spec = {
        "name": name, "storage": str(storage),
        "axes": {"shapes": list(shapes), "n_ctx": 64, "dataset_tokens": list(dataset_tokens),
                 "batch_tokens": 1024, "lr": 3e-3},
        "trainer": {"eval_every": 4, "val_tokens": 4096, "peak_flops": 1e11, "zero_stage": 0,
                    "precision": "fp32"},
        "resources": {"cpus_per_worker": 1, "workers": 1},
        "budget": {"flops": 1e13},
    }
    for key, value in overrides.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    return spec


def test_grid_2x2_completes_with_runs_and_curves(tmp_path, capfd):
    from orchestrator.sweep import run_sweep

    # a third, larger shape the budget cuts before the sweep (cheapest_first): never trained,
    # and named in run's summary as validate names it
    big = {"n_layer": 3, "d_model": 64, "n_heads": 4, "d_ff": 256}
    spec = load_spec(tiny_spec(tmp_path / "store", shapes=SHAPES + [big], budget={"flops": 2e10}))
    grid = expand_grid(spec)
    assert len(grid.cut) == 2 and len(grid.trials) == 4
    summary = run_sweep(spec, num_cpus=2, verbose=1)
    # the live table names where Tune's experiment is kept, not the private Ray's temp dir
    # (Tune's "Result logdir", removed when the sweep ends)
    out = capfd.readouterr().out
    assert "2 cut by the budget before the sweep, 0 skipped by budget" in out, out[-3000:]
    assert "cut by the budget (2):" in out and all(f"  {c.trial.trial_key}: {c.reason}" in out for c in grid.cut)
    assert f"Tune experiment: {tmp_path / 'store' / spec.name}" in out and "Result logdir" not in out, out[-3000:]
    runs = load_runs(spec.storage, spec.name).to_pylist()
    assert summary.completed == 4 and summary.failed == 0, runs
    assert sorted(r["trial_id"] for r in runs) == sorted(t.trial_key for t in grid.trials)
    by_key = {t.trial_key: t for t in grid.trials}
    for row in runs:
        trial = by_key[row["trial_id"]]
        assert row["status"] == "completed"
        assert row["non_embedding_params"] == trial.non_embedding_params
        assert row["dataset_tokens"] == trial.dataset_tokens
        # Whole batches only: the run stops at the last full batch within D, under the plan.
        assert row["flops"] == train_flops(trial.shape, row["tokens_seen"]) <= trial.planned_flops
        assert row["tokens_seen"] > trial.dataset_tokens * 0.8
    assert {(r["non_embedding_params"], r["dataset_tokens"]) for r in runs} == {
        (t.non_embedding_params, t.dataset_tokens) for t in grid.trials}
    curves = load_curves(spec.storage, spec.name)
    assert set(curves.column("trial_id").to_pylist()) == set(by_key)
    import duckdb
    counts = duckdb.sql(
        f"select trial_id, count(*) from read_parquet('{spec.storage}/{spec.name}/curves/**/*.parquet', "
        "hive_partitioning=true) group by trial_id").fetchall()
    assert {k for k, _ in counts} == set(by_key) and all(n >= 2 for _, n in counts)
    ledger = json.loads((tmp_path / "store" / spec.name / "ledger.json").read_text())
    assert ledger["spent"] == pytest.approx(sum(r["flops"] for r in runs))
    assert ledger["running"] == {}
    # the spec's report settings, for `report STORE --sweep NAME` (orchestrator.sweep_settings)
    recorded = json.loads((tmp_path / "store" / spec.name / "fit.json").read_text())
    assert recorded["headline"] == spec.fit.headline and tuple(recorded["best_over"]) == spec.aggregation().best_over


def test_resume_of_a_sweep_that_never_started_says_so_and_runs_it(tmp_path, capsys):
    """--resume with no Tune experiment to restore is not silent: it says it starts the sweep."""
    from orchestrator.sweep import run_sweep

    spec = load_spec(tiny_spec(tmp_path / "store", name="fresh", dataset_tokens=(12_000,), shapes=SHAPES[:1]))
    summary = run_sweep(spec, resume=True, num_cpus=1, verbose=0)
    err = capsys.readouterr().err
    assert "--resume: no Tune experiment to restore" in err and "0 runs already ended" in err
    assert summary.completed == 1 and summary.failed == 0
