"""The process pool that `trainers.prepare.prepare_corpus` runs its splits on by default.

`pool_map(fn, job, todo, workers=...)` is the engine signature `prepare_corpus` takes (the Ray
Data one is `orchestrator.corpus_ray.RayDataEngine`): ``fn(job, index, split)`` for each (index,
Split) of ``todo``, its (index, result) pairs yielded as they finish.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import multiprocessing

from trainers.documents import Split

TASKS_PER_WORKER = 4      # splits a pool worker handles before a fresh process replaces it


def pool_map(fn, job, todo: list[tuple[int, Split]], *, workers: int, log=None):
    """Yield (index, ``fn(job, index, split)``) for each of ``todo``, as a spawn-context process
    pool of ``workers`` finishes them (in this process for one worker). At most two splits per
    worker are in flight and a result is dropped once yielded, so the driver's memory does not
    grow with the corpus (pass 1's results are samples of up to BPE_SAMPLE_BYTES each)."""
    if workers == 1:
        for index, split in todo:
            yield index, fn(job, index, split)
        return
    pending = iter(todo)
    with _executor(workers) as pool:
        running = {pool.submit(fn, job, index, split): index
                   for index, split in itertools.islice(pending, 2 * workers)}
        done = 0
        while running:
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                index = running.pop(future)
                for next_index, split in itertools.islice(pending, 1):
                    running[pool.submit(fn, job, next_index, split)] = next_index
                yield index, future.result()
                done += 1
                if log and done % 16 == 0:
                    log(f"prepare: {fn.__name__} {done} of {len(todo)} splits")


class _executor:
    """A spawn-context process pool of ``workers`` processes, or None for one worker (encode
    in this process). Spawn, not fork: a forked child of a process that has used HF tokenizers'
    thread pool or torch can deadlock. A worker is replaced after `TASKS_PER_WORKER` splits: a
    long-lived encoding process creeps up by ~5 MB per split (allocator fragmentation), which
    would make memory grow with the corpus; a fresh one costs ~1 s against ~15 s per split."""

    def __init__(self, workers: int):
        self.pool = (cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                            max_tasks_per_child=TASKS_PER_WORKER)
                     if workers > 1 else None)

    def __enter__(self):
        return self.pool

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
