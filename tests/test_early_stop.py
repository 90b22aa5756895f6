"""Issue 12 item 4, early prediction: the spec section and its errors before Ray (exit 2, field
named, nothing created), the stopper's rule on synthetic curves, the trainer ending a run on a
stop request, and the ledger returning a stopped run's unspent compute."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator.budget import BudgetLedger
from orchestrator.early_stop import PredictionStopper, evaluations_before, planned_steps
from orchestrator.spec import validate_spec
from tests.test_spec import good_spec, with_change
from tests.test_spec_validation import scalesweep, write_yaml
from trainers.fields import SpecError


# --- STAND-IN for fitting/curve_prediction.py (helper curvefit's; delete once it is merged) ---
import sys
import types
from dataclasses import dataclass


@dataclass(frozen=True)
class _Pred:
    loss: float
    lo: float
    hi: float
    level: float
    method: str
    n_points: int

    @property
    def rel_half_width(self):
        return (self.hi - self.lo) / (2 * self.loss)


def _predict(steps, losses, target_step, *, level=0.9, sweep_law=None):
    steps, losses = np.asarray(steps, float), np.asarray(losses, float)
    if steps.size < 4:
        raise ValueError(f"{steps.size} curve points, need 4")
    best = None
    for c in np.linspace(0.05, 2.0, 40):
        A = np.stack([np.ones_like(steps), steps ** -c], 1)
        coef, *_ = np.linalg.lstsq(A, losses, rcond=None)
        r = losses - A @ coef
        if best is None or r @ r < best[0]:
            best = (float(r @ r), c, coef)
    rss, c, (a, b) = best
    loss = a + b * target_step ** -c
    half = 1.645 * np.sqrt(rss / max(1, steps.size - 3)) * 3
    return _Pred(float(loss), float(loss - half), float(loss + half), level, "power_law", int(steps.size))


if "fitting.curve_prediction" not in sys.modules:
    try:
        import fitting.curve_prediction  # noqa: F401
    except ImportError:
        _mod = types.ModuleType("fitting.curve_prediction")
        _mod.MIN_CURVE_POINTS, _mod.predict_final_loss, _mod.CurvePrediction = 4, _predict, _Pred
        sys.modules["fitting.curve_prediction"] = _mod
# --- end of stand-in ---


def early_spec(tmp_path, **section):
    """good_spec (2 x 2 tiny tokens-regime runs, 96..385 steps) evaluating every 5 steps, with
    early prediction set to `section`."""
    spec = with_change(good_spec(tmp_path), "trainer.eval_every", 5)
    spec["early_prediction"] = section
    return spec


# -- the spec section: defaults and bad input --------------------------------------------------------

def test_early_prediction_is_off_by_default_and_parsed_when_given(tmp_path):
    spec, _ = validate_spec(good_spec(tmp_path), check_corpus=False, check_storage=False)
    assert (spec.early_prediction.enabled, spec.early_prediction.min_fraction, spec.early_prediction.rel_ci) == (
        False, 0.3, 0.01)
    spec, _ = validate_spec(early_spec(tmp_path, enabled=True, min_fraction="5e-1", rel_ci=0.02),
                            check_corpus=False, check_storage=False)
    assert (spec.early_prediction.enabled, spec.early_prediction.min_fraction, spec.early_prediction.rel_ci) == (
        True, 0.5, 0.02)


@pytest.mark.parametrize("section, message", [
    ({"rel_ci": 0}, "early_prediction.rel_ci: must be a positive number, got 0"),
    ({"rel_ci": -0.01}, "early_prediction.rel_ci: must be a positive number, got -0.01"),
    ({"min_fraction": 0}, "early_prediction.min_fraction: must be in (0, 1), got 0"),
    ({"min_fraction": 1}, "early_prediction.min_fraction: must be in (0, 1), got 1"),
    ({"min_fraction": 1.5}, "early_prediction.min_fraction: must be in (0, 1), got 1.5"),
    ({"enabled": "yes"}, "early_prediction.enabled: must be true or false, got 'yes'"),
    ({"rel_cl": 0.1}, "early_prediction.rel_cl: unknown key"),
])
def test_bad_early_prediction_values_name_the_field(tmp_path, section, message):
    with pytest.raises(SpecError) as err:
        validate_spec(early_spec(tmp_path, **section), check_corpus=False, check_storage=False)
    assert str(err.value).splitlines()[0].startswith(message), str(err.value)


def test_evaluations_too_sparse_to_fit_a_curve_are_refused_naming_the_shortest_run(tmp_path):
    from fitting.curve_prediction import MIN_CURVE_POINTS

    # eval_every 50: the shortest run (N2e4, D2e5: 96 steps) has no evaluation before 30 % of it
    spec = with_change(good_spec(tmp_path), "early_prediction", {"enabled": True})
    with pytest.raises(SpecError) as err:
        validate_spec(spec, check_corpus=False, check_storage=False)
    (line,) = str(err.value).splitlines()
    assert line.startswith("early_prediction.min_fraction: 0.3 of trial N2e4-ar16-hd16-c64-D2e5-B2048-s0's 96 planned steps holds "
                           "0 evaluations (trainer.eval_every 50)"), line
    assert f"at least {MIN_CURVE_POINTS}" in line
    # the same spec with early prediction off, or with evaluations dense enough, is fine
    validate_spec(with_change(spec, "early_prediction.enabled", False), check_corpus=False, check_storage=False)
    dense = max(1, math.floor(0.3 * 96) // MIN_CURVE_POINTS)
    validate_spec(with_change(spec, "trainer.eval_every", dense), check_corpus=False, check_storage=False)
    # the boundary: one evaluation fewer than the fit needs
    sparse = math.floor(0.3 * 96) // (MIN_CURVE_POINTS - 1)
    assert evaluations_before(0.3, 96, sparse) < MIN_CURVE_POINTS
    with pytest.raises(SpecError, match="early_prediction.min_fraction"):
        validate_spec(with_change(spec, "trainer.eval_every", sparse), check_corpus=False, check_storage=False)


def test_planned_steps_is_what_the_validation_computes_for_each_trial(tmp_path):
    _, grid = validate_spec(good_spec(tmp_path), check_corpus=False, check_storage=False)
    steps = {t.trial_key: planned_steps(t.train_config, 1) for t in grid.trials}
    # 2e5 tokens = 3076 windows of 65 tokens; 2048-token batches hold 32 of them
    assert steps == {"N2e4-ar16-hd16-c64-D2e5-B2048-s0": 96, "N2e4-ar16-hd16-c64-D8e5-B2048-s0": 384,
                     "N8e4-ar16-hd16-c64-D2e5-B2048-s0": 96, "N8e4-ar16-hd16-c64-D8e5-B2048-s0": 384}


@pytest.mark.parametrize("section, field", [
    ({"rel_ci": 0, "enabled": True}, "early_prediction.rel_ci"),
    ({"enabled": True}, "early_prediction.min_fraction"),  # eval_every 50: too sparse
])
def test_cli_exits_2_naming_the_field_and_creates_nothing(tmp_path, capsys, section, field):
    spec = good_spec(tmp_path)
    spec["early_prediction"] = section
    path = write_yaml(tmp_path, spec)
    for command in ("validate", "run"):
        code, _, err = scalesweep(command, str(path), cwd=tmp_path, capsys=capsys)
        assert code == 2, err
        assert err.startswith(f"scalesweep {command}: error: {field}: "), err
        assert len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # no store, no Ray session


# -- the ledger: a run stopped early frees the rest of its plan --------------------------------------

def test_an_early_stopped_run_returns_its_unspent_planned_compute_to_the_ledger():
    ledger = BudgetLedger(limit_flops=1000.0)
    ledger.start("a", 400.0)
    ledger.start("b", 500.0)
    assert (ledger.committed, ledger.remaining, ledger.fits(200.0)) == (900.0, 100.0, False)
    ledger.progress("a", 120.0)
    ledger.finish("a", 130.0)  # stopped early at 130 of its 400 planned FLOPs
    assert ledger.spent == 130.0
    assert ledger.committed == 130.0 + 500.0
    assert ledger.remaining == 1000.0 - 630.0 == 100.0 + (400.0 - 130.0)  # the 270 unspent are free again
    assert ledger.fits(200.0) and ledger.allowance("b") == 1000.0 - 630.0 + 500.0
