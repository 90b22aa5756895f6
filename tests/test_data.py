import json
import shutil
import warnings

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainers.data import (
    CorpusSpec, SequenceSampler, TokenizedCorpus, eval_batches, load_corpus, make_splits,
    validation_tokens,
)
from trainers.token_arrays import ShardedTokens
from trainers.tokenizers import build_tokenizer

DOCS = ["def add(a, b):\n    return a + b\n", "héllo wörld — naïve text\n", "x = [i * i for i in range(10)]\n"]


def synthetic_corpus(n_tokens=100_000):
    # token value = its position in the corpus, so tests can tell where every token came from
    return TokenizedCorpus(np.arange(n_tokens, dtype=np.int32), n_tokens, "synthetic", "synthetic")


def test_builtin_corpus_size_deterministic_and_cached(tmp_path):
    first = load_corpus(CorpusSpec(), cache_dir=tmp_path)
    assert first.tokens.size >= 10_000_000 and first.vocab_size == 256
    assert len(list((tmp_path / "prepared").glob("*/manifest.json"))) == 1
    second = load_corpus(CorpusSpec(), cache_dir=tmp_path)  # cache hit: memory-mapped shards
    assert isinstance(second.tokens, (np.memmap, ShardedTokens))
    assert second.fingerprint == first.fingerprint
    assert np.array_equal(first.tokens[:100_000], second.tokens[:100_000])
    assert b"import" in bytes(first.tokens[:200_000].astype(np.uint8))


def test_text_glob_jsonl_parquet_round_trip_bytes(tmp_path):
    for i, doc in enumerate(DOCS):
        (tmp_path / f"d{i}.txt").write_text(doc)
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"body": d}) for d in DOCS) + "\n")
    pq.write_table(pa.table({"body": DOCS}), tmp_path / "c.parquet")
    expected = b"\0".join(d.encode() for d in DOCS)
    for source in (str(tmp_path / "*.txt"), str(tmp_path / "c.jsonl"), str(tmp_path / "c.parquet")):
        corpus = load_corpus(CorpusSpec(source=source, text_field="body"), cache_dir=tmp_path / "cache")
        assert bytes(corpus.tokens.astype(np.uint8)) == expected, source
    single = load_corpus(CorpusSpec(source=str(tmp_path / "d0.txt")), cache_dir=tmp_path / "cache")
    assert bytes(single.tokens.astype(np.uint8)) == DOCS[0].encode()


def test_bin_memmap_and_vocab_validation(tmp_path):
    path = tmp_path / "train.bin"
    np.array([5, 1000, 50000, 3], dtype=np.uint16).tofile(path)
    corpus = load_corpus(CorpusSpec(source=str(path), vocab_size=50304))
    assert corpus.tokens.tolist() == [5, 1000, 50000, 3] and corpus.vocab_size == 50304
    with pytest.raises(ValueError, match="vocab_size"):
        load_corpus(CorpusSpec(source=str(path)))
    with pytest.raises(ValueError, match="vocab_size.*50000"):
        load_corpus(CorpusSpec(source=str(path), vocab_size=40000))
    # the max-token scan is remembered by path, size and mtime: a later load reads no token ...
    info = path.stat()
    np.array([5, 1000, 50001, 3], dtype=np.uint16).tofile(path)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert load_corpus(CorpusSpec(source=str(path), vocab_size=50001)).vocab_size == 50001
    path.touch()  # ... and a changed file is scanned again
    with pytest.raises(ValueError, match="vocab_size.*50001"):
        load_corpus(CorpusSpec(source=str(path), vocab_size=50001))
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x05\x00\x07")  # a cut-off token: memmap would fail naming no file
    with pytest.raises(ValueError, match=rf"source: {odd} holds 3 bytes, not a whole number of uint16 tokens"):
        load_corpus(CorpusSpec(source=str(odd), vocab_size=50304))


def test_bpe_trains_caches_and_round_trips(tmp_path):
    (tmp_path / "a.txt").write_text("".join(DOCS) * 50)
    spec = CorpusSpec(source=str(tmp_path / "a.txt"), tokenizer="bpe:300")
    corpus = load_corpus(spec, cache_dir=tmp_path / "cache")
    assert corpus.vocab_size == 300 and corpus.tokens.max() < 300
    assert corpus.tokens.size < len(("".join(DOCS) * 50).encode())  # merges compress
    assert list((tmp_path / "cache" / "bpe").glob("*-bpe-300-*.json"))
    tokenizer = build_tokenizer("bpe:300", [], corpus.fingerprint, tmp_path / "cache")  # cached
    assert tokenizer.decode(corpus.tokens) == "".join(DOCS) * 50
    ids = tokenizer.encode_documents([DOCS[1].encode(), DOCS[0].encode()])
    assert tokenizer.decode(ids) == DOCS[1] + "<|endoftext|>" + DOCS[0]


@pytest.mark.parametrize("spec,field", [
    (CorpusSpec(source="/nonexistent/*.txt"), "source"),
    (CorpusSpec(tokenizer="wordpiece"), "tokenizer"),
    (CorpusSpec(tokenizer="bpe:12"), "tokenizer"),
    (CorpusSpec(tokenizer="byte", vocab_size=100), "vocab_size"),
])
def test_bad_corpus_spec_names_field(tmp_path, spec, field):
    if spec.vocab_size == 100:  # needs a real corpus to reach the vocab check
        (tmp_path / "a.txt").write_text("abc")
        spec = CorpusSpec(source=str(tmp_path / "a.txt"), vocab_size=100)
    with pytest.raises(ValueError, match=field):
        load_corpus(spec, cache_dir=tmp_path)


def test_missing_text_field_named(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps({"other": "x"}) + "\n")
    with pytest.raises(ValueError, match="text_field"):
        load_corpus(CorpusSpec(source=str(tmp_path / "c.jsonl")), cache_dir=tmp_path)
    pq.write_table(pa.table({"other": ["x"]}), tmp_path / "c.parquet")
    with pytest.raises(ValueError, match="text_field"):
        load_corpus(CorpusSpec(source=str(tmp_path / "c.parquet")), cache_dir=tmp_path)


def test_splits_exact_disjoint_nested_and_val_fixed():
    corpus = synthetic_corpus()
    kwargs = dict(val_tokens=5000, n_ctx=32, block_tokens=1000)
    small = make_splits(corpus, 10_000, **kwargs)
    large = make_splits(corpus, 60_000, **kwargs)
    other_seed = make_splits(corpus, 60_000, seed=1, **kwargs)
    assert small.train.size == 10_000 and large.train.size == 60_000 and small.val.size == 5000
    assert np.array_equal(large.train[:10_000], small.train)                 # nested
    assert np.array_equal(small.val, large.val) and np.array_equal(small.val, other_seed.val)
    assert not np.array_equal(large.train, other_seed.train)
    val_set = set(small.val.tolist())
    for split in (large, other_seed):
        assert val_set.isdisjoint(split.train.tolist())                      # disjoint
    assert np.array_equal(validation_tokens(corpus, 5000, block_tokens=1000), small.val)
    bigger_val = make_splits(corpus, 10_000, val_tokens=8000, n_ctx=32, block_tokens=1000)
    assert np.array_equal(bigger_val.val[:5000], small.val)                  # nested validation


@pytest.mark.parametrize("kwargs,field", [
    (dict(dataset_tokens=99_000, val_tokens=5000, n_ctx=32), "dataset_tokens"),
    (dict(dataset_tokens=10_000, val_tokens=100_000, n_ctx=32), "val_tokens"),
    (dict(dataset_tokens=100, val_tokens=5000, n_ctx=200), "n_ctx"),
    (dict(dataset_tokens=10_000, val_tokens=100, n_ctx=200), "n_ctx"),
])
def test_bad_split_arguments_name_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        make_splits(synthetic_corpus(), block_tokens=1000, **kwargs)


def test_sampler_covers_epoch_wraps_and_resumes_exactly():
    tokens = np.arange(1001, dtype=np.uint16)  # 100 windows of n_ctx=10
    sampler = SequenceSampler(tokens, n_ctx=10, seed=3)
    batch = sampler.next_global_batch(100)
    assert batch.shape == (100, 11) and batch.dtype == np.int64
    assert np.array_equal(batch[:, 1:], batch[:, :-1] + 1)                   # contiguous windows
    assert sorted(batch[:, 0].tolist()) == list(range(0, 1000, 10))          # one epoch, each once
    assert sampler.epochs_completed == 1.0
    sampler.next_global_batch(30)
    state = sampler.state_dict()
    expected = [sampler.next_global_batch(45) for _ in range(3)]             # crosses epochs 1 -> 2
    resumed = SequenceSampler(tokens, n_ctx=10, seed=3)
    resumed.load_state_dict(state)
    assert all(np.array_equal(a, resumed.next_global_batch(45)) for a in expected)
    assert resumed.epochs_completed == pytest.approx(2.65)
    again = SequenceSampler(tokens, n_ctx=10, seed=3).next_global_batch(100)
    assert np.array_equal(again, batch)                                       # deterministic
    assert not np.array_equal(SequenceSampler(tokens, n_ctx=10, seed=4).next_global_batch(100), batch)
    with pytest.raises(ValueError, match="n_ctx"):
        resumed.load_state_dict({**state, "n_ctx": 20})


def test_eval_batches_fixed_windows():
    tokens = np.arange(105)
    windows = eval_batches(tokens, n_ctx=10)
    assert windows.shape == (10, 11) and windows[3, 0] == 30 and windows[-1, -1] == 100
    assert eval_batches(tokens, n_ctx=10, max_tokens=35).shape == (3, 11)
    with pytest.raises(ValueError, match="n_ctx"):
        eval_batches(tokens, n_ctx=200)


# --------------------------------------------------------------------------------------------
# Undecodable or malformed corpora: the error names the file, the line (or row) and byte offset

LATIN1 = "caf\u00e9 cr\u00e8me\n".encode("latin-1")  # é = 0xe9 at byte 3


def test_text_file_in_another_encoding_names_file_line_and_offset(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"first line\nsecond\n" + LATIN1)
    with pytest.raises(ValueError, match=rf"source: {path} line 3 \(byte offset 21\) is not UTF-8 .*b'\\xe9'"):
        load_corpus(CorpusSpec(source=str(path)), cache_dir=tmp_path / "cache")
    glob_spec = CorpusSpec(source=str(tmp_path / "*.txt"))
    (tmp_path / "0.txt").write_text("fine\n")
    with pytest.raises(ValueError, match=rf"{path} line 3"):  # the bad file among good ones
        load_corpus(glob_spec, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("second_line, field, message", [
    (b'{"text": "' + LATIN1.strip() + b'"}\n', "source", r"line 2 \(byte offset 34\) is not UTF-8 \(invalid continuation byte"),
    (b'text: not json\n', "source", r"line 2 \(byte offset 21\) is not JSON \(Expecting value, column 1\)"),
    (b'["text", "a list"]\n', "text_field", r"line 2 \(byte offset 21\) has no string field 'text'"),
    (b'{"body": "other field"}\n', "text_field", r"line 2 \(byte offset 21\) has no string field 'text'"),
    (b'{"text": "\\ud800 lone surrogate"}\n', "source", r"line 2 \(byte offset 21\): field 'text' is not valid Unicode"),
])
def test_jsonl_bad_line_names_file_line_and_offset(tmp_path, second_line, field, message):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"text": "good one"}\n' + second_line + b'{"text": "third"}\n')
    with pytest.raises(ValueError, match=rf"^{field}: {path} {message}"):
        load_corpus(CorpusSpec(source=str(path)), cache_dir=tmp_path / "cache")


def test_jsonl_with_a_utf8_byte_order_mark_reads(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "a"}\n{"text": "b"}\n')
    corpus = load_corpus(CorpusSpec(source=str(path)), cache_dir=tmp_path / "cache")
    assert bytes(corpus.tokens.astype(np.uint8)) == b"a\0b"


def test_parquet_text_column_bad_bytes_or_type_name_file_and_row(tmp_path):
    binary = tmp_path / "binary.parquet"
    pq.write_table(pa.table({"text": pa.array([b"ok", LATIN1], pa.binary())}), binary)
    with pytest.raises(ValueError, match=rf"source: {binary} row 1 line 1 \(byte offset 3\) is not UTF-8"):
        load_corpus(CorpusSpec(source=str(binary)), cache_dir=tmp_path / "cache")
    raw_string = tmp_path / "string.parquet"  # a string column holding non-UTF-8 bytes
    pq.write_table(pa.table({"text": pa.array([b"ok", b"ok", LATIN1], pa.binary()).view(pa.string())}), raw_string)
    with pytest.raises(ValueError, match=rf"{raw_string} row 2 line 1 \(byte offset 3\) is not UTF-8"):
        load_corpus(CorpusSpec(source=str(raw_string)), cache_dir=tmp_path / "cache")
    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), numbers)
    with pytest.raises(ValueError, match=rf"text_field: column 'text' of {numbers} is int64, not text"):
        load_corpus(CorpusSpec(source=str(numbers)), cache_dir=tmp_path / "cache")
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": pa.array([b"caf\xc3\xa9", None], pa.binary())}), good)
    corpus = load_corpus(CorpusSpec(source=str(good)), cache_dir=tmp_path / "cache")
    assert bytes(corpus.tokens.astype(np.uint8)) == "café".encode()  # the null row: an empty document, left out


def test_train_cli_on_a_latin1_jsonl_exits_2_with_one_line(tmp_path, capsys):
    from scalesweep.cli import main

    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "' + LATIN1.strip() + b'"}\n')
    code = main(["train", "--n-layer", "1", "--d-model", "32", "--n-heads", "2", "--d-ff", "64", "--n-ctx", "16",
                 "--corpus", str(path), "--storage", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"source: {path} line 1 (byte offset 13) is not UTF-8" in err  # é follows the 13 bytes {"text": "caf
    assert not (tmp_path / "store").exists()


# --------------------------------------------------------------------------------------------
# Caches are used only when they are what their key and record say


def test_corrupt_token_cache_is_named_and_rebuilt(tmp_path):
    (tmp_path / "a.txt").write_text("".join(DOCS) * 20)
    spec = CorpusSpec(source=str(tmp_path / "a.txt"))
    fresh = load_corpus(spec, cache_dir=tmp_path / "cache")
    fresh = np.array(fresh.tokens)  # a copy: the memmap would show the truncation below
    (shard,) = (tmp_path / "cache" / "prepared").glob("*/shard-000000.bin")
    shard.write_bytes(shard.read_bytes()[:200])  # truncated, as by a full disk
    with pytest.warns(UserWarning, match=rf"prepared-corpus cache {shard.parent} is damaged .*shard {shard} holds 200 bytes"):
        again = load_corpus(spec, cache_dir=tmp_path / "cache")
    assert np.array_equal(again.tokens, fresh)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rewritten: the next load is a clean hit
        assert np.array_equal(load_corpus(spec, cache_dir=tmp_path / "cache").tokens, fresh)


def test_bpe_cache_is_keyed_by_its_recipe_and_a_corrupt_model_is_retrained(tmp_path, monkeypatch):
    import trainers.tokenizers as tokenizers

    (tmp_path / "a.txt").write_text("".join(DOCS) * 50)
    spec = CorpusSpec(source=str(tmp_path / "a.txt"), tokenizer="bpe:300")
    full = load_corpus(spec, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(tokenizers, "BPE_SAMPLE_BYTES", 100)  # another recipe: other merges
    small_sample = load_corpus(spec, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "bpe").glob("*.json"))) == 2
    assert len(list((tmp_path / "cache" / "prepared").glob("*/manifest.json"))) == 2
    assert not np.array_equal(small_sample.tokens, full.tokens)  # not the other recipe's cache
    monkeypatch.undo()
    for model in (tmp_path / "cache" / "bpe").glob("*.json"):
        model.write_text("{not json")
    shutil.rmtree(tmp_path / "cache" / "prepared")
    with pytest.warns(UserWarning, match=r"tokenizer cache .*-bpe-300-.*\.json is unreadable"):
        retrained = load_corpus(spec, cache_dir=tmp_path / "cache")
    assert np.array_equal(retrained.tokens, full.tokens)


def test_builtin_corpus_lists_the_stdlib_rule_once(tmp_path, monkeypatch):
    """The builtin corpus is every .py under the stdlib dir outside the excluded directories (at
    any depth) and the _sysconfigdata files, in relative-path order; listed once per process."""
    import sysconfig

    from trainers import documents

    root = tmp_path / "lib"
    for rel in ("b.py", "a/z.py", "a/x.txt", "a_b.py", "_sysconfigdata_x.py", "site-packages/p/m.py",
                "a/tests/t.py", "a/__pycache__/c.py", "idle_test/i.py", "c/d/e.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x = 1\n")
    (root / "linked").symlink_to(root / "c", target_is_directory=True)  # not followed, as rglob
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"stdlib": str(root)})
    documents._builtin_corpus_paths.cache_clear()
    try:
        files = documents.builtin_corpus_files()
        assert [p.relative_to(root).as_posix() for p in files] == ["a/z.py", "a_b.py", "b.py", "c/d/e.py"]
        (root / "new.py").write_text("y = 2\n")
        assert documents.builtin_corpus_files() == files  # the first listing holds for the process
    finally:
        documents._builtin_corpus_paths.cache_clear()
