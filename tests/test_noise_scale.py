"""The gradient noise scale (trainers/noise_scale.py, trainers/noise_probe.py): the estimator on a
problem with known noise, and the trainer's logged value at ZeRO 0, 2, 3, across a resume and with
2 processes. Real DeepSpeed engines on CPU, tiny model, ~30 steps each."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from metrics import load_curves
from trainers.config import RunOutput
from trainers.deepspeed_trainer import train
from trainers.noise_scale import NoiseScaleEMA, unbiased_estimates
from tests.test_trainer import REPO, tiny_config

RUN = dict(dataset_tokens=60_000, max_steps=30, eval_every=5, noise_scale_every=1)


def _linear_regression_measurements(rng, d, sigma, half, count):
    """Squared gradient norms (small: mean over two halves; big: both) of the loss ½(x·w − y)²,
    x ~ N(0, I_d), y = x·w* + N(0, σ²), at |w − w*| = 1. Per-sample g = x(x·δ − ε), so
    G = δ, E[g gᵀ] = |δ|²I + 2δδᵀ + σ²I, hence |G|² = 1 and tr(Σ) = (d + 1) + dσ²."""
    delta = rng.standard_normal(d)
    delta /= np.linalg.norm(delta)
    for _ in range(count):
        x = rng.standard_normal((2 * half, d))
        g = x * ((x @ delta) - sigma * rng.standard_normal(2 * half))[:, None]
        a, b = g[:half].mean(0), g[half:].mean(0)
        yield half, (a @ a + b @ b) / 2, 2 * half, ((a + b) / 2) @ ((a + b) / 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_estimator_recovers_a_known_noise_scale(seed):
    d, sigma = 16, 1.0
    g2_true, trace_true = 1.0, (d + 1) + d * sigma**2
    measurements = list(_linear_regression_measurements(np.random.default_rng(seed), d, sigma, 16, 2000))
    raw = np.array([unbiased_estimates(*m) for m in measurements])
    assert raw[:, 0].mean() == pytest.approx(g2_true, rel=0.1)  # unbiased, each of the two
    assert raw[:, 1].mean() == pytest.approx(trace_true, rel=0.1)
    ema = NoiseScaleEMA(decay=0.995)
    for m in measurements:
        ema.update(*m)
    assert ema.value == pytest.approx(trace_true / g2_true, rel=0.2)
    assert ema.value == ema.trace / ema.g2  # the ratio of the EMAs


def test_ema_state_round_trips_and_bad_sizes_are_refused():
    measurements = list(_linear_regression_measurements(np.random.default_rng(3), 8, 1.0, 4, 20))
    full, first = NoiseScaleEMA(), NoiseScaleEMA()
    for m in measurements:
        full.update(*m)
    for m in measurements[:10]:
        first.update(*m)
    resumed = NoiseScaleEMA()
    resumed.load_state_dict(first.state_dict())
    for m in measurements[10:]:
        resumed.update(*m)
    assert resumed.value == full.value and resumed.count == 20
    assert NoiseScaleEMA().value is None
    with pytest.raises(ValueError, match="batch sizes"):
        unbiased_estimates(64, 1.0, 64, 1.0)


@pytest.fixture(scope="module")
def stage0():
    return train(tiny_config(zero_stage=0, **RUN))


def _noise(result):
    return [row["grad_noise_scale"] for row in result.curve]


def test_logged_noise_scale_is_finite_agrees_across_stages_and_grows(stage0):
    base = _noise(stage0)
    assert all(v is not None and math.isfinite(v) and v > 0 for v in base), base
    # It grows as the loss falls (Kaplan et al. 2020 fig. 10; McCandlish et al. 2018 fig. 6).
    assert stage0.curve[-1]["val_loss"] < stage0.curve[0]["val_loss"] - 0.5
    assert base[-1] > 1.5 * base[0], base
    for stage in (2, 3):
        other = _noise(train(tiny_config(zero_stage=stage, **RUN)))
        assert other == pytest.approx(base, rel=0.1), (stage, other, base)
    # The probe leaves training untouched: the same losses with it off (column null then).
    off = train(tiny_config(zero_stage=0, **{**RUN, "noise_scale_every": 0}))
    assert off.step_losses == stage0.step_losses
    assert _noise(off) == [None] * len(base)


def test_resumed_run_continues_the_noise_scale_state(stage0, tmp_path):
    budget = 3 * (2 * 98_304 + 2 * 2 * 64 * 64) * 15 * 1024  # train_flops of exactly 15 steps
    ckpt = str(tmp_path / "ckpt")
    stopped = train(tiny_config(budget_flops=budget, **RUN), RunOutput(checkpoint_dir=ckpt))
    assert stopped.status == "budget_stopped" and stopped.steps == 15
    resumed = train(tiny_config(**RUN), RunOutput(resume_from=ckpt))
    assert [r["step"] for r in resumed.curve] == [20, 25, 30]
    # A restarted EMA would differ: the measurements before step 15 still weigh 0.9^5 at step 20.
    assert _noise(resumed) == pytest.approx(_noise(stage0)[3:], rel=1e-5)


@pytest.mark.slow
def test_two_process_run_logs_the_noise_scale(stage0, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "trainers.cli", "--n-layer", "2", "--d-model", "64", "--n-heads", "4", "--d-ff", "256",
           "--n-ctx", "64", "--vocab-size", "256", "--dataset-tokens", "60000", "--batch-tokens", "1024",
           "--lr", "3e-3", "--val-tokens", "8192", "--max-steps", "30", "--eval-every", "5",
           "--noise-scale-every", "1", "--zero-stage", "3", "--micro-batch-size", "4", "--threads", "1",
           "--peak-flops", "1e11", "--storage", str(tmp_path), "--sweep", "dp"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-3000:]
    logged = load_curves(str(tmp_path), "dp").sort_by("step").column("grad_noise_scale").to_pylist()
    assert len(logged) == 6 and all(v is not None and math.isfinite(v) for v in logged), logged
    # Same global batches and seed as the 1-process run; halves of 4 sequences instead of 8, so
    # the per-measurement noise differs but both estimate the same quantity.
    assert logged[-1] == pytest.approx(_noise(stage0)[-1], rel=0.25), (logged, _noise(stage0))
    assert logged[-1] > 1.5 * logged[0]
