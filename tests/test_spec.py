"""Sweep spec: malformed specs fail naming the field; a good spec expands to the right grid."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from orchestrator.grid import expand_grid
from orchestrator.isoflop import trained_tokens
from orchestrator.spec import format_grid
from orchestrator.spec import load_spec, validate_command, validate_spec
from trainers.fields import SpecError
from metrics import validate_name
from trainers.shapes import non_embedding_params, train_flops

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def good_spec(tmp_path: Path) -> dict:
    return {
        "name": "t",
        "storage": str(tmp_path / "store"),
        "corpus": {"source": "builtin", "tokenizer": "byte"},
        "axes": {
            "target_params": [2e4, 8e4],
            "aspect_ratio": 16,
            "head_dim": 16,
            "n_ctx": 64,
            "dataset_tokens": [2e5, 8e5],
            "regime": "tokens",
            "seeds": [0],
            "batch_tokens": 2048,
        },
        "trainer": {"zero_stage": 0, "precision": "fp32", "eval_every": 50, "patience": 3},
        "resources": {"cpus_per_worker": 1, "gpus_per_worker": 0, "workers": 1},
        "search": {"kind": "grid"},
        "budget": {"flops": 1e12, "cut": "cheapest_first"},
    }


def with_change(spec: dict, path: str, value) -> dict:
    """Copy of `spec` with the dotted `path` set to `value` (`...=DELETE` removes it). A list is
    indexed by a numeric key; a missing, scalar or list parent met by a name becomes a mapping."""
    spec = copy.deepcopy(spec)
    keys = path.split(".")
    node = spec
    for key, below in zip(keys[:-1], keys[1:]):
        if isinstance(node, list):
            node = node[int(key)]
            continue
        child = node.get(key)
        if not (isinstance(child, dict) or (isinstance(child, list) and below.isdigit())):
            node[key] = {}
        node = node[key]
    leaf = keys[-1]
    if value == "DELETE":
        del node[leaf]
    elif isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value
    return spec


# (change path, value, text the error must start with, text it must contain)
MALFORMED = [
    ("axes.colour", "red", "axes.colour: unknown key", "allowed keys: target_params"),
    ("learning_rate", 0.1, "learning_rate: unknown key", "allowed keys: name, storage"),
    ("axes.dataset_tokens", [2e5, 8e5, -5], "axes.dataset_tokens[2]:", "positive integer, got -5"),
    ("axes.dataset_tokens", [], "axes.dataset_tokens:", "must not be empty"),
    ("axes.target_params", [2e4, "lots"], "axes.target_params[1]:", "must be a number"),
    ("axes.seeds", [0, -1], "axes.seeds[1]:", "integer >= 0"),
    ("axes.regime", "epochs", "axes.regime:", "tokens, dataset"),
    ("axes.n_ctx", 0, "axes.n_ctx:", "positive integer"),
    ("trainer.zero_stage", 5, "trainer.zero_stage:", "0, 1, 2, 3"),
    ("trainer.precision", "bf61", "trainer.precision:", "auto, fp32, bf16"),
    ("trainer.patience", 0, "trainer.patience:", "positive integer"),
    ("trainer.optimiser", "sgd", "trainer.optimiser: unknown key", "allowed keys:"),
    ("resources.workers", 0, "resources.workers:", "positive integer"),
    ("resources.gpus_per_worker", -1, "resources.gpus_per_worker:", ">= 0"),
    ("corpus.source", "/nonexistent/dir/*.jsonl", "corpus.source:", "no files match"),
    ("corpus.tokenizer", "bpe:12", "corpus.tokenizer:", "bpe:<vocab >= 257>"),
    # the builtin corpus has no fields: a text_field was ignored without a word
    ("corpus.text_field", "content", "corpus.text_field:", "'content' would never be read: only *.jsonl"),
    ("storage", "ftp://host/x", "storage:", "is not one of file, s3"),
    ("budget.flops", 1e3, "budget:", "below the cheapest run"),
    ("budget.cut", "random", "budget.cut:", "cheapest_first, largest_first, error"),
    ("budget", "DELETE", "budget:", "required"),
    ("search.kind", "bayes", "search.kind:", "grid, active"),
    ("search.max_trials", 4, "search.max_trials:", "only for search.kind: active"),
    ("name", "../evil", "name:", "must start with a letter or digit"),
    ("axes.lr", [0.001, -0.1], "axes.lr[1]:", "positive number"),
    ("axes.batch_tokens", 2000, "axes.batch_tokens:", "multiple of n_ctx"),
]


@pytest.mark.parametrize("path,value,starts,contains", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_spec_names_the_field(tmp_path, path, value, starts, contains):
    spec = with_change(good_spec(tmp_path), path, value)
    with pytest.raises(SpecError) as err:
        validate_spec(spec)
    message = str(err.value)
    assert message.startswith(starts), message
    assert contains in message, message


def test_explicit_shape_with_indivisible_heads_names_the_shape(tmp_path):
    spec = good_spec(tmp_path)
    del spec["axes"]["target_params"], spec["axes"]["aspect_ratio"], spec["axes"]["head_dim"]
    spec["axes"]["shapes"] = [
        {"n_layer": 2, "d_model": 64, "n_heads": 4, "d_ff": 256},
        {"n_layer": 2, "d_model": 64, "n_heads": 5, "d_ff": 256},
    ]
    with pytest.raises(SpecError, match=r"^axes\.shapes\[1\]: .*divisible by n_heads"):
        expand_grid(load_spec(spec))


def test_active_search_requires_max_trials_and_a_known_law(tmp_path):
    spec = with_change(good_spec(tmp_path), "search", {"kind": "active", "law": "chinchilla"})
    with pytest.raises(SpecError, match=r"^search\.max_trials: required"):
        load_spec(spec)
    spec["search"].update(max_trials=8, law="hoffmann")
    with pytest.raises(SpecError, match=r"^search\.law: must be one of chinchilla, kaplan"):
        load_spec(spec)
    spec["search"]["law"] = "chinchilla"
    spec["budget"]["flops"] = 1e11  # below the grid total: active search is not cut up front
    grid = expand_grid(load_spec(spec))
    assert len(grid.trials) == 4 and grid.search.max_trials == 8 and not grid.cut
    spec["search"]["stop_when"] = {"rel_pred_ci": 0.01}
    assert load_spec(spec).search.stop_when == {"rel_pred_ci": 0.01}
    spec["search"]["stop_when"] = {"rel_ci": 0.01}
    with pytest.raises(SpecError, match=r"^search\.stop_when\.rel_ci: unknown key; allowed keys: rel_pred_ci"):
        load_spec(spec)
    spec["search"]["stop_when"] = {}
    spec["search"].update(seed_runs=6, misfit=0)
    assert (load_spec(spec).search.seed_runs, load_spec(spec).search.misfit) == (6, 0.0)
    spec["search"]["seed_runs"] = 0
    with pytest.raises(SpecError, match=r"^search\.seed_runs: .*positive integer"):
        load_spec(spec)
    # fewer than a fit needs was silently ignored: the designer seeded on (every pick "seed")
    spec["search"]["seed_runs"] = 5
    with pytest.raises(SpecError, match=r"^search\.seed_runs: 5 is fewer than the 6 runs a fit of law chinchilla needs"):
        load_spec(spec)
    # a max_trials that can never reach a fit, and more seed runs than can run, are accepted
    # (a small trial sweep) but validate says what they mean, before any run
    path = tmp_path / "active.yaml"
    path.write_text(yaml.safe_dump({**spec, "search": {**spec["search"], "max_trials": 4, "seed_runs": 12}}))
    text = validate_command(path, check_corpus=False)
    assert "active: law chinchilla needs 6 runs at distinct (N, D) points for a fit; max_trials 4, 4 planned runs\n" in text
    assert "warning: search.max_trials: at most 4 runs (max_trials), fewer than the 6 a fit needs" in text
    assert "warning: search.seed_runs: 12 seed runs asked, at most 4 can run" in text
    path.write_text(yaml.safe_dump({**spec, "search": {**spec["search"], "max_trials": 8, "seed_runs": 6}}))
    text = validate_command(path, check_corpus=False)
    assert "warning: search.max_trials: at most 4 runs (the plan), fewer than the 6 a fit needs" in text
    assert "warning: search.seed_runs: 6 seed runs asked, at most 4 can run" in text  # the plan's 4
    # two lrs per (N, D) point: 8 runs, but a fit needs 6 distinct points and the plan has 4
    path.write_text(yaml.safe_dump({**spec, "axes": {**spec["axes"], "lr": [1e-3, 3e-3]},
                                    "search": {**spec["search"], "max_trials": 8, "seed_runs": 6}}))
    text = validate_command(path, check_corpus=False)
    assert "max_trials 8, 8 planned runs at 4 (N, D) points" in text, text
    assert "warning: the plan has 4 distinct (N, D) points, fewer than the 6 a fit needs" in text, text
    spec["search"].update(seed_runs=6, misfit=-0.01)
    with pytest.raises(SpecError, match=r"^search\.misfit: .*>= 0"):
        load_spec(spec)
    spec["search"].update(misfit=0.04, cost="time")
    assert load_spec(spec).search.cost == "time"
    spec["search"]["cost"] = "hours"
    with pytest.raises(SpecError, match=r"^search\.cost: must be one of flops, time"):
        load_spec(spec)


def test_good_spec_expands_to_the_grid(tmp_path):
    grid = expand_grid(load_spec(good_spec(tmp_path)))
    assert len(grid.trials) == 4 and not grid.cut
    combos = {(t.target_params, t.dataset_tokens) for t in grid.trials}
    assert combos == {(2e4, 200_000), (2e4, 800_000), (8e4, 200_000), (8e4, 800_000)}
    for trial in grid.trials:
        n = non_embedding_params(trial.shape)
        assert abs(n / trial.target_params - 1) < 0.10
        # tokens regime, no max_steps cap: the whole batches of windows the slice holds, as the trainer runs
        assert trial.planned_tokens == trained_tokens(trial.dataset_tokens, trial.shape.n_ctx, trial.batch_tokens)
        assert trial.planned_flops == train_flops(trial.shape, trial.planned_tokens)
        assert 0 < trial.lr < 0.003239  # Kaplan's rule resolved from the actual N
        config = trial.train_config
        assert config.precision == "fp32" and config.shape.d_model == trial.shape.d_model
    assert grid.total_flops == sum(t.planned_flops for t in grid.trials)


def test_dataset_regime_plans_max_steps_of_batches(tmp_path):
    spec = with_change(good_spec(tmp_path), "axes.regime", "dataset")
    with pytest.raises(SpecError, match=r"^trainer\.max_steps: .*required in the dataset regime"):
        expand_grid(load_spec(spec))
    spec["trainer"]["max_steps"] = 30
    grid = expand_grid(load_spec(spec))
    assert {t.planned_tokens for t in grid.trials} == {30 * 2048}


def test_budget_cut_cheapest_first_keeps_the_cheapest_and_reports(tmp_path):
    full = expand_grid(load_spec(good_spec(tmp_path)))
    costs = sorted(t.planned_flops for t in full.trials)
    budget = costs[0] + costs[1] + costs[2] // 2  # room for the two cheapest runs only
    grid = expand_grid(load_spec(with_change(good_spec(tmp_path), "budget.flops", budget)))
    assert sorted(t.planned_flops for t in grid.trials) == costs[:2]
    assert sorted(c.trial.planned_flops for c in grid.cut) == costs[2:]
    assert all("budget.cut=cheapest_first" in c.reason for c in grid.cut)
    table = format_grid(grid)
    assert "cut by the budget (2)" in table and grid.cut[0].trial.trial_key in table


def test_budget_cut_largest_first_and_error(tmp_path):
    full = expand_grid(load_spec(good_spec(tmp_path)))
    largest = max(t.planned_flops for t in full.trials)
    spec = with_change(good_spec(tmp_path), "budget", {"flops": largest * 1.01, "cut": "largest_first"})
    grid = expand_grid(load_spec(spec))
    assert max(t.planned_flops for t in grid.trials) == largest
    assert sum(t.planned_flops for t in grid.trials) <= largest * 1.01
    spec["budget"]["cut"] = "error"
    with pytest.raises(SpecError, match=r"^budget: the grid plans .* over budget\.flops"):
        expand_grid(load_spec(spec))


def test_gpu_hours_budget_needs_a_throughput(tmp_path):
    spec = with_change(good_spec(tmp_path), "budget", {"gpu_hours": 1})
    with pytest.raises(SpecError, match=r"^budget\.gpu_flops_per_s: required"):
        load_spec(spec)
    spec["budget"]["gpu_flops_per_s"] = 1e6  # 3.6e9 FLOPs per GPU-hour: below every run
    with pytest.raises(SpecError, match=r"^budget: below the cheapest run"):
        expand_grid(load_spec(spec))


def test_trial_keys_unique_and_stable_across_loads(tmp_path):
    spec = good_spec(tmp_path)
    spec["axes"]["seeds"] = [0, 1]
    spec["axes"]["aspect_ratio"] = [16, 32]
    spec["budget"]["flops"] = 1e13
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    first = [t.trial_key for t in expand_grid(load_spec(path)).trials]
    second = [t.trial_key for t in expand_grid(load_spec(path)).trials]
    assert first == second and len(set(first)) == len(first) == 16
    assert "N2e4-ar16-hd16-c64-D2e5-B2048-s0" in first
    for key in first:  # usable as the store's trial_id (a hive partition directory)
        assert validate_name("trial_id", key) == key


def test_yaml_exponents_without_dot_parse_as_numbers(tmp_path):
    # PyYAML reads `2e5` as the string "2e5"; the spec must still take it as a number.
    text = (EXAMPLES / "demo_sweep.yaml").read_text().replace("2.0e+5", "2e5")
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    assert 200_000 in {t.dataset_tokens for t in expand_grid(load_spec(path)).trials}


# Examples whose corpus exists only on the cluster's nodes (validated with the data checks deferred).
CLUSTER_ONLY = {"kaplan_small.yaml"}


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_validates_on_a_fresh_clone(example):
    defer = example in CLUSTER_ONLY
    text = validate_command(EXAMPLES / example, check_corpus=not defer)
    assert " trials, " in text and "FLOPs planned" in text
    assert ("data checks deferred" in text) == defer
    if defer:  # the flag says what it skipped; without it the missing corpus is named
        assert "dataset_tokens" in text.split("data checks deferred", 1)[1]
        with pytest.raises(SpecError, match=r"^corpus\.source: no files match"):
            validate_command(EXAMPLES / example)


def test_with_change_descends_through_what_a_mutation_left():
    """The fuzz test's helper: a list (or scalar) left at `search` by one mutation is replaced
    by a mapping when a later one sets `search.kind` (found by hypothesis: int('kind'))."""
    spec = with_change(with_change({"search": {"kind": "grid"}}, "search", []), "search.kind", None)
    assert spec == {"search": {"kind": None}}
    assert with_change({"axes": {"shapes": [{"n_layer": 1}]}}, "axes.shapes.0.n_layer", 2) == {
        "axes": {"shapes": [{"n_layer": 2}]}}
