"""Corpus preparation as a Ray Data job: the shards of `trainers.prepare` read, tokenised and
written by Ray tasks on every node of a cluster (or on this machine's private Ray).

`trainers.prepare.prepare_corpus` plans the splits (from file sizes alone), trains the BPE model
and writes the manifest; what it hands to an engine is the list of unfinished (index, split)
pairs, a `ShardJob` (plain data) and the function to run on each (`sample_split` for BPE's
first pass, `encode_shard` for the shards). `ray_data_map` runs it with Ray Data, one task per
split, each reading its byte range of the source itself, so no text passes through the driver.
Every node must see the source files and the output directory at the same paths (a shared
filesystem, or an object store for the output); on one machine that holds trivially.
`RayDataEngine` is that engine with Ray's start-up (timed apart by `prepare_corpus`) and Ray's own
log lines kept out of the command's output: `prepare --engine ray` and `run` attached to a
cluster (`orchestrator.sweep_corpus`) use it.
"""

from __future__ import annotations

import json
import logging
import pickle
import socket
import warnings

from trainers.documents import Split
from trainers.prepare import ShardJob


def _run_row(row: dict, fn, job: tuple) -> dict:
    index = int(row["index"])
    try:
        result = fn(ShardJob(*job), index, Split.from_json(json.loads(row["split"])))
    except ValueError as err:  # bad input (a file, line and field): the driver raises it as it is,
        message = str(err)      # not as Ray's task trace
        if message.startswith("source: cannot read "):  # likely a node that does not see the files
            message += (f" on node {socket.gethostname()}: every node must see the raw files at the "
                        "driver's paths")
        return {"index": index, "result": b"", "error": message}
    return {"index": index, "result": pickle.dumps(result), "error": ""}


def ray_data_map(fn, job: ShardJob, todo: list[tuple[int, Split]], *, concurrency: int | None = None,
                 log=None):
    """Yield (index, ``fn(job, index, split)``) for each of ``todo``, run as a Ray Data map on the
    Ray this process is connected to (`ray.init` first), one task per split, as they finish.
    ``concurrency``: at most this many tasks at once (default: as many as the cluster's CPUs
    allow, one CPU each). The engine `trainers.prepare.prepare_corpus` takes. A ValueError in a
    task (bad input: the file, line and field) is raised here as that ValueError."""
    import ray

    rows = [{"index": index, "split": json.dumps(split.to_json())} for index, split in todo]
    # a pool no larger than the work: Ray Data warns about a limit above its input count
    compute = ray.data.TaskPoolStrategy(size=min(concurrency, len(rows))) if concurrency else None
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map(
        _run_row, fn_kwargs={"fn": fn, "job": tuple(job)}, num_cpus=1, compute=compute)
    with warnings.catch_warnings():  # Ray Data's advice on tuning, printed per operator
        warnings.simplefilter("ignore", UserWarning)
        for done, row in enumerate(dataset.iter_rows(), 1):
            if row["error"]:
                raise ValueError(row["error"])
            yield int(row["index"]), pickle.loads(row["result"])
            if log and done % 16 == 0:
                log(f"prepare: {fn.__name__} {done} of {len(todo)} splits (Ray Data)")


class RayDataEngine:
    """`ray_data_map` as `prepare_corpus`'s engine. ``start()`` connects to the cluster at
    ``address`` (`orchestrator.cluster.start_ray` forms) or starts a private local Ray of
    ``workers`` CPUs when ``address`` is None, unless this process is connected already; ``stop()``
    stops a Ray it started. ``workers``: at most this many tasks at once (default: the
    cluster's CPUs)."""

    name = "ray-data"

    def __init__(self, address: str | None = None, workers: int | None = None, log=None) -> None:
        self.address, self.workers, self.log = address, workers, log
        self._private = None

    def start(self) -> None:
        import ray

        from orchestrator.cluster import start_ray

        if not ray.is_initialized():
            self._private = start_ray(self.address, None if self.address else self.workers, quiet=True)
        _quiet_ray_data()

    def __call__(self, fn, job: ShardJob, todo: list[tuple[int, Split]]):
        yield from ray_data_map(fn, job, todo, concurrency=self.workers, log=self.log)

    def stop(self) -> None:
        if self._private is not None:
            self._private.stop()
            self._private = None


def prepare_on_ray(spec, out_dir, *, address: str | None = None, workers: int | None = None,
                   log=None, **prepare_kwargs) -> dict:
    """`trainers.prepare.prepare_corpus` with its shards encoded by Ray Data (`RayDataEngine`):
    on the cluster at ``address``, or on a private local Ray of ``workers`` CPUs when ``address``
    is None. The manifest, as `prepare_corpus` returns it."""
    from trainers.prepare import prepare_corpus

    engine = RayDataEngine(address, workers, log)
    try:
        return prepare_corpus(spec, out_dir, workers=workers, log=log, engine=engine, **prepare_kwargs)
    finally:
        engine.stop()


def _quiet_ray_data() -> None:
    """No Ray Data progress bars or start/finish lines: a command prints its own lines (Ray Data
    logs at INFO to the console and warns that the bars are off)."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
