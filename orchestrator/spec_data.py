"""The spec's data checks: what each trial will ask of its corpus, asked before Ray starts.

The trainer loads its corpus with `trainers.data.load_corpus` and cuts it with `make_splits`;
here the same `load_corpus` gives the token count (exact for every tokenizer: a `.bin` is
memory-mapped; a text corpus is read, and tokenised once unless an earlier load cached it under
$SCALESWEEP_CACHE, so the trials then load that cache) and `check_split_sizes` / `eval_window_count`
apply the trainer's own rules to it. `scalesweep validate --defer-data-checks` skips this module
for a corpus that exists only on the cluster's nodes (each trial still runs these checks).
"""

from __future__ import annotations

from trainers.config import TrainConfig
from trainers.data import CorpusSpec, check_split_sizes, eval_window_count, load_corpus
from orchestrator.grid import Grid, TrialProblems, TrialSpec
from orchestrator.spec_fields import Problems
from trainers.fields import SpecError, fail
from orchestrator.spec_types import SweepSpec

# What --defer-data-checks leaves to the trials (printed by `validate`).
DATA_CHECKS = (
    "corpus.source exists and reads in its format (text_field, encoding)",
    "the corpus holds every trial's dataset_tokens plus the validation split (val_tokens)",
    "each trainer.extra_evals set exists and holds an evaluation window per rank",
)


def is_ready(corpus: CorpusSpec) -> bool:
    """Whether loading ``corpus`` tokenises nothing: a .bin, a prepared directory, or a raw
    corpus whose preparation (same files by size and mtime, same tokenizer) is in the cache."""
    from trainers.prepare import cached_dir
    from trainers.prepared import is_prepared

    return corpus.source.endswith(".bin") or is_prepared(corpus.source) or is_prepared(cached_dir(corpus))


def corpus_tokens(corpus: CorpusSpec, where: str, prepare: bool = True) -> int | None:
    """The corpus's token count, as the trainer will load it, preparing a raw corpus once
    (into the cache the trials then open); with ``prepare`` False, None for a corpus that is not
    prepared yet (its files are only listed, nothing is read). Errors name ``where.<field>``."""
    from trainers.tokenizers import corpus_vocab_size
    from trainers.documents import source_files
    from trainers.place import is_remote
    from trainers.prepared import read_manifest

    try:
        if not prepare and not is_ready(corpus):
            corpus_vocab_size(corpus, where)
            source_files(corpus.source)
            return None
        if is_remote(corpus.source):  # a prepared corpus in object storage: its manifest says it all
            manifest = read_manifest(corpus.source)
            if manifest["tokenizer"]["name"] != corpus.tokenizer:
                raise ValueError(f"tokenizer: {corpus.source} was prepared with "
                                 f"{manifest['tokenizer']['name']!r}, not {corpus.tokenizer!r}")
            return int(manifest["tokens"])
        return int(load_corpus(corpus).tokens.size)
    except (OSError, ValueError) as err:
        message = str(err)
        head, _, rest = message.partition(":")
        field = head.strip().removeprefix("corpus.")
        if field == "source" and rest.strip().startswith("no files match"):  # maybe only on the cluster's nodes
            raise fail(f"{where}.source", f"{rest.strip()}; if it exists only on the cluster's nodes, "
                                          "--defer-data-checks leaves this check to the trials") from None
        if field in ("source", "tokenizer", "text_field", "vocab_size") and rest:
            raise fail(f"{where}.{field}", rest.strip()) from None
        raise fail(f"{where}.source", f"cannot be read: {message}") from None


def check_data(spec: SweepSpec, grid: Grid, prepare: bool = True, in_storage: bool = True) -> list[str]:
    """Raise SpecError (one line per problem) if a planned trial's data checks would fail; else
    one line per corpus: prepared or not, its tokens, whether the largest D fits. ``prepare``
    False (`validate`) tokenises nothing: an unprepared corpus's sizes are left unchecked. A raw
    corpus that `run` has prepared into the sweep's storage is checked there (its manifest),
    unless ``in_storage`` is False (a storage known not to answer is not asked)."""
    from orchestrator.sweep_corpus import prepared_in_sweep

    if in_storage:
        try:
            spec = prepared_in_sweep(spec)
        except ValueError:  # the storage does not answer: its own check names it
            pass
    problems = Problems()
    trainer, workers = spec.trainer, spec.resources.workers
    val_tokens = trainer.get("val_tokens") or TrainConfig.__dataclass_fields__["val_tokens"].default
    eval_tokens = trainer.get("eval_tokens")
    n_tokens = problems.parse(corpus_tokens, spec.corpus, "corpus", prepare)

    def fits_corpus(trial: TrialSpec) -> None:
        try:
            check_split_sizes(n_tokens, trial.dataset_tokens, val_tokens=val_tokens, n_ctx=trial.shape.n_ctx)
        except ValueError as err:
            field, _, rest = str(err).partition(":")
            path = {"dataset_tokens": trial.d_field, "val_tokens": "trainer.val_tokens",
                    "n_ctx": "axes.n_ctx"}.get(field, "corpus.source")
            raise fail(path, f"(trial {trial.trial_key}) {rest.strip()}") from None

    def fits_extra(trial: TrialSpec, where: str, extra: int) -> None:
        tokens = min(extra, val_tokens)  # the trainer evaluates the set's first val_tokens tokens
        try:
            windows = eval_window_count(tokens, trial.shape.n_ctx, eval_tokens)
        except ValueError as err:
            raise fail(where, f"(trial {trial.trial_key}) {tokens} tokens: {err}") from None
        if windows < workers:  # ... sharded evenly over the ranks
            raise fail(where, f"(trial {trial.trial_key}) {windows} evaluation windows cannot be "
                              f"split over resources.workers={workers} ranks")

    extras = {}
    for name, corpus in (trainer.get("extra_evals") or {}).items():
        where = f"trainer.extra_evals.{name}"
        extras[where] = problems.parse(corpus_tokens, corpus, where, prepare)
    checks = TrialProblems()
    for trial in grid.trials:
        if n_tokens is not None:
            checks.check(trial, lambda: fits_corpus(trial))
        for where, extra in extras.items():
            if extra is not None:
                checks.check(trial, lambda: fits_extra(trial, where, extra))
    for line in checks.lines():
        problems.add(SpecError(line))
    problems.raise_any()
    largest = max((trial.dataset_tokens for trial in grid.trials), default=0)
    lines = []
    for where, tokens in [("corpus", n_tokens), *extras.items()]:
        if tokens is None:
            lines.append(f"{where}: not prepared (`run` prepares it once into the sweep's storage, or "
                         "`scalesweep prepare`); its sizes are checked then")
        else:
            fits = f"; the largest D ({largest}) fits with the validation split" if where == "corpus" else ""
            lines.append(f"{where}: prepared, {tokens} tokens{fits}")
    return lines
