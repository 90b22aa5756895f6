"""Checkpoints of one training run: DeepSpeed state plus what the run was, checked on resume.

A checkpoint directory holds DeepSpeed's ``latest`` file (the newest tag) and one ``<tag>/``
directory per save: model, optimizer and scheduler from `engine.save_checkpoint`, sampler
position, progress and RNG as client state, and `RECORD_FILE`, the run's identity
(`run_identity`) as JSON.

Resuming under another identity is refused before anything is loaded, naming every field that
differs. DeepSpeed itself would fail with a bare AssertionError (another ZeRO stage, another
world size under ZeRO) or a state-dict traceback (another shape), or, worse, succeed: torch
restores the saved optimizer hyperparameters and scheduler over the new ones, so a changed LR or
weight decay would be silently ignored. Converting between ZeRO stages (DeepSpeed's universal
checkpoints) is not attempted: it is an offline step (``ds_to_universal``) over files this
trainer does not otherwise read, and a refused resume loses nothing.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed as dist

from metrics.fs import write_atomically
from trainers.config import BatchGeometry, TrainConfig

RECORD_FILE = "scalesweep_checkpoint.json"


def run_identity(config: TrainConfig, geometry: BatchGeometry, world_size: int, dtype: torch.dtype,
                 corpus_fingerprint: str) -> dict:
    """What a checkpoint's tensors and the run's numbers depend on, as flat JSON-able fields.

    Left out, so they may change on resume: the micro batch and accumulation steps (they split
    the same global batch), the world size without ZeRO (the global batch is split over ranks
    the same way), evaluation, stopping, threads and budget settings."""
    identity = {f"shape.{k}": v for k, v in dataclasses.asdict(config.shape).items()}
    identity.update({
        "zero_stage": config.zero_stage,
        "precision": str(dtype).removeprefix("torch."),  # resolved: 'auto' differs per machine
        "global_batch_sequences": geometry.seqs_per_step,
        "total_steps": geometry.total_steps,  # the LR schedule's length
        "dataset_tokens": config.dataset_tokens,
        "regime": config.regime,
        "seed": config.seed,
        "corpus_fingerprint": corpus_fingerprint,
        "lr": config.resolved_lr,
        "weight_decay": config.weight_decay,
        "warmup_frac": config.warmup_frac,
        "min_lr_ratio": config.min_lr_ratio,
    })
    if config.zero_stage > 0:  # ZeRO partitions the optimizer state over the ranks
        identity["world_size"] = world_size
    return identity


def latest_tag(checkpoint_dir: str) -> str:
    """The newest tag in a DeepSpeed checkpoint directory.

    Raises FileNotFoundError naming the directory when it holds no checkpoint."""
    directory = Path(checkpoint_dir)
    latest = directory / "latest"
    if not directory.is_dir():
        raise FileNotFoundError(f"resume_from: {checkpoint_dir} is not a directory")
    tag = latest.read_text().strip() if latest.is_file() else ""
    if not tag or not (directory / tag).is_dir():
        raise FileNotFoundError(f"resume_from: no DeepSpeed checkpoint in {checkpoint_dir} "
                                "(no 'latest' file naming a saved tag)")
    return tag


def check_resumable(checkpoint_dir: str, identity: dict) -> str:
    """The tag to resume from; raises ValueError naming every field where the checkpoint's
    recorded identity differs from ``identity``. A checkpoint without a record (saved before
    records existed) is resumed with a warning."""
    tag = latest_tag(checkpoint_dir)
    record_path = Path(checkpoint_dir) / tag / RECORD_FILE
    if not record_path.is_file():
        warnings.warn(f"resume_from: {checkpoint_dir}/{tag} records no run configuration; resuming "
                      "without checking that it matches this run", stacklevel=2)
        return tag
    try:
        saved = json.loads(record_path.read_text())["identity"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"resume_from: {record_path} is unreadable ({err})") from None
    differ = [f"{key}: checkpoint {saved[key]!r}, this run {identity[key]!r}"
              for key in identity if key in saved and saved[key] != identity[key]]
    if differ:
        raise ValueError(f"resume_from: {checkpoint_dir} was saved by another run configuration ("
                         + "; ".join(differ) + "); resume with the checkpoint's settings or start afresh")
    return tag


def save(engine, checkpoint_dir: str, step: int, client_state: dict, identity: dict, rank: int,
         world_size: int) -> str:
    """Save DeepSpeed state, client state and the run's record under tag ``step<step>``; keep
    only the newest checkpoint so long runs do not fill the disk."""
    tag = f"step{step:08d}"
    engine.save_checkpoint(checkpoint_dir, tag=tag, client_state=client_state)
    if rank == 0:
        write_atomically(Path(checkpoint_dir) / tag / RECORD_FILE,
                         lambda out: out.write(json.dumps({"identity": identity}, indent=1).encode()))
    if world_size > 1:
        dist.barrier()
    # every rank prunes: its directory may be its own (Ray Train ranks); where ranks share one,
    # they remove the same old tags (ignore_errors covers the race)
    for old in Path(checkpoint_dir).glob("step*"):
        if old.name != tag and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return checkpoint_dir


def load(engine, checkpoint_dir: str, tag: str) -> dict:
    """Load DeepSpeed state (model, optimizer, scheduler) saved under ``tag``; its client state.

    Mismatches are caught by `check_resumable` first; for a checkpoint without a record,
    DeepSpeed's bare errors are re-raised as a ValueError naming the checkpoint."""
    try:
        path, client_state = engine.load_checkpoint(checkpoint_dir, tag=tag, load_optimizer_states=True,
                                                    load_lr_scheduler_states=True)
    except (AssertionError, RuntimeError, KeyError) as err:
        raise ValueError(f"resume_from: DeepSpeed could not load {checkpoint_dir}/{tag} ({type(err).__name__}: "
                         f"{str(err)[:200] or 'no message'}); was it saved under another ZeRO stage, model "
                         "shape, dtype or world size?") from err
    if path is None:
        raise FileNotFoundError(f"resume_from: DeepSpeed found no checkpoint {tag!r} in {checkpoint_dir}")
    return client_state
