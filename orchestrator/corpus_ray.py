"""Corpus preparation as a Ray Data job: the shards of `trainers.prepare` read, tokenised and
written by Ray tasks on every node of a cluster (or on this machine's private Ray).

`trainers.prepare.prepare_corpus` plans the splits (from file sizes alone), trains the BPE model
and writes the manifest; what it hands to an engine is the list of unfinished (index, split)
pairs and a `ShardJob` (plain data). `ray_data_shards` maps `trainers.prepare.encode_shard` over
them with Ray Data, one task per split, each reading its byte range of the source itself, so no
text passes through the driver. Every node must see the source files and the output directory
at the same paths (a shared filesystem on a cluster); on one machine that holds trivially.
"""

from __future__ import annotations

import json

from trainers.documents import Split
from trainers.prepare import ShardJob, encode_shard


def _encode_row(row: dict, job: tuple) -> dict:
    record = encode_shard(ShardJob(*job), int(row["index"]), Split.from_json(json.loads(row["split"])))
    return {"index": int(row["index"]), "record": json.dumps(record)}


def ray_data_shards(job: ShardJob, todo: list[tuple[int, Split]], *, concurrency: int | None = None,
                    log=None) -> dict[int, dict]:
    """Records of the ``todo`` shards, encoded by a Ray Data map on the Ray this process is
    connected to (`ray.init` first). ``concurrency``: at most this many tasks at once (default:
    as many as the cluster's CPUs allow, one CPU each)."""
    import ray

    rows = [{"index": index, "split": json.dumps(split.to_json())} for index, split in todo]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map(
        _encode_row, fn_kwargs={"job": tuple(job)}, num_cpus=1, concurrency=concurrency)
    records = {}
    for row in dataset.iter_rows():
        records[int(row["index"])] = json.loads(row["record"])
        if log and len(records) % 16 == 0:
            log(f"prepare: {len(records)} of {len(todo)} shards (Ray Data)")
    return records


def prepare_on_ray(spec, out_dir, *, address: str | None = None, workers: int | None = None,
                   log=None, **prepare_kwargs) -> dict:
    """`trainers.prepare.prepare_corpus` with its shards encoded by Ray Data: on the cluster at
    ``address`` (`orchestrator.cluster.start_ray` forms), or on a private local Ray of
    ``workers`` CPUs when ``address`` is None. The manifest, as `prepare_corpus` returns it."""
    from trainers.prepare import prepare_corpus
    from orchestrator.cluster import start_ray

    private = None

    def run_shards(job, todo):
        nonlocal private
        import ray

        if not ray.is_initialized():
            private = start_ray(address, None if address else workers, quiet=True)
        _quiet_progress()
        return ray_data_shards(job, todo, concurrency=workers, log=log)

    try:
        return prepare_corpus(spec, out_dir, workers=workers, log=log, run_shards=run_shards, **prepare_kwargs)
    finally:
        if private is not None:
            private.stop()


def _quiet_progress() -> None:
    """No Ray Data progress bars: a command prints its own lines."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
