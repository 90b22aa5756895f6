"""A corpus's raw documents: the builtin stdlib corpus, plain-text files, JSONL and Parquet.

`read_documents(source, text_field)` returns every document as UTF-8 bytes with a fingerprint
(sha256 of names and bytes) that keys the tokenised cache. Bytes that are not UTF-8, a JSONL line
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
from typing import Sequence

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


def fingerprint(names_and_documents: Sequence[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256()
    for name, document in names_and_documents:
        digest.update(f"{name}\0{len(document)}\0".encode())
        digest.update(document)
    return digest.hexdigest()


def read_documents(source: str, text_field: str = "text") -> tuple[list[bytes], str, str]:
    """(documents as UTF-8 bytes, fingerprint, description) for every non-.bin source."""
    if source == "builtin":
        root = Path(sysconfig.get_paths()["stdlib"])
        named = [(p.relative_to(root).as_posix(), p.read_bytes()) for p in builtin_corpus_files()]
        description = f"builtin: {len(named)} stdlib .py files under {root}"
    else:
        # A glob works for every format (the Kaplan example reads /data/openwebtext/*.jsonl).
        paths = sorted(glob.glob(source, recursive=True)) if glob.has_magic(source) else [source]
        paths = [p for p in paths if os.path.isfile(p)]
        if not paths:
            raise ValueError(f"source: no files match {source!r} (expected 'builtin', a text file "
                             "or glob, *.jsonl, *.parquet or *.bin)")
        if source.endswith(".jsonl"):
            named = [doc for p in paths for doc in _jsonl_documents(Path(p), text_field)]
            description = f"jsonl: {source} field {text_field!r}"
        elif source.endswith(".parquet"):
            named = [doc for p in paths for doc in _parquet_documents(Path(p), text_field)]
            description = f"parquet: {source} column {text_field!r}"
        else:
            named = _text_documents(paths)
            description = f"text: {len(paths)} file(s) from {source}"
    if not named:
        raise ValueError(f"source: {source!r} contains no documents")
    return [doc for _, doc in named], fingerprint(named), description


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


def _text_documents(paths: Sequence[str]) -> list[tuple[str, bytes]]:
    named = []
    for path in paths:
        data = Path(path).read_bytes()
        _decode_utf8(data, path)  # the byte tokeniser would take any bytes; the README promises UTF-8
        named.append((path, data))
    return named


def _jsonl_documents(path: Path, text_field: str):
    """(name, UTF-8 bytes) of each non-blank line's ``text_field``; ValueError naming the file,
    line and byte offset of a line that is not UTF-8, not a JSON object, or lacks the field."""
    offset = 0
    with path.open("rb") as f:
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


def _parquet_documents(path: Path, text_field: str) -> list[tuple[str, bytes]]:
    """(name, UTF-8 bytes) per row of a string or binary column (nulls read as empty)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as err:
        raise ValueError(f"source: {path} is not a readable Parquet file ({err})") from None
    if text_field not in schema.names:
        raise ValueError(f"text_field: {text_field!r} is not a column of {path}; columns: {schema.names}")
    kind = schema.field(text_field).type
    if not any(check(kind) for check in (pa.types.is_string, pa.types.is_large_string,
                                          pa.types.is_binary, pa.types.is_large_binary)):
        raise ValueError(f"text_field: column {text_field!r} of {path} is {kind}, not text")
    column = pq.read_table(path, columns=[text_field]).column(text_field).cast(pa.large_binary())
    named = []
    for row, value in enumerate(column.to_pylist()):
        value = value or b""
        _decode_utf8(value, f"{path} row {row}")
        named.append((f"{path.name}:{row}", value))
    return named
