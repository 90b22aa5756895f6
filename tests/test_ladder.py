"""A real scaling ladder: a tiny sweep on a real local Ray with the real DeepSpeed trainer, run by
`scalesweep run` on a spec with a ``ladder:`` section, which then trains the predicted optimum
at 4x the largest run's compute through the same Ray path and writes the comparison row."""

import json

import pytest
import yaml

from metrics import load_ladder, load_runs
from orchestrator.local_ray import start_private
from scalesweep.cli import main
from tests.test_sweep import tiny_spec

# nine runs: chinchilla has five parameters (3 sizes x 3 D, so N and D/N both vary; 3 x 2 leaves a
# direction of B and beta the runs do not fix, and the ladder then refuses: no N_opt to train)
SHAPES = [{"n_layer": 1, "d_model": 32, "n_heads": 2, "d_ff": 128},
          {"n_layer": 2, "d_model": 48, "n_heads": 4, "d_ff": 192},
          {"n_layer": 2, "d_model": 64, "n_heads": 4, "d_ff": 256}]


@pytest.mark.slow
def test_run_with_a_ladder_section_trains_the_predicted_optimum_and_scores_it(tmp_path, capsys):
    # allow_at_bounds: nine noisy tiny runs may pin a parameter; the refusal is tested in test_ladder_plan
    # max_steps (34: the longest grid run's steps) is there for a dataset-regime sub-sweep; the ladder
    # run, longer, must still train its whole schedule, and neither that run nor the ladder enters the fit
    raw = tiny_spec(tmp_path / "store", name="lad", shapes=SHAPES, dataset_tokens=(12_000, 21_000, 36_000),
                    ladder={"multiplier": 4, "allow_at_bounds": True}, trainer={"eval_every": 8, "max_steps": 34},
                    sub_sweeps={"overfit": {"regime": "dataset", "shapes": [SHAPES[0]], "dataset_tokens": 12_000}})
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    ray = start_private(2, None, log_to_driver=False)  # one Ray for the sweep and its ladder (saves a start)
    try:
        assert main(["run", str(path), "--quiet"]) == 0
    finally:
        ray.stop()
    out = capsys.readouterr().out
    runs = {r["trial_id"]: r for r in load_runs(str(tmp_path / "store"), "lad").to_pylist()}
    ladder_run = runs.pop("ladder-x4")
    overfit = [runs.pop(k) for k in [k for k, r in runs.items() if r["sub_sweep"] == "overfit"]]
    assert len(overfit) == 1 and overfit[0]["steps"] <= 34 and ladder_run["sub_sweep"] == "ladder"
    assert len(runs) == 9 and all(r["status"] == "completed" for r in runs.values())
    assert ladder_run["status"] == "completed"
    [row] = load_ladder(str(tmp_path / "store"), "lad").to_pylist()
    assert row["trial_id"] == "ladder-x4" and row["sweep"] == "lad" and row["law"] == "chinchilla"
    assert row["multiplier"] == 4 and row["n_runs"] == 9
    assert row["reference_compute"] == pytest.approx(max(r["flops"] for r in runs.values()))
    assert row["compute"] == pytest.approx(4 * row["reference_compute"])
    # the trained run is the planned one, and spent K x C (whole batches: within one batch of it)
    assert ladder_run["non_embedding_params"] == row["n_actual"] and ladder_run["tokens_seen"] == row["d_actual"]
    assert ladder_run["flops"] == pytest.approx(row["compute"], rel=1024 / row["d_actual"])
    assert ladder_run["flops"] <= row["planned_flops"]
    # the observed loss is the trained run's, scored against the stored interval
    assert row["observed_loss"] == ladder_run["best_val_loss"] and row["loss_column"] == "best_val_loss"
    assert row["final_val_loss"] == ladder_run["final_val_loss"] and row["status"] == "completed"
    assert row["predicted_lo"] < row["predicted_loss"] < row["predicted_hi"] and row["predicted_level"] == 0.9
    assert row["covered"] == (row["predicted_lo"] <= ladder_run["best_val_loss"] <= row["predicted_hi"])
    assert f"covered {'yes' if row['covered'] else 'NO'}" in out and "predicted optimum" in out
    ledger = json.loads((tmp_path / "store" / "lad" / "ledger.json").read_text())
    assert ledger["spent"] == pytest.approx(sum(r["flops"] for r in runs.values()) + ladder_run["flops"]
                                            + overfit[0]["flops"])
    # the ladder has its own Tune experiment: the sweep's resume state is untouched
    assert sorted(p.name for p in (tmp_path / "store" / "lad" / "tune").iterdir()) == ["lad", "ladder-x4"]
