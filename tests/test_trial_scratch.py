"""A trial attempt's local scratch directory: removed when the attempt ends, and reaped by the
next attempt on the machine when its process was killed (SIGKILL runs no cleanup)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.trial_scratch import OWNER, PREFIX, reap_scratch, trial_scratch

REPO = Path(__file__).resolve().parents[1]


def test_a_killed_attempts_scratch_is_reaped_by_the_next_and_a_live_ones_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    child = subprocess.Popen(  # an attempt that made its scratch dir, then is SIGKILLed
        [sys.executable, "-c", "import sys, time; from orchestrator.trial_scratch import trial_scratch\n"
         "with trial_scratch() as s:\n    (s / 'ckpt').mkdir(); print(s, flush=True); time.sleep(600)"],
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    killed = Path(child.stdout.readline().strip())
    assert killed.parent == tmp_path and (killed / "ckpt").is_dir()
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert killed.is_dir()  # SIGKILL: nothing removed it
    ownerless = tmp_path / f"{PREFIX}new"  # being created: no owner yet, not touched
    ownerless.mkdir()
    other = tmp_path / "ckpt-not-ours"
    other.mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    with trial_scratch() as mine:
        assert mine.parent == tmp_path and not killed.exists()
        assert json.loads((mine / OWNER).read_text())["pid"] == os.getpid()
        assert reap_scratch(tmp_path) == []  # a live owner's scratch stays
        assert mine.is_dir() and ownerless.is_dir() and other.is_dir()
    assert not mine.exists()  # ended normally: removed


def test_a_killed_process_not_yet_waited_for_counts_as_dead():
    """A SIGKILLed trial whose parent has not reaped it yet is a zombie: its scratch is reapable."""
    import psutil

    from orchestrator.local_ray import live_process

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        started = psutil.Process(child.pid).create_time()
        assert live_process(child.pid, started) is not None
        assert live_process(child.pid, started + 5) is None  # another process under a reused PID
        os.kill(child.pid, signal.SIGKILL)
        # until the kernel has made it a zombie (not waited for: we are its parent); repeated
        # looks up to a generous deadline (a wait, not a timing: 100 looks in 5 s were one)
        deadline = time.monotonic() + 120
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live_process(child.pid, started) is None
    finally:
        child.kill()
        child.wait()
