"""What a trial reserves, and can the cluster ever hold one? Checked before any Tune work, so a
spec asking for more CPUs or GPUs per rank than any node has fails with the field's name
instead of waiting forever.

A trial's ranks hold all of its CPUs and GPUs. A multi-worker trial's Tune function only drives
a TorchTrainer (whose controller actor Ray Train starts with 0 CPU), so it reserves no CPU:
`workers: 2, cpus_per_worker: 1` runs on a 2-CPU machine. Tune refuses an all-zero request, so
it reserves a token amount of Ray's `memory` resource (every node has one) instead.

`unplaceable`, `trial_resources` and `max_concurrent_trials` are pure (nodes as resource
dicts); `local_node` and `cluster_nodes` read them:
the local node as `ray.init` will resolve it (before it is started), or the live nodes of the
cluster the driver attached to. An autoscaling cluster's future nodes are not known here.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from orchestrator.spec_fields import fail
from orchestrator.spec_types import Resources

_EPS = 1e-9
TRAIN_DRIVER_MEMORY = 1 << 20  # bytes of Ray's `memory` resource for a multi-worker trial's driver


def trial_resources(resources: Resources) -> dict[str, float]:
    """What the Tune trial itself reserves (`tune.with_resources`): one rank's CPUs and GPUs, or,
    with several workers, no CPU (the TorchTrainer's workers reserve their own)."""
    if resources.workers > 1:
        return {"CPU": 0, "memory": TRAIN_DRIVER_MEMORY}
    gpus = {"GPU": resources.gpus_per_worker} if resources.gpus_per_worker else {}
    return {"CPU": resources.cpus_per_worker, **gpus}


def max_concurrent_trials(resources: Resources, cluster: Mapping[str, float]) -> int:
    """How many trials the cluster's total resources hold at once (at least one)."""
    need = {"CPU": resources.workers * resources.cpus_per_worker,
            "GPU": resources.workers * resources.gpus_per_worker}
    fits = [math.floor(cluster.get(kind, 0.0) / amount + _EPS) for kind, amount in need.items() if amount > 0]
    return max(1, min(fits))


def _slots(node: Mapping[str, float], cpus: float, gpus: float) -> int:
    """How many ranks of (cpus, gpus) one node holds."""
    fits = [math.floor(node.get("CPU", 0.0) / cpus + _EPS)] if cpus > 0 else []
    if gpus > 0:
        fits.append(math.floor(node.get("GPU", 0.0) / gpus + _EPS))
    return min(fits) if fits else math.inf


def unplaceable(resources: Resources, nodes: Sequence[Mapping[str, float]], *, where: str) -> str | None:
    """None if the nodes can hold one trial at once: `workers` ranks of (cpus_per_worker,
    gpus_per_worker), each on one node (a multi-worker trial's driver takes no CPU); else the
    error line, naming the field to change."""
    cpus, gpus, workers = resources.cpus_per_worker, resources.gpus_per_worker, resources.workers
    if sum(_slots(node, cpus, gpus) for node in nodes) >= workers:  # identical ranks: exact
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
    return str(fail("resources.workers", f"{workers} ranks of {cpus:g} CPUs and {gpus:g} GPUs do not fit "
                                         f"at once ({have})"))


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
