"""Can the cluster ever hold one trial? Checked before any Tune work, so a spec asking for more
CPUs or GPUs per rank than any node has fails with the field's name instead of waiting forever.

`unplaceable` is pure (nodes as resource dicts); `local_node` and `cluster_nodes` read them:
the local node as `ray.init` will resolve it (before it is started), or the live nodes of the
cluster the driver attached to. An autoscaling cluster's future nodes are not known here.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from trainers.fields import fail
from orchestrator.spec_types import Resources

_EPS = 1e-9


def _slots(node: Mapping[str, float], cpus: float, gpus: float) -> int:
    """How many ranks of (cpus, gpus) one node holds."""
    fits = [math.floor(node.get("CPU", 0.0) / cpus + _EPS)] if cpus > 0 else []
    if gpus > 0:
        fits.append(math.floor(node.get("GPU", 0.0) / gpus + _EPS))
    return min(fits) if fits else math.inf


def unplaceable(resources: Resources, nodes: Sequence[Mapping[str, float]], *, driver_cpus: float,
                where: str) -> str | None:
    """None if the nodes can hold one trial at once: `workers` ranks of (cpus_per_worker,
    gpus_per_worker), each on one node, plus a driver of `driver_cpus` CPUs on some node (a
    multi-worker trial's Tune function); else the error line, naming the field to change."""
    cpus, gpus, workers = resources.cpus_per_worker, resources.gpus_per_worker, resources.workers
    for driver_node in range(len(nodes)):  # identical ranks: counting slots per node is exact
        total = 0
        for i, node in enumerate(nodes):
            left = dict(node)
            if i == driver_node:
                left["CPU"] = left.get("CPU", 0.0) - driver_cpus
            total += _slots(left, cpus, gpus) if left.get("CPU", 0.0) >= -_EPS else 0
        if total >= workers:
            return None
    largest_cpu = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    largest_gpu = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    have = f"{len(nodes)} node(s) in {where}; the largest has {largest_cpu:g} CPUs and {largest_gpu:g} GPUs"
    if gpus > largest_gpu + _EPS:
        return str(fail("resources.gpus_per_worker", f"{gpus:g} GPUs per rank, but no node has that "
                                                     f"many ({have})"))
    if cpus > largest_cpu + _EPS:
        return str(fail("resources.cpus_per_worker", f"{cpus:g} CPUs per rank, but no node has that "
                                                     f"many ({have})"))
    return str(fail("resources.workers", f"{workers} ranks of {cpus:g} CPUs and {gpus:g} GPUs (plus "
                                         f"{driver_cpus:g} CPU for the trial driver) do not fit at "
                                         f"once ({have})"))


def local_node(num_cpus: int | None) -> dict[str, float] | None:
    """This machine's resources as `ray.init(num_cpus=num_cpus)` will resolve them (Ray's own
    resolver: cgroup CPU quotas, CUDA_VISIBLE_DEVICES), without starting Ray; None when this
    Ray has no such resolver (it is private API), leaving the check to the started cluster."""
    try:
        from ray._private.resource_and_label_spec import ResourceAndLabelSpec  # private (Ray 2.60)

        spec = ResourceAndLabelSpec(num_cpus=num_cpus).resolve(is_head=True, node_ip_address="127.0.0.1")
    except (ImportError, AttributeError, TypeError):
        return None
    return {"CPU": float(spec.num_cpus), "GPU": float(spec.num_gpus or 0)}


def cluster_nodes() -> list[dict[str, float]]:
    """The live nodes of the Ray cluster this driver is connected to."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]
