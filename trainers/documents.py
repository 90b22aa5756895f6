"""A corpus's raw documents: the builtin stdlib corpus, plain-text files, JSONL and Parquet.

`iter_documents(source, text_field)` streams every non-empty document as UTF-8 bytes (one file,
line or record batch in memory at a time); `Fingerprint` hashes them as they pass (sha256 of
names and bytes: the corpus identity); `read_documents` is the all-in-memory form for small
corpora. Bytes that are not UTF-8, a JSONL line
that is not JSON or lacks `text_field`, and a non-text Parquet column are errors naming the file,
the line or row, and the byte offset. Tokenising and splitting are `trainers.data`'s.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sysconfig
from pathlib import Path
from typing import Iterable, Iterator

# Directory names left out of the builtin corpus: installed third-party code, the test suites
# (they hold deliberately malformed and generated files) and idle's test data.
BUILTIN_EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test",
                                   "__pycache__"})


def builtin_corpus_files() -> list[Path]:
    """Every .py file under sysconfig's stdlib directory, sorted by path relative to it, except
    files inside BUILTIN_EXCLUDED_DIRS and `_sysconfigdata*.py` (generated, machine-specific).
    Different Python versions give different corpora; the fingerprint tells them apart."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py")
             if not BUILTIN_EXCLUDED_DIRS.intersection(p.relative_to(root).parts[:-1])
             and not p.name.startswith("_sysconfigdata")]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


class Fingerprint:
    """Streaming sha256 of (name, document) pairs in order: the corpus identity that keys caches
    and checkpoints. `fingerprint(pairs)` is the same digest computed at once."""

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
    """Stream (name, UTF-8 bytes) for every non-empty document of a non-.bin source, holding one
    document (text file), one line (JSONL) or one row group (Parquet) at a time. Empty documents
    are left out and their names appended to ``skipped`` (when given), so callers can count
    them. Errors (ValueError) name the file, the line or row, and the byte offset; a file that
    cannot be opened is a ValueError naming it."""
    paths = source_files(source)
    root = Path(sysconfig.get_paths()["stdlib"]) if source == "builtin" else None
    for path in paths:
        if root is not None:
            documents = iter([(Path(path).relative_to(root).as_posix(), _read_file(path))])
        elif source.endswith(".jsonl"):
            documents = _jsonl_documents(Path(path), text_field)
        elif source.endswith(".parquet"):
            documents = _parquet_documents(Path(path), text_field)
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
    named = list(iter_documents(source, text_field))
    if not named:
        raise ValueError(f"source: {source!r} contains no documents")
    return ([doc for _, doc in named], fingerprint(named),
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


def _jsonl_documents(path: Path, text_field: str):
    """(name, UTF-8 bytes) of each non-blank line's ``text_field``; ValueError naming the file,
    line and byte offset of a line that is not UTF-8, not a JSON object, or lacks the field."""
    offset = 0
    try:
        f = path.open("rb")
    except OSError as err:
        raise ValueError(f"source: cannot read {path} ({err.strerror or err})") from None
    with f:
        for line_no, raw in enumerate(f, 1):
            start, offset = offset, offset + len(raw)
            where = f"{path} line {line_no} (byte offset {start})"
            text = _decode_utf8(raw, str(path), line_no, start)
            if line_no == 1:
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
            yield f"{path.name}:{line_no}", document


def _parquet_documents(path: Path, text_field: str) -> Iterator[tuple[str, bytes]]:
    """(name, UTF-8 bytes) per row of a string or binary column (nulls read as empty), streamed
    in record batches so memory holds one batch, not the file."""
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
    row = 0
    for batch in parquet.iter_batches(batch_size=1024, columns=[text_field]):
        for value in batch.column(0).cast(pa.large_binary()).to_pylist():
            value = value or b""
            _decode_utf8(value, f"{path} row {row}")
            yield f"{path.name}:{row}", value
            row += 1
