import math

import pytest
import torch

from trainers.model import GPT, exact_param_counts, token_losses
from trainers.shapes import (ModelShape, embedding_params, forward_flops_per_token, kaplan_lr,
                             non_embedding_params, shape_for_params, six_n_flops, train_flops)

VARIED_SHAPES = [
    ModelShape(n_layer=1, d_model=8, n_heads=1, d_ff=32, n_ctx=16, vocab_size=256),
    ModelShape(n_layer=2, d_model=32, n_heads=4, d_ff=128, n_ctx=64, vocab_size=300),
    ModelShape(n_layer=3, d_model=24, n_heads=2, d_ff=40, n_ctx=8, vocab_size=17),        # d_ff != 4 d
    ModelShape(n_layer=2, d_model=16, n_heads=3, d_ff=64, n_ctx=32, vocab_size=50, d_attn=48),  # d_attn > d
    ModelShape(n_layer=4, d_model=40, n_heads=2, d_ff=100, n_ctx=12, vocab_size=64, d_attn=16),  # d_attn < d
]


@pytest.mark.parametrize("shape", VARIED_SHAPES)
def test_kaplan_count_equals_module_weight_matrices(shape):
    counts = exact_param_counts(GPT(shape))
    assert counts["non_embedding_matrices"] == non_embedding_params(shape)
    assert counts["embedding"] == embedding_params(shape)
    expected_biases = shape.n_layer * (3 * shape.d_attn + shape.d_model + shape.d_ff + shape.d_model)
    assert counts["biases"] == expected_biases
    assert counts["layernorm"] == (2 * shape.n_layer + 1) * 2 * shape.d_model
    assert counts["total"] - counts["embedding"] - counts["biases"] - counts["layernorm"] \
        == non_embedding_params(shape)


def test_default_shape_matches_12_l_d_squared():
    shape = ModelShape(n_layer=6, d_model=512, n_heads=8, d_ff=2048, n_ctx=1024, vocab_size=256)
    assert shape.d_attn == 512
    assert non_embedding_params(shape) == 12 * 6 * 512**2


def test_flop_formulas_hand_computed():
    shape = ModelShape(n_layer=2, d_model=4, n_heads=1, d_ff=8, n_ctx=10, vocab_size=5, d_attn=6)
    n = 2 * 4 * 2 * (2 * 6 + 8)  # 320
    assert non_embedding_params(shape) == 320
    assert forward_flops_per_token(shape) == 2 * 320 + 2 * 2 * 10 * 6 == 880
    assert train_flops(shape, tokens=1000) == 3 * 880 * 1000
    assert six_n_flops(shape, tokens=1000) == 6 * n * 1000
    assert embedding_params(shape) == (5 + 10) * 4 + 5 * 4


def test_kaplan_lr_values_and_floor():
    assert kaplan_lr(1e6) == pytest.approx(0.003239 - 0.0001395 * math.log(1e6))
    assert kaplan_lr(1e8) < kaplan_lr(1e6)
    assert kaplan_lr(1e12) > 0  # formula is negative there; clipped to the floor
    with pytest.raises(ValueError, match="non_embedding_params"):
        kaplan_lr(0)


@pytest.mark.parametrize("aspect_ratio", [16.0, 64.0, 200.0])
def test_shape_for_params_within_10_percent(aspect_ratio):
    for exponent in range(4, 8):
        for mantissa in (1.0, 2.0, 3.0, 5.0, 7.0):
            target = mantissa * 10**exponent
            shape = shape_for_params(target, aspect_ratio=aspect_ratio)
            shape.validate()
            assert shape.d_model % shape.n_heads == 0
            assert abs(non_embedding_params(shape) / target - 1) <= 0.10, (target, shape)


def test_shape_for_params_prefers_requested_aspect_ratio_when_possible():
    wide = shape_for_params(3e7, aspect_ratio=200.0)
    deep = shape_for_params(3e7, aspect_ratio=16.0)
    assert wide.d_model / wide.n_layer > deep.d_model / deep.n_layer
    assert shape_for_params(3e7).head_dim == 64


@pytest.mark.parametrize("field,kwargs", [
    ("n_layer", dict(n_layer=0)),
    ("d_model", dict(d_model=-1)),
    ("vocab_size", dict(vocab_size=2.5)),
    ("d_attn", dict(d_attn=30, n_heads=4)),
])
def test_bad_shape_names_field(field, kwargs):
    base = dict(n_layer=1, d_model=8, n_heads=1, d_ff=32, n_ctx=16, vocab_size=256)
    with pytest.raises(ValueError, match=field):
        ModelShape(**{**base, **kwargs})


def test_shape_for_params_bad_input():
    with pytest.raises(ValueError, match="target_params"):
        shape_for_params(-5)
    with pytest.raises(ValueError, match="head_dim"):
        shape_for_params(1e6, head_dim=12)


def test_forward_shapes_loss_and_causality():
    torch.manual_seed(0)
    shape = VARIED_SHAPES[3]
    model = GPT(shape).eval()
    idx = torch.randint(0, shape.vocab_size, (2, 12))
    targets = torch.randint(0, shape.vocab_size, (2, 12))
    logits, loss = model(idx, targets)
    assert logits.shape == (2, 12, shape.vocab_size)
    # Fresh model with std-0.02 init predicts ~uniformly.
    assert loss.item() == pytest.approx(math.log(shape.vocab_size), rel=0.1)
    assert model(idx)[1] is None

    changed = idx.clone()
    changed[:, 7] = (changed[:, 7] + 1) % shape.vocab_size
    changed_logits, _ = model(changed)
    assert torch.allclose(logits[:, :7], changed_logits[:, :7], atol=1e-6)
    assert not torch.allclose(logits[:, 7:], changed_logits[:, 7:], atol=1e-6)

    per_position = token_losses(logits, targets).mean(dim=0)
    assert per_position.shape == (12,)
    assert per_position.mean().item() == pytest.approx(loss.item(), rel=1e-5)


def test_too_long_input_rejected():
    shape = VARIED_SHAPES[0]
    with pytest.raises(ValueError, match="n_ctx"):
        GPT(shape)(torch.zeros(1, shape.n_ctx + 1, dtype=torch.long))


def test_residual_projection_init_is_scaled():
    torch.manual_seed(0)
    shape = ModelShape(n_layer=8, d_model=64, n_heads=2, d_ff=256, n_ctx=8, vocab_size=32)
    model = GPT(shape)
    assert model.blocks[0].mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.blocks[0].mlp.proj.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)


def test_bf16_autocast_forward_gives_finite_fp32_loss():
    shape = VARIED_SHAPES[1]
    model = GPT(shape)
    idx = torch.randint(0, shape.vocab_size, (2, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss = model(idx, idx)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
