"""Corpus preparation as a Ray Data job: the shards of `trainers.prepare` read, tokenised and
written by Ray tasks on every node of a cluster (or on this machine's private Ray).

`trainers.prepare.prepare_corpus` plans the splits (from file sizes alone), trains the BPE model
and writes the manifest; what it hands to an engine is the list of unfinished (index, split)
pairs, a `ShardJob` (plain data) and the function to run on each (`sample_split` for BPE's
first pass, `encode_shard` for the shards). `ray_data_map` runs it with Ray Data, one task per
split, each reading its byte range of the source itself, so no text passes through the driver. Every node must see the source files and the output directory
at the same paths (a shared filesystem on a cluster); on one machine that holds trivially.
"""

from __future__ import annotations

import json
import pickle

from trainers.documents import Split
from trainers.prepare import ShardJob


def _run_row(row: dict, fn, job: tuple) -> dict:
    index = int(row["index"])
    result = fn(ShardJob(*job), index, Split.from_json(json.loads(row["split"])))
    return {"index": index, "result": pickle.dumps(result)}


def ray_data_map(fn, job: ShardJob, todo: list[tuple[int, Split]], *, concurrency: int | None = None,
                 log=None):
    """Yield (index, ``fn(job, index, split)``) for each of ``todo``, run as a Ray Data map on the
    Ray this process is connected to (`ray.init` first), one task per split, as they finish.
    ``concurrency``: at most this many tasks at once (default: as many as the cluster's CPUs
    allow, one CPU each). The engine `trainers.prepare.prepare_corpus` takes."""
    import ray

    rows = [{"index": index, "split": json.dumps(split.to_json())} for index, split in todo]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map(
        _run_row, fn_kwargs={"fn": fn, "job": tuple(job)}, num_cpus=1, concurrency=concurrency)
    for done, row in enumerate(dataset.iter_rows(), 1):
        yield int(row["index"]), pickle.loads(row["result"])
        if log and done % 16 == 0:
            log(f"prepare: {fn.__name__} {done} of {len(todo)} splits (Ray Data)")


def prepare_on_ray(spec, out_dir, *, address: str | None = None, workers: int | None = None,
                   log=None, **prepare_kwargs) -> dict:
    """`trainers.prepare.prepare_corpus` with its shards encoded by Ray Data: on the cluster at
    ``address`` (`orchestrator.cluster.start_ray` forms), or on a private local Ray of
    ``workers`` CPUs when ``address`` is None. The manifest, as `prepare_corpus` returns it."""
    from trainers.prepare import prepare_corpus
    from orchestrator.cluster import start_ray

    private = None

    def engine(fn, job, todo):
        nonlocal private
        import ray

        if not ray.is_initialized():
            private = start_ray(address, None if address else workers, quiet=True)
        _quiet_progress()
        yield from ray_data_map(fn, job, todo, concurrency=workers, log=log)

    try:
        return prepare_corpus(spec, out_dir, workers=workers, log=log, engine=engine, **prepare_kwargs)
    finally:
        if private is not None:
            private.stop()


def _quiet_progress() -> None:
    """No Ray Data progress bars: a command prints its own lines."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
