"""One config path: a TrialSpec's TrainConfig reaches the trial typed, through one plain-data
conversion at the Tune boundary; the train CLI has a flag for every scalar TrainConfig field."""

from __future__ import annotations

import argparse
import dataclasses
import json

import yaml

import pytest

from orchestrator.budget import BudgetLedger
from orchestrator.search import GridSearcher
from orchestrator.grid import expand_grid
from orchestrator.spec import load_spec
from orchestrator.sweep import trial_settings
from orchestrator.trial import TrialConfig
from test_sweep import tiny_spec
from trainers.cli import add_train_arguments, config_from_args, main as train_main
from trainers.config import TrainConfig


def test_a_trial_receives_its_specs_train_config_with_its_allowance(tmp_path):
    spec = load_spec(tiny_spec(tmp_path / "store"))
    grid = expand_grid(spec)
    searcher = GridSearcher(grid.trials, settings=trial_settings(spec), ledger=BudgetLedger(1e15), max_concurrent=1)
    tune_config = searcher.suggest("tune-1")
    json.dumps(tune_config)  # Tune's param dict stays plain data
    trial = TrialConfig.from_tune(tune_config)
    first = grid.trials[0]
    assert trial.trial_key == first.trial_key and trial.sweep == spec.name and trial.storage == spec.storage
    assert trial.train_config == dataclasses.replace(first.train_config, budget_flops=trial.train_config.budget_flops)
    assert trial.train_config.budget_flops == searcher.ledger.allowance(first.trial_key)


def test_a_train_config_yaml_from_to_dict_reads_back_equal(tmp_path):
    """The `train --config` edge (bench/sweep_overhead.py) serialises the TrainConfig itself."""
    config = expand_grid(load_spec(tiny_spec(tmp_path / "store"))).trials[0].train_config
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    assert TrainConfig.from_dict(config_from_args(parser.parse_args(["--config", str(path)]))) == config


def test_every_scalar_train_config_field_is_a_train_flag(capsys):
    with pytest.raises(SystemExit):
        train_main(["--help"])
    out = capsys.readouterr().out
    scalar = [f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("parse")]
    assert len(scalar) > 12
    for name in scalar + ["n_layer", "d_model", "target_params", "aspect_ratio"]:
        assert f"--{name.replace('_', '-')}" in out, name


def test_a_bad_flag_value_names_the_field(capsys):
    code = train_main(["--n-layer", "2", "--d-model", "64", "--n-heads", "4", "--d-ff", "256", "--n-ctx", "64",
                       "--zero-stage", "5"])
    assert code == 2
    assert "zero_stage" in capsys.readouterr().err
