"""Faults during a sweep, on real local Ray clusters: a node removed under a running trial, and a
data-parallel trial (TorchTrainer inside a Tune trial). A driver SIGKILLed and resumed:
tests/test_cluster_path.py (grid) and tests/test_active_sweep_live.py (active search), with
the helpers here."""

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.grid import expand_grid
from orchestrator.spec import load_spec
from metrics import load_curves, load_runs
from test_sweep import SHAPES, tiny_spec

REPO = Path(__file__).resolve().parents[1]


def _ended(storage, name):
    return [r for r in load_runs(storage, name).to_pylist() if r["status"] == "completed"]


def assert_one_row_per_config(spec):
    grid = expand_grid(spec)
    every = load_runs(spec.storage, spec.name, all_attempts=True).to_pylist()
    completed = Counter(r["trial_id"] for r in every if r["status"] == "completed")
    assert completed == Counter(t.trial_key for t in grid.trials), every  # once each, none missing
    curves = load_curves(spec.storage, spec.name).to_pylist()
    keys = [(r["trial_id"], r["step"]) for r in curves]
    assert len(keys) == len(set(keys))
    return load_runs(spec.storage, spec.name).to_pylist()


def kill_driver_after_first_run(spec_path: Path, spec) -> dict[str, int]:
    """Run `scalesweep run` in a subprocess, SIGKILL it (and the Ray it started) once a trial
    has completed; returns {trial_id: attempt} of the runs completed by then."""
    driver = subprocess.Popen(_run_command(spec_path), cwd=REPO, env=_env(), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600  # a wait, not a timing: a loaded machine may need it
        while len(_ended(spec.storage, spec.name)) < 1 and time.time() < deadline:
            assert driver.poll() is None, "driver ended before it was killed"
            time.sleep(0.5)
        assert _ended(spec.storage, spec.name), "no trial finished in time"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
        driver.wait()
    return {r["trial_id"]: r["attempt"] for r in _ended(spec.storage, spec.name)}


def _run_command(spec_path: Path) -> list[str]:
    return [sys.executable, "-m", "scalesweep.cli", "run", str(spec_path), "--num-cpus", "2", "--quiet"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _crash_a_node_running_a_trial(cluster, nodes) -> list[int]:
    """What a machine failure does: the node's Ray processes and the trial processes on it die
    at once. `remove_node` alone kills the raylet, but a trial process that is busy training
    does not notice until it next talks to Ray, and may finish its run first."""
    # The GCS actor table (the public state API needs the dashboard, which tests leave off).
    from ray._private.state import actors

    by_node = {n.node_id: n for n in nodes}
    deadline = time.time() + 60  # repeated looks: the GCS table may lag a trial's start a moment
    while True:
        alive = [a for a in actors().values() if a["State"] == "ALIVE" and "ImplicitFunc" in a["ActorClassName"]]
        victims = [a for a in alive if a["Address"]["NodeID"] in by_node]
        if victims or time.time() > deadline:
            break
        time.sleep(0.2)
    assert victims, f"no trial actor alive on the worker nodes: {alive}"
    node_id = victims[0]["Address"]["NodeID"]
    cluster.remove_node(by_node[node_id], allow_graceful=False)
    killed = []
    for actor in victims:
        if actor["Address"]["NodeID"] == node_id:
            try:
                os.kill(actor["Pid"], signal.SIGKILL)
                killed.append(actor["Pid"])
            except ProcessLookupError:
                pass
    return killed


def _scratch_owners(root: str) -> set[int]:
    """PIDs named as owners by the trials' scratch directories under `root`
    (orchestrator/trial_scratch.py)."""
    import json

    from orchestrator.trial_scratch import OWNER, PREFIX

    owners = set()
    for path in Path(root).glob(f"{PREFIX}*/{OWNER}"):
        try:
            owners.add(json.loads(path.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            continue
    return owners


@pytest.mark.slow
def test_node_removed_trial_retried_elsewhere(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from orchestrator.sweep import run_sweep

    # Trials need a (fake) GPU, which only the two worker nodes have.
    # Long enough (~100+ steps) that the trial on the removed node is mid-training, not finishing.
    raw = tiny_spec(tmp_path / "store", name="nodes", shapes=SHAPES[1:], dataset_tokens=(120_000, 160_000),
                    resources={"gpus_per_worker": 1}, trainer={"eval_every": 10})
    spec = load_spec(raw)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    ray.init(address=cluster.address)
    outcome = {}
    try:
        sweep = threading.Thread(target=lambda: outcome.update(summary=run_sweep(spec, max_failures=3, verbose=0)))
        sweep.start()
        deadline = time.time() + 600  # a wait, not a timing: a loaded machine may need it
        # Both trials have left curve rows, so whichever dies leaves a trace of attempt 0 and its
        # retry must be attempt 1 (an attempt that wrote nothing is rightly reused). Asserted, not
        # just waited for: falling through after a deadline crashed a trial that had written nothing.
        while (reported := len(set(load_curves(spec.storage, spec.name)["trial_id"].to_pylist()))) < 2:
            assert sweep.is_alive() and time.time() < deadline, f"{reported} of 2 trials reported: {outcome}"
            time.sleep(0.3)
        # The node that hosts a running trial (not a fixed one: on a slow machine the scheduler
        # may have put the only live trial on the other node).
        killed = _crash_a_node_running_a_trial(cluster, workers)
        sweep.join(timeout=900)  # a wait: the retry trains its run again on a loaded machine
        assert not sweep.is_alive() and "summary" in outcome
    finally:
        ray.shutdown()
        cluster.shutdown()
    # the killed trial could not remove its local scratch (checkpoints); its retry reaped it
    import tempfile
    assert killed and not _scratch_owners(tempfile.gettempdir()) & set(killed)
    every = load_runs(spec.storage, spec.name, all_attempts=True).to_pylist()
    assert max(r["attempt"] for r in every) >= 1, every  # something was retried
    runs = assert_one_row_per_config(spec)
    assert {r["status"] for r in runs} == {"completed"}

