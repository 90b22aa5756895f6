"""A sweep's raw corpora, prepared once into its storage before any trial starts.

`scalesweep run` (`orchestrator.sweep.run_sweep`) calls `prepare_sweep_corpora` for the spec's
``corpus`` and each ``trainer.extra_evals`` set, and hands the trials the PREPARED location, never
the raw path: no trial on any node reads raw text or prepares anything. (Left to the trials, each
node would prepare its own copy: the cache's file lock is per machine.) For a raw corpus:

- its place is ``<storage>/<sweep>/corpus/<tokenizer>-<hash of source, text_field, tokenizer>/``
  (`sweep_corpus_location`), on whatever the storage is: a local or shared directory, or any
  pyarrow.fs URI (``s3://bucket/sweeps``); trials open it there (a URI is fetched once per
  machine into ``$SCALESWEEP_CACHE/remote/``, `trainers.place.local_copy`).
- finished there (manifest.json, written last) with the same recipe (the files' paths, sizes and
  mtimes by stat; the tokenizer): reused, no raw text read (a resume, a second `run`). Finished
  with another recipe (a file changed since): a SpecError naming the field, since the sweep's
  runs so far trained on the prepared copy.
- this machine's cache holds the same recipe (`trainers.prepare.cached_dir`: `train`, an earlier
  sweep or a `ladder` check prepared it): its files are copied there (hard links where both
  are on one local filesystem), nothing is tokenised.
- else, attached to a cluster (`run --address`, an ``engine`` given: Ray Data's,
  `orchestrator.corpus_ray.RayDataEngine`), prepared there by the cluster's nodes, which read
  their splits of the raw files at the driver's paths (each node must see them), tokenise, and
  write the shards straight to the storage; on one machine, by the local process pool into
  this machine's cache (`trainers.prepare.ensure_prepared`), then copied there.
A preparation cut short resumes on the next `run` (finished shards kept); without its manifest,
written last (also by a copy), it never counts as prepared.

The driver plans the splits from the files' sizes, so it must see the raw files. Where it does
not (a corpus only on the cluster's nodes) and nothing is prepared yet, `SpecError` says so and
names the fix: prepare it on a node that sees it into this very location (`scalesweep prepare …
--engine ray --address auto --out <location>`), which `run` then reuses; or name a prepared
corpus as the source. A prepared source (directory or URI with a manifest) and a nanoGPT
``.bin`` are passed as they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from metrics.fs import join
from orchestrator.spec_types import SweepSpec
from trainers.data import CorpusSpec
from trainers.fields import SpecError, fail
from trainers.prepare import cached_dir, copy_prepared, ensure_prepared, prepare_corpus, recipe
from trainers.prepared import finished_manifest, is_prepared, recipe_matches
from trainers.tokenizers import tokenizer_key


def sweep_corpus_location(spec: SweepSpec, corpus: CorpusSpec) -> str:
    """Where the sweep keeps ``corpus`` prepared: keyed by what the user named (source, text
    field, tokenizer), not by the files' state, so a file that changed under a sweep is refused
    rather than silently prepared again beside the copy its runs trained on."""
    named = json.dumps([corpus.source, corpus.text_field, corpus.tokenizer])
    digest = hashlib.sha256(named.encode()).hexdigest()[:16]
    return join(spec.storage, spec.name, "corpus", f"{tokenizer_key(corpus.tokenizer)}-{digest}")


def sweep_corpora(spec: SweepSpec) -> dict[str, CorpusSpec]:
    """The spec's corpora by field: ``corpus`` and each ``trainer.extra_evals.<name>``."""
    found = {"corpus": spec.corpus}
    for name, corpus in (spec.trainer.get("extra_evals") or {}).items():
        found[f"trainer.extra_evals.{name}"] = corpus
    return found


def is_raw(corpus: CorpusSpec) -> bool:
    """Whether loading ``corpus`` would prepare it: neither a .bin nor a prepared corpus."""
    return not corpus.source.endswith(".bin") and not is_prepared(corpus.source, "corpus.source")


def with_corpora(spec: SweepSpec, corpora: dict[str, CorpusSpec]) -> SweepSpec:
    """``spec`` with the corpora of the fields named in ``corpora`` replaced."""
    extra = dict(spec.trainer.get("extra_evals") or {})
    for where, corpus in corpora.items():
        if where.startswith("trainer.extra_evals."):
            extra[where.removeprefix("trainer.extra_evals.")] = corpus
    trainer = {**spec.trainer, "extra_evals": extra} if extra else spec.trainer
    return dataclasses.replace(spec, corpus=corpora.get("corpus", spec.corpus), trainer=trainer)


def prepared_in_sweep(spec: SweepSpec) -> SweepSpec:
    """``spec`` with each raw corpus the sweep has already prepared (finished in its storage)
    replaced by that location, reading nothing but manifests: what `validate` and the ladder's
    checks look at after a `run`."""
    found = {}
    for where, corpus in sweep_corpora(spec).items():
        if is_raw(corpus):
            location = sweep_corpus_location(spec, corpus)
            if is_prepared(location, "storage"):
                found[where] = dataclasses.replace(corpus, source=location)
    return with_corpora(spec, found)


def prepare_sweep_corpora(spec: SweepSpec, *, engine=None, workers: int | None = None,
                          log=None) -> SweepSpec:
    """``spec`` with every raw corpus replaced by its prepared location in the sweep's storage,
    preparing (or copying from this machine's cache) those not finished there yet (module doc).
    ``engine``, ``workers``: `trainers.prepare.prepare_corpus`'s (default: the local pool of
    ``workers`` processes). ``log(line)``: one line per corpus, what was done. Raises SpecError
    naming the field: files changed since the sweep prepared them, files the driver cannot see,
    bad input found while preparing (nothing half-written is left as valid)."""
    done: dict[str, CorpusSpec] = {}
    prepared: dict[str, str] = {}  # location -> what was done (an extra-eval set may be the corpus)
    for where, corpus in sweep_corpora(spec).items():
        if not is_raw(corpus):
            continue
        location = sweep_corpus_location(spec, corpus)
        if location not in prepared:
            prepared[location] = _ensure(corpus, location, where, engine, workers)
            if log:
                log(f"{where}: {prepared[location]}")
        done[where] = dataclasses.replace(corpus, source=location)
    return with_corpora(spec, done)


def _ensure(corpus: CorpusSpec, location: str, where: str, engine, workers) -> str:
    """Make ``location`` hold ``corpus`` prepared; what was done, as a phrase."""
    manifest = finished_manifest(location, "storage")
    try:
        want = recipe(corpus)
    except ValueError as err:  # no files match here: maybe only the cluster's nodes see them
        if manifest is not None and manifest["tokenizer"]["name"] == corpus.tokenizer:
            return (f"reused {location} ({manifest['tokens']} tokens; the raw files are not visible "
                    "here, so unchecked)")
        raise fail(f"{where}.source", f"{str(err).partition(': ')[2]} on this machine; `run` prepares a raw "
                                      f"corpus once, from the driver, into the sweep's storage, so the driver "
                                      f"must see its files. Where only the cluster's nodes see them, prepare it "
                                      f"there: `scalesweep prepare {corpus.source!r} --tokenizer {corpus.tokenizer} "
                                      f"--text-field {corpus.text_field} --engine ray --address auto --out "
                                      f"{location}`, then run again (it is reused)") from None
    if manifest is not None:
        if recipe_matches(manifest.get("recipe"), want):
            return f"reused {location} ({manifest['tokens']} tokens, no raw text read)"
        raise fail(f"{where}.source", f"its files changed (size or mtime) since this sweep prepared them into "
                                      f"{location}, which its runs trained on; restore them, or delete that "
                                      "directory to prepare them again (a new sweep name for a new corpus)")
    cached = cached_dir(corpus)
    cached_manifest = finished_manifest(cached)
    if cached_manifest is not None and recipe_matches(cached_manifest.get("recipe"), want):
        manifest = copy_prepared(cached, location)
        return f"copied this machine's preparation to {location} ({manifest['tokens']} tokens)"
    try:
        if engine is None:  # this machine prepares: into its cache, which later sweeps find too
            manifest = copy_prepared(ensure_prepared(corpus, workers=workers), location)
            return (f"prepared on this machine and copied to {location} ({manifest['tokens']} tokens in "
                    f"{len(manifest['shards'])} shard(s), {manifest['prepare_s']} s)")
        manifest = prepare_corpus(corpus, location, engine=engine)
    except SpecError:
        raise
    except ValueError as err:
        field, _, rest = str(err).partition(": ")
        field = field.strip().removeprefix("corpus.")
        if field == "--out":
            raise fail("storage", f"{location}: {rest}") from None
        if field in ("source", "tokenizer", "text_field") and rest:
            raise fail(f"{where}.{field}", rest) from None
        raise fail(f"{where}.source", f"cannot be prepared: {err}") from None
    return (f"prepared into {location} ({manifest['tokens']} tokens in {len(manifest['shards'])} shard(s), "
            f"{manifest['prepare_s']} s by {manifest['engine']})")
