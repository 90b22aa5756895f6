"""search.kind: isoflop: the plan per budget (sizes from the shape rules, D from the exact FLOPs
of whole steps), its errors (each names its field, exits 2, before Ray) and the isoflop_budget
runs column's path into the runs row. Pure planning: milliseconds, no Ray, no training."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fitting.allocate import chinchilla_optimal
from fitting.laws import CHINCHILLA_EPOCH
from orchestrator.grid import expand_grid
from orchestrator.isoflop import ISOFLOP_RTOL, MIN_SIZES, budget_sizes
from orchestrator.spec import load_spec, validate_command, validate_spec
from tests.test_spec import good_spec, with_change
from tests.test_spec_validation import scalesweep, small_corpus, write_yaml
from trainers.config import RunOutput, batch_geometry
from trainers.fields import SpecError
from trainers.record import TrainResult
from trainers.shapes import non_embedding_params, shape_for_params, six_n_flops, train_flops


BUDGETS = (5e9, 1.5e10)  # FLOPs: ~20-200 steps per run, a few seconds each on one CPU core
N_RANGE = (1e4, 4e4)


def iso_spec(storage: Path, **search) -> dict:
    """A tiny isoFLOP sweep on the built-in corpus (the one tests/test_isoflop_sweep.py runs)."""
    return {
        "name": "iso", "storage": str(storage),
        "axes": {"aspect_ratio": 16, "head_dim": 16, "n_ctx": 64, "batch_tokens": 1024, "lr": 3e-3},
        "trainer": {"eval_every": 10, "val_tokens": 4096, "peak_flops": 1e11, "zero_stage": 0,
                    "precision": "fp32", "noise_scale_every": 0},
        "resources": {"cpus_per_worker": 1, "workers": 1},
        "search": {"kind": "isoflop", "budgets": list(BUDGETS), "sizes_per_budget": 3,
                   "n_range": list(N_RANGE), **search},
        "budget": {"flops": 1e12},
    }


def trained_flops(trial, workers: int = 1) -> int:
    """What the trainer will spend: its own batch geometry on the trial's D (whole batches)."""
    config = trial.train_config
    geometry = batch_geometry(config, workers, config.dataset_tokens // (config.shape.n_ctx + 1))
    return train_flops(config.shape, geometry.total_steps * geometry.tokens_per_step)


def test_each_budget_gets_distinct_log_spaced_shapes_whose_exact_flops_land_on_it(tmp_path):
    spec = load_spec(iso_spec(tmp_path))
    grid = expand_grid(spec)
    assert len(grid.trials) == 2 * 3 and not grid.cut
    for budget in BUDGETS:
        trials = [t for t in grid.trials if t.run_columns == {"isoflop_budget": budget}]
        assert len(trials) == 3
        assert len({t.shape for t in trials}) == 3
        targets = sorted(t.target_params for t in trials)
        assert targets[0] == N_RANGE[0] and targets[-1] == N_RANGE[1]
        assert targets[1] == pytest.approx(math.sqrt(N_RANGE[0] * N_RANGE[1]), rel=1e-2)  # log-spaced
        for t in trials:
            # the shape rule of a grid with the same axes
            assert t.shape == shape_for_params(t.target_params, aspect_ratio=16, head_dim=16, n_ctx=64,
                                               vocab_size=spec.vocab_size)
            flops = trained_flops(t)
            assert abs(flops / budget - 1) <= ISOFLOP_RTOL
            # D comes from the exact FLOPs per token, not 6N: these shapes' attention term is
            # several percent, so 6N x the same tokens misses the budget by more.
            tokens = flops // train_flops(t.shape, 1)
            assert abs(six_n_flops(t.shape, tokens) / budget - 1) > abs(flops / budget - 1)
            assert t.planned_flops >= flops  # the ledger's plan never under-counts the run


def test_n_span_decades_centres_each_budget_on_epochs_chinchilla_optimum(tmp_path):
    search = {"budgets": [1e18, 1e20], "sizes_per_budget": 5, "n_span_decades": 1.0}
    spec = load_spec(with_change(iso_spec(tmp_path, **search), "search.n_range", "DELETE"))
    for budget in (1e18, 1e20):
        sizes = budget_sizes(spec.search, budget)
        n_opt = float(chinchilla_optimal(CHINCHILLA_EPOCH, budget)[0])
        assert len(sizes) == 5
        assert math.exp(sum(map(math.log, sizes)) / 5) == pytest.approx(n_opt, rel=0.01)
        assert sizes[-1] / sizes[0] == pytest.approx(10.0, rel=0.01)


def test_other_axes_multiply_and_every_trial_is_distinct(tmp_path):
    raw = iso_spec(tmp_path)
    raw["axes"].update(seeds=[0, 1], lr=[1e-3, 3e-3], batch_tokens=[512, 1024])
    grid = expand_grid(load_spec(raw))
    assert len(grid.trials) == 2 * 3 * 2 * 2 * 2
    assert len({t.trial_key for t in grid.trials}) == len(grid.trials)
    for t in grid.trials:  # D follows each batch size: whole steps of that batch
        assert abs(trained_flops(t) / t.run_columns["isoflop_budget"] - 1) <= ISOFLOP_RTOL


def test_the_total_budget_cuts_an_isoflop_plan_as_it_cuts_a_grid(tmp_path):
    grid = expand_grid(load_spec(with_change(iso_spec(tmp_path), "budget.flops", 4e10)))
    assert grid.trials and grid.cut and grid.total_flops <= 4e10
    assert all("budget.cut=cheapest_first" in c.reason for c in grid.cut)
    with pytest.raises(SpecError, match=r"^budget: the grid plans"):
        expand_grid(load_spec(with_change(with_change(iso_spec(tmp_path), "budget.flops", 4e10),
                                          "budget.cut", "error")))


# -- errors: one line naming the field ---------------------------------------------------------

ERRORS = {
    "budget below one batch": ({"search.budgets": [1e7, 3e10]}, r"^search\.budgets\[0\]: 1e\+07 FLOPs is below one batch"),
    "budget too small to land": ({"search.budgets": [5e8, 3e10]}, r"^search\.budgets\[0\]: .* would miss the budget by"),
    "empty range": ({"search.n_range": [2e4, 2e4]}, r"^search\.n_range: empty or inverted"),
    "inverted range": ({"search.n_range": [5e4, 1e4]}, r"^search\.n_range: empty or inverted"),
    "range not a pair": ({"search.n_range": [1e4]}, r"^search\.n_range: must be \[lo, hi\]"),
    "sizes collapse": ({"search.n_range": [1e4, 1.05e4]}, r"^search\.n_range: sizes .* round to the same shape"),
    "too few sizes": ({"search.sizes_per_budget": 2}, r"^search\.sizes_per_budget: must be at least 3"),
    "budget not positive": ({"search.budgets": [1e10, 0]}, r"^search\.budgets\[1\]: must be a positive number"),
    "budget repeated": ({"search.budgets": [1e10, "1.0e10"]}, r"^search\.budgets\[1\]: 1e\+10 is already search\.budgets\[0\]"),
    "no budgets": ({"search.budgets": []}, r"^search\.budgets: must not be empty"),
    "budgets missing": ({"search.budgets": "DELETE"}, r"^search\.budgets: required"),
    "range and span": ({"search.n_span_decades": 1}, r"^search\.n_range: give n_range or n_span_decades"),
    "target_params given": ({"axes.target_params": [1e4]}, r"^axes\.target_params: not with search\.kind: isoflop"),
    "shapes given": ({"axes.shapes": [{"n_layer": 1, "d_model": 32, "n_heads": 2, "d_ff": 64}]},
                     r"^axes\.shapes: not with search\.kind: isoflop"),
    "dataset_tokens given": ({"axes.dataset_tokens": [1e5]}, r"^axes\.dataset_tokens: not with search\.kind: isoflop"),
    "dataset regime": ({"axes.regime": "dataset", "trainer.max_steps": 50}, r"^axes\.regime: dataset does not fit"),
    "max_steps cuts runs": ({"trainer.max_steps": 5}, r"^trainer\.max_steps: 5 steps cut isoFLOP runs short"),
    "active key": ({"search.max_trials": 4}, r"^search\.max_trials: only for search\.kind: active"),
}


@pytest.mark.parametrize("changes, message", ERRORS.values(), ids=ERRORS.keys())
def test_isoflop_errors_name_the_field(tmp_path, changes, message):
    raw = iso_spec(tmp_path)
    for path, value in changes.items():
        raw = with_change(raw, path, value)
    with pytest.raises(SpecError, match=message):
        expand_grid(load_spec(raw))


def test_a_budget_whose_d_the_corpus_cannot_hold_is_named(tmp_path):
    """D comes from the budget, so the corpus check names the budget, not axes.dataset_tokens."""
    raw = iso_spec(tmp_path / "store", budgets=[BUDGETS[0], 4.5e10])
    raw["corpus"] = {"source": str(small_corpus(tmp_path, 300_000)), "tokenizer": "byte"}
    with pytest.raises(SpecError) as err:
        validate_spec(raw)
    assert str(err.value).startswith("search.budgets[1]: (trial C4.5e10-N1e4-"), str(err.value)
    assert "must be in 1.." in str(err.value) and "axes.dataset_tokens" not in str(err.value)


def test_isoflop_keys_under_another_kind_name_their_kind(tmp_path):
    for kind in ("grid", "active"):
        raw = with_change(good_spec(tmp_path), "search", {"kind": kind, "max_trials": 4, "n_range": [1, 2]})
        with pytest.raises(SpecError) as err:
            load_spec(raw if kind == "active" else with_change(raw, "search.max_trials", "DELETE"))
        assert str(err.value) == "search.n_range: only for search.kind: isoflop"


def test_validate_exits_2_with_one_line_and_creates_nothing(tmp_path, capsys):
    path = write_yaml(tmp_path, with_change(iso_spec(tmp_path / "store"), "search.sizes_per_budget", 2))
    code, out, err = scalesweep("validate", str(path), cwd=tmp_path, capsys=capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == ["scalesweep validate: error: search.sizes_per_budget: must be at least "
                                f"{MIN_SIZES} (an isoFLOP profile's vertex needs 3 points), got 2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_validate_prints_the_plan_per_budget(tmp_path):
    path = write_yaml(tmp_path, iso_spec(tmp_path / "store"))
    text = validate_command(path, check_corpus=False)
    grid = expand_grid(load_spec(iso_spec(tmp_path / "store")))
    for budget in (f"{b:.3g}" for b in BUDGETS):
        assert f"isoFLOP budget {budget} FLOPs: 3 runs, 3 sizes" in text
    for t in grid.trials:
        plan = text.split("isoFLOP budget", 1)[1]  # after the grid table
        line = next(line for line in plan.splitlines() if line.strip().startswith(t.trial_key + " "))
        n, d, ratio, flops, of_budget = line.split()[1:]
        tokens = trained_flops(t) // train_flops(t.shape, 1)
        assert float(n) == pytest.approx(non_embedding_params(t.shape), rel=1e-2)
        assert float(d) == pytest.approx(tokens, rel=1e-2)
        assert float(ratio) == pytest.approx(tokens / non_embedding_params(t.shape), rel=1e-2)
        assert float(flops) == pytest.approx(trained_flops(t), rel=1e-2)
        assert float(of_budget) == pytest.approx(trained_flops(t) / t.run_columns["isoflop_budget"], abs=1e-3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(budgets=st.lists(st.floats(1e6, 1e14), min_size=1, max_size=3),
       lo=st.floats(1e3, 1e6), ratio=st.floats(1.0, 100.0), sizes=st.integers(1, 6),
       batch=st.sampled_from([256, 1024, 4096]))
def test_any_isoflop_plan_is_refused_by_field_or_lands_every_run_on_its_budget(tmp_path, budgets, lo, ratio,
                                                                                sizes, batch):
    raw = iso_spec(tmp_path, budgets=budgets, n_range=[lo, lo * ratio], sizes_per_budget=sizes)
    raw["axes"]["batch_tokens"] = batch
    raw["budget"]["flops"] = 1e16
    try:
        grid = expand_grid(load_spec(raw))
    except SpecError as err:
        assert all(line.split(":", 1)[0].startswith(("search.", "axes.")) for line in str(err).splitlines()), err
        return
    for budget in budgets:
        trials = [t for t in grid.trials if t.run_columns["isoflop_budget"] == budget]
        assert len({t.shape for t in trials}) == len(trials) == sizes
        assert all(abs(trained_flops(t) / budget - 1) <= ISOFLOP_RTOL for t in trials)


# -- the isoflop_budget column's path: TrialSpec -> TrialConfig -> RunOutput -> runs row -------

def test_run_columns_reach_the_runs_row_and_cannot_shadow_its_own(tmp_path):
    from orchestrator.sweep import trial_settings
    from orchestrator.trial import TrialConfig

    spec = load_spec(iso_spec(tmp_path))
    trial = expand_grid(spec).trials[0]
    # as `BudgetedSearcher.trial_config` builds it (that path runs in tests/test_isoflop_sweep.py)
    config = trial_settings(spec).for_trial(trial.trial_key, trial.train_config, trial.run_columns)
    crossed = TrialConfig.from_tune(copy.deepcopy(config.to_tune()))  # what Tune hands the trial
    assert crossed.run_columns == {"isoflop_budget": BUDGETS[0]}
    config = crossed.train_config
    geometry = batch_geometry(config, 1, config.dataset_tokens // (config.shape.n_ctx + 1))
    result = TrainResult.unended("interrupted", None, geometry)
    row = result.run_row_for(config, RunOutput(run_columns=crossed.run_columns), 1)
    assert row["isoflop_budget"] == BUDGETS[0] and isinstance(row["isoflop_budget"], float)
    for contract in ("flops", "predicted_loss"):  # a column of the row, and one it may leave out
        with pytest.raises(ValueError, match=rf"run_columns: \['{contract}'\]"):
            result.run_row_for(config, RunOutput(run_columns={contract: 1.0}), 1)
