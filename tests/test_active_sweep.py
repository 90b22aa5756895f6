"""ActiveSearcher driven the way Tune drives a Searcher (suggest / on_trial_complete), without a
Ray cluster: runs are "trained" by a simulated Chinchilla surface. Checks the concurrency cap,
the budget, distinct concurrent picks, failures, FINISHED, the rel_pred_ci stop and restore."""

import warnings

import numpy as np
import pytest

from ray.tune.search import Searcher

from fitting.fit import fit_law  # noqa: E402
from fitting.laws import CHINCHILLA_EPOCH  # noqa: E402
from fitting.online import OnlineFitConfig  # noqa: E402
from fitting.replay import SimulatedOracle  # noqa: E402
from orchestrator.active_search import ActiveSearcher  # noqa: E402
from orchestrator.budget import BudgetLedger  # noqa: E402
from orchestrator.trial import TrialConfig  # noqa: E402
from orchestrator.grid import expand_grid  # noqa: E402
from orchestrator.spec import load_spec  # noqa: E402

SPEC = {
    "name": "active", "storage": "unused",
    "corpus": {"source": "builtin", "tokenizer": "byte"},
    "axes": {"target_params": [2.5e4, 5e4, 1e5, 2e5, 4e5, 8e5], "aspect_ratio": 16, "head_dim": 16, "n_ctx": 64,
             "dataset_tokens": [1e5, 3e5, 1e6, 3e6, 1e7, 3e7], "regime": "tokens", "seeds": [0],
             "batch_tokens": 2048},
    "trainer": {"zero_stage": 0, "precision": "fp32"},
    "resources": {"cpus_per_worker": 1, "gpus_per_worker": 0, "workers": 1},
    "search": {"kind": "grid"},
    "budget": {"flops": 1e18},
}
FAST = OnlineFitConfig(loss="ls", full_every=16, max_starts=256, screen=8)


@pytest.fixture(scope="module")
def trials():
    return expand_grid(load_spec(SPEC)).trials


def _searcher(trials, limit, **kw):
    return ActiveSearcher(trials, law="chinchilla", settings=TrialConfig(sweep="active", storage="unused"),
                          ledger=BudgetLedger(limit_flops=limit), max_concurrent=3, fit_config=FAST, **kw)


def _drive(searcher, oracle, rng, fail_every=0, stop_after=None):
    """Tune's loop: fill free slots, complete a random running trial, repeat until FINISHED."""
    n_ids, done, finished = 0, 0, False
    while not finished or searcher.live:
        while not finished:
            cfg = searcher.suggest(f"t{n_ids}")
            if cfg is None:
                break
            if cfg == Searcher.FINISHED:
                finished = True
                break
            n_ids += 1
            assert len(searcher.live) <= searcher.max_concurrent
            running = [p.trial_key for p in searcher.live.values()]
            assert len(set(running)) == len(running)
            assert searcher.ledger.committed <= searcher.ledger.limit_flops
        if not searcher.live:
            assert finished, "nothing running and nothing proposed"
            break
        trial_id = rng.choice(sorted(searcher.live))
        trial = searcher.live[trial_id]
        failed = bool(fail_every) and done % fail_every == fail_every - 1
        loss = float(oracle.observe({"N": [trial.non_embedding_params], "D": [trial.dataset_tokens]})[0])
        searcher.on_trial_complete(trial_id, None if failed else {"best_val_loss": loss,
                                                                   "flops": trial.planned_flops}, error=failed)
        done += 1
        if stop_after is not None and done >= stop_after:
            return done
    return done


def test_active_sweep_stays_in_budget_and_finishes(trials):
    total = sum(p.planned_flops for p in trials)
    searcher = _searcher(trials, 0.2 * total)
    oracle = SimulatedOracle("chinchilla", CHINCHILLA_EPOCH, noise=0.01, seed=0)
    done = _drive(searcher, oracle, np.random.default_rng(0), fail_every=7)
    assert searcher.stop_reason == "budget"
    assert searcher.ledger.spent <= 0.2 * total
    assert searcher.fitter.n_failed >= 1 and searcher.fitter.n_runs + searcher.fitter.n_failed == done
    # it spent most of the budget: nothing affordable was left
    free = [p for p in trials if p.trial_key not in searcher.finished_keys]
    assert min(p.planned_flops for p in free) > searcher.ledger.remaining
    assert searcher.fitter.fit is not None and np.isfinite(searcher.rel_pred_ci())
    # each choice says why: the seed design, its error reduction per cost, or (an unreliable fit:
    # fitting.design.unreliable_linearisation) the hedge and its reason
    whys = [c["why"] for c in searcher.choices]
    assert all(w == "seed (space-filling)" or w.startswith("seed (no fit yet: ") or w.startswith("error reduction per FLOPs^") or
               (w.startswith("information gain on the law's parameters (D-optimal) per FLOPs^") and "(hedged: " in w) for w in whys), whys
    assert "seed (space-filling)" in whys and len(set(whys)) >= 2
    summary = "\n".join(searcher.summary_lines())
    assert all(w in summary for w in set(whys))


def test_stops_when_the_target_is_pinned_down(trials):
    total = sum(p.planned_flops for p in trials)
    searcher = _searcher(trials, total, stop_when={"rel_pred_ci": 0.05}, target={"largest": 3})
    _drive(searcher, SimulatedOracle("chinchilla", CHINCHILLA_EPOCH, noise=0.005, seed=1), np.random.default_rng(1))
    assert searcher.stop_reason == "rel_pred_ci" and searcher.rel_pred_ci() <= 0.05
    assert searcher.ledger.spent < total


def test_save_restore_continues_identically(trials, tmp_path):
    total = sum(p.planned_flops for p in trials)
    first = _searcher(trials, 0.3 * total)
    oracle = SimulatedOracle("chinchilla", CHINCHILLA_EPOCH, noise=0.01, seed=2)
    _drive(first, oracle, np.random.default_rng(2), stop_after=10)
    path = tmp_path / "searcher.pkl"
    first.save(str(path))
    second = _searcher(trials, 0.3 * total)
    second.restore(str(path))
    assert second.ledger.state_dict() == first.ledger.state_dict()
    assert second.fitter.run_ids == first.fitter.run_ids and second.n_started == first.n_started
    assert set(p.trial_key for p in second.live.values()) == set(p.trial_key for p in first.live.values())
    a, b = first.suggest("next"), second.suggest("next")
    assert (a is None and b is None) or a == b or (a["trial_key"] == b["trial_key"])


def test_time_cost_learns_throughput_and_keeps_it_across_restore(trials, tmp_path):
    """cost="time": finished trials report wall_s from a known rate law (small models slow per
    FLOP); the searcher fits it, ranks by predicted seconds and saves it with its state."""
    total = sum(p.planned_flops for p in trials)
    searcher = _searcher(trials, 0.3 * total, cost="time")
    oracle = SimulatedOracle("chinchilla", CHINCHILLA_EPOCH, noise=0.01, seed=3)
    n_ids = 0
    while n_ids < 12:
        cfg = searcher.suggest(f"t{n_ids}")
        if cfg is None or cfg == Searcher.FINISHED:
            break
        n_ids += 1
        trial_id = sorted(searcher.live)[0]
        trial = searcher.live[trial_id]
        N = trial.non_embedding_params
        wall = trial.planned_flops / (1e9 * (N / 1e5) ** 0.5)
        loss = float(oracle.observe({"N": [N], "D": [trial.dataset_tokens]})[0])
        searcher.on_trial_complete(trial_id, {"best_val_loss": loss, "flops": trial.planned_flops, "wall_s": wall})
    model = searcher.throughput()
    assert model is not None and model.slope == pytest.approx(0.5, abs=0.05)
    seconds = searcher.predicted_seconds()
    assert seconds.shape == (len(trials),) and np.all(seconds > 0)
    scored = [c for c in searcher.choices if c["score"] is not None]
    assert scored and all("seconds" in c["why"] for c in scored)
    assert any("throughput" in line for line in searcher.summary_lines())
    path = tmp_path / "searcher.pkl"
    searcher.save(str(path))
    restored = _searcher(trials, 0.3 * total, cost="time")
    restored.restore(str(path))
    assert restored.run_times == searcher.run_times
    np.testing.assert_allclose(restored.predicted_seconds(), seconds)


def test_a_pick_whose_run_ended_after_tunes_last_checkpoint_counts_after_a_restore(trials, tmp_path):
    """Tune saves the searcher now and then: a run picked after the last save that ended before
    the driver died is in the store, not in the saved state. Restored, the searcher counts it
    toward max_trials and lists it among its choices (a resumed sweep could run more)."""
    from metrics import TrialWriter
    from test_store import run_row

    total = sum(p.planned_flops for p in trials)
    storage = str(tmp_path / "store")

    def searcher():
        return ActiveSearcher(trials, law="chinchilla", settings=TrialConfig(sweep="active", storage=storage),
                              ledger=BudgetLedger(limit_flops=0.3 * total), max_concurrent=3, fit_config=FAST,
                              max_trials=4)

    first = searcher()
    first.suggest("t0")
    first.save(str(tmp_path / "searcher.pkl"))  # Tune's last save: one pick
    first.suggest("t1")
    late = first.live["t1"]
    TrialWriter(storage, "active", late.trial_key).write_run(run_row(
        non_embedding_params=int(late.non_embedding_params), dataset_tokens=int(late.dataset_tokens),
        flops=late.planned_flops))

    second = searcher()
    second.restore(str(tmp_path / "searcher.pkl"))
    assert second.n_started == 2 and [c["trial_key"] for c in second.choices][-1] == late.trial_key
    assert "picked before the driver stopped" in second.summary_lines()[-1]
    assert late.trial_key in second.finished_keys and second.ledger.finished[late.trial_key] == late.planned_flops
    picks = 0
    while second.suggest(f"r{picks}") not in (None, Searcher.FINISHED):
        picks += 1
    assert picks == 2  # max_trials 4: t0 (live at the save: Tune runs it again), the late one, two more


def test_the_summary_lists_each_ended_runs_spent_flops_not_its_plan(trials):
    """A run that ended under its plan (early-stopped, diverged) is listed at what the ledger
    counted; one still running at what it plans (a new user read planned FLOPs as spent)."""
    searcher = _searcher(trials, sum(p.planned_flops for p in trials))
    first, second = searcher.suggest("t0"), searcher.suggest("t1")
    assert first not in (None, Searcher.FINISHED) and second not in (None, Searcher.FINISHED)
    planned = searcher.live["t0"].planned_flops
    searcher.on_trial_complete("t0", {"best_val_loss": 3.0, "flops": 0.4 * planned, "status": "early_stopped"})
    lines = searcher.summary_lines()
    assert f"{0.4 * planned:.3g} of {planned:.3g} planned FLOPs" in lines[-2]
    assert lines[-1].endswith(f"{searcher.live['t1'].planned_flops:.3g} FLOPs planned, seed (space-filling)")
    assert f"spent {0.4 * planned:.3g} of" in lines[0]


def test_a_seed_picked_past_what_a_fit_needs_says_why_there_is_no_fit(trials):
    """With runs still running or ended without a loss, the designer seeds past seed_runs; each
    such pick names why there is no fit yet (a new user read 7 seeds for 6 as a bug)."""
    searcher = _searcher(trials, sum(p.planned_flops for p in trials))
    oracle = SimulatedOracle("chinchilla", CHINCHILLA_EPOCH, noise=0.01, seed=0)

    def complete(trial_id, status="completed"):
        p = searcher.live[trial_id]
        loss = float(oracle.observe({"N": np.array([p.non_embedding_params]), "D": np.array([p.dataset_tokens])})[0])
        searcher.on_trial_complete(trial_id, {"best_val_loss": loss if status == "completed" else None,
                                              "flops": p.planned_flops, "status": status})

    for i in range(3):
        searcher.suggest(f"t{i}")
    complete("t0"), complete("t1", "diverged")
    searcher.suggest("t3"), searcher.suggest("t4")
    complete("t2"), complete("t3")
    searcher.suggest("t5"), searcher.suggest("t6")
    whys = [c["why"] for c in searcher.choices]
    assert whys[:6] == ["seed (space-filling)"] * 6, whys
    assert whys[6] == "seed (no fit yet: 3 usable runs, needs 6; 1 run ended without a usable loss; 2 running)", whys
    assert searcher.summary_lines()[-1].endswith(whys[6])
    from orchestrator.report_html import choices_table  # the report gives the same reason (it said "space-filling")

    assert whys[6] in choices_table(searcher.choices)


def test_the_summary_prints_the_fit_command_s_law_not_the_last_warm_refit(trials):
    """A new user's finding: the summary printed A=8.73, alpha=0.142 where ``fit`` on the same 8
    runs gave A=3.60, alpha=0.106. The online fitter's warm refits had kept an earlier basin; the
    summary now reports the full refit (the runs of tests/test_online.py's example, seed 7)."""
    rng = np.random.default_rng(7)
    N = np.exp(rng.uniform(np.log(1e6), np.log(3e7), 8))
    D = N * np.exp(rng.uniform(np.log(2), np.log(60), 8))
    y = SimulatedOracle("chinchilla", CHINCHILLA_EPOCH, noise=0.01, seed=7).observe({"N": N, "D": D})
    searcher = ActiveSearcher(trials, law="chinchilla", settings=TrialConfig(sweep="active", storage="unused"),
                              ledger=BudgetLedger(limit_flops=1e18), max_concurrent=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(8):
            searcher.fitter.add({"N": N[i], "D": D[i]}, y[i], run_id=f"r{i}")
            searcher.fitter.fit
        warm_alpha = searcher.fitter.fit.params["alpha"]
        batch = fit_law("chinchilla", {"N": N, "D": D, "loss": y})
    assert abs(warm_alpha / batch.params["alpha"] - 1) > 0.2  # the warm fit is the other basin
    law_line = next(line for line in searcher.summary_lines() if line.startswith("  law chinchilla"))
    assert f"alpha={batch.params['alpha']:.3g} " in law_line and f"alpha={warm_alpha:.3g} " not in law_line
