"""A single-worker trial's checkpoints in the sweep's storage (orchestrator/trial_checkpoint.py):
the pointer only ever names a whole copy, older copies go once it has moved, and a trial that
Tune gave up on before it wrote a runs row still counts as failed."""

import json
from pathlib import Path

import pytest

from orchestrator.sweep import run_statuses
from orchestrator.trial_checkpoint import (POINTER, checkpoint_root, download_checkpoint, latest_checkpoint,
                                           save_checkpoint)


def _local_checkpoint(path: Path, step: int, payload: str) -> str:
    """What `trainers.checkpoint.save` leaves: a 'latest' file naming one tag directory."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "latest").write_text(f"step{step}")
    (path / f"step{step}").mkdir(exist_ok=True)
    (path / f"step{step}" / "model.pt").write_text(payload)
    return str(path)


def test_the_pointer_names_the_newest_whole_copy_and_older_ones_go(tmp_path):
    store = str(tmp_path / "store")
    assert latest_checkpoint(store, "s", "k") is None
    assert not download_checkpoint(store, "s", "k", str(tmp_path / "none"))

    first = save_checkpoint(store, "s", "k", _local_checkpoint(tmp_path / "a", 20, "twenty"))
    _, root = checkpoint_root(store, "s", "k")
    # a copy a killed process left half-written: the pointer never named it
    Path(root, "step40-deadbeef").mkdir()
    assert latest_checkpoint(store, "s", "k") == first

    second = save_checkpoint(store, "s", "k", _local_checkpoint(tmp_path / "b", 40, "forty"))
    assert latest_checkpoint(store, "s", "k") == second != first
    assert sorted(p.name for p in Path(root).iterdir()) == sorted([POINTER, Path(second).name])
    assert json.loads(Path(root, POINTER).read_text())["dir"] == Path(second).name

    assert download_checkpoint(store, "s", "k", str(tmp_path / "restored"))
    assert (tmp_path / "restored" / "latest").read_text() == "step40"
    assert (tmp_path / "restored" / "step40" / "model.pt").read_text() == "forty"


def test_a_directory_without_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no DeepSpeed checkpoint"):
        save_checkpoint(str(tmp_path / "store"), "s", "k", str(tmp_path / "empty"))


def test_a_trial_tune_gave_up_on_counts_as_failed_whatever_row_it_left():
    rows = [{"trial_id": "done", "status": "completed"}, {"trial_id": "cut", "status": "interrupted"}]
    # "gone": errored before the trainer wrote any row; "cut": its last row was an interrupted
    # attempt; "done" ended before Tune's error (its row stands)
    assert run_statuses(rows, errored_keys={"gone", "cut", "done"}) == {"completed": 1, "failed": 2}
    assert run_statuses(rows) == {"completed": 1, "interrupted": 1}
