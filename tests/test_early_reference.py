"""Issue 12: the trials' stopper with ``early_prediction.rule: reference`` predicts a run from the
finished runs of its sweep that it reads from the metrics store (real Parquet), and falls back to
the run's own curve, saying why, where none can serve."""

from __future__ import annotations

import numpy as np
import pytest

from metrics import TrialWriter
from orchestrator.early_stop import PredictionStopper, StoreReferences
from tests.test_curve_prediction import annealing_curve
from tests.test_store import run_row

SCHEDULE = (0.05, 0.1)  # the trainer's default warmup + cosine (annealing_curve's)


def _curve(n: float, total: int, seed: int):
    """A warmup + cosine curve of `total` steps, lower for a larger N by (N/1e5)^-0.05 (a run's
    gap to another run of its schedule is the same over its whole curve), evaluated every 20."""
    steps, losses, _ = annealing_curve(np.random.default_rng(seed), total=total, every=20)
    return steps, losses * (n / 1e5) ** -0.05


def _write(storage: str, key: str, n: float, total: int, seed: int, status="completed", upto=None):
    steps, losses = _curve(n, total, seed)
    keep = steps <= (upto or total)
    writer = TrialWriter(storage, "sw", key)
    writer.append_curves([dict(step=int(s), tokens_seen=100 * int(s), flops=1e6 * s, val_loss=float(v),
                               train_loss=float(v), lr=1e-3, timestamp=1.7e9 + s)
                          for s, v in zip(steps[keep], losses[keep])])
    writer.write_run(run_row(status, non_embedding_params=int(n), planned_steps=total, steps=int(steps[keep][-1]),
                             best_val_loss=float(losses[keep].min()), final_val_loss=float(losses[keep][-1])))


def _feed(stopper, steps, losses, total):
    for step, loss in zip(steps, losses):
        _, request = stopper.observe(int(step), float(loss), total)
        if request is not None:
            return int(step), request
    return None, None


def test_the_stopper_predicts_from_the_sweep_s_finished_runs_in_the_store_and_falls_back_saying_why(tmp_path):
    storage = str(tmp_path)
    for i, n in enumerate((1e5, 2e5, 4e5)):  # finished runs of a 400-step schedule: 2 calibration pairs
        _write(storage, f"done{i}", n, 400, seed=i)
    _write(storage, "stopped", 8e5, 400, seed=5, status="early_stopped", upto=200)  # its end is unknown
    references = StoreReferences(storage, "sw", "run", refresh_s=0.0)
    assert sorted(r.N for r in references()) == [1e5, 2e5, 4e5]

    def stopper():
        return PredictionStopper(enabled=True, min_fraction=0.5, rel_ci=0.05, regime="tokens", schedule=SCHEDULE,
                                 rule="reference", N=3e5, references=references)

    steps, losses = _curve(3e5, 400, seed=7)
    step, request = _feed(stopper(), steps, losses, 400)
    assert step == 200 and request.predicted_method == "reference"  # at min_fraction: it is precise enough
    assert request.predicted_lo <= request.predicted_loss <= request.predicted_hi
    assert request.predicted_loss == pytest.approx(losses.min(), rel=0.01)
    # a schedule no finished run has: the run's own curve decides, and the row says why
    steps, losses = _curve(3e5, 800, seed=8)
    step, request = _feed(stopper(), steps, losses, 800)
    assert request is not None and step >= 400, step
    assert request.predicted_method == "lr_schedule; no reference: no finished run with the same 800 planned steps " \
                                       "to predict from"
    # ... on its own curve's prediction, the interval at least as wide as the errors that prediction
    # made from the same fraction of the finished runs
    model = PredictionStopper(enabled=False, min_fraction=0.5, rel_ci=0.05, regime="tokens", schedule=SCHEDULE)
    prediction = [model.observe(int(s), float(v), 800)[0] for s, v in zip(steps, losses) if s <= step][-1]
    assert request.predicted_loss == prediction.loss
    assert request.predicted_lo <= prediction.lo and request.predicted_hi >= prediction.hi
    errors = []
    for ref in references():
        seen = ref.steps <= step / 800 * ref.total_steps
        errors.append(np.log(model._predict(ref.steps[seen], ref.losses[seen], 400, 400).loss / ref.final_loss))
    half = np.log(request.predicted_hi / request.predicted_loss)
    assert half >= np.sqrt(np.mean(np.square(errors))) * 1.6  # t(3 dof, 95 %) = 2.35
    # ... unless other runs of the sweep plan its steps: it is their reference, so it trains on
    shared = PredictionStopper(enabled=True, min_fraction=0.5, rel_ci=0.05, regime="tokens", schedule=SCHEDULE,
                               rule="reference", N=3e5, references=references, fallback_stops=False)
    assert _feed(shared, steps, losses, 800) == (None, None)
    # one finished run cannot calibrate either interval: no stop without evidence (it still predicts)
    alone = PredictionStopper(enabled=True, min_fraction=0.5, rel_ci=0.05, regime="tokens", schedule=SCHEDULE,
                              rule="reference", N=3e5, references=lambda: references()[:1])
    steps, losses = _curve(3e5, 400, seed=9)
    assert _feed(alone, steps, losses, 400) == (None, None)
    # a run that finishes later is read at the next listing (the trial's own row never counts)
    _write(storage, "late", 6e5, 400, seed=3)
    _write(storage, "run", 3e5, 400, seed=7)
    assert sorted(r.N for r in references()) == [1e5, 2e5, 4e5, 6e5]


def test_from_settings_gives_the_reference_rule_the_run_s_n_and_the_own_rule_needs_no_store():
    from types import SimpleNamespace

    from trainers.shapes import ModelShape

    shape = ModelShape(n_layer=2, d_model=32, n_heads=2, d_ff=128, n_ctx=64, vocab_size=256)
    config = SimpleNamespace(warmup_frac=0.05, min_lr_ratio=0.1, shape=shape)
    stopper = PredictionStopper.from_settings({"enabled": True}, "tokens", config, references=list)
    assert (stopper.rule, stopper.min_fraction, stopper.rel_ci) == ("reference", 0.5, 0.05)  # the spec's defaults
    assert stopper.N == 2 * 32 * 2 * (2 * 32 + 128)  # Kaplan's N of the run's shape
    own = PredictionStopper.from_settings({"enabled": True, "rule": "own"}, "tokens", config)
    assert own.rule == "own" and own.references is None


def test_the_sweep_tells_each_trial_which_planned_steps_other_trials_share(tmp_path):
    from orchestrator.spec import validate_spec
    from orchestrator.sweep import shared_steps
    from tests.test_spec import good_spec

    _, grid = validate_spec(good_spec(tmp_path), check_corpus=False, check_storage=False)
    assert shared_steps(grid, 1) == (96, 384)  # 2 N x 2 D: each D's schedule is planned by both N
