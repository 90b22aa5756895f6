"""Prepare a raw corpus once: stream it, tokenise in parallel, write sharded token memmaps.

`prepare_corpus(spec, out_dir)` reads the documents as a stream (`trainers.documents`), cuts
them into chunks of about `CHUNK_BYTES` of text, tokenises the chunks in worker processes and
writes each as one shard; memory holds a few chunks, never the corpus. Layout of ``out_dir``:

  recipe.json          what is being prepared (source files' paths, sizes and mtimes, tokenizer
                       recipe, chunk size), written first; a resumed run must match it
  shard-000000.bin     the tokens of chunk 0, raw little-endian uint16 (vocab <= 65536) or uint32
  shard-000000.json    its record (tokens, documents, text bytes, sha256), written after the .bin:
                       a shard counts as finished only once its record exists
  tokenizer.json       the trained BPE model (bpe:<vocab> only)
  manifest.json        written last, it marks the corpus complete (`MANIFEST_VERSION`): source
                       files with sizes, mtimes and sha256, tokenizer (name, recipe key, vocab,
                       separator id, file), dtype, token and document counts, skipped empty
                       documents, the corpus fingerprint, the shards, the validation-split rule

Concatenating the shards gives exactly `tokenizer.encode_documents(all documents)`: documents
are separated by the tokenizer's separator id, and every shard after the first starts with one.
An interrupted preparation resumes: finished shards are kept, a half-written one (a hidden
`.shard-*.tmp` or a .bin without its record) is written again; the chunking is deterministic, so
the shards come out identical. `open_prepared(dir)` opens a finished corpus in O(shards): it
reads the manifest and memory-maps the shards, checking their sizes, and touches no raw text.
"""

from __future__ import annotations

# Every `spec` here is a trainers.data.CorpusSpec (not imported: trainers.data.load_corpus
# calls this module, and imports point one way).

import collections
import concurrent.futures as cf
import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from metrics.fs import write_atomically
from trainers.documents import Fingerprint, describe_source, iter_documents, source_files
from trainers.token_arrays import ShardedTokens
from trainers.tokenizers import (
    BPE_SAMPLE_BYTES, BPE_SAMPLE_SEED, bpe_from_file, build_tokenizer, corpus_vocab_size,
    default_cache_dir, sample_documents, token_dtype, tokenizer_key,
)

MANIFEST_VERSION = 1
CHUNK_BYTES = 16 << 20    # text per shard: bounds memory (a few chunks in flight) and resume loss
ENCODE_BYTES = 1 << 20    # text per encode call inside a chunk: HF Encodings cost ~40 B per byte
VALIDATION_RULE = {"block_tokens": 4096, "permutation_seed": 0,
                   "rule": "the last blocks of permutation(permutation_seed) of the corpus's "
                           "whole blocks (trainers.data.make_splits)"}


def source_stamp(source: str) -> list[dict]:
    """Path, size and mtime of every file of ``source``: stat only, no file is opened."""
    stamp = []
    for path in source_files(source):
        info = os.stat(path)
        stamp.append({"path": os.path.abspath(path), "size": info.st_size, "mtime_ns": info.st_mtime_ns})
    return stamp


def recipe(spec, chunk_bytes: int = CHUNK_BYTES) -> dict:
    """Everything the shards depend on, known from stat alone."""
    return {"version": MANIFEST_VERSION, "source": spec.source, "text_field": spec.text_field,
            "tokenizer": spec.tokenizer, "tokenizer_key": tokenizer_key(spec.tokenizer),
            "chunk_bytes": chunk_bytes, "files": source_stamp(spec.source)}


def is_prepared(path: str | os.PathLike) -> bool:
    return (Path(path) / "manifest.json").is_file()


def cached_dir(spec, cache_dir: str | Path | None = None) -> Path:
    """Where `ensure_prepared` keeps ``spec``'s prepared corpus: under the cache, keyed by its
    recipe (so a changed file, by size or mtime, gets a new preparation)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = hashlib.sha256(json.dumps(recipe(spec), sort_keys=True).encode()).hexdigest()[:24]
    return cache / "prepared" / f"{key}-{tokenizer_key(spec.tokenizer)}"


def open_prepared(path: str | os.PathLike) -> tuple[np.memmap | ShardedTokens, dict]:
    """(tokens over every shard, the manifest) of a prepared corpus, memory-mapped (one shard:
    its memmap itself); ValueError
    naming the file when the manifest is unreadable or a shard's size disagrees with it."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        version, dtype = manifest["version"], np.dtype(manifest["dtype"])
        shards = manifest["shards"]
    except FileNotFoundError:
        raise ValueError(f"source: {path} is not a prepared corpus (no manifest.json; "
                         "`scalesweep prepare` writes one)") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"source: {manifest_path} is unreadable ({err})") from None
    if version != MANIFEST_VERSION:
        raise ValueError(f"source: {manifest_path} has version {version}; this scalesweep reads "
                         f"{MANIFEST_VERSION} (prepare the corpus again)")
    arrays = []
    for shard in shards:
        file = path / shard["file"]
        size = file.stat().st_size if file.exists() else None
        if size != shard["tokens"] * dtype.itemsize:
            raise ValueError(f"source: shard {file} holds {size} bytes, its manifest says "
                             f"{shard['tokens']} {dtype} tokens (prepare the corpus again)")
        arrays.append(np.memmap(file, dtype=dtype, mode="r"))
    return (arrays[0] if len(arrays) == 1 else ShardedTokens(arrays)), manifest


def ensure_prepared(spec, cache_dir: str | Path | None = None, workers: int | None = None) -> Path:
    """The prepared directory of a raw corpus, preparing it into the cache first unless a
    finished one with the same recipe is there. Concurrent callers (trials of one sweep) wait on
    a file lock, so the corpus is prepared once."""
    out = cached_dir(spec, cache_dir)
    if is_prepared(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_prepared(out):
            prepare_corpus(spec, out, workers=workers, cache_dir=cache_dir)
    return out


# ---------------------------------------------------------------------------------------------
# Preparation
# ---------------------------------------------------------------------------------------------

def prepare_corpus(spec, out_dir: str | os.PathLike, *, workers: int | None = None,
                   chunk_bytes: int = CHUNK_BYTES, cache_dir: str | Path | None = None,
                   log=None) -> dict:
    """Prepare ``spec`` into ``out_dir`` (layout: module docstring) and return its manifest.
    ``workers``: tokenising processes (default: this machine's CPUs; 1 tokenises in this
    process). Raises ValueError naming the field or file for bad input (``workers`` < 1, an unreadable or
    undecodable file, a missing JSONL field, a corpus with no documents, an ``out_dir`` that
    holds something else); finished shards stay for a resume, no manifest is written."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"--workers: must be an integer >= 1, got {workers!r}")
    if spec.source.endswith(".bin"):
        raise ValueError(f"source: {spec.source} is already tokenised (a .bin memmap); nothing to prepare")
    if is_prepared(spec.source):
        raise ValueError(f"source: {spec.source} is already a prepared corpus")
    vocab = corpus_vocab_size(spec)  # the tokenizer name is valid before anything is read
    out = Path(out_dir)
    want = recipe(spec, chunk_bytes)
    if is_prepared(out):
        manifest = json.loads((out / "manifest.json").read_text())
        if manifest.get("recipe") == want:
            return manifest
        raise ValueError(f"--out: {out} holds a prepared corpus of another source, file state or "
                         "tokenizer; choose another --out or delete it")
    _claim(out, want)
    started = time.perf_counter()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    workers = workers or os.cpu_count() or 1
    if sum(f["size"] for f in want["files"]) <= chunk_bytes:
        workers = 1  # one chunk: starting worker processes would cost more than it saves
    tokenizer_file = None
    fingerprint = None
    if spec.tokenizer.startswith("bpe:"):  # pass 1: the fingerprint keys the model; a seeded sample trains it
        fingerprint, sample = _fingerprint_and_sample(spec)
        build_tokenizer(spec.tokenizer, sample, fingerprint, cache)
        del sample
        tokenizer_file = "tokenizer.json"
        model = cache / "bpe" / f"{fingerprint[:24]}-{tokenizer_key(spec.tokenizer)}.json"
        shutil.copyfile(model, out / tokenizer_file)
    job = _Job(str(out), spec.tokenizer, tokenizer_file, vocab, np.dtype(token_dtype(vocab)).name)
    digest, skipped, shards = Fingerprint(), [], []
    with _executor(workers) as pool:
        pending: collections.deque = collections.deque()
        for index, docs in enumerate(_chunks(spec, digest, skipped, chunk_bytes)):
            record = _finished_shard(out, index, docs)
            if record is not None:
                pending.append(record)
            else:
                pending.append(pool.submit(_encode_shard, job, index, docs) if pool else _encode_shard(job, index, docs))
            while len(pending) > 2 * workers or (pending and not isinstance(pending[0], cf.Future)):
                shards.append(_result(pending.popleft()))
                if log and len(shards) % 16 == 0:
                    log(f"prepare: {len(shards)} shards, {sum(s['tokens'] for s in shards)} tokens")
        shards.extend(_result(item) for item in pending)
    if not shards:
        raise ValueError(f"source: {spec.source!r} contains no documents")
    if skipped and spec.source != "builtin":  # the stdlib's empty __init__.py files are expected
        warnings.warn(f"source: {len(skipped)} empty document(s) left out (first: {skipped[0]})", stacklevel=2)
    if fingerprint is not None and fingerprint != digest.hexdigest():
        raise ValueError(f"source: {spec.source} changed while it was being prepared; prepare it again")
    n_files = len(want["files"])
    manifest = {
        "version": MANIFEST_VERSION, "recipe": want,
        "description": describe_source(spec.source, spec.text_field, n_files),
        "files": [{**f, "sha256": _file_sha256(f["path"])} for f in want["files"]],
        "tokenizer": {"name": spec.tokenizer, "key": tokenizer_key(spec.tokenizer), "vocab_size": vocab,
                      "separator": _tokenizer(job).separator,
                      "file": tokenizer_file},
        "dtype": job.dtype, "tokens": sum(s["tokens"] for s in shards),
        "documents": sum(s["documents"] for s in shards), "empty_documents_skipped": len(skipped),
        "fingerprint": digest.hexdigest(), "shards": shards, "validation": VALIDATION_RULE,
        "workers": workers, "prepare_s": round(time.perf_counter() - started, 3),
    }
    write_atomically(out / "manifest.json", lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    return manifest


class _Job(collections.namedtuple("_Job", "out tokenizer tokenizer_file vocab dtype")):
    """What every worker needs to encode and write a shard (plain data: it crosses processes)."""


_WORKER_TOKENIZER = {}  # per process: tokenizer name -> TextTokenizer, built once


def _tokenizer(job: _Job):
    """The job's tokeniser, built once per process; BPE from the preparation's own model file."""
    key = (job.out, job.tokenizer)
    if key not in _WORKER_TOKENIZER:
        _WORKER_TOKENIZER[key] = (bpe_from_file(Path(job.out) / job.tokenizer_file, job.vocab)
                                  if job.tokenizer_file else build_tokenizer(job.tokenizer, [], ""))
    return _WORKER_TOKENIZER[key]


def _encode_shard(job: _Job, index: int, docs: list[bytes]) -> dict:
    """Encode one chunk (in groups of ~ENCODE_BYTES) and write shard ``index`` and its record."""
    tokenizer = _tokenizer(job)
    separator = np.array([tokenizer.separator], dtype=job.dtype)
    pieces, group, size = [], [], 0
    for doc in docs + [None]:
        if doc is None or (group and size + len(doc) > ENCODE_BYTES):
            if pieces or index > 0:
                pieces.append(separator)
            pieces.append(tokenizer.encode_documents(group).astype(job.dtype, copy=False))
            group, size = [], 0
        if doc is not None:
            group.append(doc)
            size += len(doc)
    tokens = np.concatenate(pieces)
    name = f"shard-{index:06d}"
    record = {"file": f"{name}.bin", "tokens": int(tokens.size), "documents": len(docs),
              "text_bytes": sum(map(len, docs)), "sha256": hashlib.sha256(tokens.data).hexdigest()}
    write_atomically(Path(job.out) / f"{name}.bin", lambda f: f.write(tokens.data))
    write_atomically(Path(job.out) / f"{name}.json", lambda f: f.write(json.dumps(record).encode()))
    return record


def _finished_shard(out: Path, index: int, docs: list[bytes]) -> dict | None:
    """Shard ``index``'s record if a previous run finished it from these same documents."""
    name = f"shard-{index:06d}"
    try:
        record = json.loads((out / f"{name}.json").read_text())
        complete = (out / f"{name}.bin").stat().st_size > 0
    except (OSError, ValueError):
        return None
    if complete and record.get("documents") == len(docs) and record.get("text_bytes") == sum(map(len, docs)):
        return record
    return None


def _result(item) -> dict:
    return item.result() if isinstance(item, cf.Future) else item


def _chunks(spec, digest: Fingerprint, skipped: list, chunk_bytes: int):
    """Lists of documents of about ``chunk_bytes`` of text (at least one document each),
    hashing every document into ``digest`` on the way."""
    chunk, size = [], 0
    for name, doc in iter_documents(spec.source, spec.text_field, skipped):
        digest.update(name, doc)
        chunk.append(doc)
        size += len(doc)
        if size >= chunk_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _fingerprint_and_sample(spec) -> tuple[str, list[bytes]]:
    digest = Fingerprint()

    def hashed():
        for name, doc in iter_documents(spec.source, spec.text_field):
            digest.update(name, doc)
            yield doc

    sample = sample_documents(hashed(), BPE_SAMPLE_BYTES, BPE_SAMPLE_SEED)
    return digest.hexdigest(), sample


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _claim(out: Path, want: dict) -> None:
    """Make ``out`` this preparation's directory: new, empty, or an unfinished preparation (a
    matching one is resumed, minus its hidden temp files, the half-written shards; another
    recipe's is started over). A directory holding anything else is refused."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} is a file, not a directory")
    recipe_path = out / "recipe.json"
    if out.is_dir() and any(out.iterdir()):
        try:
            theirs = json.loads(recipe_path.read_text())
        except (OSError, ValueError):
            raise ValueError(f"--out: {out} is not empty and holds no preparation; choose an "
                             "empty or new directory") from None
        for temp in out.glob(".*.tmp"):
            temp.unlink()
        if theirs == want:
            return
        # an unfinished preparation of another recipe (the files were fixed, another tokenizer):
        # its shards are stale and only ever ours, so start over
        for stale in [*out.glob("shard-*"), out / "tokenizer.json"]:
            stale.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(recipe_path, lambda f: f.write(json.dumps(want, indent=1).encode()))


class _executor:
    """A spawn-context process pool of ``workers`` processes, or None for one worker (encode
    in this process). Spawn, not fork: a forked child of a process that has used HF tokenizers'
    thread pool or torch can deadlock."""

    def __init__(self, workers: int):
        self.pool = (cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
                     if workers > 1 else None)

    def __enter__(self):
        return self.pool

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
