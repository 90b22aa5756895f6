"""Test-session environment: CPU DeepSpeed, one shared on-disk cache, reference data path."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Before torch/deepspeed are imported anywhere: no GPU here, and DeepSpeed should not probe.
os.environ.setdefault("DS_ACCELERATOR", "cpu")
# One cache (tokenised corpora, BPE vocabularies, measured matmul peak) for the whole session
# and for the Ray workers it starts, which inherit this environment.
os.environ.setdefault("SCALESWEEP_CACHE", str(REPO / ".cache" / "test"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"reference data missing: {SHARED_DATA} (CI has ../shared beside the clone)")
    return SHARED_DATA
