"""The private local Ray of one sweep driver (`scalesweep run` without `--address`).

Three promises, each tested against real Ray processes in tests/test_cluster_path.py:

- **Private**: always a new instance (`address="local"`), never the cluster that
  ``/tmp/ray/ray_current_cluster`` or another user's `ray start` points to.
- **Loopback only**: Ray 2.60 binds its gRPC servers (GCS, raylet, workers, agents) to every
  interface unless the node's address is loopback, and it turns a given ``127.0.0.1`` into the
  machine's network address (`ray._private.services.resolve_ip_for_localhost`) unless cluster
  mode is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, what Ray does on macOS). `loopback_node`
  turns it off while Ray starts, so every listener of the instance is on 127.0.0.1; the
  trials' gloo listens on the loopback interface (``GLOO_SOCKET_IFNAME``).
- **Nothing left after a kill**: the instance lives in its own temp dir (its session, logs and,
  through ``TMPDIR``, the trials' temp folders), recorded in ``<storage>/<sweep>/ray_session.json``.
  A driver killed with SIGKILL cannot stop its Ray (the raylet's agents outlive it, re-parented
  to PID 1, ignoring SIGTERM), so the next driver of the same sweep reaps what the record names
  (`reap_left_over`) before it starts its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from typing import Iterator

RECORD = "ray_session.json"  # in <storage>/<sweep>/, while a private Ray of this sweep runs
_SOCKET_ROOM = 44  # Ray's Unix sockets live at <temp>/session_<39 chars>/sockets/<name>; 107-char limit


@contextlib.contextmanager
def loopback_node() -> Iterator[None]:
    """While inside, a Ray started or connected from this process takes 127.0.0.1 as its node
    address (so its servers listen there only) and the processes it spawns inherit that."""
    from ray._private import ray_constants

    saved_env, saved = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"), ray_constants.ENABLE_RAY_CLUSTER
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # the Ray processes read it at import
    ray_constants.ENABLE_RAY_CLUSTER = False  # this process imported it already (private, Ray 2.60)
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
        _restore_env({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": saved_env})


def _restore_env(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def ray_processes(temp_dir: str) -> list:
    """This user's live processes of the Ray instance rooted at `temp_dir`: those holding a file
    open under it (every Ray process keeps its log there; the agents' command lines and
    environments are overwritten by their process titles, so that is what identifies them),
    and their descendants."""
    import psutil

    root = os.path.realpath(temp_dir) + os.sep
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.uids().real == os.getuid() and any(
                    os.path.realpath(f.path).startswith(root) for f in proc.open_files()):
                found[proc.pid] = proc
                found.update((child.pid, child) for child in proc.children(recursive=True))
        except psutil.Error:  # ended, or not ours to inspect
            continue
    found.pop(os.getpid(), None)
    return list(found.values())


def kill_processes(procs, timeout: float = 10.0) -> int:
    """SIGKILL each process (Ray's agents ignore SIGTERM) and wait until they are gone; returns
    how many were alive."""
    import psutil

    alive = []
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
            alive.append(proc)
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=timeout)
    return len(alive)


@dataclass
class PrivateRay:
    """A running private Ray: its temp dir and where its record lies."""

    temp_dir: str
    record: tuple | None  # (pyarrow filesystem, path) of ray_session.json, None if not recorded

    def stop(self) -> None:
        """Shut Ray down, kill what outlived the shutdown, remove the temp dir and the record."""
        import ray

        ray.shutdown()
        kill_processes(ray_processes(self.temp_dir))
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        if self.record is not None:
            fs, path = self.record
            with contextlib.suppress(FileNotFoundError, OSError):
                fs.delete_file(path)


class _DefaultTokenAuthNotice(logging.Filter):
    """Drops Ray's notice that a new local cluster turned token auth on by default (with how to
    opt out): it is the setting a private Ray wants, printed on every run. Every other record,
    e.g. the warning that auth is *disabled*, passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


@contextlib.contextmanager
def _quiet_default_token_auth() -> Iterator[None]:
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    notice = _DefaultTokenAuthNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


def _loopback_interface() -> str | None:
    """The name of the network interface holding 127.0.0.1 (``lo`` on Linux), or None."""
    import psutil

    for name, addresses in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == "127.0.0.1" for a in addresses):
            return name
    return None


def _temp_root() -> str:
    base = tempfile.gettempdir()
    return base if len(base) <= _SOCKET_ROOM - len("/ss-ray-xxxxxxxx") else "/tmp"


class RayStartError(RuntimeError):
    """The private local Ray did not start (twice): an environment fault, not bad input. The
    CLI prints it as one line (exit 1) instead of Ray's traceback."""


START_ATTEMPTS = 2  # on a loaded machine Ray's raylet can miss its 30 s start window once


def start_private(num_cpus: int | None, record_in: tuple | None, **init_kwargs) -> PrivateRay:
    """Start a new local Ray of `num_cpus` CPUs (None: all), listening on 127.0.0.1 only, in
    its own temp dir; the trials' temp folders go there too (``TMPDIR`` of its workers).
    `record_in`: (pyarrow filesystem, sweep directory) where ``ray_session.json`` is written.
    A start that fails is cleaned up and tried once more; raises `RayStartError` after
    `START_ATTEMPTS` (the last failure chained), and whatever the storage raises for the record."""
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            temp_dir = _start_once(num_cpus, **init_kwargs)
            break
        except Exception as err:  # noqa: BLE001 - Ray raises bare Exception("...timed out during startup")
            if attempt == START_ATTEMPTS:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise RayStartError(f"the local Ray did not start ({START_ATTEMPTS} tries; last: {first}); "
                                    f"a heavily loaded machine is the usual cause: run the command again") from err
    local = PrivateRay(temp_dir, None)
    if record_in is not None:
        try:
            local.record = _write_record(*record_in, temp_dir)
        except BaseException:  # the storage refused: stop what was started, then report it
            local.stop()
            raise
    return local


def _start_once(num_cpus: int | None, **init_kwargs) -> str:
    """One `ray.init` of a private instance; -> its temp dir. A failed start leaves nothing."""
    import ray

    # _temp_root reads (so caches) this process's own temp dir before TMPDIR changes below.
    temp_dir = tempfile.mkdtemp(prefix="ss-ray-", dir=_temp_root())
    os.makedirs(os.path.join(temp_dir, "tmp"))
    saved = {key: os.environ.get(key) for key in ("TMPDIR", "GLOO_SOCKET_IFNAME")}
    os.environ["TMPDIR"] = os.path.join(temp_dir, "tmp")  # inherited by the raylet, so by every worker
    loopback = _loopback_interface()
    if loopback:  # gloo listens on this interface's address (by default the hostname's, maybe public)
        os.environ["GLOO_SOCKET_IFNAME"] = loopback
    try:
        with loopback_node(), _quiet_default_token_auth():
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     _temp_dir=temp_dir, **init_kwargs)
    except BaseException:
        ray.shutdown()
        kill_processes(ray_processes(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    finally:
        _restore_env(saved)
    return temp_dir


def _write_record(fs, directory: str, temp_dir: str) -> tuple:
    import psutil

    from metrics import write_atomically

    me = psutil.Process()
    record = {"host": socket.gethostname(), "driver_pid": me.pid, "driver_started": me.create_time(),
              "temp_dir": temp_dir,
              "processes": [[p.pid, p.create_time()] for p in me.children(recursive=True)]}
    path = f"{directory}/{RECORD}"
    payload = json.dumps(record, indent=1).encode()
    write_atomically(path, lambda out: out.write(payload), fs)
    return fs, path


def live_process(pid: int, started: float):
    """The process `pid` if it is the one started at `started` (not a reused PID) and still
    running, else None (a zombie, killed but not yet waited for by its parent, counts as dead)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        same = abs(proc.create_time() - started) < 0.5
        return proc if same and proc.status() != psutil.STATUS_ZOMBIE else None
    except psutil.Error:
        return None


def reap_left_over(fs, directory: str, sweep: str) -> None:
    """Kill and remove what an earlier driver of this sweep left (its record in `directory`):
    its Ray processes and temp dir. Raises ValueError if that driver still runs (two drivers of
    one sweep would train the same runs twice). A record from another host is left alone, with
    a warning. Prints one line to stderr when something was reaped."""
    path = f"{directory}/{RECORD}"
    try:
        with fs.open_input_stream(path) as stream:
            record = json.loads(stream.read())
    except (FileNotFoundError, OSError):
        return
    except ValueError:  # torn or foreign: nothing to act on
        record = {}
    host, pid = record.get("host"), record.get("driver_pid")
    if host and host != socket.gethostname():
        print(f"scalesweep run: {path}: a driver of sweep {sweep} ran on host {host}; its local Ray "
              f"(if left running) is not reaped from here", file=sys.stderr, flush=True)
        return
    if pid and pid != os.getpid() and live_process(pid, record.get("driver_started", 0)):
        raise ValueError(f"sweep {sweep}: another driver (PID {pid}) is running it on this host ({path}); "
                         f"stop that one first")
    procs = {p.pid: p for p in ray_processes(record["temp_dir"])} if record.get("temp_dir") else {}
    for pid_, started in record.get("processes", []):
        proc = live_process(pid_, started)
        if proc is not None and proc.pid != os.getpid():
            procs[proc.pid] = proc
    killed = kill_processes(procs.values())
    temp_dir = record.get("temp_dir")
    if temp_dir and os.path.isdir(temp_dir):
        shutil.rmtree(temp_dir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError, OSError):
        fs.delete_file(path)
    if killed or temp_dir:
        print(f"scalesweep run: cleaned up after an earlier driver of sweep {sweep} (PID {pid}): stopped "
              f"{killed} Ray process(es), removed {temp_dir}", file=sys.stderr, flush=True)

