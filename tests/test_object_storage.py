"""Every store command on object storage (issue 11), against a real S3 emulator: moto's server
on 127.0.0.1 and a free port, started by the fixture and stopped by its PID. pyarrow and the Ray
workers find it through the environment a user sets for S3 (`S3_ENV`)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml

from orchestrator.trial import train_storage
from scalesweep.cli import main
from test_sweep import SHAPES, tiny_spec

REPO = Path(__file__).resolve().parents[1]
BUCKET = "bucket"
EVAL_EVERY = 4


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
        deadline = time.time() + 120  # a wait: moto's imports on a loaded machine
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


@pytest.fixture(scope="module")
def s3_ray(s3, tmp_path_factory):
    """One private local Ray for this module's in-process sweeps (each `run` would start and stop
    its own), started with the S3 settings (`s3_env`) and a trial cache of its own in its
    environment, which its workers keep (so not the conftest's `local_ray`). Yields that cache."""
    import logging

    from orchestrator.local_ray import start_private

    cache = tmp_path_factory.mktemp("trial-cache")
    with pytest.MonkeyPatch.context() as env:
        for key, value in {**s3_env(s3), "SCALESWEEP_CACHE": str(cache)}.items():
            env.setenv(key, value)
        private = start_private(2, None, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield cache
    finally:
        private.stop()


def _saved_step(storage: str, sweep: str, trial_key: str) -> int | None:
    """The step of the latest checkpoint Ray Train has registered for the trial in the sweep's
    storage (its manager's snapshot; a checkpoint still uploading is not in it yet)."""
    filesystem, root = train_storage(storage, sweep)
    try:
        with filesystem.open_input_stream(f"{root}/{trial_key}/checkpoint_manager_snapshot.json") as stream:
            latest = json.loads(stream.read())["latest_checkpoint_result"]
    except (FileNotFoundError, OSError, ValueError):
        return None
    return latest["metrics"]["step"] if latest else None


def _train_workers(session: int) -> list[int]:
    """PIDs of the Ray Train worker processes in the driver's session (Ray gives each worker its
    own process group; other helpers' Ray clusters are other sessions)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            if b"RayTrainWorker" in cmdline and os.getsid(int(entry)) == session:
                pids.append(int(entry))
        except (OSError, ProcessLookupError):
            continue
    return pids


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


@pytest.mark.slow
def test_every_store_command_works_on_s3(s3, s3_ray, tmp_path, monkeypatch, capsys):
    """validate, run, run --resume, fit and report with the store in the bucket; in this
    process (the CLI's `main`), from an empty working directory that must stay empty."""
    from metrics import load_curves, load_runs

    for key, value in s3_env(s3).items():
        monkeypatch.setenv(key, value)
    storage = f"s3://{BUCKET}/prefix"
    spec = _spec_file(tmp_path, storage, name="s3sweep", dataset_tokens=(12_000,),
                      shapes=SHAPES + [{"n_layer": 2, "d_model": 64, "n_heads": 4, "d_ff": 256}])
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    def cli(*args: str) -> tuple[str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        assert code == 0, (args, out[-3000:], err[-3000:])
        return out, err

    cli("validate", str(spec))
    cli("run", str(spec), "--num-cpus", "2", "--quiet")
    runs = load_runs(storage, "s3sweep").to_pylist()
    assert len(runs) == 3 and {r["status"] for r in runs} == {"completed"}, runs
    assert load_curves(storage, "s3sweep").num_rows >= 3 * 2

    _, err = cli("run", str(spec), "--num-cpus", "2", "--quiet", "--resume")
    assert "no Tune experiment to restore" not in err  # Tune's experiment restored from S3
    every = load_runs(storage, "s3sweep", all_attempts=True).to_pylist()
    assert sorted((r["trial_id"], r["attempt"]) for r in every) == sorted((r["trial_id"], r["attempt"]) for r in runs)

    out, _ = cli("fit", f"{storage}/s3sweep", "--law", "kaplan_n", "--json")
    assert '"law"' in out, out[-2000:]

    out, _ = cli("report", storage, "--sweep", "s3sweep", "--bootstrap", "20")
    fs, root = pafs.FileSystem.from_uri(f"{storage}/s3sweep/report")
    written = {i.base_name: i.size for i in fs.get_file_info(pafs.FileSelector(root))}
    assert set(written) == {"report.html"} and all(written.values()), written
    assert out.strip().splitlines()[-1] == f"wrote {storage}/s3sweep/report/report.html"
    cli("report", storage, "--sweep", "s3sweep", "--out", str(tmp_path / "local"), "--bootstrap", "20")
    assert "<h1>Sweep s3sweep: scaling report</h1>" in (tmp_path / "local" / "report.html").read_text()
    assert list(cwd.iterdir()) == []  # nothing local, no folder named 's3:'


def test_a_sweep_on_s3_prepares_its_raw_corpus_into_the_bucket(s3, s3_ray, tmp_path, monkeypatch):
    """`run` with its storage in the bucket, a raw JSONL corpus and a raw extra-eval set: each is
    prepared once into ``s3://bucket/sweeps/<sweep>/corpus/…`` before any trial starts; the trial
    is handed those URIs (the raw files are deleted before the searcher is made, so it could not
    read or prepare them) and fetches the shards once into its machine's cache."""
    from metrics import load_curves
    from orchestrator.spec import load_spec
    from orchestrator.sweep import _make_searcher, run_sweep
    from orchestrator.sweep_corpus import sweep_corpus_location
    from test_prepare import write_jsonl

    for key, value in s3_env(s3).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SCALESWEEP_CACHE", str(tmp_path / "cache"))  # the driver's; the trials' is s3_ray's
    source = write_jsonl(tmp_path / "c.jsonl", 80_000)
    other = write_jsonl(tmp_path / "e.jsonl", 30_000, seed=1)
    spec = load_spec(tiny_spec(f"s3://{BUCKET}/sweeps", name="s3corpus", shapes=SHAPES[:1],
                               dataset_tokens=(12_000,), corpus={"source": str(source)},
                               trainer={"extra_evals": {"other": str(other)}}))
    locations = (sweep_corpus_location(spec, spec.corpus),
                 sweep_corpus_location(spec, spec.trainer["extra_evals"]["other"]))
    seen = []

    def searcher(prepared, grid, *args):
        config = grid.trials[0].train_config
        seen.append((config.corpus.source, config.extra_evals["other"].source))
        source.unlink()
        other.unlink()
        return _make_searcher(prepared, grid, *args)

    remote = s3_ray / "remote"  # the trials' cache, shared with the module's other sweeps
    earlier = set(remote.iterdir()) if remote.exists() else set()
    summary = run_sweep(spec, num_cpus=2, verbose=0, make_searcher=searcher)
    assert summary.completed == 1 and summary.failed == 0, summary
    assert seen == [locations], seen
    for location in locations:
        assert location.startswith(f"s3://{BUCKET}/sweeps/s3corpus/corpus/byte-")
        fs, root = pafs.FileSystem.from_uri(location)
        names = {info.base_name for info in fs.get_file_info(pafs.FileSelector(root))}
        assert {"manifest.json", "recipe.json", "shard-000000.bin"} <= names, names
    fetched = [p for p in set(remote.iterdir()) - earlier if p.is_dir()]
    assert len(fetched) == 2 and all((p / "manifest.json").is_file() for p in fetched)  # the trial's copies
    curves = load_curves(spec.storage, spec.name)
    losses = [v for v in curves.column("val_loss_other").to_pylist() if v is not None]
    assert losses and all(v > 0 for v in losses)  # the extra-eval set, evaluated from its prepared copy


def test_fit_reads_and_replay_writes_files_on_s3(s3, tmp_path, monkeypatch, capsys):
    for key, value in s3_env(s3).items():
        monkeypatch.setenv(key, value)
    fs, _ = pafs.FileSystem.from_uri(f"s3://{BUCKET}")
    with fs.open_output_stream(f"{BUCKET}/ref/epoch.csv") as out:
        out.write((REPO / "fitting" / "reference" / "epoch_chinchilla.csv").read_bytes())
    assert main(["fit", f"s3://{BUCKET}/ref/epoch.csv", "--law", "chinchilla", "--bootstrap", "0", "--json"]) == 0
    fitted = capsys.readouterr().out
    assert '"law": "chinchilla"' in fitted
    with fs.open_output_stream(f"{BUCKET}/ref/fit.json") as out:  # plan reads a fit kept in the bucket
        out.write(fitted.encode())
    assert main(["plan", "--params", f"s3://{BUCKET}/ref/fit.json", "--compute", "1e22"]) == 0
    assert capsys.readouterr().out.strip()
    assert main(["replay", "--example", "epoch-chinchilla", "--strategy", "random", "--bootstrap", "0",
                 "--out", f"s3://{BUCKET}/out/predictions.csv"]) == 0
    with fs.open_input_stream(f"{BUCKET}/out/predictions.csv") as stream:
        assert stream.read().splitlines()[0].endswith(b'"predicted_loss","lower","upper","level","interval"')
    capsys.readouterr()
    assert main(["replay", "--example", "epoch-chinchilla", "--out", "s3://nobucket/p.csv"]) == 2
    assert capsys.readouterr().err.strip() == ("scalesweep replay: error: --out: s3://nobucket/p.csv: bucket "
                                               "'nobucket' does not exist")
    assert main(["fit", f"s3://{BUCKET}/ref/missing.csv"]) == 2
    assert "runs input not found: s3://bucket/ref/missing.csv" in capsys.readouterr().err


@pytest.mark.slow
def test_two_workers_resume_from_the_bucket_after_a_worker_is_killed(s3, tmp_path, monkeypatch):
    """A data-parallel trial on a small machine: two 1-CPU Ray Train workers on a 2-CPU local
    Ray, the store and Ray Train's run (every rank's checkpoint shards) in the S3 bucket; a
    worker is SIGKILLed after its first checkpoint reached the bucket, and the retry resumes from
    the last checkpoint there. Real Ray, real DeepSpeed (gloo, ZeRO-2 shards)."""
    from ray.tune import ExperimentAnalysis

    from metrics import load_curves, load_runs, resolve
    from metrics.fs import CURVE_PART_RE, list_parts
    from orchestrator.grid import expand_grid
    from orchestrator.spec import load_spec

    env = s3_env(s3)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    storage = f"s3://{BUCKET}/dp"
    raw = tiny_spec(storage, name="dp", shapes=SHAPES[:1], dataset_tokens=(40_000,),
                    resources={"workers": 2, "cpus_per_worker": 1},
                    trainer={"zero_stage": 2, "eval_every": EVAL_EVERY})
    spec_path = tmp_path / "dp.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    spec = load_spec(raw)
    (trial,) = expand_grid(spec).trials
    driver = subprocess.Popen(
        [sys.executable, "-m", "scalesweep.cli", "run", str(spec_path), "--num-cpus", "2", "--quiet"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 600  # a wait, not a timing: a loaded machine may need it
        while (seen_step := _saved_step(storage, spec.name, trial.trial_key)) is None:
            assert driver.poll() is None, driver.stdout.read()[-3000:]
            assert time.time() < deadline, "no checkpoint reached the sweep's storage"
            time.sleep(0.2)
        # Both ranks run at once on the 2 CPUs: looked for repeatedly until both are seen (or the
        # driver ended), not once (one look at live processes under load is a race)
        deadline = time.time() + 60
        while len(workers := _train_workers(driver.pid)) != 2 and driver.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert len(workers) == 2, workers
        os.kill(workers[-1], signal.SIGKILL)
        output, _ = driver.communicate(timeout=900)  # the retry trains the run again: a wait
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
            driver.wait()
    assert driver.returncode == 0, output[-4000:]

    every = load_runs(storage, spec.name, all_attempts=True).to_pylist()
    (final,) = load_runs(storage, spec.name).to_pylist()
    assert final["status"] == "completed" and final["world_size"] == 2 and final["attempt"] >= 1, every
    assert final["zero_stage"] == 2
    # Every rank's ZeRO-2 optimizer shard is in the bucket, where a retry on any node finds it.
    fs, root = train_storage(storage, spec.name)
    names = [i.path.removeprefix(f"{root}/{trial.trial_key}/")
             for i in fs.get_file_info(pafs.FileSelector(f"{root}/{trial.trial_key}", recursive=True))]
    assert "checkpoint_manager_snapshot.json" in names, names
    shards = {n.rsplit("/", 1)[-1] for n in names if "optim_states" in n}
    assert shards == {"zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"}
    # The killed attempt's curve rows, and where the retry started: right after a checkpoint at
    # least as late as the one seen before the kill, never from step 0.
    fs, sweep_dir = resolve(storage, spec.name)
    first_of: dict[int, int] = {}
    for info in list_parts(fs, f"{sweep_dir}/curves/trial_id={trial.trial_key}"):
        attempt = int(CURVE_PART_RE.match(info.base_name).group(1))
        steps = pq.read_table(info.path, filesystem=fs).column("step").to_pylist()
        first_of[attempt] = min(steps + [first_of.get(attempt, 1 << 62)])
    assert first_of[0] == EVAL_EVERY
    resumed_from = first_of[final["attempt"]] - EVAL_EVERY
    assert resumed_from >= seen_step > 0, (first_of, seen_step)
    # The store's curve: each evaluation step once, none missing, up to the run's last step.
    steps = load_curves(storage, spec.name).column("step").to_pylist()
    assert len(steps) == len(set(steps))
    assert sorted(steps)[: final["steps"] // EVAL_EVERY] == list(range(EVAL_EVERY, final["steps"] + 1, EVAL_EVERY))
    # Tune heard every evaluation of the resumed attempt from rank 0 (the live table's curve),
    # then the run's ended row.
    (tune_trial,) = ExperimentAnalysis(f"{storage}/{spec.name}/tune/{spec.name}").trials
    assert tune_trial.last_result["status"] == "completed" and tune_trial.last_result["step"] == final["steps"]
    resumed_evals = len(range(first_of[final["attempt"]], final["steps"] + 1, EVAL_EVERY))
    assert tune_trial.last_result["training_iteration"] > resumed_evals, tune_trial.last_result
    assert list(tmp_path.iterdir()) == [spec_path]  # nothing local besides the spec


def test_a_corpus_prepared_into_the_bucket_is_what_trials_load(s3, tmp_path, monkeypatch, capsys):
    """`prepare --out s3://…` writes shards, records and manifest into the bucket; a spec naming
    that URI as corpus.source loads the same tokens as a local preparation (fetched once per
    machine into the cache); a missing bucket is one line naming --out, before any work."""
    from test_prepare import write_jsonl
    from trainers.data import CorpusSpec, load_corpus
    from trainers.prepared import open_prepared

    for key, value in s3_env(s3).items():
        monkeypatch.setenv(key, value)
    source = write_jsonl(tmp_path / "c.jsonl", 80_000)  # holds the tiny spec's D
    assert main(["prepare", str(source), "--tokenizer", "bpe:300", "--out", "s3://nobucket/c"]) == 2
    assert capsys.readouterr().err.strip().endswith("--out: s3://nobucket/c: bucket 'nobucket' does not exist")
    uri = f"s3://{BUCKET}/corpora/c"
    assert main(["prepare", str(source), "--tokenizer", "bpe:300", "--out", uri]) == 0
    assert main(["prepare", str(source), "--tokenizer", "bpe:300", "--out", str(tmp_path / "local")]) == 0
    capsys.readouterr()
    fs, _ = pafs.FileSystem.from_uri(uri)
    names = {info.base_name for info in fs.get_file_info(pafs.FileSelector(f"{BUCKET}/corpora/c"))}
    assert {"manifest.json", "recipe.json", "tokenizer.json", "shard-000000.bin", "shard-000000.json"} <= names
    local, _ = open_prepared(tmp_path / "local")
    monkeypatch.setenv("SCALESWEEP_CACHE", str(tmp_path / "cache"))
    corpus = load_corpus(CorpusSpec(source=uri, tokenizer="bpe:300"))
    assert np.array_equal(np.asarray(corpus.tokens), np.asarray(local))
    assert len(list((tmp_path / "cache" / "remote").iterdir())) == 2  # the copy and its lock
    spec = _spec_file(tmp_path, f"s3://{BUCKET}/sweeps")
    doc = yaml.safe_load(spec.read_text())
    doc["corpus"] = {"source": uri, "tokenizer": "bpe:300"}
    spec.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("SCALESWEEP_CACHE", str(tmp_path / "driver-cache"))
    assert main(["validate", str(spec)]) == 0  # reads the manifest only: no shard is fetched
    out = capsys.readouterr().out
    assert f"{corpus.tokens.size} tokens" in out or str(corpus.tokens.size) in out, out
    assert not (tmp_path / "driver-cache" / "remote").exists()
