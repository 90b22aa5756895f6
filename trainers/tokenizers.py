"""Tokenisers that work offline: raw bytes, locally trained byte-level BPE, cached tiktoken.

Each is a `TextTokenizer`: documents -> one token array (documents separated by an
end-of-text token) and ids -> text. Trained BPE models are cached under $SCALESWEEP_CACHE
(default ~/.cache/scalesweep), keyed by corpus fingerprint and `tokenizer_key` (the recipe).
"""
from __future__ import annotations

import hashlib
import heapq
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from metrics.fs import write_atomically
from trainers.fields import SpecError

BPE_SAMPLE_BYTES = 5_000_000  # BPE trains on a seeded 5 MB sample of documents (~1 s; merges saturate)
BPE_SAMPLE_SEED = 0
END_OF_TEXT = "<|endoftext|>"
TOKENIZER_VOCAB = {"byte": 256, "tiktoken:gpt2": 50257}  # plus "bpe:<vocab>": vocab


def corpus_vocab_size(spec, where: str = "corpus") -> int:
    """The model vocabulary this corpus needs, known without reading it: the tokenizer's, or
    `vocab_size` when given (padding; never smaller). Raises SpecError naming ``where.<field>``.
    `trainers.data.load_corpus` returns the same number. ``spec``: a `trainers.data.CorpusSpec`."""
    if spec.source.endswith(".bin"):
        if spec.tokenizer != "byte":
            raise SpecError(f"{where}.tokenizer: a .bin corpus is already tokenised; leave "
                            f"tokenizer at its default, got {spec.tokenizer!r}")
        if spec.vocab_size is None:
            raise SpecError(f"{where}.vocab_size: a pre-tokenised .bin corpus needs vocab_size "
                            "(nanoGPT's GPT-2 data uses 50304)")
        return spec.vocab_size
    name = spec.tokenizer
    is_bpe = name.startswith("bpe:") and name[4:].isdigit() and 257 <= int(name[4:]) <= 2**31 - 1
    if name not in TOKENIZER_VOCAB and not is_bpe:
        raise SpecError(f"{where}.tokenizer: must be one of byte, bpe:<vocab >= 257>, "
                        f"tiktoken:gpt2; got {name!r}")
    tokenizer_vocab = int(name[4:]) if is_bpe else TOKENIZER_VOCAB[name]
    if spec.vocab_size is not None and spec.vocab_size < tokenizer_vocab:
        raise SpecError(f"{where}.vocab_size: {spec.vocab_size} is smaller than the {name!r} "
                        f"tokenizer's vocabulary ({tokenizer_vocab})")
    return spec.vocab_size or tokenizer_vocab


def default_cache_dir() -> Path:
    return Path(os.environ.get("SCALESWEEP_CACHE") or Path.home() / ".cache" / "scalesweep")


# ---------------------------------------------------------------------------------------------
# Tokenisers
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TextTokenizer:
    """name, vocab_size, the separator id, and two functions: documents -> one token array (documents separated by
    an end-of-text token), and token ids -> text."""
    name: str
    vocab_size: int
    separator: int       # the end-of-text id written between documents
    encode_documents: Callable[[Sequence[bytes]], np.ndarray]
    decode: Callable[[Sequence[int]], str]


def token_dtype(vocab_size: int) -> type:
    """uint16 when every id fits (vocab <= 65536), else uint32: the on-disk token width."""
    return np.uint16 if vocab_size <= 2**16 else np.uint32


def _byte_tokenizer() -> TextTokenizer:
    def encode(documents: Sequence[bytes]) -> np.ndarray:
        return np.frombuffer(b"\0".join(documents), dtype=np.uint8).astype(np.uint16)

    def decode(ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    return TextTokenizer("byte", 256, 0, encode, decode)


def tokenizer_key(name: str) -> str:
    """The tokeniser's part of cache file names. For BPE it covers everything the trained
    merges depend on besides the corpus (vocab, sample size, special token, pre-tokeniser, the
    `tokenizers` version), so a cached model or token array from another recipe is never reused."""
    if not name.startswith("bpe:"):
        return name.replace(":", "-")
    from importlib.metadata import PackageNotFoundError, version

    try:
        library = version("tokenizers")
    except PackageNotFoundError:
        library = "missing"
    recipe = (f"{BPE_SAMPLE_BYTES}|seeded-sample-{BPE_SAMPLE_SEED}|{END_OF_TEXT}|bytelevel-no-prefix|"
              f"tokenizers-{library}")
    return f"bpe-{name[4:]}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def _bpe_tokenizer(vocab_size: int, documents: Iterable[bytes], fingerprint: str,
                   cache_dir: Path) -> TextTokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    model_path = cache_dir / "bpe" / f"{fingerprint[:24]}-{tokenizer_key(f'bpe:{vocab_size}')}.json"
    tok = None
    if model_path.exists():
        try:
            tok = Tokenizer.from_file(str(model_path))
        except Exception as err:  # the library raises a bare Exception for a corrupt file
            warnings.warn(f"tokenizer cache {model_path} is unreadable ({err}); training it again", stacklevel=3)
    if tok is None:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=[END_OF_TEXT], show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        sample = sample_documents(documents, BPE_SAMPLE_BYTES, BPE_SAMPLE_SEED)
        tok.train_from_iterator((d.decode("utf-8", errors="replace") for d in sample), trainer=trainer)
        write_atomically(model_path, lambda out: out.write(tok.to_str().encode()))
    return _bpe_encoder(tok, vocab_size)


def bpe_from_file(path: str | Path, vocab_size: int) -> TextTokenizer:
    """The BPE tokeniser saved at ``path`` (a prepared corpus's tokenizer.json): how worker
    processes load exactly the model their preparation trained."""
    from tokenizers import Tokenizer

    return _bpe_encoder(Tokenizer.from_file(str(path)), vocab_size)


def _bpe_encoder(tok, vocab_size: int) -> TextTokenizer:
    eot_id = tok.token_to_id(END_OF_TEXT)

    def encode(docs: Sequence[bytes]) -> np.ndarray:
        # encode_batch_fast: the same ids as encode_batch without the character offsets (~1.3x)
        encodings = tok.encode_batch_fast([d.decode("utf-8", errors="replace") for d in docs])
        ids: list[int] = []
        for encoding in encodings:
            ids.extend(encoding.ids)
            ids.append(eot_id)
        return np.array(ids[:-1], dtype=token_dtype(vocab_size))

    def decode(ids: Sequence[int]) -> str:
        return tok.decode([int(i) for i in ids], skip_special_tokens=False)

    # Small corpora can yield fewer merges than asked; ids stay < vocab_size either way, and
    # reporting the requested size keeps model shapes independent of that accident.
    return TextTokenizer(f"bpe:{vocab_size}", vocab_size, eot_id, encode, decode)


def _priority(document: bytes, seed: int) -> bytes:
    return hashlib.blake2b(document, digest_size=8, salt=seed.to_bytes(16, "little")).digest()


def sample_documents(documents: Iterable[bytes], max_bytes: int, seed: int, *, cut: float = math.inf,
                     with_cut: bool = False):
    """A seeded sample of at most ``max_bytes`` bytes, streamed in bounded memory: each document
    (cut to ``max_bytes``) gets a pseudo-random priority hashed from (seed, its bytes); the sample
    is every document whose priority lies below the first priority at which the cumulative size,
    in priority order, would pass ``max_bytes`` (so copies of one document are all in or all out),
    in priority order. Bottom-k sampling: uniform over documents and independent of their order;
    sampling a sample returns it unchanged. ``with_cut``: also return that cut priority, and
    ``cut`` starts from one: the union of several streams' samples sampled again with the least
    of their cuts is the sample of all the streams at once (how `trainers.prepare` samples its
    splits in parallel). Without the cut rule a document evicted early could be replaced by a
    later, higher-priority one, and the result would depend on the order."""
    heap: list[tuple[int, bytes]] = []  # (-priority, document): heap[0] holds the highest priority
    total = 0
    for document in documents:
        document = bytes(document[:max_bytes])
        priority = int.from_bytes(_priority(document, seed), "big")
        if priority >= cut:
            continue
        heapq.heappush(heap, (-priority, document))
        total += len(document)
        while total > max_bytes or (heap and -heap[0][0] >= cut):
            evicted, dropped = heapq.heappop(heap)
            total -= len(dropped)
            cut = min(cut, -evicted)  # nothing at or above an evicted priority may enter later
    sample = [document for _, document in sorted(heap, reverse=True)]
    return (sample, cut) if with_cut else sample


def _tiktoken_gpt2() -> TextTokenizer:
    try:
        import tiktoken
        import tiktoken.load  # noqa: F401  (its cache helpers)
    except ImportError as exc:
        raise ValueError("tokenizer: 'tiktoken:gpt2' needs the tiktoken package, which is not "
                         "installed; offline, use 'byte' or 'bpe:<vocab>'") from exc
    # tiktoken downloads gpt2's vocab.bpe and encoder.json on first use, caching each under
    # sha1(url). Refuse up front rather than hang on a network call on an offline machine.
    cache = (os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
             or os.path.join(tempfile.gettempdir(), "data-gym-cache"))
    base = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
    missing = [name for name in ("vocab.bpe", "encoder.json")
               if not os.path.exists(os.path.join(cache, hashlib.sha1((base + name).encode())
                                                  .hexdigest()))]
    if missing:
        raise ValueError(f"tokenizer: 'tiktoken:gpt2' files {missing} are not cached in {cache} "
                         "and this tool does not download; use 'byte' or 'bpe:<vocab>'")
    enc = tiktoken.get_encoding("gpt2")

    def encode(docs: Sequence[bytes]) -> np.ndarray:
        ids: list[int] = []
        for k, doc in enumerate(docs):
            if k:
                ids.append(enc.eot_token)
            ids.extend(enc.encode_ordinary(doc.decode("utf-8", errors="replace")))
        return np.asarray(ids, dtype=token_dtype(enc.n_vocab))

    return TextTokenizer("tiktoken:gpt2", enc.n_vocab, enc.eot_token, encode, lambda ids: enc.decode(list(ids)))


def build_tokenizer(name: str, documents: Iterable[bytes], fingerprint: str,
                    cache_dir: str | Path | None = None) -> TextTokenizer:
    """Tokeniser by name; "bpe:<vocab>" trains on a seeded BPE_SAMPLE_BYTES sample of
    `documents` (`sample_documents`; any iterable, streamed) or loads the model cached under
    (fingerprint, recipe), in which case `documents` is not read."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if name == "byte":
        return _byte_tokenizer()
    if name == "tiktoken:gpt2":
        return _tiktoken_gpt2()
    if name.startswith("bpe:"):
        size = name[4:]
        if not size.isdigit() or not 257 <= int(size) <= 2**31 - 1:
            raise ValueError(f"tokenizer: 'bpe:<vocab>' needs an integer vocab >= 257, got {name!r}")
        return _bpe_tokenizer(int(size), documents, fingerprint, cache)
    raise ValueError(f"tokenizer: {name!r} is not one of 'byte', 'bpe:<vocab>', 'tiktoken:gpt2'")


