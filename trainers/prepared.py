"""A prepared corpus where it lies (a directory or a pyarrow.fs URI): whether it is finished,
its manifest, and its tokens memory-mapped, without reading any raw text.

`trainers.prepare` writes the layout (its module docstring): shards and their records, the BPE
model, and manifest.json last, so a preparation is finished exactly when its manifest exists.
`open_prepared` opens one in O(shards): it reads the manifest and memory-maps the shards,
checking their sizes; a URI is fetched once per machine first (`trainers.place.local_copy`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs

from metrics.fs import file_info, join
from trainers.place import Place, is_remote, local_copy
from trainers.token_arrays import ShardedTokens
from trainers.tokenizers import default_cache_dir

MANIFEST_VERSION = 1


def recipe_matches(theirs: dict | None, want: dict) -> bool:
    """Whether a preparation made from recipe ``theirs`` is the one ``want`` asks for: the same
    files (absolute paths, sizes, mtimes), tokenizer, text field and split size. The source
    string itself may differ (a relative path or glob naming the same files)."""
    drop = lambda r: {k: v for k, v in r.items() if k != "source"}  # noqa: E731
    return isinstance(theirs, dict) and drop(theirs) == drop(want)


def finished_manifest(location: str | os.PathLike, field: str = "--out") -> dict | None:
    """The manifest of a finished preparation at ``location`` (local or a pyarrow.fs URI), or
    None where there is none yet (an unfinished one has no manifest: it is written last). An
    object store that does not answer is a ValueError naming ``field``."""
    return read_manifest(location) if is_prepared(location, field) else None


def is_prepared(location: str | os.PathLike, field: str = "source") -> bool:
    """Whether ``location`` (a local path or a pyarrow.fs URI) holds a finished preparation; an
    object store that does not answer is a ValueError naming ``field``."""
    if not is_remote(location):
        return Place(location).exists("manifest.json")
    return file_info(join(location, "manifest.json"), field)[2].type == pafs.FileType.File


def read_manifest(location: str | os.PathLike) -> dict:
    """The manifest of the prepared corpus at ``location`` (local or a pyarrow.fs URI), without
    fetching or mapping its shards; ValueError naming ``source`` when there is none."""
    try:
        return json.loads(Place(location).read("manifest.json"))
    except FileNotFoundError:
        raise ValueError(f"source: {location} is not a prepared corpus (no manifest.json; "
                         "`scalesweep prepare` writes one)") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"source: {location}/manifest.json is unreadable ({err})") from None


def open_prepared(location: str | os.PathLike, cache_dir: str | Path | None = None
                  ) -> tuple[np.memmap | ShardedTokens, dict]:
    """(tokens over every shard, the manifest) of a prepared corpus, memory-mapped (one shard:
    its memmap itself). A pyarrow.fs URI is fetched once per machine into ``cache_dir``
    (`trainers.place.local_copy`). ValueError naming the file when the manifest is unreadable
    or a shard's size disagrees with it."""
    try:
        path = local_copy(os.fspath(location), Path(cache_dir) if cache_dir is not None else default_cache_dir())
    except FileNotFoundError:
        raise ValueError(f"source: {location} is not a prepared corpus (no manifest.json; "
                         "`scalesweep prepare` writes one)") from None
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
        if not shard["tokens"]:
            continue  # a split without documents
        file = path / shard["file"]
        size = file.stat().st_size if file.exists() else None
        if size != shard["tokens"] * dtype.itemsize:
            raise ValueError(f"source: shard {file} holds {size} bytes, its manifest says "
                             f"{shard['tokens']} {dtype} tokens (prepare the corpus again)")
        arrays.append(np.memmap(file, dtype=dtype, mode="r"))
    return (arrays[0] if len(arrays) == 1 else ShardedTokens(arrays)), manifest
