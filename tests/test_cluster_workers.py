"""A data-parallel trial on a small machine (issue 11): two 1-CPU Ray Train workers on a 2-CPU
local Ray, a worker SIGKILLed after its first checkpoint reached the sweep's storage, and the
retry resuming from the last checkpoint there. Real Ray, real DeepSpeed (gloo, ZeRO-2 shards)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from metrics import load_curves, load_runs, resolve
from metrics.fs import CURVE_PART_RE, list_parts
from orchestrator.grid import expand_grid
from orchestrator.spec import load_spec
from orchestrator.trial import train_storage
from test_sweep import SHAPES, tiny_spec

REPO = Path(__file__).resolve().parents[1]
EVAL_EVERY = 4


def _saved_step(storage: str, sweep: str, trial_key: str) -> int | None:
    """The step of the latest checkpoint Ray Train has registered for the trial in the sweep's
    storage (its manager's snapshot; a checkpoint still uploading is not in it yet)."""
    filesystem, root = train_storage(storage, sweep)
    try:
        with filesystem.open_input_stream(f"{root}/{trial_key}/checkpoint_manager_snapshot.json") as stream:
            latest = json.loads(stream.read())["latest_checkpoint_result"]
    except (FileNotFoundError, OSError, ValueError):
        return None
    return latest["metrics"]["step"] if latest else None


def _train_workers(session: int) -> list[int]:
    """PIDs of the Ray Train worker processes in the driver's session (Ray gives each worker its
    own process group; other helpers' Ray clusters are other sessions)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            if b"RayTrainWorker" in cmdline and os.getsid(int(entry)) == session:
                pids.append(int(entry))
        except (OSError, ProcessLookupError):
            continue
    return pids


@pytest.mark.slow
def test_two_workers_on_two_cpus_resume_from_the_shared_checkpoint_after_a_worker_is_killed(tmp_path):
    raw = tiny_spec(tmp_path / "store", name="dp", shapes=SHAPES[:1], dataset_tokens=(40_000,),
                    resources={"workers": 2, "cpus_per_worker": 1},
                    trainer={"zero_stage": 2, "eval_every": EVAL_EVERY})
    spec_path = tmp_path / "dp.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    spec = load_spec(raw)
    (trial,) = expand_grid(spec).trials
    driver = subprocess.Popen(
        [sys.executable, "-m", "scalesweep.cli", "run", str(spec_path), "--num-cpus", "2", "--quiet"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while (seen_step := _saved_step(spec.storage, spec.name, trial.trial_key)) is None:
            assert driver.poll() is None, driver.stdout.read()[-3000:]
            assert time.time() < deadline, "no checkpoint reached the sweep's storage"
            time.sleep(0.2)
        workers = _train_workers(driver.pid)
        assert len(workers) == 2, workers  # both ranks run at once on the 2 CPUs
        os.kill(workers[-1], signal.SIGKILL)
        output, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
            driver.wait()
    assert driver.returncode == 0, output[-4000:]

    every = load_runs(spec.storage, spec.name, all_attempts=True).to_pylist()
    (final,) = load_runs(spec.storage, spec.name).to_pylist()
    assert final["status"] == "completed" and final["world_size"] == 2 and final["attempt"] >= 1, every
    # The killed attempt's curve rows, and where the retry started: right after a checkpoint at
    # least as late as the one seen before the kill, never from step 0.
    fs, sweep_dir = resolve(spec.storage, spec.name)
    first_of: dict[int, int] = {}
    for info in list_parts(fs, f"{sweep_dir}/curves/trial_id={trial.trial_key}"):
        attempt = int(CURVE_PART_RE.match(info.base_name).group(1))
        steps = pq.read_table(info.path, filesystem=fs).column("step").to_pylist()
        first_of[attempt] = min(steps + [first_of.get(attempt, 1 << 62)])
    assert first_of[0] == EVAL_EVERY
    resumed_from = first_of[final["attempt"]] - EVAL_EVERY
    assert resumed_from >= seen_step > 0, (first_of, seen_step)
    # The store's curve: each evaluation step once, none missing, up to the run's last step.
    steps = load_curves(spec.storage, spec.name).column("step").to_pylist()
    assert len(steps) == len(set(steps))
    assert sorted(steps)[: final["steps"] // EVAL_EVERY] == list(range(EVAL_EVERY, final["steps"] + 1, EVAL_EVERY))
    # Tune heard every evaluation of the resumed attempt from rank 0 (the live table's curve),
    # then the run's ended row.
    from ray.tune import ExperimentAnalysis

    (tune_trial,) = ExperimentAnalysis(f"{spec.storage}/{spec.name}/tune/{spec.name}").trials
    assert tune_trial.last_result["status"] == "completed" and tune_trial.last_result["step"] == final["steps"]
    resumed_evals = len(range(first_of[final["attempt"]], final["steps"] + 1, EVAL_EVERY))
    assert tune_trial.last_result["training_iteration"] > resumed_evals, tune_trial.last_result
