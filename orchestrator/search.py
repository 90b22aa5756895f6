"""Budget-aware Tune searchers.

`BudgetedSearcher` does the Tune bookkeeping every scalesweep searcher shares: the budget
ledger, which Tune trial runs which of the grid's trials, the concurrency cap, save/restore (so a
`Tuner.restore`d sweep keeps its state; ray#30861 lost exactly this) and the config dict
each trial receives. Subclasses only say what to run next (`propose`) and hear what
happened (`observe`).

Tune only calls `set_search_properties` when `param_space` is non-empty (docs/architecture.md §7), so
metric and mode are constructor arguments. Returning None from `suggest` makes Tune poll
again later; `Searcher.FINISHED` ends the experiment once running trials finish.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any, Iterable

from ray.tune.search import Searcher

from orchestrator.budget import BudgetLedger, ended_runs
from orchestrator.grid import TrialSpec
from orchestrator.trial import TrialConfig


class BudgetedSearcher(Searcher):
    """Owns: budget ledger, live trials, max_concurrent, save/restore, Tune config dicts."""

    def __init__(self, *, settings: TrialConfig, ledger: BudgetLedger, max_concurrent: int,
                 metric: str = "best_val_loss", mode: str = "min"):
        super().__init__(metric=metric, mode=mode)
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent: must be >= 1, got {max_concurrent}")
        self.settings = settings  # the sweep's part of every trial's config (no trial_key yet)
        self.ledger = ledger
        self.max_concurrent = max_concurrent
        self.live: dict[str, TrialSpec] = {}  # Tune trial_id -> the TrialSpec it runs
        self.finished_keys: set[str] = set()
        self.observed_keys: set[str] = set()  # ended runs already handed to observe
        self.persist_ledger = False  # the driver sets it: write ledger.json after each ended run

    # -- subclass hooks ----------------------------------------------------------------------
    def propose(self) -> TrialSpec | None | str:
        """The next trial to start; None: nothing to start now (Tune polls again); FINISHED: done."""
        raise NotImplementedError

    def observe(self, trial: TrialSpec, result: dict | None, failed: bool) -> None:
        """A trial ended (after Tune's retries)."""
        self.observe_point(trial.trial_key, trial.non_embedding_params, trial.dataset_tokens, result, failed)

    def observe_point(self, key: str, n: float, d: float, result: dict | None, failed: bool) -> None:
        """A run of N=`n` non-embedding parameters on D=`d` planned tokens ended, here or in an
        earlier driver (`add_evaluated_point`); `result`: its last report or runs row."""

    def get_extra_state(self) -> dict:
        return {}

    def set_extra_state(self, state: dict) -> None:
        pass

    # -- Tune Searcher API -------------------------------------------------------------------
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric and mode came with the constructor; the space is ours

    def suggest(self, trial_id: str) -> dict | None | str:
        if len(self.live) >= self.max_concurrent:
            return None
        trial = self.propose()
        if trial is None or trial == Searcher.FINISHED:
            return trial
        self.ledger.start(trial.trial_key, trial.planned_flops)
        self.live[trial_id] = trial
        return self.trial_config(trial)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        trial = self.live.get(trial_id)
        if trial is not None and result.get("flops") is not None:
            self.ledger.progress(trial.trial_key, result["flops"])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = self.live.pop(trial_id, None)
        if trial is None:
            return
        flops = None if not result or result.get("flops") is None else result["flops"]
        self.ledger.finish(trial.trial_key, flops)
        self.finished_keys.add(trial.trial_key)
        if getattr(self, "persist_ledger", False):  # a killed driver leaves the ledger as of its last run (older pickles lack it)
            from orchestrator.budget import write_ledger_file

            write_ledger_file(self.settings.storage, self.settings.sweep, self.ledger)
        if trial.trial_key not in self.observed_keys:
            self.observed_keys.add(trial.trial_key)
            self.observe(trial, result, error)

    def add_evaluated_point(self, parameters: dict, value: float | None, error: bool = False,
                            pruned: bool = False, intermediate_values=None) -> None:
        """Tune's `Searcher.add_evaluated_point`: a run that ended outside this searcher's
        suggest/complete loop (here: one already in `<storage>/<sweep>/runs/`). `parameters`:
        its runs row (trial_id, non_embedding_params, dataset_tokens, flops, status, wall_s);
        `value`: its `metric`. It counts as spent in the ledger, is never run again, and is
        observed once (seeding twice, or after a restore, changes nothing)."""
        key = parameters["trial_id"]
        self.ledger.finish(key, parameters.get("flops"))
        self.finished_keys.add(key)
        if key in self.observed_keys:
            return
        self.observed_keys.add(key)
        self.observe_point(key, parameters["non_embedding_params"], parameters["dataset_tokens"],
                           {**parameters, self.metric: value}, error)

    def seed_from_store(self, rows: list[dict] | None = None) -> int:
        """Feed every ended run of the sweep's store (or of ``rows``, runs rows the caller has
        already read) through `add_evaluated_point`; returns how many. Called at start and
        after Tune restores this searcher, so a sweep that is resumed, re-run after a failed
        restore, or extended starts from all it paid for."""
        if rows is None:
            from metrics import load_runs

            rows = load_runs(self.settings.storage, self.settings.sweep).to_pylist()
        rows = ended_runs(rows)
        for row in rows:
            self.add_evaluated_point(row, row.get(self.metric))
        return len(rows)

    def trial_config(self, trial: TrialSpec) -> dict[str, Any]:
        """The config dict a Tune trial receives: plain data, shown in the progress table."""
        train_config = dataclasses.replace(trial.train_config, budget_flops=self.ledger.allowance(trial.trial_key))
        config = self.settings.for_trial(trial.trial_key, train_config, trial.run_columns)
        return {**config.to_tune(), "N": trial.non_embedding_params, "D": trial.dataset_tokens,
                "planned_flops": trial.planned_flops}

    def save(self, checkpoint_path: str) -> None:
        state = {"ledger": self.ledger.state_dict(), "live": self.live,
                 "finished_keys": sorted(self.finished_keys),
                 "observed_keys": sorted(self.observed_keys), "max_concurrent": self.max_concurrent,
                 "extra": self.get_extra_state()}
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(state, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            state = pickle.load(handle)
        self.ledger.load_state_dict(state["ledger"])
        self.live = state["live"]
        self.finished_keys = set(state["finished_keys"])
        self.observed_keys = set(state.get("observed_keys", ()))
        self.set_extra_state(state["extra"])
        known = set(self.finished_keys)
        self.seed_from_store()  # runs that ended after Tune's last checkpoint of this searcher
        self.on_restored(self.finished_keys - known)

    def on_restored(self, ended_since: set[str]) -> None:
        """After a restore: `ended_since` are the runs this sweep started after Tune's last
        checkpoint of this searcher and that ended before the driver stopped (Tune saves its
        state only now and then). A searcher that counts its picks counts them here."""


class GridSearcher(BudgetedSearcher):
    """The spec's grid in order (the budget cut is already applied), one Tune trial per TrialSpec.

    Trials already finished in the store (a resumed sweep) are skipped. A trial that does not fit
    the remaining budget waits while trials run (they may finish under their planned FLOPs) and is skipped
    once nothing runs.
    """

    def __init__(self, trials: Iterable[TrialSpec], *, done_keys: Iterable[str] = (), **kwargs):
        super().__init__(**kwargs)
        self.finished_keys |= set(done_keys)
        self._queue: list[TrialSpec] = [p for p in trials if p.trial_key not in self.finished_keys]
        self.skipped: list[str] = []

    def propose(self) -> TrialSpec | None | str:
        queue = self._queue
        while queue and (queue[0].trial_key in self.finished_keys or self.ledger.is_settled(queue[0].trial_key)):
            queue.pop(0)  # finished before a restore, or re-announced
        for index, trial in enumerate(queue):
            if self.ledger.fits(trial.planned_flops):
                return queue.pop(index)
        if not queue:
            return Searcher.FINISHED
        if self.live:
            return None
        self.skipped += [p.trial_key for p in queue]  # nothing runs and nothing fits: done
        queue.clear()
        return Searcher.FINISHED

    def get_extra_state(self) -> dict:
        return {"queue": [p.trial_key for p in self._queue], "skipped": list(self.skipped)}

    def set_extra_state(self, state: dict) -> None:
        keep = set(state["queue"])
        self._queue = [p for p in self._queue if p.trial_key in keep and p.trial_key not in self.finished_keys]
        self.skipped = list(state["skipped"])

