"""Property test of the budget ledger: random specs, budgets, trial costs and completion orders.

A model driver plays the orchestrator's part (start only what fits, report cumulative FLOPs no
larger than the trial's allowance, finish / fail / retry in any order, save and restore the
ledger at any point); the ledger must never let spending pass the budget, must release a
failed trial's unspent commitment, and must come back identical from its state_dict."""

import json

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from orchestrator.budget import BudgetLedger

COST = st.floats(min_value=1.0, max_value=1e4, allow_nan=False, allow_infinity=False)


class LedgerMachine(RuleBasedStateMachine):
    @initialize(limit=st.floats(min_value=10.0, max_value=5e4), costs=st.lists(COST, min_size=1, max_size=12))
    def setup(self, limit, costs):
        self.ledger = BudgetLedger(limit_flops=limit)
        self.costs = {f"t{i}": c for i, c in enumerate(costs)}  # the sweep spec's trials
        self.progress_of: dict[str, float] = {}  # cumulative FLOPs each running trial reported

    # ---- transitions
    @rule(data=st.data())
    def start(self, data):
        idle = sorted(k for k in self.costs if k not in self.ledger.running)
        if not idle:
            return
        key = data.draw(st.sampled_from(idle))
        cost = self.costs[key]
        if not self.ledger.fits(cost):
            return  # the driver never starts what does not fit
        before = self.ledger.finished.get(key, 0.0)  # a retry resumes with the work already done
        self.ledger.start(key, cost)
        self.progress_of[key] = before
        assert self.ledger.committed <= self.ledger.limit_flops * (1 + 1e-12)

    @precondition(lambda self: bool(self.ledger.running))
    @rule(data=st.data(), frac=st.floats(min_value=0.0, max_value=1.0))
    def progress(self, data, frac):
        key = data.draw(st.sampled_from(sorted(self.ledger.running)))
        # cumulative count, growing, never past what the ledger allows this trial
        cap = self.ledger.allowance(key)
        new = min(self.progress_of[key] + frac * self.costs[key], cap)
        self.progress_of[key] = max(self.progress_of[key], new)
        self.ledger.progress(key, self.progress_of[key])

    @precondition(lambda self: bool(self.ledger.running))
    @rule(data=st.data(), failed=st.booleans(), frac=st.floats(min_value=0.0, max_value=1.0))
    def finish(self, data, failed, frac):
        key = data.draw(st.sampled_from(sorted(self.ledger.running)))
        committed_before = self.ledger.committed
        planned = self.ledger.running[key].committed_flops
        done = self.progress_of[key]
        if not failed:  # completed: it spent up to its plan (within its allowance)
            done = max(done, min(self.costs[key], self.ledger.allowance(key)))
        else:  # failed part-way: whatever it reported, maybe a bit more
            done = min(done + frac * (planned - done), self.ledger.allowance(key))
        self.ledger.finish(key, done)
        self.progress_of.pop(key)
        # the unspent rest of the commitment is released, nothing more
        assert abs(self.ledger.committed - (committed_before - planned + done)) <= 1e-9 * max(1.0, committed_before)

    @rule()
    def restore(self):
        state = json.loads(json.dumps(self.ledger.state_dict()))  # what a checkpoint stores
        restored = BudgetLedger.from_state_dict(state)
        for name in ("spent", "committed", "remaining"):
            assert abs(getattr(restored, name) - getattr(self.ledger, name)) <= 1e-9 * max(1.0, self.ledger.limit_flops)
        assert restored.finished == self.ledger.finished
        assert set(restored.running) == set(self.ledger.running)
        self.ledger = restored

    # ---- invariants
    @invariant()
    def never_over_budget(self):
        tol = 1e-9 * self.ledger.limit_flops
        assert self.ledger.spent <= self.ledger.limit_flops + tol
        assert self.ledger.committed <= self.ledger.limit_flops + tol
        assert self.ledger.spent <= self.ledger.committed + tol

    @invariant()
    def spent_is_the_sum_of_trials(self):
        total = sum(self.ledger.finished.values()) + sum(t.spent_flops for t in self.ledger.running.values())
        assert abs(self.ledger.spent - total) <= 1e-9 * max(1.0, total)


LedgerMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestLedgerProperties = LedgerMachine.TestCase
