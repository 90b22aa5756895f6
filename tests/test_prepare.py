"""`scalesweep prepare` / trainers.prepare: streamed, sharded, resumable, bounded memory, and
trials that open a prepared corpus without touching its raw files."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from trainers.data import CorpusSpec, load_corpus, make_splits
from trainers.documents import read_documents
from trainers.prepare import prepare_corpus
from trainers.prepared import open_prepared
from trainers.tokenizers import build_tokenizer

REPO = Path(__file__).resolve().parents[1]
WORDS = (REPO / "README.md").read_text().split()


def write_jsonl(path: Path, n_bytes: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = [json.dumps({"text": " ".join(rng.choice(WORDS, size=int(rng.integers(20, 200))))}) + "\n"
             for _ in range(300)]
    block = "".join(lines)  # cycled: generating every line would dominate the larger corpora
    with path.open("w") as f:
        f.write(block * (n_bytes // len(block)))
        written = len(block) * (n_bytes // len(block))
        for line in lines:  # whole lines up to n_bytes
            if written >= n_bytes:
                break
            f.write(line)
            written += len(line)
    return path


def direct_tokens(spec: CorpusSpec, cache: Path) -> np.ndarray:
    """The documents encoded at once, by a BPE trained on all of them (a corpus under the BPE
    sample size: the prepared one trains on exactly these, so the model file is shared)."""
    documents, fingerprint, _ = read_documents(spec.source, spec.text_field)
    return build_tokenizer(spec.tokenizer, documents, fingerprint, cache).encode_documents(documents)


@pytest.mark.parametrize("tokenizer,workers", [("byte", 1), ("bpe:400", 1), ("bpe:400", 2), ("bpe:70000", 1)])
def test_prepared_tokens_equal_direct_tokenisation(tmp_path, tokenizer, workers):
    source = write_jsonl(tmp_path / "c.jsonl", 60_000)
    spec = CorpusSpec(source=str(source), tokenizer=tokenizer)
    manifest = prepare_corpus(spec, tmp_path / "out", workers=workers, split_bytes=8_000, cache_dir=tmp_path / "cache")
    tokens, _ = open_prepared(tmp_path / "out")
    assert len(manifest["shards"]) >= 7  # many chunks: the separators between shards are checked
    expected = direct_tokens(spec, tmp_path / "cache")
    assert np.array_equal(np.asarray(tokens), expected)
    assert manifest["tokens"] == expected.size and manifest["dtype"] == ("uint32" if tokenizer == "bpe:70000" else "uint16")
    assert manifest["files"][0]["size"] == source.stat().st_size and len(manifest["files"][0]["sha256"]) == 64
    if tokenizer.startswith("bpe"):
        from tokenizers import Tokenizer

        model = Tokenizer.from_file(str(tmp_path / "out" / manifest["tokenizer"]["file"]))
        documents, _, _ = read_documents(spec.source, spec.text_field)  # plain encode_batch, by hand
        plain = [i for enc in model.encode_batch([d.decode() for d in documents]) for i in enc.ids + [model.token_to_id("<|endoftext|>")]]
        assert np.array_equal(np.asarray(tokens), plain[:-1])


PREPARE_SCRIPT = """
import json, resource, sys, warnings
from trainers.data import CorpusSpec
from trainers.prepare import prepare_corpus
source, tokenizer, out, chunk = sys.argv[1:5]
m = prepare_corpus(CorpusSpec(source=source, tokenizer=tokenizer), out, workers=1, split_bytes=int(chunk))
print(json.dumps({"tokens": m["tokens"], "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run_prepare(*args, **popen):
    env = {**os.environ, "PYTHONPATH": str(REPO), "SCALESWEEP_CACHE": str(Path(args[2]).parent / "cache")}
    return subprocess.Popen([sys.executable, "-c", PREPARE_SCRIPT, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_peak_memory_does_not_grow_with_the_corpus(tmp_path):
    peaks = {}
    sources = {mb: write_jsonl(tmp_path / f"c{mb}.jsonl", mb * 1_000_000, seed=mb) for mb in (10, 40)}
    os.sync()  # measured: reading a file whose pages are still dirty raised the reader's peak RSS ~60 MB
    for mb, source in sources.items():
        out, err = run_prepare(source, "byte", tmp_path / f"out{mb}", 4 << 20).communicate(timeout=300)
        assert err == "" or "Warning" not in err, err
        peaks[mb] = json.loads(out.splitlines()[-1])["maxrss_kb"] / 1024
    # the whole-corpus path held ~42 bytes per byte: 30 MB more text would be >1 GB more
    assert peaks[40] - peaks[10] < 40, peaks


def test_a_killed_preparation_resumes_to_identical_shards(tmp_path):
    source = write_jsonl(tmp_path / "c.jsonl", 1_500_000)
    whole = run_prepare(source, "bpe:500", tmp_path / "whole", 30_000)
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    killed = run_prepare(source, "bpe:500", tmp_path / "killed", 30_000)
    deadline = time.monotonic() + 600  # a wait, not a timing: a loaded machine may need it
    while not (tmp_path / "killed" / "shard-000003.json").exists():
        assert killed.poll() is None and time.monotonic() < deadline, "finished or stalled before the kill"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "manifest.json").exists()  # unfinished: not a valid corpus
    with pytest.raises(ValueError, match="no manifest.json"):
        open_prepared(tmp_path / "killed")
    finished = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "killed").glob("shard-*.json")}
    resumed = run_prepare(source, "bpe:500", tmp_path / "killed", 30_000)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert all((tmp_path / "killed" / name).stat().st_mtime_ns == t for name, t in finished.items())  # kept
    names = sorted(p.name for p in (tmp_path / "whole").glob("shard-*.bin"))
    assert names == sorted(p.name for p in (tmp_path / "killed").glob("shard-*.bin")) and len(names) > 4
    for name in names:
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "killed" / name).read_bytes(), name
    assert not list((tmp_path / "killed").glob(".*.tmp"))


def test_a_trial_load_reads_no_raw_text(tmp_path):
    source = write_jsonl(tmp_path / "c.jsonl", 300_000)
    spec = CorpusSpec(source=str(source))
    first = load_corpus(spec, cache_dir=tmp_path / "cache")
    expected = np.array(first.tokens)
    info = source.stat()
    source.write_bytes(b"\xff" * info.st_size)  # not UTF-8, not JSON: reading it would fail
    os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns))  # same size and mtime
    again = load_corpus(spec, cache_dir=tmp_path / "cache")
    assert np.array_equal(np.asarray(again.tokens), expected) and again.fingerprint == first.fingerprint
    splits = make_splits(again, 100_000, val_tokens=8192, n_ctx=64)
    assert splits.train.size == 100_000 and np.isin(splits.val, expected).all()
    # a prepared directory named as the source needs no raw file at all
    prepared = CorpusSpec(source=str(tmp_path / "out"))
    manifest = prepare_corpus(CorpusSpec(source=str(write_jsonl(tmp_path / "d.jsonl", 50_000))), tmp_path / "out")
    (tmp_path / "d.jsonl").unlink()
    assert load_corpus(prepared).tokens.size == manifest["tokens"] > 40_000
    with pytest.raises(ValueError, match=r"^tokenizer: .* was prepared with 'byte', not 'bpe:300'"):
        load_corpus(CorpusSpec(source=str(tmp_path / "out"), tokenizer="bpe:300"))


def test_bad_input_names_the_file_and_leaves_no_valid_corpus(tmp_path):
    source = tmp_path / "c.jsonl"
    source.write_text('{"text": "one"}\n{"text": ""}\n{"body": "x"}\n')
    for split_bytes in (16, 1 << 20):  # the bad line in a later shard, or in the only one
        with pytest.raises(ValueError, match=rf"^text_field: {source} line 3 \(byte offset 29\) has no string field 'text'"):
            prepare_corpus(CorpusSpec(source=str(source)), tmp_path / "out", split_bytes=split_bytes)
        assert not (tmp_path / "out").exists()  # no recipe, no shard: it made the directory, it is gone
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match="has no string field 'text'"):
        prepare_corpus(CorpusSpec(source=str(source)), tmp_path / "out", split_bytes=16)
    assert list((tmp_path / "out").iterdir()) == []  # a directory it did not make stays, empty
    source.write_text('{"text": "one"}\n{"text": ""}\n')
    with pytest.warns(UserWarning, match=r"1 empty document\(s\) left out \(first: c.jsonl at byte 16\)"):
        manifest = prepare_corpus(CorpusSpec(source=str(source)), tmp_path / "out")
    assert manifest["empty_documents_skipped"] == 1 and manifest["tokens"] == 3
    with pytest.raises(ValueError, match=r"^--out: .* holds a prepared corpus of another"):
        prepare_corpus(CorpusSpec(source=str(source), tokenizer="bpe:300"), tmp_path / "out")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"^--out: .* is not empty and holds no preparation"):
        prepare_corpus(CorpusSpec(source=str(source)), tmp_path / "other")
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["mine.txt"]


def test_prepare_cli_exits_2_with_one_line(tmp_path, capsys):
    from scalesweep.cli import main

    code = main(["prepare", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "source: no files match" in err
    assert not (tmp_path / "out").exists()
    source = tmp_path / "c.jsonl"
    source.write_text('{"text": "hello"}\n')
    for workers in ("0", "-3"):  # both used to prepare anyway (0 read as "all CPUs")
        code = main(["prepare", str(source), "--tokenizer", "byte", "--out", str(tmp_path / "out"),
                     "--workers", workers])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err  # one line naming the flag, no usage block
        assert err.strip().endswith(f"argument --workers: expected a whole number >= 1, got {workers}"), err
        assert not (tmp_path / "out").exists()
    for corpus in ("builtin", str(tmp_path / "notes.txt")):  # no fields to read: it was ignored without a word
        code = main(["prepare", corpus, "--text-field", "body", "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "--text-field body: 'body' would never be read" in err, err
        assert not (tmp_path / "out").exists()
    code = main(["prepare", str(source), "--out", str(tmp_path / "out"), "--address", "auto"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().endswith("--address: only with --engine ray (the process pool runs on this machine)")
    # bad input is refused before the Ray Data engine starts a Ray
    code = main(["prepare", str(tmp_path / "missing.jsonl"), "--engine", "ray", "--out", str(tmp_path / "out")])
    assert code == 2 and "source: no files match" in capsys.readouterr().err and not (tmp_path / "out").exists()
    import ray
    assert not ray.is_initialized()


def test_validate_says_whether_the_corpus_is_prepared_without_tokenising(tmp_path, monkeypatch):
    from orchestrator.spec import validate_command

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCALESWEEP_CACHE", str(tmp_path / "cache"))
    source = write_jsonl(tmp_path / "c.jsonl", 2_000_000)
    spec = (REPO / "examples" / "demo.yaml").read_text().replace("source: builtin", f"source: {source}")
    (tmp_path / "spec.yaml").write_text(spec)
    out = validate_command(tmp_path / "spec.yaml")
    assert "corpus: not prepared (`run` prepares it once into the sweep's storage" in out
    assert not (tmp_path / "cache").exists()  # nothing was tokenised
    n = load_corpus(CorpusSpec(source=str(source))).tokens.size  # what `run` does first
    assert f"corpus: prepared, {n} tokens; the largest D (900000) fits" in validate_command(tmp_path / "spec.yaml")


def test_views_slice_and_take_like_the_array_they_stand_for():
    from trainers.token_arrays import BlockView, ShardedTokens

    flat = np.arange(10_000, dtype=np.uint32)
    sharded = ShardedTokens([flat[:1234], flat[1234:5000], flat[5000:]])
    blocks = np.random.default_rng(0).permutation(10_000 // 100)
    view = BlockView(sharded, blocks, 100, 2_345)
    expected = flat.reshape(-1, 100)[blocks].reshape(-1)[:2_345]
    assert np.array_equal(np.asarray(sharded), flat) and np.array_equal(np.asarray(view), expected)
    for lo, hi in [(0, 2_345), (99, 101), (150, 1_999), (2_300, 2_345)]:
        assert np.array_equal(view[lo:hi], expected[lo:hi]) and np.array_equal(sharded[lo:hi], flat[lo:hi])
    starts = np.array([[0], [777], [2_300]]) + np.arange(45)
    assert np.array_equal(view.take(starts), expected[starts]) and np.array_equal(sharded.take(starts * 4), flat[starts * 4])


@pytest.mark.parametrize("split_bytes", [1, 7, 50, 333, 10_000_000])
def test_splits_read_every_line_once_wherever_they_cut(tmp_path, split_bytes):
    """JSONL byte ranges cut lines anywhere; each line is read by the split its first byte is in,
    so the splits' documents, in order, are the file's (blank lines and a BOM included), and an
    error in a split that starts mid-file still names the right line."""
    from trainers.documents import iter_split_documents, plan_splits

    source = tmp_path / "c.jsonl"
    lines = ['\ufeff{"text": "first"}'] + [json.dumps({"text": f"doc {i} " + "x" * (i % 13)}) for i in range(40)]
    lines[7] = "   "
    source.write_text("\n".join(lines) + "\n")
    splits = plan_splits(str(source), split_bytes)
    docs = [d for split in splits for _, d in iter_split_documents(str(source), "text", split)]
    assert docs == [b"first"] + [f"doc {i} {'x' * (i % 13)}".encode() for i in range(40) if i != 6]
    assert len(splits) == (1 if split_bytes > source.stat().st_size else -(-source.stat().st_size // split_bytes))
    source.write_text("\n".join(lines[:30] + ['{"body": 1}'] + lines[30:]) + "\n")
    offset = len("\n".join(lines[:30]).encode()) + 1
    with pytest.raises(ValueError, match=rf"line 31 \(byte offset {offset}\) has no string field"):
        [d for split in plan_splits(str(source), split_bytes) for d in iter_split_documents(str(source), "text", split)]


def test_an_empty_first_split_adds_no_separator(tmp_path):
    """When the first splits hold no document (blank JSONL lines), the first shard with documents
    must not start with a separator: the corpus equals direct tokenisation."""
    source = tmp_path / "c.jsonl"
    source.write_text("\n" * 6 + '{"text": "hello"}\n{"text": "world"}\n')
    spec = CorpusSpec(source=str(source))
    manifest = prepare_corpus(spec, tmp_path / "out", split_bytes=4, cache_dir=tmp_path / "cache")
    tokens, _ = open_prepared(tmp_path / "out")
    assert [s["documents"] for s in manifest["shards"][:2]] == [0, 1] and manifest["documents"] == 2
    assert np.array_equal(np.asarray(tokens), direct_tokens(spec, tmp_path / "cache"))


@pytest.mark.slow
def test_ray_data_engine_writes_the_same_shards_as_the_pool(tmp_path):
    """`prepare --engine ray`: the shards, encoded by Ray Data tasks on a private local Ray, are
    byte-identical to the process pool's; Ray's start-up is timed apart from the work; bad input
    in a task is the same one-line ValueError as in the pool, and leaves nothing behind."""
    from orchestrator.corpus_ray import RayDataEngine

    source = write_jsonl(tmp_path / "c.jsonl", 40_000)
    spec = CorpusSpec(source=str(source), tokenizer="bpe:300")
    pooled = prepare_corpus(spec, tmp_path / "pool", workers=2, split_bytes=5_000, cache_dir=tmp_path / "cache")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "one"}\n{"body": "x"}\n')
    engine = RayDataEngine(workers=2)
    try:
        on_ray = prepare_corpus(spec, tmp_path / "ray", workers=2, split_bytes=5_000, cache_dir=tmp_path / "cache",
                                engine=engine)
        with pytest.raises(ValueError, match=rf"^text_field: {bad} line 2 \(byte offset 16\) has no string field 'text'$"):
            prepare_corpus(CorpusSpec(source=str(bad)), tmp_path / "bad", split_bytes=16, engine=engine)
    finally:
        engine.stop()
    assert not (tmp_path / "bad").exists()
    assert len(on_ray["shards"]) == len(pooled["shards"]) >= 8
    assert on_ray["fingerprint"] == pooled["fingerprint"] and on_ray["tokens"] == pooled["tokens"]
    assert on_ray["shards"] == pooled["shards"]
    assert (on_ray["engine"], pooled["engine"], pooled["engine_start_s"]) == ("ray-data", "pool", 0)
    assert on_ray["engine_start_s"] > 0  # Ray's start-up, not in tokenizer_s / prepare_s
    for shard in pooled["shards"]:
        if shard["tokens"]:
            assert (tmp_path / "pool" / shard["file"]).read_bytes() == (tmp_path / "ray" / shard["file"]).read_bytes()
    import ray
    assert not ray.is_initialized()  # the private Ray it started is stopped


@pytest.mark.slow
def test_prepare_on_ray_prints_one_line_and_a_rerun_reuses_the_finished_out(tmp_path, capfd):
    """Neither Ray's start-up notices nor Ray Data's progress and advice reach the terminal: one
    line, whose timing names Ray's start-up apart. Run again on the finished --out: one line
    saying it is reused, and no Ray is started."""
    import ray

    from scalesweep.cli import main

    source = write_jsonl(tmp_path / "c.jsonl", 20_000)
    args = ["prepare", str(source), "--engine", "ray", "--workers", "2", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    out, err = capfd.readouterr()
    assert out.count("\n") == 1 and out.startswith("prepared jsonl: ") and " s starting Ray; " in out, out
    assert err == "", err
    stamp = (tmp_path / "out" / "manifest.json").stat().st_mtime_ns
    assert main(args) == 0
    out, err = capfd.readouterr()
    assert out.count("\n") == 1 and out.startswith(f"already prepared: {tmp_path / 'out'} holds jsonl: "), out
    assert out.rstrip().endswith("reused, nothing read") and err == "", (out, err)
    assert (tmp_path / "out" / "manifest.json").stat().st_mtime_ns == stamp and not ray.is_initialized()


def test_the_parallel_bpe_sample_equals_the_whole_streams(tmp_path, monkeypatch):
    """Pass 1 samples each split and samples the merged samples again; bottom-k sampling is
    order-free, so that is the whole stream's sample (what the BPE model trains on)."""
    from trainers.documents import corpus_fingerprint, iter_documents, plan_splits
    from trainers.prepare import ShardJob, _fingerprint_and_sample
    from trainers.prepare_pool import pool_map
    from trainers.tokenizers import BPE_SAMPLE_SEED, sample_documents

    source = write_jsonl(tmp_path / "c.jsonl", 120_000)
    splits = plan_splits(str(source), 9_000)
    job = ShardJob(str(tmp_path / "out"), str(source), "text", "bpe:300", None, 300, "uint16")
    engine = functools.partial(pool_map, workers=1)
    fingerprint, sample = _fingerprint_and_sample(job, splits, engine)
    whole = sample_documents((d for _, d in iter_documents(str(source))), 30_000, BPE_SAMPLE_SEED)
    monkeypatch.setattr("trainers.prepare.BPE_SAMPLE_BYTES", 30_000)  # smaller than the corpus: the merge must choose
    _, merged = _fingerprint_and_sample(job, splits, engine)
    assert merged == whole and 0 < sum(map(len, merged)) <= 30_000 < source.stat().st_size
    assert fingerprint == corpus_fingerprint(str(source), "text", 9_000)


def test_the_pool_keeps_at_most_two_splits_per_worker_in_flight(tmp_path):
    """pool_map submits lazily and drops each result once yielded: the driver's memory stays a few
    results whatever the number of splits (pass 1's results are samples of up to 5 MB each)."""
    from trainers.documents import plan_splits
    from trainers.prepare import ShardJob, sample_split
    from trainers.prepare_pool import pool_map

    source = write_jsonl(tmp_path / "c.jsonl", 40_000)
    splits = plan_splits(str(source), 2_000)
    taken = []

    class Counted(list):
        def __iter__(self):
            for item in list.__iter__(self):
                taken.append(item[0])
                yield item

    job = ShardJob(str(tmp_path / "out"), str(source), "text", "bpe:300", None, 300, "uint16")
    seen = []
    for index, result in pool_map(sample_split, job, Counted(enumerate(splits)), workers=2):
        assert len(taken) <= len(seen) + 1 + 2 * 2, (len(taken), len(seen))
        seen.append(index)
    assert sorted(seen) == list(range(len(splits))) and len(splits) >= 15


def test_the_bpe_sample_does_not_depend_on_the_order_of_the_documents():
    """Variable sizes and repeated documents: a document evicted early must keep later
    higher-priority ones out, and copies of one document are all in or all out, or the sample
    (and the BPE model) would depend on the reading order."""
    from trainers.tokenizers import sample_documents

    rng = np.random.default_rng(0)
    docs = [bytes(rng.integers(97, 123, size=int(rng.integers(1, 400))).astype(np.uint8)) for _ in range(300)]
    docs += docs[:60]  # repeats, as a cycled corpus has
    first = sample_documents(docs, 5_000, 7)
    for seed in range(5):
        order = rng.permutation(len(docs))
        assert sample_documents([docs[i] for i in order], 5_000, 7) == first
    assert 0 < sum(map(len, first)) <= 5_000 and sample_documents(first, 5_000, 7) == first


def test_a_ray_data_task_that_cannot_read_the_source_names_its_node(tmp_path):
    """On a cluster whose nodes do not see the raw files, a task's error says so (the row function
    the Ray Data map runs, called here as a task would call it)."""
    import socket

    from orchestrator.corpus_ray import _run_row
    from trainers.documents import plan_splits
    from trainers.prepare import ShardJob, encode_shard

    source = write_jsonl(tmp_path / "c.jsonl", 5_000)
    (split,) = plan_splits(str(source), 1 << 20)
    job = ShardJob(str(tmp_path / "out"), str(source), "text", "byte", None, 256, "uint16")
    source.unlink()  # as on a node without the driver's files
    row = _run_row({"index": 0, "split": json.dumps(split.to_json())}, encode_shard, tuple(job))
    assert row["error"].startswith(f"source: cannot read {source} (No such file or directory) on node "
                                   f"{socket.gethostname()}: every node must see the raw files"), row
    assert row["result"] == b"" and not (tmp_path / "out").exists()
