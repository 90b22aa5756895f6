"""Test-session environment: CPU DeepSpeed, one shared on-disk cache."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Before torch/deepspeed are imported anywhere: no GPU here, and DeepSpeed should not probe.
os.environ.setdefault("DS_ACCELERATOR", "cpu")
# One cache (tokenised corpora, BPE vocabularies, measured matmul peak) for the whole session
# and for the Ray workers it starts, which inherit this environment.
os.environ.setdefault("SCALESWEEP_CACHE", str(REPO / ".cache" / "test"))

