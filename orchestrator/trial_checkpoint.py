"""A single-worker trial's checkpoint, kept in the sweep's storage under the trial's key.

Why not Tune's checkpoints: Tune deletes a trial's older checkpoint (``num_to_keep``) as soon as
it registers a new one, but saves the experiment state that names the latest only now and then.
A driver killed in between leaves a restored trial pointing at a deleted checkpoint, which Tune
cannot restore ("does not exist on storage anymore"): the trial errors out of its retries before
the trainer runs, with no runs row (CI once lost a chosen run of an active sweep that way).

Here a checkpoint is copied whole to ``<storage>/<sweep>/checkpoints/<trial_key>/step<step>-<random>``,
then the pointer ``latest.json`` is replaced atomically (`metrics.write_atomically`), then the
older copy is deleted: whenever a process dies, the pointer names a whole checkpoint. A retry, a
resumed sweep or another node finds it by the trial's key alone (any pyarrow.fs URI). Multi-worker
trials keep theirs in Ray Train's run under the same key (`orchestrator.trial.train_storage`).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow.fs as pafs

POINTER = "latest.json"


def checkpoint_root(storage: str, sweep: str, trial_key: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) of the trial's checkpoints: ``<storage>/<sweep>/checkpoints/<key>``."""
    from metrics import resolve

    return resolve(storage, sweep, "checkpoints", trial_key)


def save_checkpoint(storage: str, sweep: str, trial_key: str, local_dir: str) -> str:
    """Copy the local DeepSpeed checkpoint directory ``local_dir`` (`trainers.checkpoint.save`)
    into the store under its tag, move the pointer to it and delete the copies before it; the
    stored path. Raises FileNotFoundError when ``local_dir`` holds no checkpoint."""
    from metrics import write_atomically
    from trainers.checkpoint import latest_tag

    fs, root = checkpoint_root(storage, sweep, trial_key)
    name = f"{latest_tag(local_dir)}-{uuid.uuid4().hex[:8]}"  # never the copy the pointer names
    fs.create_dir(f"{root}/{name}", recursive=True)
    pafs.copy_files(str(Path(local_dir).resolve()), f"{root}/{name}",
                    source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    write_atomically(f"{root}/{POINTER}", lambda out: out.write(json.dumps({"dir": name}).encode()),
                     fs=fs)
    for info in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        if info.type == pafs.FileType.Directory and info.base_name.startswith("step") and info.base_name != name:
            fs.delete_dir(info.path)  # only after the pointer moved: it never names a deleted copy
    return f"{root}/{name}"


def latest_checkpoint(storage: str, sweep: str, trial_key: str) -> str | None:
    """The stored path the pointer names, or None when the trial has saved none."""
    fs, root = checkpoint_root(storage, sweep, trial_key)
    try:
        with fs.open_input_stream(f"{root}/{POINTER}") as stream:
            name = json.loads(stream.read())["dir"]
    except FileNotFoundError:
        return None
    return f"{root}/{name}"


def download_checkpoint(storage: str, sweep: str, trial_key: str, dest: str) -> bool:
    """Copy the trial's latest stored checkpoint to the local directory ``dest``; False when
    it has none."""
    fs, _ = checkpoint_root(storage, sweep, trial_key)
    path = latest_checkpoint(storage, sweep, trial_key)
    if path is None:
        return False
    Path(dest).mkdir(parents=True, exist_ok=True)
    pafs.copy_files(path, str(Path(dest).resolve()), source_filesystem=fs,
                    destination_filesystem=pafs.LocalFileSystem())
    return True
