"""Issue 12 item 4: a prediction-stopped run enters the fit (store reader, online fitter) with its
predicted loss and a weight below 1, and a sweep fitted with early stopping stays inside the
intervals of the same sweep fitted without it (synthetic curves from a known Chinchilla law)."""

from __future__ import annotations

import numpy as np
import pytest

from fitting.fit import fit_law
from fitting.laws import CHINCHILLA_EPOCH, chinchilla
from fitting.run_result import REFERENCE_LOG_SD, prediction_weight, result_loss
from metrics import TrialWriter
from tests.test_store import run_row

PREDICTED = dict(stop_reason="predicted_final", planned_steps=400, predicted_loss=2.2, predicted_lo=2.1,
                 predicted_hi=2.3, predicted_level=0.9, predicted_method="power_law")


def test_result_loss_takes_the_prediction_of_a_prediction_stopped_run_with_its_weight():
    assert result_loss({"best_val_loss": 2.5, "status": "completed"}) == (2.5, 1.0)
    assert result_loss({"best_val_loss": 2.5, "stop_reason": "patience"}) == (2.5, 1.0)
    loss, weight = result_loss({"best_val_loss": 2.5, **PREDICTED})
    sd = np.log(2.3 / 2.1) / (2 * 1.6448536)
    assert loss == 2.2 and weight == pytest.approx(REFERENCE_LOG_SD ** 2 / (REFERENCE_LOG_SD ** 2 + sd ** 2))
    assert prediction_weight(2.0, 2.0, 0.9) == 1.0 and prediction_weight(1.0, 4.0, 0.9) < 0.01
    # the dataset regime's overfit stop keeps its best loss, like patience; a broken interval is ignored
    assert result_loss({"best_val_loss": 2.5, **PREDICTED, "stop_reason": "predicted_overfit"}) == (2.5, 1.0)
    assert result_loss({"best_val_loss": 2.5, **PREDICTED, "predicted_lo": 2.25}) == (2.5, 1.0)


def test_the_weight_measures_the_observed_loss_against_the_run_s_own_evaluation_scatter():
    """With ``eval_log_sd`` in the row the observed-loss sd is the measured one: a run whose
    evaluations scatter less makes the same prediction interval weigh less; a missing, null or
    non-positive value falls back to REFERENCE_LOG_SD."""
    sd = np.log(2.3 / 2.1) / (2 * 1.6448536)
    for measured in (0.002, 0.03):
        loss, weight = result_loss({"best_val_loss": 2.5, **PREDICTED, "eval_log_sd": measured})
        assert loss == 2.2 and weight == pytest.approx(measured ** 2 / (measured ** 2 + sd ** 2))
    assert result_loss({**PREDICTED, "eval_log_sd": 0.002})[1] < result_loss(PREDICTED)[1] < \
        result_loss({**PREDICTED, "eval_log_sd": 0.03})[1]
    for missing in (None, float("nan"), 0.0, -0.01):
        assert result_loss({**PREDICTED, "eval_log_sd": missing}) == result_loss(PREDICTED)


def test_the_law_s_misfit_adds_to_both_variances():
    """A residual about the fitted law is misfit + noise: with `misfit_log_sd` the same prediction
    weighs (o² + m²)/(o² + m² + p²), more the larger the misfit, 1 in the limit."""
    sd = np.log(2.3 / 2.1) / (2 * 1.6448536)
    row = {**PREDICTED, "eval_log_sd": 0.005}
    weights = [result_loss(row, misfit_log_sd=m)[1] for m in (0.0, 0.016, 1.0)]
    assert weights[0] == pytest.approx(0.005 ** 2 / (0.005 ** 2 + sd ** 2))
    observed = 0.005 ** 2 + 0.016 ** 2
    assert weights[1] == pytest.approx(observed / (observed + sd ** 2))
    assert weights[0] < weights[1] < weights[2] < 1 and weights[2] > 0.999


def test_a_store_s_predicted_run_enters_the_fit_data_with_its_predicted_loss_and_weight(tmp_path):
    from fitting.data import load_fit_data

    for i, (n, extra) in enumerate([(1e5, {}), (2e5, {}), (4e5, PREDICTED)]):
        status = "early_stopped" if extra else "completed"
        TrialWriter(str(tmp_path), "sw", f"r{i}").write_run(run_row(status, non_embedding_params=int(n),
                                                                    best_val_loss=2.5 + i, **extra))
    data = load_fit_data(str(tmp_path / "sw"), law="chinchilla")
    assert list(data.y) == [2.5, 3.5, 2.2]
    # it stands for its planned end: run_row's 97 steps of 400 planned, so D scales by 400/97
    assert data.X["D"].tolist() == pytest.approx([200_000, 200_000, 200_000 * 400 / 97])
    assert data.weights[:2].tolist() == [1.0, 1.0] and 0 < data.weights[2] < 1
    assert data.subset(np.array([False, True, True])).weights.tolist() == data.weights[1:].tolist()
    # a store without predicted runs has no weights (every row counts fully, as before)
    TrialWriter(str(tmp_path), "plain", "r0").write_run(run_row())
    assert load_fit_data(str(tmp_path / "plain"), law="chinchilla", ).weights is None
    # the run's measured evaluation scatter travels through the store into its weight
    for i, extra in enumerate([{}, {**PREDICTED, "eval_log_sd": 0.002}]):
        TrialWriter(str(tmp_path), "measured", f"r{i}").write_run(run_row(
            "early_stopped" if extra else "completed", non_embedding_params=int(1e5 * (i + 1)), **extra))
    weights = load_fit_data(str(tmp_path / "measured"), law="chinchilla").weights
    assert weights.tolist() == [1.0, pytest.approx(result_loss({**PREDICTED, "eval_log_sd": 0.002})[1])]


def test_the_online_fitter_keeps_weights_across_its_state():
    from fitting.online import OnlineFitter

    fitter = OnlineFitter("chinchilla")
    fitter.add({"N": 1e6, "D": 2e7}, 3.0, run_id="a")
    fitter.add({"N": 2e6, "D": 4e7}, 2.9, run_id="b", weight=0.25)
    restored = OnlineFitter("chinchilla")
    restored.load_state_dict(fitter.state_dict())
    assert restored._runs.fit_data().weights.tolist() == [1.0, 0.25]


def _sweep(rng, early: bool, fraction=0.3, evals=40, run_noise=0.005, eval_noise=0.001):
    """A 5 x 4 grid of tokens-regime runs whose curves follow the law in tokens seen: run (N, D)
    at step s of S has L = E + A/N^alpha + B/(D s/S)^beta, times a run's own factor (seed-to-seed
    scatter, the same over its whole curve: every evaluation uses the same validation windows) and
    a small per-evaluation one. With `early`, each run's loss is predicted from the first
    `fraction` of its curve."""
    from fitting.curve_prediction import predict_final_loss

    p = CHINCHILLA_EPOCH
    N, D, y, w, saved = [], [], [], [], 0.0
    for n in np.geomspace(1e7, 1e8, 5):
        for d in np.geomspace(2e8, 2e9, 4):
            steps = np.arange(1, evals + 1) * 100
            tokens = d * steps / steps[-1]
            curve = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / tokens ** p["beta"]
            curve = curve * (1 + run_noise * rng.standard_normal()) * (1 + eval_noise * rng.standard_normal(evals))
            if early:
                k = int(np.ceil(fraction * evals))
                pred = predict_final_loss(steps[:k], curve[:k], int(steps[-1]), level=0.9)
                loss, weight = pred.loss, prediction_weight(pred.lo, pred.hi, pred.level)
                saved += 6 * n * d * (1 - k / evals)
            else:
                loss, weight = curve[-1], 1.0
            N.append(n), D.append(d), y.append(loss), w.append(weight)
    from fitting.data import FitData

    weights = np.asarray(w)
    return FitData({"N": np.asarray(N), "D": np.asarray(D)}, np.asarray(y), {"N": "N", "D": "D"},
                   weights=None if (weights == 1).all() else weights), saved


STARTS = chinchilla.initial_z(np.random.default_rng(0))[::16]  # every 16th start of the grid, for speed


def test_a_sweep_fitted_with_early_stopping_stays_inside_the_intervals_of_the_full_sweep():
    """Same curves (same seed), fitted from their ends and from predictions at 30 % of each: the
    early fit's predictions at the grid's corners and beyond it lie inside the full fit's 90 %
    prediction intervals, for at least 85 % of (replicate, target) pairs over 8 seeded sweeps
    (90 % intervals: a few misses are expected), and 70 % of the compute was saved."""
    targets = {"N": np.array([1e7, 1e8, 1e8, 4e8]), "D": np.array([2e8, 2e9, 2e8, 8e9])}
    inside = []
    for seed in range(8):
        full_data, _ = _sweep(np.random.default_rng(seed), early=False)
        early_data, saved = _sweep(np.random.default_rng(seed), early=True)
        total = float(np.sum(6 * full_data.X["N"] * full_data.X["D"]))
        assert saved / total == pytest.approx(0.7, abs=0.01)
        assert early_data.weights is not None and (early_data.weights < 1).all()
        full, early = (fit_law(chinchilla, d, starts=STARTS) for d in (full_data, early_data))
        interval = full.interval(targets, level=0.9, kind="prediction")
        predicted = chinchilla.predict(chinchilla.as_array(early.params), chinchilla.columns(targets))
        inside += list((interval.lo <= predicted) & (predicted <= interval.hi))
    assert np.mean(inside) >= 0.85, inside


def test_the_designer_sees_the_prediction_in_the_trial_s_final_result_and_after_a_restart():
    """The final Tune result (what `ActiveSearcher.observe_point` reads) and a runs row read back
    (`add_evaluated_point` after a restart) give the same loss and weight."""
    from trainers.record import StopRequest, TrainResult

    stop = StopRequest("predicted_final", 2.2, 2.1, 2.3, 0.9, "power_law")
    result = TrainResult(status="early_stopped", steps=30, tokens_seen=3, flops=4, flops_6n=4, best_val_loss=2.6,
                         best_step=30, final_val_loss=2.6, wall_s=1.0, tokens_per_s=1.0, mfu=0.1, stop=stop)
    live = result_loss(result.tune_metrics())
    again = TrainResult.from_run_row({"status": "early_stopped", "best_val_loss": 2.6, **stop.columns()})
    assert live == result_loss({"best_val_loss": 2.6, **stop.columns()}) == result_loss(again.tune_metrics())
    assert live[0] == 2.2 and live[1] < 1


def test_as_fitted_moves_a_predicted_run_to_its_planned_end_and_leaves_others_alone():
    from fitting.run_result import as_fitted

    row = run_row("early_stopped", steps=100, tokens_seen=51_200, flops=1e11, flops_6n=9e10, **PREDICTED)
    fitted, weight = as_fitted(row)
    assert (fitted["best_val_loss"], fitted["final_val_loss"], fitted["steps"]) == (2.2, 2.2, 400)
    assert (fitted["tokens_seen"], fitted["flops"], fitted["flops_6n"]) == pytest.approx((204_800, 4e11, 3.6e11))
    assert weight == result_loss(row)[1] < 1 and row["steps"] == 100  # the row itself is not changed
    plain = run_row("early_stopped", stop_reason="patience")
    assert as_fitted(plain) == (plain, 1.0)


def test_a_store_s_fit_weighs_predicted_runs_with_the_law_misfit_it_estimates(tmp_path):
    """Runs scattered 3 % about Chinchilla (more than their 0.5 % evaluation scatter): a predicted
    run 1 % wide weighs little against the scatter alone, but the law misfits every run by ~3 %, so
    load_fit_data first fits with the plain weights, takes the law's misfit (law_misfit) and weighs
    the predicted runs with it, as the bench's ``misfit`` weights do."""
    from statistics import NormalDist

    from fitting.data import load_fit_data
    from fitting.fit import store_misfit

    rng = np.random.default_rng(0)
    p = CHINCHILLA_EPOCH
    for i, (n, d) in enumerate((n, d) for n in np.geomspace(1e7, 1e8, 4) for d in np.geomspace(2e8, 2e9, 3)):
        loss = (p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]) * np.exp(0.03 * rng.standard_normal())
        extra = dict(PREDICTED, predicted_loss=loss, predicted_lo=loss * 0.99, predicted_hi=loss * 1.01,
                     eval_log_sd=0.005, steps=200, tokens_seen=int(d / 2)) if i in (4, 9) else {"tokens_seen": int(d)}
        TrialWriter(str(tmp_path), "sw", f"r{i}").write_run(run_row(
            "early_stopped" if i in (4, 9) else "completed", non_embedding_params=int(n), best_val_loss=loss, **extra))
    plain = load_fit_data(str(tmp_path / "sw"), law="chinchilla", misfit_log_sd=0.0)
    data = load_fit_data(str(tmp_path / "sw"), law="chinchilla", misfit_of=store_misfit)  # what fit and plan pass
    assert data.y.tolist() == plain.y.tolist() and data.X["D"].tolist() == plain.X["D"].tolist()
    stopped = plain.weights < 1
    assert stopped.sum() == 2 and plain.weights[stopped] == pytest.approx([prediction_weight(0.99, 1.01, 0.9, 0.005)] * 2)
    assert (data.weights[~stopped] == 1).all() and data.weights[stopped][0] == pytest.approx(data.weights[stopped][1])
    # the misfit the weight implies: w = (o² + m²) / (o² + m² + p²), o the scatter, p the prediction's sd
    w, sd = data.weights[stopped][0], np.log(1.01 / 0.99) / (2 * NormalDist().inv_cdf(0.95))
    misfit = np.sqrt(w * sd ** 2 / (1 - w) - 0.005 ** 2)
    assert 0.01 < misfit < 0.06 and w > 0.7 > 0.5 > plain.weights[stopped][0]  # ~3 %, less what the fit absorbs
    # without a law there is nothing to estimate the misfit with: the plain weights
    assert load_fit_data(str(tmp_path / "sw"), inputs=("N", "D")).weights.tolist() == plain.weights.tolist()
