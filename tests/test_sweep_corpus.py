"""`scalesweep run` prepares each raw corpus once into the sweep's storage
(orchestrator/sweep_corpus.py): trials are handed the prepared location and never read raw text;
a second run reuses it by stat alone; a changed file, a driver that cannot see the files and a
half-prepared copy are each handled as the module says. A real sweep that trains on the prepared
copies with the raw files deleted is in test_object_storage.py (storage on S3); `run` attached to
a cluster, preparing with Ray Data, is in test_cluster_path.py; every other sweep test trains on
its storage's copy of the builtin corpus."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from orchestrator.grid import expand_grid
from orchestrator.spec import load_spec
from orchestrator.spec_data import check_data
from orchestrator.sweep_corpus import prepare_sweep_corpora, sweep_corpus_location
from test_prepare import write_jsonl
from test_sweep import SHAPES, tiny_spec
from trainers.fields import SpecError
from trainers.prepared import open_prepared


def _spec(tmp_path: Path, name: str = "grid", **overrides):
    corpus = write_jsonl(tmp_path / "c.jsonl", 80_000)  # holds D = 12,000 plus the validation split
    other = write_jsonl(tmp_path / "e.jsonl", 30_000, seed=1)
    raw = tiny_spec(tmp_path / "store", name=name, shapes=SHAPES[:1], dataset_tokens=(12_000,),
                    corpus={"source": str(corpus)},
                    trainer={"extra_evals": {"other": str(other), "same": str(corpus)}}, **overrides)
    return load_spec(raw), corpus, other


def _garble(path: Path) -> None:
    """Same size and mtime, but reading it fails (not UTF-8, not JSON): a stat check passes it."""
    info = path.stat()
    path.write_bytes(b"\xff" * info.st_size)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def test_the_corpora_are_prepared_once_and_reused_by_stat_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALESWEEP_CACHE", str(tmp_path / "cache"))
    spec, corpus, other = _spec(tmp_path)
    lines = []
    prepared = prepare_sweep_corpora(spec, log=lines.append)
    location = sweep_corpus_location(spec, spec.corpus)
    assert location.startswith(str(tmp_path / "store" / "grid" / "corpus"))
    assert prepared.corpus.source == location and prepared.corpus.tokenizer == "byte"
    evals = prepared.trainer["extra_evals"]
    assert evals["same"].source == location  # one preparation for one (source, tokenizer)
    assert evals["other"].source == sweep_corpus_location(spec, spec.trainer["extra_evals"]["other"]) != location
    assert [line.split(":")[0] for line in lines] == ["corpus", "trainer.extra_evals.other"], lines
    tokens, manifest = open_prepared(location)
    assert manifest["tokens"] == tokens.size > 12_000 + 4096
    stamp = (Path(location) / "manifest.json").stat().st_mtime_ns
    # `validate` (tokenising nothing) finds the sweep's copies, with this machine's cache gone
    shutil.rmtree(tmp_path / "cache")
    lines = check_data(spec, expand_grid(spec), prepare=False)
    assert lines[0] == (f"corpus: prepared, {manifest['tokens']} tokens; the largest D (12000) fits with "
                        "the validation split"), lines
    assert lines[1].startswith("trainer.extra_evals.other: prepared, ") and not (tmp_path / "cache").exists()

    # a second run: same files by size and mtime -> reused, no raw byte read (the garbled files
    # would fail to decode), nothing written
    _garble(corpus)
    _garble(other)
    lines.clear()
    assert prepare_sweep_corpora(spec, log=lines.append) == prepared
    assert lines[0] == f"corpus: reused {location} ({manifest['tokens']} tokens, no raw text read)", lines
    assert (Path(location) / "manifest.json").stat().st_mtime_ns == stamp
    assert np.array_equal(np.asarray(open_prepared(location)[0]), np.asarray(tokens))

    # the raw files gone from this machine: the prepared copy is still the sweep's corpus
    corpus.unlink()
    other.unlink()
    lines.clear()
    assert prepare_sweep_corpora(spec, log=lines.append) == prepared
    assert "the raw files are not visible here, so unchecked" in lines[0], lines

    # ... but a sweep that has prepared nothing cannot: the driver must see them, and the way out
    # names the very location `run` would then reuse
    fresh = load_spec({**tiny_spec(tmp_path / "store", name="fresh"), "corpus": str(corpus)})
    with pytest.raises(SpecError) as err:
        prepare_sweep_corpora(fresh)
    message = str(err.value)
    assert message.startswith(f"corpus.source: no files match {str(corpus)!r}") and "\n" not in message
    assert "on this machine; `run` prepares a raw corpus once, from the driver" in message
    assert f"--out {sweep_corpus_location(fresh, fresh.corpus)}`" in message
    assert not (tmp_path / "store" / "fresh").exists()  # nothing half-made


def test_a_changed_file_is_refused_and_a_half_prepared_copy_is_not_taken(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALESWEEP_CACHE", str(tmp_path / "cache"))
    spec, corpus, _ = _spec(tmp_path)
    prepared = prepare_sweep_corpora(spec)
    location = Path(prepared.corpus.source)
    info = corpus.stat()
    os.utime(corpus, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))  # "edited"
    with pytest.raises(SpecError, match=r"^corpus\.source: its files changed \(size or mtime\) since this "
                                        rf"sweep prepared them into {location}, which its runs trained on"):
        prepare_sweep_corpora(spec)
    os.utime(corpus, ns=(info.st_atime_ns, info.st_mtime_ns))
    # cut short before its manifest: not a corpus; the next run finishes it
    (location / "manifest.json").unlink()
    with pytest.raises(ValueError, match="no manifest.json"):
        open_prepared(location)
    assert prepare_sweep_corpora(spec) == prepared
    assert open_prepared(location)[1]["tokens"] > 0
