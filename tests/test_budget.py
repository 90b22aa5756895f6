"""The budget ledger: pure Python, no Ray."""

import pytest

from orchestrator.budget import BudgetLedger, limit_flops
from orchestrator.spec_types import Budget


def test_start_only_when_committed_plus_cost_fits():
    ledger = BudgetLedger(limit_flops=100)
    ledger.start("a", 60)
    assert ledger.committed == 60 and ledger.spent == 0
    assert not ledger.fits(41) and ledger.fits(40)
    with pytest.raises(ValueError, match="do not fit"):
        ledger.start("b", 41)
    assert ledger.allowance("a") == 100  # nothing else is committed


def test_progress_and_finish_count_cumulative_flops_once():
    ledger = BudgetLedger(limit_flops=100)
    ledger.start("a", 50)
    ledger.progress("a", 10)
    ledger.progress("a", 30)  # cumulative, not added
    assert ledger.spent == 30 and ledger.committed == 50
    ledger.finish("a", 45)  # finished under plan: the rest of its commitment is released
    assert ledger.spent == ledger.committed == 45 and ledger.remaining == 55
    ledger.finish("a", 45)  # a re-announced end (restored driver) does not double-count
    assert ledger.spent == 45


def test_retry_from_checkpoint_keeps_work_without_double_counting():
    ledger = BudgetLedger(limit_flops=100)
    ledger.start("a", 50)
    ledger.progress("a", 20)
    ledger.progress("a", 35)  # a retried attempt resumes from its checkpoint at 20 -> reports 35
    ledger.finish("a", 50)
    assert ledger.spent == 50


def test_overrun_commits_what_was_spent():
    ledger = BudgetLedger(limit_flops=100)
    ledger.start("a", 40)
    ledger.progress("a", 70)
    assert ledger.committed == 70 and ledger.allowance("a") == 100


def test_allowance_is_what_the_others_leave():
    ledger = BudgetLedger(limit_flops=100)
    ledger.start("a", 30)
    ledger.start("b", 50)
    assert ledger.allowance("b") == 70


def test_state_dict_round_trip():
    ledger = BudgetLedger(limit_flops=1e15)
    ledger.start("a", 3e14)
    ledger.progress("a", 1e14)
    ledger.start("b", 2e14)
    ledger.finish("b", 1.5e14)
    copy = BudgetLedger.from_state_dict(ledger.state_dict())
    assert copy.state_dict() == ledger.state_dict()
    assert (copy.spent, copy.committed) == (ledger.spent, ledger.committed) == (2.5e14, 4.5e14)
    with pytest.raises(ValueError, match="version"):
        copy.load_state_dict({**ledger.state_dict(), "version": 99})


def test_limit_from_spec_budget_takes_the_tightest():
    assert limit_flops(Budget(flops=1e18)) == 1e18
    assert limit_flops(Budget(flops=1e20, gpu_hours=1, gpu_flops_per_s=1e14)) == 3.6e17
    with pytest.raises(ValueError):
        BudgetLedger(limit_flops=0)


def test_budget_fraction_is_planned_flops_over_the_tightest_limit():
    from orchestrator.budget import budget_fraction

    assert budget_fraction(Budget(flops=1e18), 5e17) == 0.5
    # one GPU-hour at 1e14 FLOP/s is 3.6e17 FLOPs, tighter than flops=1e20
    assert budget_fraction(Budget(flops=1e20, gpu_hours=1, gpu_flops_per_s=1e14), 3.6e17) == pytest.approx(1.0)


def test_live_table_line_counts_reported_flops_and_running_plans():
    """The reporter's ledger: ended trials count what they did; running ones the larger of their
    plan and what they did so far; runs from before this driver count in both."""
    from orchestrator.budget import budget_text, ledger_from_reports

    reports = [("t1", 30, 40, False), ("t2", 10, 50, True), ("t3", 70, 50, True)]
    ledger = ledger_from_reports(1000, {"old": 100}, reports)
    assert ledger.spent == 100 + 30 + 10 + 70
    assert ledger.committed == 100 + 30 + 50 + 70
    assert budget_text(ledger) == "budget: spent 210 / committed 250 / limit 1e+03 FLOPs (25% committed)"


def test_live_table_counts_a_run_once_after_a_resume():
    """Resumed, the table's trials are the restored experiment's, whose ended runs are also in
    the store, and a run lost with a killed driver is run again by a new Tune trial: each run
    counts once (the line once showed twice the spend after `--resume`)."""
    from orchestrator.budget import ledger_from_reports

    stored = {"a": 30.0, "b": 20.0}
    reports = [("a", 30, 40, False),           # restored, ended before the kill: in the store too
               ("c", 12, 50, False),           # the killed driver's trial, restored at 12 FLOPs
               ("c", 5, 50, True),             # ... and run again by the new driver
               ("d", 0, 60, True)]
    ledger = ledger_from_reports(1000, stored, reports)
    assert ledger.spent == 30 + 20 + 12 + 0
    assert ledger.committed == 30 + 20 + 50 + 60
    assert set(ledger.running) == {"c", "d"}


def test_ledger_from_store_counts_ended_runs_only():
    from orchestrator.budget import ledger_from_store

    rows = [{"trial_id": "a", "status": "completed", "flops": 5.0},
            {"trial_id": "b", "status": "diverged", "flops": 2.0},
            {"trial_id": "c", "status": "failed", "flops": 1.0}]
    ledger, done = ledger_from_store(100, rows)
    assert done == {"a", "b"} and ledger.spent == ledger.committed == 7.0
