"""The compute budget ledger: pure Python, no Ray, so it is unit-testable in microseconds.

Two numbers matter (docs/architecture.md §6):

- spent: FLOPs actually done, by finished trials and by running trials so far;
- committed: spent by finished trials + the planned cost of running trials (or what they have
  already spent, if a trial overran its plan).

A trial may start only if ``committed + its cost <= limit`` (within the float tolerance of
:func:`fitting.cost.affordable`). Each trial is keyed by its stable
``trial_key``, and FLOPs are recorded as the trial's *cumulative* count (the trainer's counter
survives checkpoint/resume), so a retried or re-reported trial replaces its figure instead of
adding to it: retries and restored drivers never double-count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fitting.cost import affordable
from metrics.statuses import ENDED_STATUSES

STATE_VERSION = 1


@dataclass
class RunningTrial:
    planned_flops: float
    spent_flops: float = 0.0

    @property
    def committed_flops(self) -> float:
        return max(self.planned_flops, self.spent_flops)


@dataclass
class BudgetLedger:
    limit_flops: float
    finished: dict[str, float] = field(default_factory=dict)  # trial_key -> FLOPs spent
    running: dict[str, RunningTrial] = field(default_factory=dict)
    # Running sums so every query is O(1); a sweep of thousands of trials asks on every poll.
    _finished_total: float = 0.0
    _running_planned: float = 0.0
    _running_spent: float = 0.0

    def __post_init__(self) -> None:
        if not self.limit_flops > 0:
            raise ValueError(f"limit_flops: must be positive, got {self.limit_flops}")
        self._recount()

    # -- queries ---------------------------------------------------------------------------
    @property
    def spent(self) -> float:
        return self._finished_total + self._running_spent

    @property
    def committed(self) -> float:
        return self._finished_total + self._running_planned

    @property
    def remaining(self) -> float:
        return self.limit_flops - self.committed

    def fits(self, cost: float) -> bool:
        return bool(affordable(cost, self.remaining, self.limit_flops))  # the one tolerance rule

    def is_settled(self, key: str) -> bool:
        return key in self.finished or key in self.running

    def allowance(self, key: str) -> float:
        """The most FLOPs trial `key` may spend in total (the trainer stops it at this line)."""
        own = self.running[key].committed_flops if key in self.running else 0.0
        return self.limit_flops - self.committed + own

    # -- transitions -----------------------------------------------------------------------
    def start(self, key: str, planned_flops: float) -> None:
        if key in self.running:
            return  # a restored driver re-announcing a trial it already counted
        if not self.fits(planned_flops):
            raise ValueError(f"{key}: {planned_flops:.3g} FLOPs do not fit; "
                             f"{self.remaining:.3g} of {self.limit_flops:.3g} remain")
        previous = self._drop_finished(key)  # a finished trial run again (e.g. retried) keeps its work
        self.running[key] = RunningTrial(planned_flops, previous)
        self._running_planned += self.running[key].committed_flops
        self._running_spent += previous

    def progress(self, key: str, cumulative_flops: float) -> None:
        trial = self.running.get(key)
        if trial is None:
            return  # a late result from a trial already settled
        self._running_planned -= trial.committed_flops
        self._running_spent -= trial.spent_flops
        trial.spent_flops = max(trial.spent_flops, float(cumulative_flops))
        self._running_planned += trial.committed_flops
        self._running_spent += trial.spent_flops

    def finish(self, key: str, cumulative_flops: float | None = None) -> None:
        """Trial `key` ended (any status). `cumulative_flops` None: keep what it reported."""
        trial = self.running.pop(key, None)
        spent = trial.spent_flops if trial else 0.0
        if trial:
            self._running_planned -= trial.committed_flops
            self._running_spent -= trial.spent_flops
        if cumulative_flops is not None:
            spent = max(spent, float(cumulative_flops))
        spent = max(spent, self._drop_finished(key))
        self.finished[key] = spent
        self._finished_total += spent

    def _drop_finished(self, key: str) -> float:
        spent = self.finished.pop(key, 0.0)
        self._finished_total -= spent
        return spent

    def _recount(self) -> None:
        self._finished_total = float(sum(self.finished.values()))
        self._running_planned = float(sum(t.committed_flops for t in self.running.values()))
        self._running_spent = float(sum(t.spent_flops for t in self.running.values()))

    # -- persistence -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "limit_flops": self.limit_flops,
            "finished": dict(self.finished),
            "running": {k: [t.planned_flops, t.spent_flops] for k, t in self.running.items()},
            "spent": self.spent,
            "committed": self.committed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"ledger state version {state.get('version')!r}, expected {STATE_VERSION}")
        self.limit_flops = float(state["limit_flops"])
        self.finished = {k: float(v) for k, v in state["finished"].items()}
        self.running = {k: RunningTrial(float(p), float(s)) for k, (p, s) in state["running"].items()}
        self._recount()

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "BudgetLedger":
        ledger = cls(limit_flops=float(state["limit_flops"]))
        ledger.load_state_dict(state)
        return ledger


def write_ledger_file(storage: str, sweep: str, ledger: BudgetLedger) -> str:
    """``<storage>/<sweep>/ledger.json`` (the ledger's `state_dict`), written atomically
    (`metrics.write_atomically`) so a reader never sees half of it; its path."""
    import json

    from metrics import resolve, write_atomically

    fs, directory = resolve(storage, sweep)
    path = f"{directory}/ledger.json"
    payload = json.dumps(ledger.state_dict(), indent=1, sort_keys=True).encode()
    write_atomically(path, lambda out: out.write(payload), fs)
    return path


def limit_flops(budget) -> float:
    """The tightest FLOPs limit of an `orchestrator.spec.Budget` (flops and/or GPU-hours: one
    GPU-hour is ``gpu_flops_per_s * 3600`` FLOPs). The only place a budget becomes FLOPs."""
    limits = []
    if budget.flops is not None:
        limits.append(float(budget.flops))
    if budget.gpu_hours is not None:
        limits.append(float(budget.gpu_hours) * float(budget.gpu_flops_per_s) * 3600.0)
    if not limits:
        raise ValueError("budget: set flops and/or gpu_hours")
    return min(limits)


def budget_fraction(budget, flops: float) -> float:
    """``flops`` as a fraction of the budget's tightest limit (the grid cut's test: <= 1 fits)."""
    return flops / limit_flops(budget)


def ledger_from_reports(limit: float, stored: dict[str, float], reports) -> BudgetLedger:
    """A ledger rebuilt from what trials reported, for the live table (it cannot see the searcher
    Tune unpickled on restore). ``stored``: {trial_key: FLOPs} of the runs that had ended in the
    store when this driver started; ``reports``: (trial_key, FLOPs done, planned FLOPs, running?)
    per Tune trial. Keyed by trial_key, keeping the larger figure as the ledger does, so a run
    both in the store and among a restored experiment's trials, or run by two Tune trials (one
    lost with a killed driver), counts once; a key with any running trial is running."""
    done: dict[str, float] = {k: float(v) for k, v in stored.items()}
    planned: dict[str, float] = {}
    for key, flops, plan, is_running in reports:
        done[key] = max(done.get(key, 0.0), float(flops or 0.0))
        if is_running:
            planned[key] = max(planned.get(key, 0.0), float(plan or 0.0))
    running = {k: RunningTrial(p, done.pop(k)) for k, p in planned.items()}
    return BudgetLedger(limit_flops=limit, finished=done, running=running)


def budget_text(ledger: BudgetLedger) -> str:
    """The live table's budget line."""
    return (f"budget: spent {ledger.spent:.3g} / committed {ledger.committed:.3g} / limit "
            f"{ledger.limit_flops:.3g} FLOPs ({ledger.committed / ledger.limit_flops:.0%} committed)")


def ended_runs(runs: list[dict]) -> list[dict]:
    """The runs rows (latest attempt per trial) that ended: they are spent and never run again."""
    return [row for row in runs if row["status"] in ENDED_STATUSES]


def ledger_from_store(limit: float, runs: list[dict]) -> tuple[BudgetLedger, set[str]]:
    """Finished work as the store records it (latest attempt per trial): the ledger after a
    driver kill, and the keys not to run again."""
    ledger = BudgetLedger(limit_flops=limit)
    for row in ended_runs(runs):
        ledger.finish(row["trial_id"], float(row["flops"]))
    return ledger, set(ledger.finished)
