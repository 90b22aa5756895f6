"""metrics.fs: the project's one atomic-write helper (docs/architecture.md §3)."""

from __future__ import annotations

import os

import pytest


def test_the_one_atomic_write_keeps_the_old_file_on_failure_and_leaves_no_temp(tmp_path):
    """`metrics.write_atomically` is the project's only temp-name-and-rename: parts, the budget
    ledger, tokenizer and token caches, checkpoint records, the peak-FLOP/s cache."""
    from metrics import write_atomically

    target = tmp_path / "sub" / "ledger.json"
    write_atomically(target, lambda out: out.write(b"old"))
    assert target.read_bytes() == b"old"

    def half_then_crash(out):
        out.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(target, half_then_crash)
    assert target.read_bytes() == b"old"
    assert os.listdir(target.parent) == ["ledger.json"]  # no hidden temp left behind
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any file, not mkstemp's 0600


def test_join_appends_parts_before_a_uri_query():
    from metrics import join

    assert join("s3://b/p?endpoint_override=127.0.0.1:9000&scheme=http", "sweep", "report") == \
        "s3://b/p/sweep/report?endpoint_override=127.0.0.1:9000&scheme=http"
    assert join("s3://b/p/", "sweep") == "s3://b/p/sweep"
    assert join("/data/store/", "sweep", "") == "/data/store/sweep"
