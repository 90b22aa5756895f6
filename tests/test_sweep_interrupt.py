"""An interrupt is not a failure: Ctrl-C (SIGINT to the driver's process group, as a terminal
sends it) or SIGTERM (a scheduler's kill) stops a real `scalesweep run` gracefully: exit 130 /
143, the exact `--resume` line, no `failed` rows, and `--resume` finishes the interrupted runs
from their checkpoints. Also the summary's per-status counts and the exit-code policy (no Ray)."""

import argparse
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from orchestrator.cli import resume_command
from orchestrator.grid import expand_grid
from orchestrator.spec import load_spec
from orchestrator.sweep import SweepSummary, run_statuses, status_line
from metrics import load_curves, load_runs
from test_sweep import SHAPES, tiny_spec

REPO = Path(__file__).resolve().parents[1]
EVAL_EVERY = 4


def _spec(tmp_path, name):
    # Two seeds: trial keys longer than 40 characters that differ only in their last one.
    raw = tiny_spec(tmp_path / "store", name=name, shapes=SHAPES[:1], dataset_tokens=(60_000,),
                    axes={"seeds": [0, 1]}, trainer={"eval_every": EVAL_EVERY})
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, load_spec(raw)


def _start(args, quiet=False):
    command = [sys.executable, "-m", "scalesweep.cli", "run", *map(str, args)] + (["--quiet"] if quiet else [])
    return subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _trained(spec) -> int:
    """How many trials have reported their second evaluation (step >= 2 * EVAL_EVERY)."""
    rows = load_curves(spec.storage, spec.name).to_pylist()
    return len({r["trial_id"] for r in rows if r["step"] >= 2 * EVAL_EVERY})


def _stop_when_all_train(driver, spec, send) -> tuple[str, str]:
    """Once every trial has reported its second evaluation (so the checkpoint of its first one,
    saved after that evaluation's curve row, has reached Tune), `send(driver)`; returns
    (stdout, stderr). Waiting for only one row raced with that first checkpoint. The wait ends
    only when both have (or the driver ended, or a generous deadline passed: a wait, not a timing):
    it used to fall through at 150 s and interrupt whatever state a loaded machine had reached."""
    deadline = time.time() + 600
    while (trained := _trained(spec)) < 2 and driver.poll() is None and time.time() < deadline:
        time.sleep(0.3)
    if trained < 2 or driver.poll() is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
        out, err = driver.communicate(timeout=60)
        raise AssertionError(f"{trained} of 2 trials reached step {2 * EVAL_EVERY} before the driver "
                             f"{'ended' if driver.returncode != -signal.SIGKILL else 'was killed here'}: "
                             f"{out[-2000:]}{err[-2000:]}")
    send(driver)
    try:
        return driver.communicate(timeout=600)  # a graceful stop on a loaded machine: a wait
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)


def test_ctrl_c_interrupts_then_resume_finishes_from_checkpoints(tmp_path):
    spec_path, spec = _spec(tmp_path, "ctrlc")
    keys = sorted(t.trial_key for t in expand_grid(spec).trials)
    assert len(keys) == 2 and len(keys[0]) > 40 and keys[0][:-1] == keys[1][:-1]

    driver = _start([spec_path, "--num-cpus", 2, "--max-failures", 1])
    out, err = _stop_when_all_train(driver, spec, lambda p: os.killpg(p.pid, signal.SIGINT))
    assert driver.returncode == 130, out[-3000:] + err[-3000:]
    resume = f"scalesweep run {spec_path} --resume --num-cpus 2 --max-failures 1"
    assert f"\n  {resume}\n" in err, err[-3000:]
    assert "Tuner.restore" not in out + err
    for key in keys:  # the live table shows each key whole
        assert f" {key} |" in out, out[-3000:]
    before = load_runs(spec.storage, spec.name, all_attempts=True).to_pylist()
    assert {r["status"] for r in before} <= {"completed", "interrupted"}, before  # never "failed"
    unfinished = set(keys) - {r["trial_id"] for r in before if r["status"] == "completed"}
    assert unfinished, "no trial was running at the interrupt"
    counts = ", ".join(f"{n} {s}" for s, n in (("completed", 2 - len(unfinished)), ("interrupted", len(unfinished))) if n)
    assert f"sweep {spec.name} interrupted by SIGINT: 2 runs: {counts}, 0 cut by the budget before the sweep, 0 skipped" in out, out[-2000:]
    last_attempt = {k: max(c["attempt"] for c in load_curves(spec.storage, spec.name).to_pylist() if c["trial_id"] == k)
                    for k in unfinished}

    resumed = _start([spec_path, "--resume", "--num-cpus", 2], quiet=True)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:] + err[-3000:]
    assert f"sweep {spec.name}: 2 runs: 2 completed" in out
    assert "(run_trial pid=" not in out + err and "| Trial name" not in out  # --quiet: no worker lines, no table
    every = load_runs(spec.storage, spec.name, all_attempts=True).to_pylist()
    assert "failed" not in {r["status"] for r in every}, every
    runs = load_runs(spec.storage, spec.name).to_pylist()
    assert sorted(r["trial_id"] for r in runs) == keys and {r["status"] for r in runs} == {"completed"}
    curves = load_curves(spec.storage, spec.name).to_pylist()
    for key in unfinished:  # continued from its checkpoint in a new attempt, not from step 0
        (row,) = [r for r in runs if r["trial_id"] == key]
        assert row["attempt"] > last_attempt[key]
        first = min(c["step"] for c in curves if c["trial_id"] == key and c["attempt"] == row["attempt"])
        assert first > EVAL_EVERY, (key, first)


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c(tmp_path):
    spec_path, spec = _spec(tmp_path, "term")
    driver = _start([spec_path, "--num-cpus", 2], quiet=True)
    out, err = _stop_when_all_train(driver, spec, lambda p: os.kill(p.pid, signal.SIGTERM))
    assert driver.returncode == 128 + signal.SIGTERM, out[-3000:] + err[-3000:]
    assert f"\n  scalesweep run {spec_path} --resume --num-cpus 2 --quiet\n" in err, err[-3000:]
    assert "(run_trial pid=" not in out + err and "| Trial name" not in out  # --quiet on a fresh run too
    assert f"sweep {spec.name} interrupted by SIGTERM: 2 runs: " in out and " interrupted, 0 cut by the budget before the sweep, 0 skipped" in out
    every = load_runs(spec.storage, spec.name, all_attempts=True).to_pylist()
    assert {r["status"] for r in every} <= {"completed", "interrupted"}, every


# -- no Ray ----------------------------------------------------------------------------------------
def test_stop_signals_forward_to_tunes_stop_then_quit_at_once():
    """The first SIGTERM (or SIGINT) goes to the graceful stop Tune installs on SIGUSR1 and is
    remembered; a second one raises KeyboardInterrupt; before Tune's handler exists the first
    one does; on leaving, every handler and Tune's SIGINT setting are as before."""
    from orchestrator.interrupt import StopSignals

    tune_stops = []
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    env_before = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    with StopSignals() as stop:
        assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
        with pytest.raises(KeyboardInterrupt):  # Tune not started yet: stop at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    with StopSignals() as stop:
        signal.signal(signal.SIGUSR1, lambda *_: tune_stops.append(1))  # what Tuner.fit installs
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert stop.name == "SIGTERM" and tune_stops == [1]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert {s: signal.getsignal(s) for s in before} == before
    assert os.environ.get("TUNE_DISABLE_SIGINT_HANDLER") == env_before


def _summary(statuses, interrupted=None):
    return SweepSummary(sweep="s", storage="st", experiment_path="p", trials=3, statuses=statuses, skipped=(),
                        spent_flops=1.0, committed_flops=1.0, limit_flops=2.0, wall_s=1.0, interrupted=interrupted)


def test_summary_names_what_the_budget_cut_before_the_sweep_as_validate_does(tmp_path):
    """run's summary counts and lists the grid's cut with validate's own lines (format_grid)."""
    from orchestrator.spec import format_grid, validate_spec

    spec = {"name": "cut", "storage": str(tmp_path), "corpus": {"source": "builtin", "tokenizer": "byte"},
            "axes": {"target_params": [2.5e4, 8e4], "aspect_ratio": 16, "head_dim": 16, "n_ctx": 64,
                     "dataset_tokens": [1.5e5, 4.5e5], "batch_tokens": 2048},
            "budget": {"flops": 2e11, "cut": "cheapest_first"}}
    _, grid = validate_spec(spec, check_corpus=False)
    assert len(grid.cut) == 1
    summary = dataclasses.replace(_summary({"completed": 3}),
                                  cut=tuple((c.trial.trial_key, c.reason) for c in grid.cut))
    assert "3 runs: 3 completed, 1 cut by the budget before the sweep, 0 skipped by budget" in summary.line()
    plan = format_grid(grid).splitlines()
    cut_part = plan[plan.index("cut by the budget (1):"):]
    assert summary.text().splitlines()[1:] == cut_part and grid.cut[0].trial.trial_key in cut_part[1]


def test_summary_counts_every_status_and_sets_the_exit_code():
    diverged = _summary(run_statuses([{"trial_id": "a", "status": "completed"},
                                      {"trial_id": "b", "status": "diverged"},
                                      {"trial_id": "c", "status": "diverged"}]))
    assert "s: 3 runs: 1 completed, 2 diverged, 0 cut by the budget before the sweep, 0 skipped by budget" in diverged.line()
    assert (diverged.completed, diverged.ended, diverged.failed, diverged.exit_code) == (1, 3, 0, 0)
    failed = _summary({"completed": 2, "failed": 1})
    assert "3 runs: 2 completed, 1 failed" in failed.line() and failed.exit_code == 1
    # a trial running at the interrupt counts as interrupted whatever row it has left so far
    stopped = run_statuses([{"trial_id": "a", "status": "completed"}, {"trial_id": "b", "status": "failed"}], {"b"})
    assert stopped == {"completed": 1, "interrupted": 1}
    assert _summary(stopped, "SIGINT").exit_code == 130 and _summary(failed.statuses, "SIGTERM").exit_code == 143
    assert "s interrupted by SIGINT: 2 runs: 1 completed, 1 interrupted" in _summary(stopped, "SIGINT").line()
    # ...unless its row says it ended: a trial at its last step when Ctrl-C came wrote "completed"
    # and the driver, not yet told, still had it running (the summary said "2 interrupted" while the
    # store, and the resume, had one completed)
    finished = run_statuses([{"trial_id": "a", "status": "completed"}, {"trial_id": "b", "status": "failed"}],
                            {"a", "b"})
    assert finished == {"completed": 1, "interrupted": 1}
    assert run_statuses([{"trial_id": "a", "status": "early_stopped"}], {"a"}) == {"early_stopped": 1}
    assert run_statuses([{"trial_id": "a", "status": "interrupted"}], {"a", "c"}) == {"interrupted": 2}


def test_live_status_line_tells_diverged_from_completed():
    trials = [SimpleNamespace(status="TERMINATED", last_result={"status": "diverged"}),
              SimpleNamespace(status="TERMINATED", last_result={"status": "completed"}),
              SimpleNamespace(status="ERROR", last_result={}),
              SimpleNamespace(status="RUNNING", last_result={})]
    assert status_line(trials) == "4 runs: 1 completed, 1 diverged, 1 failed, 1 running"


@pytest.mark.parametrize("argv, line", [
    (["x y.yaml"], "scalesweep run 'x y.yaml' --resume"),
    (["s.yaml", "--address", "auto", "--max-failures", "5", "--quiet"],
     "scalesweep run s.yaml --resume --address auto --max-failures 5 --quiet"),
    (["s.yaml", "--resume", "--num-cpus", "4"], "scalesweep run s.yaml --resume --num-cpus 4"),
])
def test_resume_command_repeats_the_flags_given(argv, line):
    from orchestrator.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert resume_command(parser.parse_args(["run", *argv])) == line


def test_a_later_sweep_in_the_same_process_still_prints_its_trial_tables():
    """Tune's reporter decides at construction, from the process-global verbosity, whether its
    status lines carry the trial table; an earlier sweep in the same process (a notebook, a test
    worker) leaves that at 1, and the next sweep's statuses, the final one included, came without
    their table (found when the suite's file order changed)."""
    from ray.tune.utils import log as tune_log

    from orchestrator.sweep import make_reporter

    before = tune_log.verbosity
    try:
        tune_log.set_verbosity(1)  # what run_sweep's tune.run(verbose=1) leaves behind
        assert make_reporter(1e12, {})._print_intermediate_tables is True
    finally:
        tune_log.set_verbosity(before)
