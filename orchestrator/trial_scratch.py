"""A trial attempt's local scratch directory, and the reaping of those whose process was killed.

Each attempt of a trial (each rank of a data-parallel one) keeps two things on local disk: the
checkpoint it restored (``resume/``) and the DeepSpeed checkpoints it writes before they are
copied to the sweep's storage (``ckpt/``). Both live in one directory,
``<tempdir>/scalesweep-trial-<random>/``, removed when the attempt ends in any way Python sees.
A SIGKILLed attempt (a node crash, the OOM killer, a test's kill) cannot remove it: under a
private local Ray the temp dir is Ray's own and goes with it (`orchestrator.local_ray`), but on a
cluster it is the node's ``/tmp`` (24 such directories had piled up on one machine in a day).
So the directory records its owner (PID and start time, ``owner.json``), and every attempt,
before making its own, removes this user's scratch directories whose owner is dead
(`reap_scratch`). A directory without a readable owner (being created, or not ours) is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

PREFIX = "scalesweep-trial-"
OWNER = "owner.json"


@contextlib.contextmanager
def trial_scratch() -> Iterator[Path]:
    """A fresh scratch directory for this process's attempt (after reaping dead owners' ones);
    removed on exit."""
    import psutil

    reap_scratch()
    path = Path(tempfile.mkdtemp(prefix=PREFIX))
    try:
        owner = {"pid": os.getpid(), "started": psutil.Process().create_time()}
        (path / OWNER).write_text(json.dumps(owner))
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def reap_scratch(root: str | os.PathLike | None = None) -> list[str]:
    """Remove the scratch directories under `root` (default: this process's temp dir) that this
    user's dead processes left; returns their paths."""
    from orchestrator.local_ray import live_process

    root = Path(root if root is not None else tempfile.gettempdir())
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        try:
            if (not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False)
                    or entry.stat(follow_symlinks=False).st_uid != os.getuid()):
                continue
            owner = json.loads(Path(entry.path, OWNER).read_text())
            pid, started = int(owner["pid"]), float(owner["started"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if live_process(pid, started) is None:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed
