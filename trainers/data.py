"""Offline corpora, tokenisers, nested D-token training subsets and deterministic samplers.

Corpus sources (CorpusSpec.source):
  "builtin"      the running Python's standard-library .py sources (see `trainers.documents`)
  *.jsonl        one JSON object per line; the document is obj[text_field]
  *.parquet      the text_field column
  *.bin          nanoGPT-style pre-tokenised uint16 tokens (needs vocab_size; no tokeniser)
  other path/glob  plain-text files, each one document (glob supports ** recursion)
Tokenisers (CorpusSpec.tokenizer):
  "byte"            raw UTF-8 bytes, vocab 256; documents separated by a NUL byte (never in text)
  "bpe:<vocab>"     byte-level BPE trained locally with HF `tokenizers` on a seeded
                    BPE_SAMPLE_BYTES sample of the corpus; documents separated by <|endoftext|> (id 0)
  "tiktoken:gpt2"   only if tiktoken and its gpt2 files are already cached (no downloads)
  a directory with a manifest.json: a corpus prepared by `scalesweep prepare` (trainers.prepare)
A raw corpus is prepared once (streamed, tokenised in parallel, sharded token memmaps and a
manifest: `trainers.prepare`) into $SCALESWEEP_CACHE (default ~/.cache/scalesweep), keyed by
its files' paths, sizes and mtimes and the tokeniser's recipe (`tokenizer_key`); trained BPE
models are cached keyed by the corpus fingerprint (sha256 of document names and bytes) and the
recipe. Every file is written atomically (temp file + rename), so concurrent trials never see
half a file. Training subsets are views into the memmaps (`trainers.token_arrays`).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainers.fields import coerce_fields, option, positive_int, text
from trainers.token_arrays import BlockView, ShardedTokens
from trainers.tokenizers import corpus_vocab_size, default_cache_dir


@dataclass(frozen=True)
class CorpusSpec:
    source: str = option("builtin", "'builtin' (the Python standard library's sources), a text "
                         "file or glob, *.jsonl, *.parquet, a pre-tokenised uint16 *.bin, or a corpus "
                         "prepared by `scalesweep prepare`: its directory or a pyarrow.fs URI "
                         "(s3://bucket/corpora/owt) holding manifest.json", text)
    tokenizer: str = option("byte", "byte (vocab 256) | bpe:<vocab >= 257> (trained locally on the "
                            "corpus) | tiktoken:gpt2 (only if its files are cached)", text)
    text_field: str = option("text", "JSONL field / Parquet column holding the text", text)
    vocab_size: int | None = option(None, "model vocabulary: required for .bin; elsewhere optional "
                                    "padding (>= the tokenizer's)", positive_int, optional=True)

    def __post_init__(self) -> None:
        coerce_fields(self)


def unread_text_field(spec: CorpusSpec) -> str | None:
    """Why ``spec.text_field``, set to other than its default, is never read (only *.jsonl and
    *.parquet sources have fields: plain text, 'builtin', a pre-tokenised .bin and a prepared
    corpus do not), None when it is read or left at "text". For the user's input (a spec's
    corpus.text_field, prepare's --text-field): a field that changes nothing is refused, not ignored."""
    from trainers.documents import source_kind

    if spec.text_field == "text" or source_kind(spec.source) in ("jsonl", "parquet"):
        return None
    return (f"{spec.text_field!r} would never be read: only *.jsonl and *.parquet sources have fields, "
            f"and {spec.source} is not one")


@dataclass(frozen=True)
class TokenizedCorpus:
    tokens: np.ndarray | ShardedTokens  # 1-D, uint16 (vocab <= 65536) or uint32, memory-mapped
    vocab_size: int
    fingerprint: str     # sha256 hex of the raw corpus (not of the tokeniser)
    description: str


@dataclass(frozen=True)
class DataSplits:
    train: BlockView     # exactly dataset_tokens tokens: a view into the corpus, not a copy
    val: np.ndarray      # fixed validation tokens, disjoint from every training subset


# ---------------------------------------------------------------------------------------------
# Tokenisers
# ------------------------------------------------------------------------------------------


def _check_vocab(spec: CorpusSpec, tokenizer_vocab: int) -> int:
    vocab = corpus_vocab_size(spec)
    if tokenizer_vocab > vocab:
        raise ValueError(f"corpus.tokenizer: {spec.tokenizer!r} produced a vocabulary of "
                         f"{tokenizer_vocab}, larger than the expected {vocab}")
    return vocab


def _max_token(path: str, tokens: np.ndarray) -> int:
    """The largest token id in a .bin, scanned once and remembered under the cache keyed by the
    file's path, size and mtime (a multi-GB scan on every trial start would dominate it)."""
    info = os.stat(path)
    key = hashlib.sha256(f"{os.path.abspath(path)}\0{info.st_size}\0{info.st_mtime_ns}".encode()).hexdigest()[:24]
    record = default_cache_dir() / "bin-max-token" / key
    try:
        return int(record.read_text())
    except (OSError, ValueError):
        pass
    max_token = int(tokens.max())
    from metrics.fs import write_atomically

    write_atomically(record, lambda f: f.write(str(max_token).encode()))
    return max_token


def _load_bin(spec: CorpusSpec) -> TokenizedCorpus:
    corpus_vocab_size(spec)  # .bin needs vocab_size and the default tokenizer
    size = os.path.getsize(spec.source)  # FileNotFoundError names the path
    if size == 0 or size % 2:
        raise ValueError(f"source: {spec.source} holds {size} bytes, not a whole number of uint16 tokens "
                         "(a nanoGPT .bin file is uint16 token ids)")
    tokens = np.memmap(spec.source, dtype=np.uint16, mode="r")
    max_token = _max_token(spec.source, tokens)
    if max_token >= spec.vocab_size:
        raise ValueError(f"vocab_size: {spec.source} contains token {max_token} >= vocab_size "
                         f"{spec.vocab_size}")
    # Hashing a multi-GB file on every load would dominate start-up; size + both ends identify it.
    edge = 1 << 20
    digest = hashlib.sha256(f"bin\0{tokens.size}\0".encode())
    digest.update(tokens[:edge].tobytes())
    digest.update(tokens[-edge:].tobytes())
    return TokenizedCorpus(tokens, spec.vocab_size, digest.hexdigest(),
                           f"bin: {spec.source} ({tokens.size} uint16 tokens)")


def load_corpus(spec: CorpusSpec, cache_dir: str | Path | None = None,
                workers: int | None = None) -> TokenizedCorpus:
    """The corpus's tokens, memory-mapped. A `.bin` is mapped as is; a prepared directory
    (`scalesweep prepare`) is opened from its manifest; a raw corpus is prepared once into the
    cache (`trainers.prepare.ensure_prepared`, ``workers`` processes), keyed by its files' paths,
    sizes and mtimes and the tokenizer's recipe, so a later load stats the files and reads no raw
    text. Raises ValueError naming the field (source, tokenizer, vocab_size, text_field)."""
    if spec.source.endswith(".bin"):
        return _load_bin(spec)
    from trainers.prepare import ensure_prepared
    from trainers.prepared import is_prepared, open_prepared

    corpus_vocab_size(spec)  # a bad tokenizer name is refused before anything is read
    if is_prepared(spec.source):  # a local directory or a pyarrow.fs URI (fetched once per machine)
        path = spec.source
        tokens, manifest = open_prepared(path, cache_dir)
    else:
        path = ensure_prepared(spec, cache_dir, workers)
        try:
            tokens, manifest = open_prepared(path)
        except ValueError as err:  # a damaged cache entry (a full disk, a stray edit): rebuild it
            warnings.warn(f"prepared-corpus cache {path} is damaged ({err}); preparing it again", stacklevel=2)
            shutil.rmtree(path)
            tokens, manifest = open_prepared(ensure_prepared(spec, cache_dir, workers))
    prepared_with = manifest["tokenizer"]["name"]
    if prepared_with != spec.tokenizer:
        raise ValueError(f"tokenizer: {path} was prepared with {prepared_with!r}, not {spec.tokenizer!r}")
    return TokenizedCorpus(tokens, _check_vocab(spec, manifest["tokenizer"]["vocab_size"]),
                           manifest["fingerprint"], f"{manifest['description']}, tokenizer "
                           f"{spec.tokenizer}, {tokens.size} tokens (prepared in {path})")


# ---------------------------------------------------------------------------------------------
# Splits, sampling, evaluation windows
# ---------------------------------------------------------------------------------------------

# The validation blocks are the LAST blocks of one fixed permutation of block indices, so they do
# not depend on `seed` or D, and a larger val_tokens only adds blocks (nested validation sets).
_VAL_PERMUTATION_SEED = 0


def _block_layout(n_tokens: int, val_tokens: int, block_tokens: int) -> tuple[int, np.ndarray]:
    """(number of full blocks, validation block indices in validation-stream order)."""
    if block_tokens <= 0:
        raise ValueError(f"block_tokens must be > 0, got {block_tokens}")
    n_blocks = n_tokens // block_tokens
    n_val_blocks = -(-val_tokens // block_tokens)
    if val_tokens <= 0 or n_val_blocks >= n_blocks:
        raise ValueError(f"val_tokens: {val_tokens} must be > 0 and need fewer than all "
                         f"{n_blocks} blocks of {block_tokens} tokens (corpus: {n_tokens} tokens)")
    order = np.random.default_rng(_VAL_PERMUTATION_SEED).permutation(n_blocks)
    return n_blocks, order[::-1][:n_val_blocks]




def validation_tokens(corpus: TokenizedCorpus, val_tokens: int, *,
                      block_tokens: int = 4096) -> np.ndarray:
    """The first val_tokens tokens of the validation stream (the same ones `make_splits` uses).
    Also the way to take a fixed slice of an extra evaluation corpus."""
    _, val_blocks = _block_layout(corpus.tokens.size, val_tokens, block_tokens)
    return np.asarray(BlockView(corpus.tokens, val_blocks, block_tokens, val_tokens))


def check_split_sizes(n_tokens: int, dataset_tokens: int, *, val_tokens: int, n_ctx: int,
                      block_tokens: int = 4096) -> None:
    """What `make_splits` needs of a corpus of `n_tokens` tokens; raises ValueError naming the
    field (dataset_tokens larger than the corpus minus the validation blocks, val_tokens that
    need every block, n_ctx longer than either split). Needs only the count, so a sweep checks
    every trial before it starts (`orchestrator.spec_data`)."""
    n_blocks, val_blocks = _block_layout(n_tokens, val_tokens, block_tokens)
    available = (n_blocks - val_blocks.size) * block_tokens
    if not 0 < dataset_tokens <= available:
        raise ValueError(f"dataset_tokens: {dataset_tokens} must be in 1..{available} (training "
                         f"tokens left after {val_blocks.size} validation blocks of {block_tokens}; "
                         f"corpus: {n_tokens} tokens)")
    for name, size in (("dataset_tokens", dataset_tokens), ("val_tokens", val_tokens)):
        if n_ctx <= 0 or n_ctx + 1 > size:
            raise ValueError(f"n_ctx: {n_ctx} must be > 0 and n_ctx + 1 <= {name} ({size})")


def make_splits(corpus: TokenizedCorpus, dataset_tokens: int, *, val_tokens: int, n_ctx: int,
                block_tokens: int = 4096, seed: int = 0) -> DataSplits:
    """Cut the corpus into full blocks of block_tokens (a trailing partial block is dropped).
    Validation = `validation_tokens` (seed- and D-independent). Training stream = the other blocks
    in the order of permutation(seed); the training set is its first dataset_tokens tokens, so
    for a fixed seed and val_tokens smaller D is a prefix of larger D (nested subsets). Windows
    are cut inside each array, which holds only its own blocks, so no window mixes val and train.
    """
    check_split_sizes(corpus.tokens.size, dataset_tokens, val_tokens=val_tokens, n_ctx=n_ctx,
                      block_tokens=block_tokens)
    n_blocks, val_blocks = _block_layout(corpus.tokens.size, val_tokens, block_tokens)
    is_val = np.zeros(n_blocks, dtype=bool)
    is_val[val_blocks] = True
    order = np.random.default_rng(seed).permutation(n_blocks)
    train_blocks = order[~is_val[order]]
    return DataSplits(
        train=BlockView(corpus.tokens, train_blocks, block_tokens, dataset_tokens),
        val=np.asarray(BlockView(corpus.tokens, val_blocks, block_tokens, val_tokens)),
    )


def _windows(tokens, starts: np.ndarray, n_ctx: int) -> np.ndarray:
    # take(): numpy's flat gather, which the views of trainers.token_arrays also provide
    return tokens.take(starts[:, None] + np.arange(n_ctx + 1)).astype(np.int64)


class SequenceSampler:
    """Deterministic training sampler. Windows of n_ctx + 1 tokens start every n_ctx tokens
    (inputs never overlap; each token after the first is a target once per epoch). Window order
    is a permutation drawn from (seed, epoch); `next_global_batch` wraps into the next epoch as
    needed, so the `dataset` regime repeats its D tokens. State is (epoch, cursor)."""

    def __init__(self, tokens: np.ndarray, n_ctx: int, seed: int = 0):
        if n_ctx <= 0 or tokens.size < n_ctx + 1:
            raise ValueError(f"n_ctx: {n_ctx} must be > 0 and n_ctx + 1 <= len(tokens) "
                             f"({tokens.size})")
        self.tokens, self.n_ctx, self.seed = tokens, n_ctx, seed
        self.n_windows = (tokens.size - 1) // n_ctx
        self.epoch, self.cursor = 0, 0
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)

    def next_global_batch(self, n_seqs: int) -> np.ndarray:
        """int64 array [n_seqs, n_ctx + 1]; inputs are [:, :-1], targets [:, 1:]."""
        if n_seqs <= 0:
            raise ValueError(f"n_seqs must be > 0, got {n_seqs}")
        picked = []
        while n_seqs > 0:
            take = min(n_seqs, self.n_windows - self.cursor)
            picked.append(self._order[self.cursor:self.cursor + take])
            self.cursor += take
            n_seqs -= take
            if self.cursor == self.n_windows:
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._epoch_order(self.epoch)
        return _windows(self.tokens, np.concatenate(picked) * self.n_ctx, self.n_ctx)

    @property
    def epochs_completed(self) -> float:
        return self.epoch + self.cursor / self.n_windows

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed,
                "n_ctx": self.n_ctx, "n_windows": self.n_windows}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "n_ctx", "n_windows"):
            if state[key] != getattr(self, key):
                raise ValueError(f"{key}: checkpoint has {state[key]}, sampler has "
                                 f"{getattr(self, key)} (different data or settings)")
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._epoch_order(self.epoch)


def eval_batches(tokens: np.ndarray, n_ctx: int, max_tokens: int | None = None) -> np.ndarray:
    """Fixed validation windows [n, n_ctx + 1] (int64) starting every n_ctx tokens from the
    start; n = as many as fit, capped so n * n_ctx <= max_tokens predicted tokens."""
    n = eval_window_count(tokens.size, n_ctx, max_tokens)
    return _windows(tokens, np.arange(n) * n_ctx, n_ctx)


def eval_window_count(n_tokens: int, n_ctx: int, max_tokens: int | None = None) -> int:
    """How many windows `eval_batches` cuts from `n_tokens` tokens (> 0, else ValueError)."""
    n = (n_tokens - 1) // n_ctx if n_ctx > 0 else 0
    if max_tokens is not None:
        n = min(n, max_tokens // n_ctx)
    if n <= 0:
        raise ValueError(f"n_ctx: {n_ctx} leaves no evaluation window in {n_tokens} tokens "
                         f"(max_tokens={max_tokens})")
    return n
