"""Prepare a raw corpus once: stream it, tokenise in parallel, write sharded token memmaps.

`prepare_corpus(spec, out_dir)` cuts the source into splits of about `SPLIT_BYTES` raw bytes from
file sizes alone (`trainers.documents.plan_splits`); each worker reads its split itself, tokenises
it and writes it as one shard, so the driver holds split descriptors and shard records, never
text, and memory is a few splits per worker whatever the corpus size. For BPE a first parallel
pass (`sample_split`) hashes every split and draws its bottom-k sample; the driver merges them
into the corpus fingerprint and the seeded sample the model trains on (bottom-k sampling is
order-free, so this equals sampling the whole stream). The workers are a process pool
(`pool_map`) or any engine with its signature (`orchestrator.corpus_ray.ray_data_map` runs them
as Ray Data tasks across a cluster). Layout of ``out_dir``:

  recipe.json          what is being prepared (source files' paths, sizes and mtimes, tokenizer
                       recipe, split size), written first; a resumed run must match it
  shard-000000.bin     the tokens of split 0, raw little-endian uint16 (vocab <= 65536) or uint32
  shard-000000.json    its record (its split, tokens, documents, text bytes, sha256 of the tokens,
                       the split's fingerprint, empty documents left out), written after the .bin:
                       a shard counts as finished only once its record exists (a split with no
                       documents has a record and no .bin)
  tokenizer.json       the trained BPE model (bpe:<vocab> only)
  manifest.json        written last, it marks the corpus complete (`MANIFEST_VERSION`): source
                       files with sizes, mtimes and sha256, tokenizer (name, recipe key, vocab,
                       separator id, file), dtype, token and document counts, skipped empty
                       documents, the corpus fingerprint, the shards, the validation-split rule

Concatenating the shards gives exactly `tokenizer.encode_documents(all documents)`: documents
are separated by the tokenizer's separator id, and every shard after the first starts with one.
An interrupted preparation resumes: finished shards are kept and not read again, a half-written
one (a hidden `.shard-*.tmp` or a .bin without its record) is written again; the splits are
deterministic, so the shards come out identical. `trainers.prepared.open_prepared(dir)` opens a
finished corpus in O(shards): it reads the manifest and memory-maps the shards, checking their
sizes, and touches no raw text.
"""

from __future__ import annotations

# Every `spec` here is a trainers.data.CorpusSpec (not imported: trainers.data.load_corpus
# calls this module, and imports point one way).

import collections
import fcntl
import functools
import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import pyarrow.fs as pafs

from metrics.fs import check_reachable
from trainers.documents import (
    SPLIT_BYTES, Fingerprint, Split, combine_fingerprints, describe_source, iter_split_documents,
    plan_splits, source_files,
)
from trainers.place import Place, is_remote
from trainers.prepare_pool import pool_map
from trainers.prepared import (
    MANIFEST_VERSION, finished_manifest, is_prepared, read_manifest, recipe_matches,
)
from trainers.tokenizers import (
    BPE_SAMPLE_BYTES, BPE_SAMPLE_SEED, bpe_from_file, build_tokenizer, corpus_vocab_size,
    default_cache_dir, sample_documents, token_dtype, tokenizer_key,
)

ENCODE_BYTES = 1 << 20    # text per encode call inside a split: HF Encodings cost ~40 B per byte
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


def recipe(spec, split_bytes: int = SPLIT_BYTES) -> dict:
    """Everything the shards depend on, known from stat alone."""
    return {"version": MANIFEST_VERSION, "source": spec.source, "text_field": spec.text_field,
            "tokenizer": spec.tokenizer, "tokenizer_key": tokenizer_key(spec.tokenizer),
            "split_bytes": split_bytes, "files": source_stamp(spec.source)}


def cached_dir(spec, cache_dir: str | Path | None = None) -> Path:
    """Where `ensure_prepared` keeps ``spec``'s prepared corpus: under the cache, keyed by its
    recipe (so a changed file, by size or mtime, gets a new preparation)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = hashlib.sha256(json.dumps(recipe(spec), sort_keys=True).encode()).hexdigest()[:24]
    return cache / "prepared" / f"{key}-{tokenizer_key(spec.tokenizer)}"


def copy_prepared(source: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """Copy the finished local preparation at ``source`` to ``out_dir`` (local or a pyarrow.fs
    URI, claimed as `prepare_corpus` claims it): every file, then the manifest last, so a copy
    cut short is an unfinished preparation, never a valid one. Returns the manifest."""
    source = Path(source)
    manifest = read_manifest(source)
    out = Place(out_dir)
    _claim(out, manifest["recipe"])
    for path in sorted(source.iterdir()):
        if path.is_file() and path.name != "manifest.json" and not path.name.startswith("."):
            out.copy_in(path.name, path)
    out.copy_in("manifest.json", source / "manifest.json")
    return manifest


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
                   split_bytes: int = SPLIT_BYTES, cache_dir: str | Path | None = None,
                   log=None, engine=None) -> dict:
    """Prepare ``spec`` into ``out_dir`` (layout: module docstring) and return its manifest.
    ``workers``: tokenising processes (default: this machine's CPUs; 1 tokenises in this
    process). ``engine(fn, job, todo)``: runs ``fn(job, index, split)`` for each (index, Split)
    of ``todo`` anywhere that sees the source and ``out_dir`` and yields (index, result) in any
    order; default `pool_map` over ``workers`` processes. An engine with a ``start()`` method
    (`orchestrator.corpus_ray.RayDataEngine`: Ray's start-up) is started once the input is
    checked; the manifest times that apart (``engine_start_s``) from ``tokenizer_s`` and
    ``prepare_s``, and names the engine (its ``name``, else ``pool``).
    A finished preparation of the same recipe at ``out_dir`` is returned as is, nothing read,
    with ``"reused": True`` added (not in the file).
    Raises ValueError naming the field or file for bad input (``workers`` < 1, an unreadable or
    undecodable file, a missing JSONL field, a corpus with no documents, an ``out_dir`` that
    holds something else); then what this preparation wrote is removed, so no half-written
    corpus is left (an ``out_dir`` it created goes too). Interrupted any other way (a kill, a
    lost node), the finished shards stay for a resume; no manifest is written either way."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"--workers: must be an integer >= 1, got {workers!r}")
    if spec.source.endswith(".bin"):
        raise ValueError(f"source: {spec.source} is already tokenised (a .bin memmap); nothing to prepare")
    if is_prepared(spec.source):
        raise ValueError(f"source: {spec.source} is already a prepared corpus")
    vocab = corpus_vocab_size(spec)  # the tokenizer name is valid before anything is read
    if is_remote(out_dir):
        check_reachable(os.fspath(out_dir), "--out")
    out = Place(out_dir)
    want = recipe(spec, split_bytes)
    manifest = finished_manifest(out_dir)
    if manifest is not None:
        if recipe_matches(manifest.get("recipe"), want):
            return {**manifest, "reused": True}
        raise ValueError(f"--out: {out} holds a prepared corpus of another source, file state or "
                         "tokenizer; choose another --out or delete it")
    splits = plan_splits(spec.source, split_bytes)
    existed = out.exists()
    _claim(out, want)
    try:
        return _prepare_claimed(spec, out, want, splits, vocab, workers, cache_dir, log, engine)
    except ValueError:  # bad input: nothing of it may stay behind to look like a start
        _discard(out, remove_dir=not existed)
        raise


def _prepare_claimed(spec, out: Place, want: dict, splits: list[Split], vocab: int, workers: int | None,
                     cache_dir, log, engine) -> dict:
    """`prepare_corpus` once ``out`` is claimed: the passes, then the manifest."""
    engine_start_s = 0.0
    if hasattr(engine, "start"):  # e.g. Ray's start-up: timed apart from the tokenizer's work
        begun = time.perf_counter()
        engine.start()
        engine_start_s = time.perf_counter() - begun
    started = time.perf_counter()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    workers = max(1, min(workers or os.cpu_count() or 1, len(splits)))
    fingerprint = None
    if engine is None:
        engine = functools.partial(pool_map, workers=workers, log=log)
    job = ShardJob(out.location, spec.source, spec.text_field, spec.tokenizer, None, vocab,
                   np.dtype(token_dtype(vocab)).name)
    if spec.tokenizer.startswith("bpe:"):
        job = job._replace(tokenizer_file="tokenizer.json")
        if not out.exists(job.tokenizer_file):  # (a resumed preparation of this recipe has its model)
            # pass 1: the fingerprint keys the model; a seeded sample trains it
            fingerprint, sample = _fingerprint_and_sample(job, splits, engine)
            build_tokenizer(spec.tokenizer, sample, fingerprint, cache)
            del sample
            model = cache / "bpe" / f"{fingerprint[:24]}-{tokenizer_key(spec.tokenizer)}.json"
            out.write(job.tokenizer_file, model.read_bytes())
    records: dict[int, dict] = {}
    todo = []
    for index, split in enumerate(splits):
        record = _finished_shard(out, index, split, job.dtype)
        if record is None:
            todo.append((index, split))
        else:
            records[index] = record
    if log and records:
        log(f"prepare: resuming, {len(records)} of {len(splits)} shards already finished")
    tokenizer_s = time.perf_counter() - started
    records.update(engine(encode_shard, job, todo) if todo else {})
    shards = [records[i] for i in range(len(splits))]
    _drop_leading_separator(job, splits, shards)
    if not any(s["documents"] for s in shards):
        raise ValueError(f"source: {spec.source!r} contains no documents")
    n_skipped = sum(s["empty_documents"] for s in shards)
    if n_skipped and spec.source != "builtin":  # the stdlib's empty __init__.py files are expected
        first = next(s["first_empty"] for s in shards if s["empty_documents"])
        warnings.warn(f"source: {n_skipped} empty document(s) left out (first: {first})", stacklevel=2)
    corpus_digest = combine_fingerprints(s["digest"] for s in shards)
    if fingerprint is not None and fingerprint != corpus_digest:
        raise ValueError(f"source: {spec.source} changed while it was being prepared; prepare it again")
    n_files = len(want["files"])
    manifest = {
        "version": MANIFEST_VERSION, "recipe": want,
        "description": describe_source(spec.source, spec.text_field, n_files),
        "files": [{**f, "sha256": _file_sha256(f["path"])} for f in want["files"]],
        "tokenizer": {"name": spec.tokenizer, "key": tokenizer_key(spec.tokenizer), "vocab_size": vocab,
                      "separator": _tokenizer(job).separator,
                      "file": job.tokenizer_file},
        "dtype": job.dtype, "tokens": sum(s["tokens"] for s in shards),
        "documents": sum(s["documents"] for s in shards), "empty_documents_skipped": n_skipped,
        "fingerprint": corpus_digest, "shards": shards, "validation": VALIDATION_RULE,
        "workers": workers, "engine": getattr(engine, "name", "pool"),
        "prepare_s": round(time.perf_counter() - started, 3), "tokenizer_s": round(tokenizer_s, 3),
        "engine_start_s": round(engine_start_s, 3),
    }
    out.write("manifest.json", json.dumps(manifest, indent=1).encode())
    return manifest


class ShardJob(collections.namedtuple("ShardJob", "out source text_field tokenizer tokenizer_file vocab dtype")):
    """What every worker needs to read, encode and write a shard (plain data: it crosses
    processes and Ray tasks)."""


_WORKER_TOKENIZER = {}  # per process: tokenizer name -> TextTokenizer, built once


def _tokenizer(job: ShardJob):
    """The job's tokeniser, built once per process; BPE from the preparation's own model file."""
    key = (job.out, job.tokenizer)
    if key not in _WORKER_TOKENIZER:
        if not job.tokenizer_file:
            _WORKER_TOKENIZER[key] = build_tokenizer(job.tokenizer, [], "")
        else:
            with tempfile.TemporaryDirectory() as tmp:  # HF tokenizers load from a local file
                model = Path(tmp) / job.tokenizer_file
                model.write_bytes(Place(job.out).read(job.tokenizer_file))
                _WORKER_TOKENIZER[key] = bpe_from_file(model, job.vocab)
    return _WORKER_TOKENIZER[key]


def encode_shard(job: ShardJob, index: int, split: Split, leading_separator: bool | None = None) -> dict:
    """Read split ``index`` of the source, encode it (in groups of ~ENCODE_BYTES of text) and
    write shard ``index`` and its record; returns the record. Every shard but the first starts
    with the separator (``leading_separator`` overrides), so the shards concatenate to the
    tokenisation of the whole document stream."""
    tokenizer = _tokenizer(job)
    separator = np.array([tokenizer.separator], dtype=job.dtype)
    digest, skipped = Fingerprint(), []
    pieces, group, size, documents, text_bytes = [], [], 0, 0, 0

    def flush():
        if pieces or (index > 0 if leading_separator is None else leading_separator):
            pieces.append(separator)
        pieces.append(tokenizer.encode_documents(group).astype(job.dtype, copy=False))

    for name, doc in iter_split_documents(job.source, job.text_field, split, skipped):
        digest.update(name, doc)
        if group and size + len(doc) > ENCODE_BYTES:
            flush()
            group, size = [], 0
        group.append(doc)
        size += len(doc)
        documents += 1
        text_bytes += len(doc)
    if group:
        flush()
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=job.dtype)
    name = f"shard-{index:06d}"
    record = {"file": f"{name}.bin", "split": split.to_json(), "tokens": int(tokens.size),
              "documents": documents, "text_bytes": text_bytes,
              "sha256": hashlib.sha256(tokens.data).hexdigest(), "digest": digest.hexdigest(),
              "leading_separator": bool(pieces) and int(tokens[0]) == tokenizer.separator
              and (index > 0 if leading_separator is None else leading_separator),
              "empty_documents": len(skipped), "first_empty": skipped[0] if skipped else None}
    out = Place(job.out)
    if tokens.size:
        out.write(f"{name}.bin", tokens.data)
    out.write(f"{name}.json", json.dumps(record).encode())
    return record


def _drop_leading_separator(job: ShardJob, splits: list[Split], shards: list[dict]) -> None:
    """The corpus's first document has no separator before it: when the splits before the first
    shard with documents held none (an empty first file, a range of blank lines), that shard
    was written with one; write it again without."""
    first = next((i for i, s in enumerate(shards) if s["documents"]), None)
    if first is not None and shards[first]["leading_separator"]:
        shards[first] = encode_shard(job, first, splits[first], leading_separator=False)


def _finished_shard(out: Place, index: int, split: Split, dtype: str) -> dict | None:
    """Shard ``index``'s record if a previous run finished it from this same split."""
    name = f"shard-{index:06d}"
    try:
        record = json.loads(out.read(f"{name}.json"))
        size = out.size(f"{name}.bin") if record.get("tokens") else 0
    except (OSError, ValueError):
        return None
    if record.get("split") == split.to_json() and size == record["tokens"] * np.dtype(dtype).itemsize:
        return record
    return None


def sample_split(job: ShardJob, index: int, split: Split) -> dict:
    """Pass 1 of a BPE preparation, for one split: its fingerprint and its bottom-k sample
    (`trainers.tokenizers.sample_documents`)."""
    digest = Fingerprint()

    def hashed():
        for name, doc in iter_split_documents(job.source, job.text_field, split):
            digest.update(name, doc)
            yield doc

    sample, cut = sample_documents(hashed(), BPE_SAMPLE_BYTES, BPE_SAMPLE_SEED, with_cut=True)
    return {"digest": digest.hexdigest(), "sample": sample, "cut": cut}


def _fingerprint_and_sample(job: ShardJob, splits: list[Split], engine) -> tuple[str, list[bytes]]:
    """The corpus fingerprint and the BPE training sample, the splits hashed and sampled in
    parallel; the merged samples are sampled again, which gives the whole stream's sample."""
    digests: dict[int, str] = {}
    kept: list[bytes] = []
    cut = math.inf
    for index, result in engine(sample_split, job, list(enumerate(splits))):
        digests[index] = result["digest"]
        cut = min(cut, result["cut"])
        # merged as they come (bounded: one sample and one result), with the least cut so far
        kept, cut = sample_documents(kept + result["sample"], BPE_SAMPLE_BYTES, BPE_SAMPLE_SEED, cut=cut,
                                     with_cut=True)
    return combine_fingerprints(digests[i] for i in range(len(splits))), kept


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _claim(out: Place, want: dict) -> None:
    """Make ``out`` this preparation's directory: new, empty, or an unfinished preparation (a
    matching one is resumed, minus its hidden temp files, the half-written shards; another
    recipe's is started over). A directory holding anything else is refused."""
    if out.info().type == pafs.FileType.File:
        raise ValueError(f"--out: {out} is a file, not a directory")
    names = out.names()
    if names:
        try:
            theirs = json.loads(out.read("recipe.json"))
        except (OSError, ValueError):
            raise ValueError(f"--out: {out} is not empty and holds no preparation; choose an "
                             "empty or new directory") from None
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                out.delete(name)
        if recipe_matches(theirs, want):
            return
        # an unfinished preparation of another recipe (the files were fixed, another tokenizer):
        # its shards are stale and only ever ours, so start over
        for name in names:
            if name.startswith("shard-") or name == "tokenizer.json":
                out.delete(name)
    out.write("recipe.json", json.dumps(want, indent=1).encode())


def _discard(out: Place, remove_dir: bool) -> None:
    """Remove what a failed preparation wrote in ``out`` (its recipe, shards, records, model,
    temp files), and ``out`` itself when ``remove_dir`` and nothing else is left there."""
    for name in out.names():
        if (name in ("recipe.json", "tokenizer.json") or name.startswith("shard-")
                or (name.startswith(".") and name.endswith(".tmp"))):
            out.delete(name)
    if remove_dir and out.exists() and not out.names():
        out.fs.delete_dir(out.root)
