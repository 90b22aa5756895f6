"""Where the sweep's trials run: what a trial reserves, can the cluster ever hold one, and the
driver's Ray (`start_ray`: a private local one, or `attach` to a running cluster).

Can the cluster ever hold one trial? Checked before any Tune work, so a spec asking for more
CPUs or GPUs per rank than any node has fails with the field's name instead of waiting forever.

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

import contextlib
import logging
import math
import os
import socket
from typing import Mapping, Sequence

from trainers.fields import fail
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


# ---- starting or attaching the driver's Ray --------------------------------------------------

_TOKEN_HELP = ("give this driver the head's token: RAY_AUTH_TOKEN=<token>, or RAY_AUTH_TOKEN_PATH=<file>, "
               "or the file ~/.ray/auth_token (`ray get-auth-token` on the head prints it)")


_TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"


def check_num_cpus(address: str | None, num_cpus: int | None) -> None:
    """--num-cpus sizes a local Ray: with --address (a cluster, whose nodes have their CPUs) it would
    be read by nothing. A ValueError naming both; `run` and `ladder` call it before the spec is read."""
    if address and num_cpus is not None:
        raise ValueError("--num-cpus sets the CPUs of a local Ray; with --address the cluster's nodes have theirs")


def start_ray(address: str | None, num_cpus: int | None, quiet: bool = False, record_in: tuple | None = None):
    """Attach to a cluster (`address`: ``auto``, HOST:PORT or ``ray://``) or start a private local
    Ray on 127.0.0.1 (`orchestrator.local_ray`; `record_in`: (filesystem, sweep dir) for its
    record). Returns what to call ``.stop()`` on when the sweep ends: the private Ray, or None
    (attached, or Ray already initialised in this process: not ours to stop). `quiet`: the
    trial workers' output is not forwarded and Ray's start-up lines are left out.
    Raises ValueError with one line when the cluster cannot be reached or refuses the driver."""
    import ray

    if ray.is_initialized():
        return None
    common = dict(log_to_driver=not quiet, logging_level=logging.WARNING if quiet else logging.INFO)
    if quiet:  # Ray's notice that a local Ray found a token and turned token auth on: a start-up line
        logging.getLogger(_TOKEN_NOTICE_LOGGER).setLevel(logging.ERROR)
    if not address:
        from orchestrator.local_ray import start_private

        return start_private(num_cpus, record_in, **common)
    check_num_cpus(address, num_cpus)
    attach(address, **common)
    return None


def attach(address: str, **init_kwargs) -> None:
    """`ray.init` on the cluster at `address`, failing at once with one line (ValueError) where
    Ray would retry for ~25 s and raise a bare ConnectionError: nothing listens there, or the
    cluster wants a token this driver lacks. A cluster that wants a token gets the one found
    in Ray's places (`_token_source`), whatever the address form (Ray reads it for ``auto``
    only), so a driver on the head of a ``ray start`` cluster uses its ``~/.ray/auth_token``.
    A head started on 127.0.0.1 only (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) is reached there:
    Ray would dial this machine's network address instead."""
    import ray
    from ray._private import services

    if address.startswith("ray://"):  # Ray Client: its server does its own checks
        ray.init(address=address, **init_kwargs)
        return
    try:
        found = services.get_ray_address_from_environment(address, None) if address == "auto" else address
    except ConnectionError:
        found = None
    if not found or found == "auto":
        raise ValueError("--address auto: no running Ray cluster found (no RAY_ADDRESS, no live `ray start` on "
                         "this machine); give --address HOST:PORT of the head")
    parsed = services.parse_address(found)
    if parsed is None or not str(parsed[1]).isdigit():
        raise ValueError(f"--address {address}: expected HOST:PORT of the head's GCS (e.g. 127.0.0.1:6379), got {found!r}")
    host, port = parsed[0], int(parsed[1])
    loopback_head = services.is_localhost(host) and not _listening(services.get_node_ip_address(), port)
    target = host if loopback_head else services.resolve_ip_for_localhost(host)
    if not _listening(target, port):
        raise ValueError(f"--address {address}: no Ray head answers at {target}:{port} (`ray status` on the head "
                         f"prints its address)")
    _authenticate(f"{target}:{port}", address)
    from orchestrator.local_ray import loopback_node

    with loopback_node() if loopback_head else contextlib.nullcontext():
        ray.init(address=f"{target}:{port}", **init_kwargs)


def _listening(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _token_source() -> str | None:
    """Where Ray 2.60 would read a token from, in its order, or None."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return f"RAY_AUTH_TOKEN_PATH={path}" if os.path.isfile(path) and os.path.getsize(path) else None
    default = os.path.expanduser("~/.ray/auth_token")
    return default if os.path.isfile(default) and os.path.getsize(default) else None


def _authenticate(gcs: str, address: str) -> None:
    """Settle this process's token mode for the cluster at `gcs`, by asking it: refused without
    a token while RAY_AUTH_MODE is unset and a token is found, token mode is turned on (what
    Ray does for ``address="auto"`` only). Not turned on for a cluster without token auth: its
    workers could not call back into a token-mode driver (its trials die at start).
    Raises ValueError naming what to set if the cluster still refuses this driver."""
    if not _refused(gcs):
        return
    if os.environ.get("RAY_AUTH_MODE") is None and _token_source():
        from ray._private.authentication.authentication_token_setup import _enable_token_auth  # private (2.60)

        _enable_token_auth()
        if not _refused(gcs):
            return
    mode, source = os.environ.get("RAY_AUTH_MODE"), _token_source()
    if mode and mode.lower() != "token":
        why = f"RAY_AUTH_MODE={mode} here: unset it or set RAY_AUTH_MODE=token, and"
    elif source:
        why = f"the token this driver read ({source}) is not the cluster's:"
    else:
        why = "this driver has no token:"
    raise ValueError(f"--address {address}: the cluster at {gcs} requires token authentication and {why} "
                     f"{_TOKEN_HELP}")


def _refused(gcs: str) -> bool:
    """Whether the GCS at `gcs` refuses one cheap call for want of a token, with this process's
    auth settings. Any other failure is left to `ray.init`, which reports it in full."""
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    try:
        GcsClient(address=gcs).internal_kv_get(b"session_name", b"session", timeout=5)
    except AuthenticationError:
        return True
    except Exception:  # noqa: BLE001 - not an auth refusal
        return False
    return False
