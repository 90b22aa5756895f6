"""The README's cluster section, run against real Ray processes started here (no mocks): a local
sweep is private and listens on 127.0.0.1 only; a sweep attaches to a `ray start --head`
cluster with token auth (and fails at once, with one line, without the token); the README's
`ray job submit ... --address auto` flow; after `kill -9` of a driver, the next `--resume`
leaves none of its Ray processes or temp folders behind.

Every process is started here and stopped by PID (never `ray stop`, which would stop other
users' clusters); ports are free ones found by binding port 0; Ray's temp dirs are short paths
(Unix socket paths are limited to 107 characters)."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import yaml

from metrics import load_curves, load_runs
from orchestrator.local_ray import RECORD, kill_processes, ray_processes
from orchestrator.spec import load_spec
from test_sweep import SHAPES, tiny_spec
from test_sweep_faults import _ended, assert_one_row_per_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def _still_running(procs: list) -> list:
    """The processes that still run: a zombie has exited (it only waits for its parent to reap
    it, which after the driver's exit may take a moment), and one may vanish while looked at."""
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    """This test session's environment (DeepSpeed on CPU, the shared cache), the worktree on
    PYTHONPATH and the venv's scripts on PATH, without any Ray address or auth settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH", "RAY_ENABLE"))}
    env.update(PYTHONPATH=str(REPO), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    env.update(extra)
    return env


def _spec(tmp_path, name, dataset_tokens=12_000, **overrides):
    raw = tiny_spec(tmp_path / "store", name=name, shapes=SHAPES[:1], dataset_tokens=(dataset_tokens,), **overrides)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, load_spec(raw)


def _without_ray_settings(monkeypatch) -> None:
    """This process's environment as `_env` gives a subprocess: no Ray address or auth settings."""
    for key in [k for k in os.environ if k.startswith(("RAY_ADDRESS", "RAY_AUTH", "RAY_ENABLE"))]:
        monkeypatch.delenv(key)


def _scalesweep(*args, env, timeout=600):  # timeouts here are waits, not timings
    return subprocess.run([sys.executable, "-m", "scalesweep.cli", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _listening(host, port) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _completed(spec) -> list[str]:
    return [r["status"] for r in load_runs(spec.storage, spec.name).to_pylist()]


@contextlib.contextmanager
def _ray_head(token_auth: bool):
    """A `ray start --head` cluster as the README describes it: dashboard on 127.0.0.1, every
    listener on loopback (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), free ports, its own temp dir and
    HOME. `token_auth`: the head's ~/.ray/auth_token turns token auth on; else RAY_AUTH_MODE=
    disabled (the token file is there all the same, as after any local `ray.init`)."""
    root = Path(tempfile.mkdtemp(prefix="ssh-", dir="/tmp"))
    home = root / "home"
    home.mkdir()
    env = _env(HOME=str(home), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    subprocess.run([BIN / "ray", "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    port, dashboard = _free_port(), _free_port()
    log = open(root / "head.log", "w")
    proc = subprocess.Popen(
        [BIN / "ray", "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         f"--temp-dir={root / 't'}", "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={_free_port()}",
         f"--ray-client-server-port={_free_port()}", "--disable-usage-stats"],
        env={**env, **({} if token_auth else {"RAY_AUTH_MODE": "disabled"})}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        deadline = time.time() + 300  # a wait, not a timing: `ray start` on a loaded machine
        while not (_listening("127.0.0.1", port) and _listening("127.0.0.1", dashboard)):
            assert proc.poll() is None and time.time() < deadline, (root / "head.log").read_text()[-3000:]
            time.sleep(0.5)
        yield SimpleNamespace(root=root, home=home, port=port, dashboard=dashboard, temp=root / "t", env=env)
    finally:
        kill_processes([psutil.Process(proc.pid), *ray_processes(str(root / "t"))])
        log.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def head():
    """A token-auth head shared by this module's tests."""
    with _ray_head(token_auth=True) as started:
        yield started


def _sockets(procs) -> list[tuple[str, str, int]]:
    """(process name, ip, port) of every listening TCP socket of `procs`."""
    out = []
    for proc in procs:
        try:
            out += [(proc.name(), c.laddr.ip, c.laddr.port) for c in proc.net_connections("inet")
                    if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            continue
    return out


def _is_worker(name: str) -> bool:
    return name.startswith("ray::") and "Agent" not in name


def _sample_sockets(driver, temp_dir: str, seconds: float = 60) -> tuple[list, set]:
    """The processes of the driver's Ray and the listening sockets they held, gathered over
    repeated looks until the daemons, both agents and a trial worker have each been seen (or
    the driver ended): one look at a loaded machine can land after the trial ended, when Ray
    is already shutting down."""
    want = {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"}
    procs: dict[int, psutil.Process] = {driver.pid: psutil.Process(driver.pid)}
    sockets: set = set()
    deadline = time.time() + seconds
    while driver.poll() is None and time.time() < deadline:
        for proc in ray_processes(temp_dir):
            procs.setdefault(proc.pid, proc)
        sockets |= set(_sockets(procs.values()))
        names = {name for name, _, _ in sockets}
        if want <= names and any(_is_worker(name) for name in names):
            break
        time.sleep(0.2)
    return list(procs.values()), sockets


def _gather_processes(driver, temp_dir: str, least: int, seconds: float = 60) -> list:
    """The processes of the driver's Ray (by its temp dir), gathered over repeated looks until
    at least `least` have been seen (or the driver ended): one look is a race under load."""
    procs: dict[int, psutil.Process] = {}
    deadline = time.time() + seconds
    while True:
        for proc in ray_processes(temp_dir):
            procs.setdefault(proc.pid, proc)
        if len(procs) >= least or driver.poll() is not None or time.time() > deadline:
            return list(procs.values())
        time.sleep(0.2)


def _start_driver(spec_path, env):
    """`scalesweep run SPEC --num-cpus 2 --quiet` in its own session (the test kills it by PID)."""
    return subprocess.Popen([sys.executable, "-m", "scalesweep.cli", "run", spec_path, "--num-cpus", "2", "--quiet"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_until_training(driver, spec, seconds=600):
    """Until the driver has recorded its Ray and a trial has reported an evaluation."""
    deadline = time.time() + seconds
    while not (_record(spec) and load_curves(spec.storage, spec.name).num_rows):
        assert driver.poll() is None, f"the driver ended before a trial ran: {driver.communicate()}"
        assert time.time() < deadline, "timed out waiting for a trial to run"
        time.sleep(0.3)


def _record(spec) -> dict | None:
    path = Path(spec.storage) / spec.name / RECORD
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def test_local_sweep_is_private_and_listens_on_loopback_only(head, tmp_path):
    """Ray's default temp dir names the live head (`ray_current_cluster`), the driver has its
    token: a sweep without --address still starts its own Ray (with --num-cpus, which an
    attached driver may not pass), and every socket of it (GCS, raylet, agents, the trial
    worker with its gloo) listens on loopback only."""
    ray_tmp = tmp_path / "raytmp"
    ray_tmp.mkdir()
    (ray_tmp / "ray_current_cluster").write_text(f"127.0.0.1:{head.port}")
    # Long enough (~200 steps) that the trial still trains while its sockets are looked at.
    spec_path, spec = _spec(tmp_path, "private", dataset_tokens=200_000)
    # A record left by a driver on another host is not this host's to reap: warned and left alone.
    elsewhere = {"host": "elsewhere", "driver_pid": os.getpid(), "driver_started": psutil.Process().create_time(),
                 "temp_dir": str(tmp_path / "gone"), "processes": [[os.getpid(), psutil.Process().create_time()]]}
    (Path(spec.storage) / spec.name).mkdir(parents=True)
    (Path(spec.storage) / spec.name / RECORD).write_text(json.dumps(elsewhere))
    # gloo pointed at a public interface, as where the hostname resolves to one: the private
    # Ray still puts the trials' gloo on loopback.
    public = [name for name, addresses in psutil.net_if_addrs().items()
              if any(a.family == socket.AF_INET and not a.address.startswith("127.") for a in addresses)]
    env = _env(HOME=str(head.home), RAY_TMPDIR=str(ray_tmp), **({"GLOO_SOCKET_IFNAME": public[0]} if public else {}))
    driver = _start_driver(spec_path, env)
    temp_dir = None
    try:
        _wait_until_training(driver, spec)
        temp_dir = _record(spec)["temp_dir"]
        assert not temp_dir.startswith(str(head.root))
        procs, sockets = _sample_sockets(driver, temp_dir)
        names = {name for name, _, _ in sockets}
        assert {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names, sockets
        assert any(_is_worker(name) for name in names), sockets  # the trial worker
        assert not [s for s in sockets if s[1] not in LOOPBACK], sockets
        assert head.port not in {port for _, _, port in sockets}
        out, err = driver.communicate(timeout=600)
        assert driver.returncode == 0, out[-3000:] + err[-3000:]
        assert f"a driver of sweep {spec.name} ran on host elsewhere" in err, err[-3000:]
        assert _completed(spec) == ["completed"]
        assert not _still_running(procs[1:]) and not os.path.exists(temp_dir)
        assert _record(spec) is None
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        if temp_dir:  # the driver killed here could not clean up after itself
            kill_processes(ray_processes(temp_dir))
            shutil.rmtree(temp_dir, ignore_errors=True)


def test_attach_reads_the_heads_token(head, tmp_path):
    """On the head (its ~/.ray/auth_token, RAY_AUTH_MODE unset), and elsewhere (no token file,
    the head's token in RAY_AUTH_TOKEN): --address HOST:PORT attaches and the runs land. The
    first names a raw JSONL corpus: attached, `run` prepares it once with Ray Data on the
    cluster, into the sweep's storage, and the trial trains on that copy."""
    from orchestrator.sweep_corpus import sweep_corpus_location
    from test_prepare import write_jsonl

    nobody = tmp_path / "home"
    nobody.mkdir()
    token = (head.home / ".ray" / "auth_token").read_text().strip()
    corpus = {"source": str(write_jsonl(tmp_path / "c.jsonl", 80_000))}  # in no machine's cache yet
    drivers = []
    for name, env, overrides in (("onhead", _env(HOME=str(head.home)), {"corpus": corpus}),
                                 ("offhead", _env(HOME=str(nobody), RAY_AUTH_TOKEN=token), {})):
        spec_path, spec = _spec(tmp_path, name, **overrides)
        # Both at once (the head has 2 CPUs, each trial takes 1): two drivers share one cluster.
        drivers.append((spec, subprocess.Popen(
            [sys.executable, "-m", "scalesweep.cli", "run", str(spec_path), "--address", f"127.0.0.1:{head.port}",
             "--quiet"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for spec, driver in drivers:
        out, err = driver.communicate(timeout=600)
        assert driver.returncode == 0, out[-3000:] + err[-3000:]
        assert _completed(spec) == ["completed"]
        assert _record(spec) is None  # attached: no private Ray was started
    manifest = json.loads((Path(sweep_corpus_location(drivers[0][0], drivers[0][0].corpus)) / "manifest.json").read_text())
    assert manifest["engine"] == "ray-data" and manifest["tokens"] > 12_000


def test_attach_with_a_token_to_a_cluster_without_token_auth(tmp_path):
    """A driver holding a token (any local `ray.init` leaves ~/.ray/auth_token) attaches to a head
    with token auth off: its runs land (a token-mode driver's trials would die at start)."""
    spec_path, spec = _spec(tmp_path, "noauth")
    with _ray_head(token_auth=False) as plain:
        done = _scalesweep("run", spec_path, "--address", f"127.0.0.1:{plain.port}", "--quiet",
                           env=_env(HOME=str(plain.home)))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _completed(spec) == ["completed"]


def test_attach_without_the_token_fails_at_once_with_one_line(head, tmp_path):
    spec_path, spec = _spec(tmp_path, "refused")
    nobody = tmp_path / "home"
    nobody.mkdir()
    cases = [(_env(HOME=str(nobody)), "this driver has no token"),
             (_env(HOME=str(nobody), RAY_AUTH_TOKEN="0" * 64), "the token this driver read (RAY_AUTH_TOKEN)")]
    # "At once" is measured against a refusal before any cluster work in this same moment (the
    # CLI's start-up on this machine now, loaded or not), not against a fixed 30 s: on a loaded
    # CI runner the start-up alone took ~9 s of that
    free = _free_port()
    started = time.time()
    done = _scalesweep("run", spec_path, "--address", f"127.0.0.1:{free}", env=_env(HOME=str(nobody)))
    start_up = time.time() - started
    assert done.returncode == 2 and f"no Ray head answers at 127.0.0.1:{free}" in done.stderr, done.stderr[-3000:]
    for env, why in cases:
        started = time.time()
        done = _scalesweep("run", spec_path, "--address", f"127.0.0.1:{head.port}", env=env)
        assert done.returncode == 2 and time.time() - started < start_up + 30, (start_up, done.stderr[-3000:])
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        line = done.stderr.strip().splitlines()[-1]
        assert "requires token authentication" in line and why in line and "RAY_AUTH_TOKEN" in line, line
    assert not (tmp_path / "store").exists()  # nothing created


def test_ray_job_submit_runs_the_sweep(head, tmp_path):
    """The README's job flow: `ray job submit --address http://127.0.0.1:PORT --working-dir . --
    scalesweep run SPEC --address auto` (ray[default]'s jobs CLI). The jobs CLI sends the head's
    ~/.ray/auth_token only with RAY_AUTH_MODE=token set (without it: 401, "Missing authentication
    token"); the job's driver then finds the cluster and its token by itself."""
    spec_path, spec = _spec(tmp_path, "job")
    done = subprocess.run([BIN / "ray", "job", "submit", "--address", f"http://127.0.0.1:{head.dashboard}",
                           "--working-dir", ".", "--", "scalesweep", "run", str(spec_path), "--address", "auto",
                           "--quiet"], cwd=REPO, env=_env(HOME=str(head.home), RAY_AUTH_MODE="token"),
                          capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout + done.stderr
    assert _completed(spec) == ["completed"]


def test_kill_9_then_resume_reaps_the_old_ray_and_runs_each_config_once(tmp_path):
    """`kill -9` of the driver (only: its Ray agents keep running) once its first run has ended;
    the next `--resume` of the same sweep stops every process of the first driver's Ray, removes
    its temp folders (the trials' scalesweep-trial-* scratch included: they live in that
    Ray's temp dir), does not train the ended run again and runs every other config once, with
    the ledger equal to the runs' FLOPs."""
    tmp = Path(tempfile.mkdtemp(prefix="ssk-", dir="/tmp"))  # the drivers' TMPDIR: what they leave
    raw = tiny_spec(tmp_path / "store", name="killed", dataset_tokens=(12_000, 20_000))
    spec_path = tmp_path / "killed.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    spec = load_spec(raw)
    env = _env(TMPDIR=str(tmp))
    driver = _start_driver(spec_path, env)
    try:
        ledger_path = tmp_path / "store" / "killed" / "ledger.json"
        deadline = time.time() + 600  # a wait, not a timing: a loaded machine may need it
        while not (_record(spec) and _ended(spec.storage, spec.name) and ledger_path.exists()):
            assert driver.poll() is None, f"the driver ended before it was killed: {driver.communicate()}"
            assert time.time() < deadline, "timed out waiting for a run to end and the ledger to be written"
            time.sleep(0.3)
        # the ledger is written after each ended run, not only when the driver ends
        written = json.loads(ledger_path.read_text())
        before = {r["trial_id"]: r["attempt"] for r in _ended(spec.storage, spec.name)}
        assert written["finished"] and set(written["finished"]) <= set(before), (written, before)
        first = _record(spec)
        assert first["temp_dir"].startswith(str(tmp))
        procs = _gather_processes(driver, first["temp_dir"], 4)
        assert len(procs) >= 4, procs
        driver.send_signal(signal.SIGKILL)  # the driver only, as `kill -9 PID` does
        driver.communicate(timeout=30)
        assert 0 < len(before) < 4
        left = _still_running(procs)  # for the message below: what the kill left running
        resumed = _scalesweep("run", spec_path, "--resume", "--num-cpus", "2", "--quiet", env=env)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        assert f"cleaned up after an earlier driver of sweep {spec.name} (PID {driver.pid})" in resumed.stderr
        still = [(p.pid, p.name()) for p in _still_running(procs)]
        assert not still, (still, [(p.pid, p.name()) for p in left])
        # No Ray temp dir, no scalesweep-trial-* scratch. Ray AIR's `_ray_lockfiles` (file locks
        # every Ray process on the machine shares, in the system temp dir) is not the sweep's.
        assert [p.name for p in tmp.iterdir() if p.name != "_ray_lockfiles"] == []
        assert _record(spec) is None

        runs = assert_one_row_per_config(spec)
        assert all(r["status"] == "completed" for r in runs)
        for row in runs:  # finished before the kill: not trained again
            if row["trial_id"] in before:
                assert row["attempt"] == before[row["trial_id"]]
        ledger = json.loads((tmp_path / "store" / "killed" / "ledger.json").read_text())
        assert ledger["spent"] == pytest.approx(sum(r["flops"] for r in runs))
        assert ledger["running"] == {}
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        for path in tmp.glob("ss-ray-*"):
            kill_processes(ray_processes(str(path)))
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_running_driver_of_the_sweep_is_not_reaped_and_a_second_one_refused(tmp_path, capsys, monkeypatch):
    """The record names a live driver on this host: a second `run` of the sweep stops with one
    line (exit 2) and kills nothing. (The CLI's `main` in this process: a refusal before any
    cluster work needs no fresh interpreter, whose imports cost more than the check.)"""
    from scalesweep.cli import main

    _without_ray_settings(monkeypatch)
    spec_path, spec = _spec(tmp_path, "twice")
    sweep_dir = Path(spec.storage) / spec.name
    sweep_dir.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # killed below
    try:
        first = psutil.Process(other.pid)
        record = {"host": socket.gethostname(), "driver_pid": other.pid, "driver_started": first.create_time(),
                  "temp_dir": str(tmp_path / "gone"), "processes": [[other.pid, first.create_time()]]}
        (sweep_dir / RECORD).write_text(json.dumps(record))
        code = main(["run", str(spec_path), "--num-cpus", "1"])
        err = capsys.readouterr().err
        assert code == 2, err[-3000:]
        assert err.strip().splitlines()[-1].endswith(
            f"sweep {spec.name}: another driver (PID {other.pid}) is running it on this host "
            f"({sweep_dir / RECORD}); stop that one first"), err[-3000:]
        assert first.is_running() and (sweep_dir / RECORD).exists() and not (sweep_dir / "runs").exists()
        # (A record from another host: test_local_sweep_is_private_and_listens_on_loopback_only.)
    finally:
        other.kill()
        other.wait()


def test_num_cpus_with_address_is_refused(tmp_path, capsys, monkeypatch):
    """--num-cpus sizes a local Ray; with --address it used to be dropped without a word. (In
    this process, as the test above.)"""
    from scalesweep.cli import main

    _without_ray_settings(monkeypatch)
    spec_path, spec = _spec(tmp_path, "both")
    code = main(["run", str(spec_path), "--address", f"127.0.0.1:{_free_port()}", "--num-cpus", "2"])
    err = capsys.readouterr().err
    assert code == 2, err[-3000:]
    assert err.strip().splitlines()[-1].endswith(
        "--num-cpus sets the CPUs of a local Ray; with --address the cluster's nodes have theirs"), err[-3000:]
    assert not (tmp_path / "store" / spec.name / "runs").exists()
