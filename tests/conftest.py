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



def pytest_configure(config):
    """Keep the collection order below under `--dist loadfile`: pytest-xdist (3.x) otherwise
    re-sorts the files by how many tests each holds (`--loadscope-reorder`, its default), which
    put test_spec.py's hundred quick cases first and the minutes-long files wherever their count
    fell (one worker then idled at the end)."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """Files holding slow (end-to-end) tests first, in their usual order: `make test` hands whole
    files to two workers in collection order, so the minutes-long files start at once and the
    many short ones fill in at the end, and both workers finish together (collected
    alphabetically, test_trainer.py's minutes came last and one worker idled)."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: files stay contiguous


@pytest.fixture(scope="module")
def local_ray():
    """One private local Ray (2 CPUs, orchestrator.local_ray) for a module's in-process sweeps:
    `run_sweep` uses a Ray already started in its process instead of starting (~7 s) and
    stopping its own for each sweep. Its workers keep this moment's environment, so it is not
    for tests that change the trials' environment (monkeypatched AWS_*, SCALESWEEP_CACHE)."""
    import logging

    from orchestrator.local_ray import start_private

    private = start_private(2, None, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield private
    finally:
        private.stop()
