"""Run a sweep spec on Ray Tune: `run_sweep(spec) -> SweepSummary`.

One Tune trial per planned run (orchestrator.trial), chosen by a budget-aware searcher
(orchestrator.search). The Tune experiment lives at ``<storage>/<sweep>/tune/<sweep>`` so its
name is stable: `run_sweep(spec, resume=True)` continues a killed sweep with `Tuner.restore`.
Before any trial, each raw corpus is prepared once into ``<storage>/<sweep>/corpus/`` and the
trials are handed that location (`orchestrator.sweep_corpus`). Side effects (Ray start-up, the
experiment, the ledger file) are here; decisions are in the searcher and the ledger.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from orchestrator.budget import (BudgetLedger, budget_text, ledger_from_reports, ledger_from_store, limit_flops,
                                 write_ledger_file)
from orchestrator.cluster import cluster_nodes, local_node, max_concurrent_trials, start_ray, trial_resources, unplaceable
from orchestrator.interrupt import StopSignals, SweepInterrupted, exit_status
from orchestrator.grid import Grid
from orchestrator.spec import validate_spec
from orchestrator.spec_types import SweepSpec
from trainers.fields import SpecError
from metrics.statuses import ENDED_STATUSES


class _NoMissingLoggerFiles(logging.Filter):
    """With Tune's JSON/CSV logger callbacks off (the metrics live in our store, and those
    callbacks leak driver memory per trial, ray#64231), ResultGrid warns once per trial that
    result.json is missing. That is expected here, so keep it out of the user's terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to fetch metrics for")


logging.getLogger("ray.tune.analysis.experiment_analysis").addFilter(_NoMissingLoggerFiles())


@dataclass(frozen=True)
class SweepSummary:
    """How a sweep ended. ``statuses``: runs per status (the latest attempt of each trial in the
    store; trials still running when the driver was stopped count as ``interrupted``)."""

    sweep: str
    storage: str
    experiment_path: str
    trials: int  # Tune trials in this experiment
    statuses: Mapping[str, int]
    skipped: tuple[str, ...]  # trials the remaining budget could not fit
    spent_flops: float
    committed_flops: float
    limit_flops: float
    wall_s: float
    design: tuple[str, ...] = ()  # active search: fitted law, choices and their scores
    interrupted: str | None = None  # the signal that stopped the sweep ("SIGINT", "SIGTERM")
    cut: tuple[tuple[str, str], ...] = ()  # (trial key, reason): planned runs the budget cut before the sweep

    @property
    def completed(self) -> int:
        return self.statuses.get("completed", 0)

    @property
    def failed(self) -> int:
        return self.statuses.get("failed", 0)

    @property
    def ended(self) -> int:
        """Runs with an ended status (completed, early_stopped, diverged, budget_stopped)."""
        return sum(n for status, n in self.statuses.items() if status in ENDED_STATUSES)

    @property
    def exit_code(self) -> int:
        """What `scalesweep run` exits with: 128 + the signal number when interrupted (130 for
        Ctrl-C, 143 for SIGTERM: resume it); 1 when a run failed (crashed after its retries);
        else 0. Diverged, early-stopped and budget-stopped runs are results of the sweep, not
        faults: running it again would not change them (the summary counts them)."""
        if self.interrupted:
            return exit_status(self.interrupted)
        return 1 if self.failed else 0

    def text(self) -> str:
        """The summary line, what the budget cut before the sweep (as `scalesweep validate` lists
        it, `orchestrator.grid.cut_lines`), then the active designer's report (if any)."""
        from orchestrator.grid import cut_lines

        return "\n".join((self.line(), *cut_lines(self.cut), *self.design))

    def line(self) -> str:
        from metrics import join

        state = f" interrupted by {self.interrupted}" if self.interrupted else ""
        # cut: planned runs the budget dropped before any trial (the grid's cut, validate's list);
        # skipped: runs the remaining budget could not fit while the sweep ran
        return (f"sweep {self.sweep}{state}: {status_text(self.statuses)}, {len(self.cut)} cut by the budget "
                f"before the sweep, {len(self.skipped)} skipped by budget; "
                f"spent {self.spent_flops:.3g} of {self.limit_flops:.3g} FLOPs in {self.wall_s:.0f} s; metrics in "
                f"{join(self.storage, self.sweep)}/ (runs/, curves/)")


def status_text(statuses: Mapping[str, int]) -> str:
    """``"4 runs: 2 completed, 2 diverged"``, statuses in the store's order (others, such as a live
    trial's ``running``, after them)."""
    from metrics import RUN_STATUSES

    order = {status: i for i, status in enumerate(RUN_STATUSES)}
    parts = [f"{n} {status}" for status, n in sorted(statuses.items(), key=lambda kv: order.get(kv[0], len(order)))
             if n]
    total = sum(statuses.values())
    return f"{total} run{'s' if total != 1 else ''}" + (f": {', '.join(parts)}" if parts else "")


def run_statuses(runs: Iterable[Mapping], interrupted_keys: Iterable[str] = (),
                 errored_keys: Iterable[str] = ()) -> dict[str, int]:
    """Runs per status from the store's rows (latest attempt per trial). The store's row is the
    record: a trial whose row says the run ended (``ENDED_STATUSES``) counts as that status, even
    if the driver still had it running or Tune gave up on it. Otherwise, trials in
    `interrupted_keys` (running when the driver stopped) count as ``interrupted`` whatever row
    they have left yet (an earlier attempt's, or none: a stopped trial writes its row while the
    driver shuts down), and trials in `errored_keys` (Tune gave up on them after their retries)
    as ``failed``: one that crashed before the trainer wrote a row has none, and must not vanish
    from the count (nor let the sweep exit 0). A trial that finished its last step as the signal
    came wrote "completed", and the resume will not run it again: calling it interrupted made the
    summary disagree with the store."""
    latest = {row["trial_id"]: row["status"] for row in runs}
    ended = {key for key, status in latest.items() if status in ENDED_STATUSES}
    interrupted = set(interrupted_keys) - ended
    latest = {key: status for key, status in latest.items() if key not in interrupted}
    for key in set(errored_keys) - interrupted:
        if latest.get(key) not in ENDED_STATUSES:
            latest[key] = "failed"
    counts = Counter(latest.values())
    if interrupted:
        counts["interrupted"] += len(interrupted)
    return dict(counts)


def errored_trial_keys(results) -> set[str]:
    """The trial keys of a Tune `ResultGrid`'s trials that ended in error (after their retries)."""
    return {result.config.get("trial_key") for result in results
            if result.error is not None and result.config}


def sweep_dir(spec: SweepSpec) -> str:
    from metrics import join

    return join(spec.storage, spec.name)


def experiment_storage(spec: SweepSpec) -> str:
    from metrics import join

    return join(sweep_dir(spec), "tune")


def write_ledger(spec: SweepSpec, ledger: BudgetLedger) -> str:
    """``<storage>/<sweep>/ledger.json`` (`orchestrator.budget.write_ledger_file`)."""
    return write_ledger_file(spec.storage, spec.name, ledger)


def _check_resources(spec: SweepSpec, nodes: list[dict], where: str) -> None:
    """SpecError if no node arrangement holds one trial (it would wait forever)."""
    problem = unplaceable(spec.resources, nodes, where=where)
    if problem:
        raise SpecError(problem)


def trial_settings(spec: SweepSpec):
    """The sweep's part of every trial's config (`TrialConfig` without a trial yet)."""
    from orchestrator.trial import TrialConfig

    res = spec.resources
    return TrialConfig(sweep=spec.name, storage=spec.storage, workers=res.workers,
                       cpus_per_worker=res.cpus_per_worker, gpus_per_worker=res.gpus_per_worker,
                       early_prediction=dataclasses.asdict(spec.early_prediction))


def shared_steps(grid: Grid, workers: int) -> tuple[int, ...]:
    """Planned step counts that two or more of the grid's trials share (the runs of one schedule,
    references for each other under early_prediction.rule reference)."""
    from collections import Counter

    from orchestrator.early_stop import planned_steps

    counts = Counter(planned_steps(t.train_config, workers) for t in grid.trials)
    return tuple(sorted(steps for steps, n in counts.items() if n > 1))


def _make_searcher(spec: SweepSpec, grid: Grid, ledger: BudgetLedger, done: set[str], max_concurrent: int):
    """The spec's searcher: the grid in order, or (search.kind: active) the active designer."""
    settings = trial_settings(spec)
    if spec.early_prediction.enabled:  # validate_spec computed every trial's planned steps already
        settings = dataclasses.replace(settings, shared_steps=shared_steps(grid, spec.resources.workers))
    common = dict(done_keys=done, settings=settings, ledger=ledger, max_concurrent=max_concurrent)
    if spec.search.kind == "active":
        return _make_active_searcher(spec, grid, **common)
    from orchestrator.search import GridSearcher

    return GridSearcher(grid.trials, **common)


def _make_active_searcher(spec: SweepSpec, grid: Grid, **common):
    # every planned run is a candidate (expand_grid does not cut active plans); the searcher
    # spends the budget run by run.
    from fitting.strategies import ActiveDesign
    from orchestrator.active_search import ActiveSearcher

    search = spec.search
    designer = ActiveDesign.with_misfit(search.misfit, seed_size=search.seed_runs)
    return ActiveSearcher(grid.trials, law=search.law or "chinchilla", target=dict(search.target),
                          max_trials=search.max_trials, stop_when=dict(search.stop_when) or None,
                          strategy=designer, cost=search.cost, aggregate=spec.aggregation(), **common)


def _rerun_with(tuner, verbose: int, reporter, max_failures: int) -> None:
    """A restored Tuner keeps the run config pickled by the first driver; this driver's flags
    (--quiet, --max-failures) and its reporter (the key width of today's grid) apply instead.
    Through Tune's internal tuner (no public setter), so skipped if that changes."""
    from ray import tune

    get = getattr(getattr(tuner, "_local_tuner", None), "get_run_config", None)
    if get is None:
        return
    run_config = get()
    run_config.verbose = verbose
    run_config.progress_reporter = reporter if verbose else None
    run_config.failure_config = tune.FailureConfig(max_failures=max_failures)


def experiment_path(spec: SweepSpec, experiment: str | None = None) -> str:
    """The Tune experiment: ``<storage>/<sweep>/tune/<experiment>`` (default: the sweep's name; a
    URI's query options kept)."""
    from metrics import join

    return join(experiment_storage(spec), experiment or spec.name)


def trial_dirname(trial) -> str:
    """The trial's directory: its stable key plus Tune's id (a key can run again on resume)."""
    return f"{trial.config.get('trial_key', 'trial')}-{trial.trial_id}"


def run_sweep(
    spec: SweepSpec | str | os.PathLike | Mapping,
    *,
    resume: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    max_failures: int = 2,
    verbose: int = 1,
    make_searcher: Callable[..., Any] | None = None,
    check_corpus: bool = True,
    experiment: str | None = None,
) -> SweepSummary:
    """Run (or with `resume`, continue) the sweep; returns when every trial has ended.

    `make_searcher(spec, grid, ledger, done_keys, max_concurrent)` overrides the spec's searcher
    (by default the grid one, or the active designer for ``search.kind: active``).
    Each raw corpus (``corpus``, every ``trainer.extra_evals`` set) is prepared once, before any
    trial starts, into ``<storage>/<sweep>/corpus/…`` (`orchestrator.sweep_corpus`): by this
    machine's process pool (``num_cpus`` processes) before Ray starts, or, attached to a cluster
    (``address``), by a Ray Data job on its nodes; a finished one of the same files (by size
    and mtime) is reused without reading raw text, as on `resume`. The trials are handed the
    prepared locations: none reads raw text or prepares anything. The data checks then run on
    the prepared corpora (their manifests).
    Raises SpecError before Ray starts for a spec `scalesweep validate` rejects (`check_corpus`
    False defers its data checks to the trials), for a raw corpus that this driver cannot see
    or whose files changed since the sweep prepared them, or (attached) right after Ray Data
    prepared a corpus too small for a trial; and before any Tune work when no node of the
    cluster can hold one trial. `experiment` names the Tune experiment (default: the sweep's
    name), so a run outside the grid (the scaling ladder's) has its own resume state.
    """
    started = time.time()
    # the corpus sizes are checked once the raw corpora are prepared (`_prepare_corpora`)
    spec, grid = validate_spec(spec, check_corpus=check_corpus, prepare=False)
    # Progress tables from Tune's CLIReporter (the new output engine ignores custom reporters),
    # and no per-trial JSON/CSV/TensorBoard loggers: the store has the metrics, and the logger
    # callbacks cost driver memory per finished trial (ray#64231).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "1")
    # Every evaluation reports a checkpoint and num_to_keep=1 forces a state snapshot each time;
    # for small fast trials Tune warns on every one of them.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray
    from ray import tune

    from orchestrator.trial import run_trial
    from metrics import load_runs

    if not address and not ray.is_initialized():  # a local Ray: check before starting it
        node = local_node(num_cpus)
        if node is not None:  # else checked right after Ray starts, before any Tune work
            _check_resources(spec, [node], "this machine (--num-cpus to change)")
    from metrics import resolve
    from orchestrator.local_ray import reap_left_over

    if not address:  # the local pool prepares, before Ray starts (bad input stops it first)
        spec, grid = _prepare_corpora(spec, None, num_cpus, verbose, check_corpus)
    sweep_fs = resolve(spec.storage, spec.name)
    reap_left_over(*sweep_fs, spec.name)  # what a killed driver of this sweep left running
    own_ray = start_ray(address, num_cpus, quiet=not verbose, record_in=sweep_fs)
    try:
        _check_resources(spec, cluster_nodes(), "the Ray cluster")
        if address:  # attached to a cluster: its nodes prepare, as a Ray Data job
            from orchestrator.corpus_ray import RayDataEngine

            spec, grid = _prepare_corpora(spec, RayDataEngine(), None, verbose, check_corpus)
        limit = limit_flops(spec.budget)
        if make_searcher is None:  # the sweep's own spec (not the ladder's one run): what `report` reads
            from orchestrator.sweep_settings import write_fit_settings

            write_fit_settings(spec)
        stored = load_runs(spec.storage, spec.name).to_pylist()
        ledger, done = ledger_from_store(limit, stored)
        max_concurrent = max_concurrent_trials(spec.resources, ray.cluster_resources())
        searcher = (make_searcher or _make_searcher)(spec, grid, ledger, done, max_concurrent)
        if hasattr(searcher, "seed_from_store"):
            searcher.seed_from_store(stored)  # stored runs count in its ledger and feed its designer
        if hasattr(searcher, "persist_ledger"):
            searcher.persist_ledger = True  # ledger.json after every run, not only at the end
        trainable = tune.with_resources(run_trial, trial_resources(spec.resources))
        storage = experiment_storage(spec)
        path = experiment_path(spec, experiment)
        reporter = make_reporter(limit, dict(ledger.finished), key_width=max(len(t.trial_key) for t in grid.trials),
                                 experiment=path)
        if resume and tune.Tuner.can_restore(path):
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
            _rerun_with(tuner, verbose, reporter, max_failures)
        else:
            if resume:  # say so: --resume on a sweep that never started is not an error, but not a resume
                print(f"scalesweep run: --resume: no Tune experiment to restore at {path}; starting "
                      f"the sweep ({len(done)} runs already ended in the store are not re-run)",
                      file=sys.stderr, flush=True)
            # reuse_actors: a fresh trial process re-imports torch and DeepSpeed (~4 s); reusing
            # it made 40 tiny trials 5.8x faster (13 -> 77 trials/min). Each trial seeds and builds
            # its own engine; ZeRO-3's process-wide linear patch is off (see the trainer).
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1, reuse_actors=True,
                                            trial_dirname_creator=trial_dirname),
                run_config=tune.RunConfig(
                    name=experiment or spec.name, storage_path=storage, verbose=verbose,
                    progress_reporter=reporter if verbose else None,
                    failure_config=tune.FailureConfig(max_failures=max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                ),
            )
        stop = StopSignals()
        try:
            with stop:
                results = tuner.fit()
        except KeyboardInterrupt:
            raise SweepInterrupted(stop.name or "SIGINT") from None
        # The searcher Tune ran (a restored experiment unpickles its own copy) holds the ledger.
        # Private attribute, hence the fallback: the store's record of ended runs.
        internal = getattr(getattr(tuner, "_local_tuner", None), "_tune_config", None)
        final = getattr(internal, "search_alg", None) or searcher
        final = getattr(final, "searcher", final)  # Tune may wrap it in a SearchGenerator
        runs = load_runs(spec.storage, spec.name).to_pylist()
        ledger = getattr(final, "ledger", None) or ledger_from_store(limit, runs)[0]
        write_ledger(spec, ledger)
        # Trials still running when a signal stopped Tune are interrupted, whatever row they left.
        stopped = ledger.running if stop.signum is not None else ()
        summary = SweepSummary(
            sweep=spec.name, storage=spec.storage, experiment_path=results.experiment_path,
            trials=len(results), statuses=run_statuses(runs, stopped, errored_trial_keys(results)),
            skipped=tuple(getattr(final, "skipped", ())), spent_flops=ledger.spent,
            committed_flops=ledger.committed, limit_flops=limit, wall_s=time.time() - started,
            design=tuple(final.summary_lines()) if hasattr(final, "summary_lines") else (),
            interrupted=stop.name,
            # the grid's cut is this run's only when the grid is what ran (not the ladder's one run)
            cut=tuple((c.trial.trial_key, c.reason) for c in grid.cut) if make_searcher is None else ())
        if verbose:
            print(summary.text(), flush=True)
        return summary
    finally:
        if own_ray is not None:
            own_ray.stop()


def _prepare_corpora(spec: SweepSpec, engine, workers: int | None, verbose: int, check_corpus: bool
                     ) -> tuple[SweepSpec, Grid]:
    """The spec with its raw corpora prepared once into the sweep's storage and named by their
    prepared locations (`orchestrator.sweep_corpus`), so no trial reads raw text or prepares;
    its grid again (the trials carry those locations); then, unless `check_corpus` is False,
    the data checks on the prepared corpora (token counts from their manifests)."""
    from orchestrator.grid import expand_grid
    from orchestrator.spec_data import check_data
    from orchestrator.sweep_corpus import prepare_sweep_corpora

    log = (lambda line: print(line, flush=True)) if verbose else None
    spec = prepare_sweep_corpora(spec, engine=engine, workers=workers, log=log)
    grid = expand_grid(spec)
    if check_corpus:
        check_data(spec, grid)
    return spec, grid


def budget_line(trials, limit: float, stored: dict[str, float]) -> str:
    """The live table's budget line, from the runs ended in the store before this driver
    (`stored`: {trial_key: FLOPs}) and the trials' own reports (`orchestrator.budget` counts)."""
    reports = [(t.config.get("trial_key", t.trial_id), (t.last_result or {}).get("flops") or 0,
                t.config.get("planned_flops", 0), t.status in ("RUNNING", "PENDING")) for t in trials]
    return budget_text(ledger_from_reports(limit, stored, reports))


def status_line(trials) -> str:
    """Trials per state for the live table: Tune's own counts say TERMINATED for a diverged run
    and a completed one alike, so an ended trial counts under the run status it reported, and
    one that errored out of its retries as failed."""
    counts: Counter = Counter()
    for trial in trials:
        if trial.status == "TERMINATED":
            counts[(trial.last_result or {}).get("status") or "ended"] += 1
        elif trial.status == "ERROR":
            counts["failed"] += 1
        else:
            counts[trial.status.lower()] += 1
    return status_text(counts)


def make_reporter(limit: float, stored: dict[str, float], key_width: int = 40, experiment: str | None = None):
    """Tune's CLI table with N, D, step, losses, FLOPs per trial, and a budget line and a
    trials-per-status line on top. `key_width`: the longest trial key, so that keys are shown
    whole (Tune cuts longer values at the end, where keys differ by seed or learning rate).
    `experiment`: where Tune's experiment is kept (its storage), named instead of Tune's
    ``Result logdir``, the driver's staging folder inside a private Ray's temp dir, which is
    removed when the sweep ends (a new user looked for results there)."""
    from ray.tune import CLIReporter

    class SweepReporter(CLIReporter):
        def report(self, trials, done, *sys_info):
            super().report(trials, done, budget_line(trials, limit, stored), status_line(trials), *sys_info)

        def _progress_str(self, trials, done, *sys_info, **kwargs):
            text = super()._progress_str(trials, done, *sys_info, **kwargs)
            if experiment is None:
                return text
            delim = kwargs.get("delim", "\n")
            return delim.join(f"Tune experiment: {experiment}" if line.startswith("Result logdir: ") else line
                              for line in text.split(delim))

    return SweepReporter(
        parameter_columns={"trial_key": "trial", "N": "N", "D": "D"},
        metric_columns={"step": "step", "train_loss": "train", "val_loss": "val",
                        "best_val_loss": "best", "pred": "pred", "flops": "FLOPs", "status": "ended as"},
        max_report_frequency=10, max_column_length=max(20, key_width),
        # explicit: Tune's default reads the global verbosity when the reporter is built, and a sweep
        # earlier in the same process (a notebook, a test worker) leaves it at 1, so every later
        # sweep's status came without its trial table, the final one included
        print_intermediate_tables=True,
    )
