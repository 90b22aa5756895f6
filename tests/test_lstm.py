"""The LSTM family (Kaplan §3.2.1): its counts against the module, its gate math against
torch's nn.LSTM, its shape rule and config errors (milliseconds); then the real DeepSpeed path
on CPU, small: learning, store rows, loss_per_position, ZeRO 0 vs 2 and resume."""

import math

import numpy as np
import pytest
import torch

from metrics import load_curves, load_runs
from trainers.config import RunOutput, TrainConfig
from trainers.lstm import LSTM
from trainers.model import exact_param_counts
from trainers.shapes import (ModelShape, embedding_params, forward_flops_per_token, lstm_shape_for_params,
                             non_embedding_params, shape_for_params, train_flops)

LSTM_SHAPES = [
    ModelShape(n_layer=1, d_model=8, n_ctx=16, vocab_size=256, family="lstm"),
    ModelShape(n_layer=3, d_model=20, n_ctx=8, vocab_size=17, family="lstm"),
]


@pytest.mark.parametrize("shape", LSTM_SHAPES)
def test_lstm_count_equals_module_weight_matrices(shape):
    counts = exact_param_counts(LSTM(shape))
    assert counts["non_embedding_matrices"] == non_embedding_params(shape) == 8 * shape.n_layer * shape.d_model**2
    assert counts["embedding"] == embedding_params(shape) == 2 * shape.vocab_size * shape.d_model
    assert counts["biases"] == shape.n_layer * 4 * shape.d_model
    assert counts["layernorm"] == 2 * shape.d_model


def test_lstm_flops_hand_computed():
    shape = LSTM_SHAPES[1]
    n = 8 * 3 * 20 * 20  # 9600
    assert forward_flops_per_token(shape) == 2 * n  # no context term: same cost at every position
    assert train_flops(shape, tokens=1000) == 3 * 2 * n * 1000


def test_lstm_layer_matches_torch_lstm():
    """The gate-by-gate layer computes what torch's nn.LSTM computes with the same weights."""
    torch.manual_seed(0)
    model = LSTM(LSTM_SHAPES[1]).eval()
    reference = torch.nn.LSTM(20, 20, num_layers=3, batch_first=True)
    with torch.no_grad():
        for k, layer in enumerate(model.layers):
            getattr(reference, f"weight_ih_l{k}").copy_(layer.input.weight)
            getattr(reference, f"weight_hh_l{k}").copy_(layer.recurrent.weight)
            getattr(reference, f"bias_ih_l{k}").copy_(layer.input.bias)
            getattr(reference, f"bias_hh_l{k}").zero_()
        x = torch.randn(2, 8, 20)
        ours = x
        for layer in model.layers:
            ours = layer(ours)
        theirs, _ = reference(x)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_lstm_is_causal_and_refuses_long_input():
    model = LSTM(LSTM_SHAPES[0]).eval()
    idx = torch.randint(0, 256, (2, 12))
    changed = idx.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 256
    logits, changed_logits = model(idx)[0], model(changed)[0]
    assert torch.allclose(logits[:, :7], changed_logits[:, :7], atol=1e-6)
    assert not torch.allclose(logits[:, 7:], changed_logits[:, 7:], atol=1e-6)
    with pytest.raises(ValueError, match="n_ctx"):
        model(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize("target", [1e4, 3e4, 1e5, 1e6, 1e7])
def test_lstm_shape_for_params_hits_the_target_near_the_aspect_ratio(target):
    shape = shape_for_params(target, family="lstm", n_ctx=64)
    assert shape == lstm_shape_for_params(target, n_ctx=64)
    assert shape.family == "lstm" and shape.n_heads is None and shape.d_ff is None
    assert abs(non_embedding_params(shape) / target - 1) < 0.05
    # the chosen depth's aspect ratio is the nearest to 64 of all depths (log distance)
    def distance(n_layer):
        return abs(math.log(round(math.sqrt(target / (8 * n_layer))) / n_layer / 64))
    assert distance(shape.n_layer) == min(distance(n) for n in range(1, 40))


@pytest.mark.parametrize("shape, message", [
    (dict(n_layer=2, d_model=32, n_heads=4, family="lstm"), r"^shape\.n_heads: does not apply to the lstm"),
    (dict(n_layer=2, d_model=32, family="gru"), r"^shape\.family: must be one of"),
    (dict(n_layer=2, d_model=32), r"^shape\.n_heads: required"),
    (dict(d_model=32, family="lstm"), r"^shape\.n_layer: required"),
])
def test_bad_lstm_shape_names_the_field(shape, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict({"shape": {"n_ctx": 16, **shape}, "dataset_tokens": 10_000, "batch_tokens": 256})


def test_family_outside_the_shape_says_where_it_goes():
    with pytest.raises(ValueError, match=r"^family: give it in the shape"):
        TrainConfig.from_dict({"shape": {"target_params": 2e4, "n_ctx": 16}, "family": "lstm",
                               "dataset_tokens": 10_000, "batch_tokens": 256})


def test_family_round_trips_through_the_config_dict():
    config = TrainConfig.from_dict({"shape": {"target_params": 3e4, "n_ctx": 16, "family": "lstm"},
                                    "dataset_tokens": 10_000, "batch_tokens": 256})
    assert config.family == "lstm" and config.non_embedding_params == non_embedding_params(config.shape)
    assert TrainConfig.from_dict(config.to_dict()) == config


# ---------------------------------------------------------------------------------------------
# The DeepSpeed path, really run (tiny: 1 x 32 LSTM, n_ctx 16, 16 sequences a step)

SMALL = ModelShape(n_layer=1, d_model=32, n_ctx=16, vocab_size=256, family="lstm")


def small_config(**overrides) -> TrainConfig:
    fields = dict(shape=SMALL, dataset_tokens=40_000, batch_tokens=256, val_tokens=2048, eval_every=12,
                  lr=1e-2, threads=1, peak_flops=1e11, noise_scale_every=0, regime="dataset",
                  max_steps=36, patience=100)
    fields.update(overrides)
    return TrainConfig(**fields)


def test_lstm_trains_and_writes_its_rows(tmp_path):
    from trainers.deepspeed_trainer import train

    result = train(small_config(), RunOutput(storage=str(tmp_path), sweep="s", trial_id="lstm"))
    assert result.status == "completed" and result.steps == 36
    first, last = result.curve[0]["val_loss"], result.curve[-1]["val_loss"]
    assert last < first - 0.2 and last < math.log(256) - 2.0, result.curve
    assert result.flops == 3 * 2 * 8 * 32 * 32 * result.tokens_seen
    (run,) = load_runs(str(tmp_path), "s").to_pylist()
    assert (run["family"], run["n_heads"], run["d_ff"], run["d_attn"]) == ("lstm", None, None, None)
    assert run["non_embedding_params"] == 8 * 32 * 32
    curves = load_curves(str(tmp_path), "s").to_pylist()
    assert len(curves) == 3
    for row in curves:
        positions = np.array(row["loss_per_position"])
        assert positions.shape == (SMALL.n_ctx,) and np.isfinite(positions).all()
        assert positions.mean() == pytest.approx(row["val_loss"], rel=1e-9)
    assert result.loss_per_position == curves[-1]["loss_per_position"]


def test_lstm_zero_stage_2_matches_stage_0_and_resumes_exactly(tmp_path):
    """ZeRO 2 repeats ZeRO 0's first losses; a run stopped after step 4 and resumed from its
    step-3 checkpoint repeats the uninterrupted run's later losses."""
    from trainers.deepspeed_trainer import train

    config = dict(max_steps=6, eval_every=3)
    full = train(small_config(**config)).step_losses
    stage2 = train(small_config(zero_stage=2, **config)).step_losses
    assert stage2 == pytest.approx(full, rel=1e-4, abs=1e-4)
    assert full[-1] < full[0]
    budget = train_flops(SMALL, 4 * 256)  # exactly 4 steps
    stopped = train(small_config(budget_flops=budget, **config), RunOutput(checkpoint_dir=str(tmp_path / "ckpt")))
    assert stopped.status == "budget_stopped" and stopped.steps == 4
    resumed = train(small_config(**config), RunOutput(resume_from=str(tmp_path / "ckpt")))
    assert [r["step"] for r in resumed.curve] == [6]
    assert resumed.step_losses == pytest.approx(full[3:], rel=1e-5, abs=1e-5)


# ---------------------------------------------------------------------------------------------
# A sweep spec's family axis (grid expansion only: no Ray, no engine)


def _spec(tmp_path, **axes):
    from orchestrator.spec import load_spec

    return load_spec({
        "name": "fam", "storage": str(tmp_path / "store"), "corpus": {"source": "builtin"},
        "axes": {"n_ctx": 16, "dataset_tokens": 2e4, "batch_tokens": 256, **axes},
        "budget": {"flops": 1e15},
    })


def test_family_axis_expands_to_a_transformer_and_an_lstm_sub_sweep(tmp_path):
    from orchestrator.grid import expand_grid

    grid = expand_grid(_spec(tmp_path, target_params=[2e4, 8e4], family=["transformer", "lstm"],
                             d_ff_ratio=[2, 4], head_dim=8))
    lstm = [t for t in grid.trials if t.shape.family == "lstm"]
    transformer = [t for t in grid.trials if t.shape.family == "transformer"]
    assert len(transformer) == 4 and len(lstm) == 2  # d_ff_ratio does not multiply the LSTM trials
    assert [t.trial_key for t in lstm] == ["lstm-N2e4-c16-D2e4-B256-s0", "lstm-N8e4-c16-D2e4-B256-s0"]
    for trial in lstm:
        assert abs(trial.non_embedding_params / trial.target_params - 1) < 0.05
        assert trial.planned_flops == train_flops(trial.shape, trial.planned_tokens)
        assert trial.train_config.family == "lstm"  # the trainer gets the family with the shape
    from orchestrator.spec import format_grid

    table = format_grid(grid).splitlines()
    assert table[-3].split()[:5] == ["lstm-N2e4-c16-D2e4-B256-s0", "1", "50", "-", "-"]  # no heads, no d_ff


def test_explicit_shapes_for_an_lstm_use_layers_and_width(tmp_path):
    from orchestrator.grid import expand_grid
    from trainers.fields import SpecError

    shapes = [{"n_layer": 2, "d_model": 32}, {"n_layer": 1, "d_model": 48}]
    grid = expand_grid(_spec(tmp_path, shapes=shapes, family="lstm"))
    assert [t.trial_key for t in grid.trials] == ["lstm-L2-d32-c16-D2e4-B256-s0", "lstm-L1-d48-c16-D2e4-B256-s0"]
    with pytest.raises(SpecError, match=r"^axes\.shapes\[0\]: ModelShape\.n_heads must be a positive int"):
        expand_grid(_spec(tmp_path, shapes=shapes, family=["lstm", "transformer"]))
    with pytest.raises(SpecError, match=r"^axes\.family\[1\]: must be one of"):
        _spec(tmp_path, target_params=2e4, family=["lstm", "gru"])


def test_a_fit_keeps_one_family_or_warns_that_it_mixes_them(tmp_path):
    """A store with a transformer and an LSTM sub-sweep: `family=` keeps one family's runs; without
    it the fit names both families in a DataWarning instead of silently mixing them."""
    from fitting.data import DataWarning, load_fit_data
    from metrics import TrialWriter

    base = dict(status="completed", n_ctx=16, vocab_size=256, regime="tokens", batch_tokens=256, lr=1e-3,
                seed=0, steps=10, wall_s=1.0)
    for i, (family, n) in enumerate([("transformer", 2e4), ("transformer", 8e4), ("lstm", 2e4)]):
        heads = dict(n_heads=2, d_ff=64) if family == "transformer" else {}
        TrialWriter(str(tmp_path), "s", f"t{i}").write_run(dict(
            base, family=family, n_layer=1, d_model=32, non_embedding_params=int(n), dataset_tokens=20_000 * (i + 1),
            tokens_seen=20_000 * (i + 1), flops=6 * n * 20_000 * (i + 1), best_val_loss=3.0 - 0.1 * i,
            final_val_loss=3.0 - 0.1 * i, **heads))
    store = str(tmp_path / "s")
    assert len(load_fit_data(store, family="lstm")) == 1
    assert len(load_fit_data(store, family="transformer")) == 2
    with pytest.raises(ValueError, match=r"^--family gru: .* holds no gru runs \(its families: lstm, transformer\)"):
        load_fit_data(store, family="gru")  # was "no usable rows: all 3 dropped (3 for family not gru)"
    with pytest.warns(DataWarning, match=r"several model families \(1 lstm, 2 transformer\)"):
        assert len(load_fit_data(store)) == 3
    table = tmp_path / "runs.csv"
    table.write_text("N,D,loss\n1e4,1e5,3.0\n2e4,1e5,2.9\n4e4,1e5,2.8\n")
    with pytest.raises(ValueError, match=r"^--family lstm: .*runs.csv records no model family"):
        load_fit_data(str(table), family="lstm")
