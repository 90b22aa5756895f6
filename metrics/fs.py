"""Metrics store filesystem helpers: where a store lives, what names may be path components,
the part-file names, part listing, and the one atomic-write helper of the project.

`resolve` takes a local path or a pyarrow.fs URI (s3://, gs://, file://, ...). `write_atomically`
is also used outside the store (ledger, tokenizer and token caches, checkpoint records, the
peak-FLOP/s cache), so a reader never sees half a file anywhere (docs/architecture.md §3).
"""

from __future__ import annotations

import io
import os
import re
import uuid
from typing import BinaryIO, Callable

import pyarrow.fs as pafs

# Path components: no separators, no '=', not hidden, not number-like (hive type inference).
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_NUMBER_LIKE_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

CURVE_PART_RE = re.compile(r"^part-(\d+)-(\d+)\.parquet$")
"""A curves part's file name: ``part-<attempt>-<seq:06d>.parquet`` (groups: attempt, seq)."""

RUN_PART_RE = re.compile(r"^part-(\d+)\.parquet$")
"""A runs part's file name: ``part-<attempt>.parquet`` (group: attempt)."""


def resolve(storage: str, *parts: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or a pyarrow.fs URI (s3://, gs://, file://, ...)."""
    if "://" in storage:
        fs, root = pafs.FileSystem.from_uri(storage)
    else:
        fs, root = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(storage))
    return fs, "/".join([root.rstrip("/")] + [p for p in parts if p])


def join(location: str | os.PathLike, *parts: str) -> str:
    """``location`` (a local path or a pyarrow.fs URI) with path ``parts`` appended; a URI's
    ``?query`` options (``endpoint_override=...``) stay at the end, where `resolve` reads them."""
    location = os.fspath(location)
    base, sep, query = location.partition("?") if "://" in location else (location, "", "")
    return "/".join([base.rstrip("/") or "/", *[p for p in parts if p]]) + sep + query


def file_info(location: str, field: str = "storage", *, bucket: bool = False
              ) -> tuple[pafs.FileSystem, str, pafs.FileInfo]:
    """(filesystem, path, what is there) for a local path or a pyarrow.fs URI (``bucket``: what
    is at the path's first component, an object store's bucket); a filesystem that does not
    answer (endpoint, credentials, network) is a ValueError naming ``field``."""
    try:
        fs, path = resolve(location)
        return fs, path, fs.get_file_info(path.split("/", 1)[0] if bucket else path)
    except OSError as err:  # pyarrow's network, permission and credential errors
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{field}: {location} is not reachable ({reason})") from None


def check_reachable(storage: str, field: str = "storage", *, file: bool = False) -> None:
    """Raise ValueError (one line naming ``field``) unless ``storage`` can hold a store (or, with
    ``file``, be written as one file): its filesystem answers (`file_info`), it is not a file (a
    directory), and its nearest existing ancestor is a writable directory (local) or its bucket
    exists (object store)."""
    fs, root, info = file_info(storage, field)
    if info.type == (pafs.FileType.Directory if file else pafs.FileType.File):
        raise ValueError(f"{field}: {storage} is a {'directory' if file else 'file'}, not a "
                         f"{'file' if file else 'directory'}")
    if isinstance(fs, pafs.LocalFileSystem):
        existing = os.path.dirname(root) if file else root
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing) or not os.access(existing, os.W_OK):
            raise ValueError(f"{field}: {storage} cannot be created ({existing} is not a writable directory)")
    elif info.type == pafs.FileType.NotFound:
        bucket = root.split("/", 1)[0]
        if file_info(storage, field, bucket=True)[2].type == pafs.FileType.NotFound:
            raise ValueError(f"{field}: {storage}: bucket {bucket!r} does not exist")


def validate_name(kind: str, value: str) -> str:
    """``value`` if it is usable as a sweep name or trial id (a hive partition directory);
    raises ValueError naming ``kind`` otherwise."""
    if not isinstance(value, str) or not _NAME_RE.match(value) or _NUMBER_LIKE_RE.match(value):
        raise ValueError(
            f"{kind} {value!r}: must start with a letter or digit, use only letters, digits and "
            "'._+-', and not be a bare number (it becomes a hive partition directory)"
        )
    return value


def write_atomically(path, write: Callable[[BinaryIO], None], fs: pafs.FileSystem | None = None) -> None:
    """Create or replace the file at ``path`` so readers see either the old file or the whole new one.

    ``write(stream)`` writes the content to a binary stream. ``fs`` None or local: written to a
    hidden temp name (``.<name>.<random>.tmp``, ignored by DuckDB/pyarrow discovery) in the same
    directory, then renamed (rename(2) is atomic within one directory); a failed write leaves no
    temp file. Object store: the content is buffered and uploaded straight to its key, since one
    completed upload is atomic there and a rename would be a copy plus delete. Parent directories
    are created. Errors of ``write`` and of the filesystem propagate.
    """
    if fs is None or isinstance(fs, pafs.LocalFileSystem):
        path = os.fspath(path)
        directory, name = os.path.split(path)
        os.makedirs(directory, exist_ok=True)
        temp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
        # os.open, not mkstemp: the file gets the umask's permissions (mkstemp's 0600 would hide
        # a shared store's parts from its other readers)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
            os.replace(temp, path)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)  # no hidden debris from a failed write
        return
    buffer = io.BytesIO()  # a failed write must not complete a partial upload
    write(buffer)
    directory = str(path).rsplit("/", 1)[0]
    fs.create_dir(directory, recursive=True)
    with fs.open_output_stream(str(path)) as out:
        out.write(buffer.getvalue())


def list_parts(fs: pafs.FileSystem, directory: str) -> list[pafs.FileInfo]:
    """Visible ``*.parquet`` files below ``directory``, recursively (hidden temp files are
    skipped); a missing directory lists as empty."""
    selector = pafs.FileSelector(directory, allow_not_found=True, recursive=True)
    return [
        info
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File
        and info.base_name.endswith(".parquet")
        and not info.base_name.startswith((".", "_"))
    ]
