"""A prepared corpus's directory wherever it lives: a local path or a pyarrow.fs URI
(``s3://bucket/corpora/owt?endpoint_override=...``), and the local copy trials memory-map.

`trainers.prepare` writes shards, records and the manifest through a `Place`, so the same code
prepares onto a node's disk or into the sweep's object storage, and Ray tasks on any node write
their shards straight there. Memory maps need local files: `local_copy` fetches a remote
prepared corpus once per machine into the cache (manifest last, under a file lock) and returns
its local directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path

import pyarrow.fs as pafs

from metrics.fs import resolve, write_atomically


def is_remote(location: str | os.PathLike) -> bool:
    return "://" in os.fspath(location)


class Place:
    """The directory at ``location`` (created on first write). Names are file names inside it."""

    def __init__(self, location: str | os.PathLike) -> None:
        self.location = os.fspath(location)
        self.fs, self.root = resolve(self.location)
        self.remote = not isinstance(self.fs, pafs.LocalFileSystem)

    def __str__(self) -> str:
        return self.location

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def info(self, name: str = "") -> pafs.FileInfo:
        return self.fs.get_file_info(self.path(name) if name else self.root)

    def exists(self, name: str = "") -> bool:
        return self.info(name).type != pafs.FileType.NotFound

    def read(self, name: str) -> bytes:
        """The file's bytes; FileNotFoundError when it is not there."""
        if not self.exists(name):
            raise FileNotFoundError(self.path(name))
        with self.fs.open_input_stream(self.path(name)) as stream:
            return stream.read()

    def write(self, name: str, data: bytes | memoryview) -> None:
        """Atomically: readers see the old file or the whole new one (`metrics.fs.write_atomically`)."""
        write_atomically(self.path(name), lambda f: f.write(data), self.fs)

    def copy_in(self, name: str, path: str | os.PathLike) -> None:
        """The local file at ``path`` written here as ``name``, atomically as `write`, streamed; a
        hard link where both are on one local filesystem (prepared files are never changed in
        place: every write replaces a file by renaming a new one over it)."""
        if not self.remote:
            os.makedirs(self.root, exist_ok=True)
            temp = self.path(f".{name}.link.tmp")
            try:
                os.link(path, temp)
                os.replace(temp, self.path(name))
                return
            except OSError:  # another filesystem, or links not supported: copy
                if os.path.lexists(temp):
                    os.unlink(temp)
        with open(path, "rb") as source:
            write_atomically(self.path(name), lambda f: shutil.copyfileobj(source, f, 1 << 22), self.fs)

    def size(self, name: str) -> int | None:
        info = self.info(name)
        return info.size if info.type == pafs.FileType.File else None

    def names(self) -> list[str]:
        """File names directly inside (none when the directory does not exist)."""
        if not self.exists():
            return []
        selector = pafs.FileSelector(self.root, recursive=False)
        return [info.base_name for info in self.fs.get_file_info(selector)]

    def delete(self, name: str) -> None:
        if self.exists(name):
            self.fs.delete_file(self.path(name))


def local_copy(location: str, cache_dir: Path) -> Path:
    """A local directory holding the prepared corpus at ``location``: ``location`` itself when it
    is local, else a copy under ``cache_dir/remote/`` keyed by the location and the manifest's
    fingerprint, fetched once per machine (concurrent trials wait on a lock; the manifest is
    written last, so a half-fetched copy is never taken for a whole one)."""
    if not is_remote(location):
        return Path(location)
    place = Place(location)
    manifest_bytes = place.read("manifest.json")
    manifest = json.loads(manifest_bytes)
    key = hashlib.sha256(f"{location}\0{manifest['fingerprint']}".encode()).hexdigest()[:24]
    local = cache_dir / "remote" / key
    if (local / "manifest.json").is_file():
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    with open(local.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (local / "manifest.json").is_file():
            local.mkdir(exist_ok=True)
            files = [s["file"] for s in manifest["shards"] if s["tokens"]]
            files += [manifest["tokenizer"]["file"]] if manifest["tokenizer"].get("file") else []
            for name in files:
                with place.fs.open_input_stream(place.path(name)) as stream:
                    write_atomically(local / name, lambda f: shutil.copyfileobj(stream, f, 1 << 22))
            write_atomically(local / "manifest.json", lambda f: f.write(manifest_bytes))
    return local
