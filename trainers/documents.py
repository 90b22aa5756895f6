"""A corpus's raw documents: the builtin stdlib corpus, plain-text files, JSONL and Parquet.

`plan_splits(source, split_bytes)` cuts a source, from file sizes alone, into `Split`s that
workers read independently (whole text files, byte ranges of JSONL files, row-group ranges of
Parquet files); `iter_split_documents` streams one split's non-empty documents as UTF-8 bytes
(one file, line or record batch in memory at a time) and `iter_documents` every split in order.
`Fingerprint` hashes a split's (name, document) pairs as they pass and `combine_fingerprints`
joins the splits' digests in order: the corpus identity (`corpus_fingerprint`), computable in
parallel. `read_documents` is the all-in-memory form for small corpora. Bytes that are not UTF-8, a JSONL line
that is not JSON or lacks `text_field`, and a non-text Parquet column are errors naming the file,
the line or row, and the byte offset. Tokenising and splitting are `trainers.data`'s.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

# Directory names left out of the builtin corpus: installed third-party code, the test suites
# (they hold deliberately malformed and generated files) and idle's test data.
BUILTIN_EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test",
                                   "__pycache__"})


def builtin_corpus_files() -> list[Path]:
    """Every .py file under sysconfig's stdlib directory, sorted by path relative to it, except
    files inside BUILTIN_EXCLUDED_DIRS and `_sysconfigdata*.py` (generated, machine-specific).
    Different Python versions give different corpora; the fingerprint tells them apart.
    Listed once per process (an installed stdlib does not change under a running program): a
    sweep's driver stamps the corpus several times (validate, the data checks, the cache key) and
    each listing took ~2.5 s, most of it walking site-packages only to drop it."""
    return [Path(p) for p in _builtin_corpus_paths()]


@functools.lru_cache(maxsize=1)
def _builtin_corpus_paths() -> tuple[str, ...]:
    # os.walk pruning the excluded directories instead of Path.rglob then filtering: the same
    # files (neither descends into symlinked directories), without listing site-packages.
    root = sysconfig.get_paths()["stdlib"]
    found = []
    for parent, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in BUILTIN_EXCLUDED_DIRS]
        rel = os.path.relpath(parent, root)
        for name in files:
            if name.endswith(".py") and not name.startswith("_sysconfigdata"):
                found.append((name if rel == "." else f"{rel}/{name}", os.path.join(parent, name)))
    return tuple(path for _, path in sorted(found))


SPLIT_BYTES = 16 << 20
"""Raw bytes per split (and so per prepared shard): bounds a worker's memory and what an
interrupted preparation loses; the corpus fingerprint is defined over splits of this size."""


class Fingerprint:
    """Streaming sha256 of one split's (name, document) pairs in order. `fingerprint(pairs)` is
    the same digest computed at once; `combine_fingerprints` turns the splits' digests into the
    corpus identity that keys caches and checkpoints."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def update(self, name: str, document: bytes) -> None:
        self._digest.update(f"{name}\0{len(document)}\0".encode())
        self._digest.update(document)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def fingerprint(names_and_documents: Iterable[tuple[str, bytes]]) -> str:
    digest = Fingerprint()
    for name, document in names_and_documents:
        digest.update(name, document)
    return digest.hexdigest()


def combine_fingerprints(split_digests: Iterable[str]) -> str:
    """The corpus fingerprint: sha256 of its splits' digests (hex, `Fingerprint.hexdigest`) in
    order, so workers hash their splits in parallel and only the digests meet."""
    digest = hashlib.sha256(b"splits\0")
    for split_digest in split_digests:
        digest.update(bytes.fromhex(split_digest))
    return digest.hexdigest()


def corpus_fingerprint(source: str, text_field: str = "text", split_bytes: int = SPLIT_BYTES) -> str:
    """The fingerprint of ``source`` read split by split in this process (what a preparation
    with the same ``split_bytes`` records in its manifest)."""
    return combine_fingerprints(fingerprint(iter_split_documents(source, text_field, split))
                                for split in plan_splits(source, split_bytes))


@dataclass(frozen=True)
class Split:
    """A piece of a source that one worker reads on its own. ``parts``: (path, start, stop) in
    reading order: byte ranges of JSONL files (a line belongs to the range its first byte is
    in), row-group ranges of Parquet files, and (0, size) for whole text files."""

    parts: tuple[tuple[str, int, int], ...]

    def to_json(self) -> list[list]:
        return [list(part) for part in self.parts]

    @classmethod
    def from_json(cls, parts) -> "Split":
        return cls(tuple((str(path), int(start), int(stop)) for path, start, stop in parts))


def source_kind(source: str) -> str:
    """builtin | jsonl | parquet | text: how ``source``'s files are read (by its name)."""
    if source == "builtin":
        return "builtin"
    if source.endswith(".jsonl"):
        return "jsonl"
    return "parquet" if source.endswith(".parquet") else "text"


def plan_splits(source: str, split_bytes: int = SPLIT_BYTES) -> list[Split]:
    """``source`` cut into splits of about ``split_bytes`` raw bytes each (a text file is never
    cut, a Parquet file only between row groups), from file sizes and Parquet footers alone.
    Deterministic for unchanged files, so a resumed preparation finds the same splits."""
    kind = source_kind(source)
    splits, parts, size = [], [], 0

    def add(path: str, start: int, stop: int, nbytes: int) -> None:
        nonlocal parts, size
        if parts and parts[-1][0] == path and parts[-1][2] == start and kind != "text":
            parts[-1] = (path, parts[-1][1], stop)  # the same file read on: one part
        else:
            parts.append((path, start, stop))
        size += nbytes
        if size >= split_bytes:
            splits.append(Split(tuple(parts)))
            parts, size = [], 0

    for path in source_files(source):
        if kind == "parquet":
            for group, nbytes in enumerate(_row_group_sizes(Path(path))):
                add(path, group, group + 1, nbytes)
        elif kind == "jsonl":
            end, pos = os.stat(path).st_size, 0
            while pos < end:
                take = min(end - pos, split_bytes - size)
                add(path, pos, pos + take, take)
                pos += take
        else:
            nbytes = os.stat(path).st_size
            add(path, 0, nbytes, nbytes)
    if parts:
        splits.append(Split(tuple(parts)))
    return splits


def source_files(source: str) -> list[str]:
    """The files a non-.bin source names, in reading order (stat only, nothing read). ValueError
    naming ``source`` when nothing matches. A glob works for every format (the Kaplan example
    reads /data/openwebtext/*.jsonl)."""
    if source == "builtin":
        return [str(p) for p in builtin_corpus_files()]
    paths = sorted(glob.glob(source, recursive=True)) if glob.has_magic(source) else [source]
    paths = [p for p in paths if os.path.isfile(p)]
    if not paths:
        raise ValueError(f"source: no files match {source!r} (expected 'builtin', a text file "
                         "or glob, *.jsonl, *.parquet or *.bin)")
    return paths


def describe_source(source: str, text_field: str, n_files: int) -> str:
    if source == "builtin":
        return f"builtin: {n_files} stdlib .py files under {Path(sysconfig.get_paths()['stdlib'])}"
    if source.endswith(".jsonl"):
        return f"jsonl: {source} field {text_field!r}"
    if source.endswith(".parquet"):
        return f"parquet: {source} column {text_field!r}"
    return f"text: {n_files} file(s) from {source}"


def iter_documents(source: str, text_field: str = "text", skipped: list | None = None
                   ) -> Iterator[tuple[str, bytes]]:
    """Stream (name, UTF-8 bytes) for every non-empty document of a non-.bin source, split after
    split (`iter_split_documents`)."""
    for split in plan_splits(source):
        yield from iter_split_documents(source, text_field, split, skipped)


def iter_split_documents(source: str, text_field: str, split: Split, skipped: list | None = None
                         ) -> Iterator[tuple[str, bytes]]:
    """Stream (name, UTF-8 bytes) for every non-empty document of one split of ``source``,
    holding one document (text file), one line (JSONL) or one record batch (Parquet) at a time.
    Names: the path (text; relative to the stdlib for builtin), ``file at byte N`` (JSONL),
    ``file:row`` (Parquet). Empty documents are left out and their names appended to
    ``skipped`` (when given). Errors (ValueError) name the file, the line or row, and the byte
    offset; a file that cannot be opened is a ValueError naming it."""
    kind = source_kind(source)
    root = Path(sysconfig.get_paths()["stdlib"]) if kind == "builtin" else None
    for path, start, stop in split.parts:
        if root is not None:
            documents = iter([(Path(path).relative_to(root).as_posix(), _read_file(path))])
        elif kind == "jsonl":
            documents = _jsonl_documents(Path(path), text_field, start, stop)
        elif kind == "parquet":
            documents = _parquet_documents(Path(path), text_field, start, stop)
        else:
            documents = iter([(path, _text_document(path))])
        for name, document in documents:
            if document:
                yield name, document
            elif skipped is not None:
                skipped.append(name)


def read_documents(source: str, text_field: str = "text") -> tuple[list[bytes], str, str]:
    """(documents as UTF-8 bytes, fingerprint, description) for every non-.bin source, all in
    memory: for small corpora and tests; `trainers.prepare` streams instead."""
    named = [list(iter_split_documents(source, text_field, split)) for split in plan_splits(source)]
    if not any(named):
        raise ValueError(f"source: {source!r} contains no documents")
    return ([doc for split in named for _, doc in split], combine_fingerprints(map(fingerprint, named)),
            describe_source(source, text_field, len(source_files(source))))


def _read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:  # unreadable (permissions, a vanished file): name it
        raise ValueError(f"source: cannot read {path} ({err.strerror or err})") from None


_RECODE_HINT = "re-encode it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"


def _decode_utf8(data: bytes, where: str, line: int = 1, offset: int = 0) -> str:
    """``data`` as text; ValueError naming ``where``, the line and the byte offset in the file
    (``line``/``offset``: where ``data`` starts) if it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line += data.count(b"\n", 0, err.start)
        raise ValueError(f"source: {where} line {line} (byte offset {offset + err.start}) is not UTF-8 "
                         f"({err.reason}: {data[err.start:err.end]!r}); {_RECODE_HINT}") from None


def _text_document(path: str) -> bytes:
    data = _read_file(path)
    _decode_utf8(data, path)  # the byte tokeniser would take any bytes; the README promises UTF-8
    return data


def _jsonl_documents(path: Path, text_field: str, start: int = 0, stop: int | None = None):
    """(name, UTF-8 bytes) of each non-blank line's ``text_field`` among the lines whose first
    byte lies in [start, stop); ValueError naming the file, line and byte offset of a line that
    is not UTF-8, not a JSON object, or lacks the field."""
    try:
        f = path.open("rb")
    except OSError as err:
        raise ValueError(f"source: cannot read {path} ({err.strerror or err})") from None
    with f:
        if start > 0:
            f.seek(start - 1)
            if f.read(1) != b"\n":
                f.readline()  # the rest of a line that began in the previous range
        offset = f.tell()
        for raw in f:
            if stop is not None and offset >= stop:
                break
            line_start, offset = offset, offset + len(raw)
            where = _Where(path, line_start)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                _decode_utf8(raw, str(path), where.line, line_start)  # raises, naming the line
            if line_start == 0:
                text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is still UTF-8
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"source: {where} is not JSON ({err.msg}, column {err.colno})") from None
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                raise ValueError(f"text_field: {where} has no string field {text_field!r}")
            try:
                document = record[text_field].encode()
            except UnicodeEncodeError as err:  # a JSON escape of a lone surrogate, e.g. "\ud800"
                raise ValueError(f"source: {where}: field {text_field!r} is not valid Unicode "
                                 f"({err.reason}); {_RECODE_HINT}") from None
            yield f"{path.name} at byte {line_start}", document


class _Where:
    """``file line N (byte offset X)`` of a JSONL line, for error messages only: a split that
    starts mid-file does not know its line numbers, so N is counted when a message needs it."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path, self.offset = path, offset

    @property
    def line(self) -> int:
        newlines = 0
        with self.path.open("rb") as f:
            left = self.offset
            while left > 0 and (block := f.read(min(left, 1 << 20))):
                newlines += block.count(b"\n")
                left -= len(block)
        return newlines + 1

    def __str__(self) -> str:
        return f"{self.path} line {self.line} (byte offset {self.offset})"


def _row_group_sizes(path: Path) -> list[int]:
    """Uncompressed bytes of each row group of a Parquet file (its footer only)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except (OSError, pa.ArrowException) as err:
        raise ValueError(f"source: {path} is not a readable Parquet file ({err})") from None
    return [meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)]


def _parquet_documents(path: Path, text_field: str, first_group: int = 0, stop_group: int | None = None
                       ) -> Iterator[tuple[str, bytes]]:
    """(name, UTF-8 bytes) per row of a string or binary column (nulls read as empty) in row
    groups [first_group, stop_group), streamed in record batches so memory holds one batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as err:
        raise ValueError(f"source: {path} is not a readable Parquet file ({err})") from None
    schema = parquet.schema_arrow
    if text_field not in schema.names:
        raise ValueError(f"text_field: {text_field!r} is not a column of {path}; columns: {schema.names}")
    kind = schema.field(text_field).type
    if not any(check(kind) for check in (pa.types.is_string, pa.types.is_large_string,
                                          pa.types.is_binary, pa.types.is_large_binary)):
        raise ValueError(f"text_field: column {text_field!r} of {path} is {kind}, not text")
    meta = parquet.metadata
    stop_group = meta.num_row_groups if stop_group is None else stop_group
    row = sum(meta.row_group(i).num_rows for i in range(first_group))
    for batch in parquet.iter_batches(batch_size=1024, columns=[text_field],
                                      row_groups=range(first_group, stop_group)):
        for value in batch.column(0).cast(pa.large_binary()).to_pylist():
            value = value or b""
            _decode_utf8(value, f"{path} row {row}")
            yield f"{path.name}:{row}", value
            row += 1
