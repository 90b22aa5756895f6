"""Every store command on object storage (issue 11), against a real S3 emulator: moto's server
on 127.0.0.1 and a free port, started by the fixture and stopped by its PID. pyarrow and the Ray
workers find it through the environment a user sets for S3 (`S3_ENV`)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import yaml

from scalesweep.cli import main
from test_sweep import SHAPES, tiny_spec

REPO = Path(__file__).resolve().parents[1]
BUCKET = "bucket"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def s3_env(endpoint: str) -> dict[str, str]:
    """What a user sets for an S3-compatible store (the README's cluster section)."""
    return {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint}


@pytest.fixture(scope="module")
def s3():
    """The emulator's endpoint, with `BUCKET` created; the server is stopped by PID afterwards."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, "moto server did not start"
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        pafs.S3FileSystem(endpoint_override=endpoint, access_key="test", secret_key="test", region="us-east-1",
                          allow_bucket_creation=True).create_dir(BUCKET)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def _spec_file(tmp_path: Path, storage: str, **overrides) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny_spec(storage, **overrides)))
    return path


def _validate(spec: Path, capsys) -> tuple[int, list[str]]:
    code = main(["validate", str(spec)])
    return code, capsys.readouterr().err.strip().splitlines()


def test_validate_names_an_unreachable_storage(tmp_path, monkeypatch, capsys):
    for key, value in s3_env(f"http://127.0.0.1:{_free_port()}").items():  # nothing listens there
        monkeypatch.setenv(key, value)
    code, err = _validate(_spec_file(tmp_path, "s3://bucket/prefix"), capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("scalesweep validate: error: storage: s3://bucket/prefix is not reachable"), err
    for command in (["report", "s3://bucket/prefix", "--sweep", "grid"], ["fit", "s3://bucket/prefix/grid"]):
        assert main(command) == 2, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "s3://bucket/prefix" in err[0] and "is not reachable" in err[0], err


def test_validate_names_a_missing_bucket_and_a_file_as_storage(s3, tmp_path, monkeypatch, capsys):
    for key, value in s3_env(s3).items():
        monkeypatch.setenv(key, value)
    code, err = _validate(_spec_file(tmp_path, "s3://nobucket/prefix"), capsys)
    assert code == 2 and err == ["scalesweep validate: error: storage: s3://nobucket/prefix: bucket "
                                 "'nobucket' does not exist"], err
    (tmp_path / "a_file").write_text("")
    code, err = _validate(_spec_file(tmp_path, str(tmp_path / "a_file" / "store")), capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("scalesweep validate: error: storage: "), err
    assert main(["validate", str(_spec_file(tmp_path, f"s3://{BUCKET}/ok"))]) == 0


def _cli(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scalesweep.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env}, timeout=300)


@pytest.mark.slow
def test_every_store_command_works_on_s3(s3, tmp_path, monkeypatch):
    from metrics import load_curves, load_runs

    env = s3_env(s3)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    storage = f"s3://{BUCKET}/prefix"
    spec = _spec_file(tmp_path, storage, name="s3sweep", dataset_tokens=(12_000,),
                      shapes=SHAPES + [{"n_layer": 2, "d_model": 64, "n_heads": 4, "d_ff": 256}])
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for args in (["validate", str(spec)], ["run", str(spec), "--num-cpus", "2", "--quiet"]):
        done = _cli(args, env, cwd)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = load_runs(storage, "s3sweep").to_pylist()
    assert len(runs) == 3 and {r["status"] for r in runs} == {"completed"}, runs
    assert load_curves(storage, "s3sweep").num_rows >= 3 * 2

    resumed = _cli(["run", str(spec), "--num-cpus", "2", "--quiet", "--resume"], env, cwd)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "no Tune experiment to restore" not in resumed.stderr  # Tune's experiment restored from S3
    every = load_runs(storage, "s3sweep", all_attempts=True).to_pylist()
    assert sorted((r["trial_id"], r["attempt"]) for r in every) == sorted((r["trial_id"], r["attempt"]) for r in runs)

    fit = _cli(["fit", f"{storage}/s3sweep", "--law", "kaplan_n", "--json"], env, cwd)
    assert fit.returncode == 0 and '"law"' in fit.stdout, fit.stdout[-2000:] + fit.stderr[-2000:]

    report = _cli(["report", storage, "--sweep", "s3sweep"], env, cwd)
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr[-2000:]
    fs, root = pafs.FileSystem.from_uri(f"{storage}/s3sweep/report")
    written = {i.base_name: i.size for i in fs.get_file_info(pafs.FileSelector(root))}
    assert set(written) == {"report.md", "curves.png", "scaling.png"} and all(written.values()), written
    assert f"wrote {storage}/s3sweep/report/report.md" in report.stdout
    local = _cli(["report", storage, "--sweep", "s3sweep", "--out", str(tmp_path / "local")], env, cwd)
    assert local.returncode == 0 and (tmp_path / "local" / "report.md").read_text().startswith("# Sweep `s3sweep`")
    assert list(cwd.iterdir()) == []  # nothing local, no folder named 's3:'


def test_fit_reads_and_replay_writes_files_on_s3(s3, tmp_path, monkeypatch, capsys):
    for key, value in s3_env(s3).items():
        monkeypatch.setenv(key, value)
    fs, _ = pafs.FileSystem.from_uri(f"s3://{BUCKET}")
    with fs.open_output_stream(f"{BUCKET}/ref/epoch.csv") as out:
        out.write((REPO / "fitting" / "reference" / "epoch_chinchilla.csv").read_bytes())
    assert main(["fit", f"s3://{BUCKET}/ref/epoch.csv", "--law", "chinchilla", "--json"]) == 0
    fitted = capsys.readouterr().out
    assert '"law": "chinchilla"' in fitted
    with fs.open_output_stream(f"{BUCKET}/ref/fit.json") as out:  # plan reads a fit kept in the bucket
        out.write(fitted.encode())
    assert main(["plan", "--params", f"s3://{BUCKET}/ref/fit.json", "--compute", "1e22"]) == 0
    assert capsys.readouterr().out.strip()
    assert main(["replay", "--example", "epoch-chinchilla", "--strategy", "random",
                 "--out", f"s3://{BUCKET}/out/predictions.csv"]) == 0
    with fs.open_input_stream(f"{BUCKET}/out/predictions.csv") as stream:
        assert stream.read().splitlines()[0].endswith(b'"predicted_loss","lower","upper"')
    capsys.readouterr()
    assert main(["replay", "--example", "epoch-chinchilla", "--out", "s3://nobucket/p.csv"]) == 2
    assert capsys.readouterr().err.strip() == ("scalesweep replay: error: --out: s3://nobucket/p.csv: bucket "
                                               "'nobucket' does not exist")
    assert main(["fit", f"s3://{BUCKET}/ref/missing.csv"]) == 2
    assert "runs input not found: s3://bucket/ref/missing.csv" in capsys.readouterr().err


@pytest.mark.slow
def test_data_parallel_checkpoints_land_in_the_bucket(s3, tmp_path, monkeypatch):
    """A 2-worker trial's Ray Train run (every rank's checkpoint shards) lives in the sweep's S3
    storage, where a retry on any node finds it."""
    from metrics import load_runs
    from orchestrator.trial import train_storage

    env = s3_env(s3)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    storage = f"s3://{BUCKET}/dp"
    spec = _spec_file(tmp_path, storage, name="dp", shapes=SHAPES[:1], dataset_tokens=(12_000,),
                      resources={"workers": 2, "cpus_per_worker": 1}, trainer={"zero_stage": 2})
    done = _cli(["run", str(spec), "--num-cpus", "2", "--quiet"], env, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (row,) = load_runs(storage, "dp").to_pylist()
    assert row["status"] == "completed" and row["world_size"] == 2
    fs, root = train_storage(storage, "dp")
    names = [i.path.removeprefix(f"{root}/{row['trial_id']}/")
             for i in fs.get_file_info(pafs.FileSelector(f"{root}/{row['trial_id']}", recursive=True))]
    assert "checkpoint_manager_snapshot.json" in names, names
    shards = {n.rsplit("/", 1)[-1] for n in names if "optim_states" in n}
    assert shards == {"zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"}
