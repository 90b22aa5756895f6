"""Where a sweep fits, hyperparameter axes are aggregated (issue 13 item 6): the spec's
`fit.aggregate` (errors name the field; default from the axes, printed by validate), the active
designer's online fitter and the report. No Ray cluster (the searcher is driven by hand)."""

import numpy as np
import pytest

from fitting.aggregate import Aggregation
from fitting.laws import chinchilla
from fitting.online import OnlineFitConfig, OnlineFitter
from metrics import TrialWriter
from orchestrator.spec import load_spec, validate_command
from tests.test_spec import good_spec, with_change
from trainers.fields import SpecError

TRUTH = {"E": 1.8, "A": 400.0, "B": 410.0, "alpha": 0.34, "beta": 0.28}
FAST = OnlineFitConfig(loss="ls", full_every=16, max_starts=256, screen=8)


@pytest.mark.parametrize("path, value, message", [
    ("fit.aggregate.best_over", ["lr", "lrate"], "fit.aggregate.best_over[1]: unknown column 'lrate'; one of lr,"),
    ("fit.aggregate.mean_over", "best_val_loss", "fit.aggregate.mean_over: unknown column 'best_val_loss'"),
    ("fit.aggregate.best_over", ["lr", "lr"], "fit.aggregate.best_over[1]: column 'lr' is named twice"),
    ("fit.aggregate.cells", 3, "fit.aggregate.cells: unknown key; allowed keys: best_over, mean_over"),
    ("fit.agg", {}, "fit.agg: unknown key; allowed keys: aggregate"),
])
def test_fit_aggregate_errors_name_the_field(tmp_path, path, value, message):
    with pytest.raises(SpecError) as err:
        load_spec(with_change(good_spec(tmp_path), path, value))
    assert message in str(err.value)


def test_a_column_in_both_lists_is_refused(tmp_path):
    spec = with_change(good_spec(tmp_path), "fit.aggregate", {"best_over": ["lr", "seed"], "mean_over": "seed"})
    with pytest.raises(SpecError, match=r"fit.aggregate: column 'seed' is in both best_over and mean_over"):
        load_spec(spec)


def test_default_aggregation_follows_the_axes_and_validate_prints_it(tmp_path):
    spec = with_change(with_change(good_spec(tmp_path), "axes.lr", [1e-3, 3e-3]), "axes.seeds", [0, 1, 2])
    assert load_spec(good_spec(tmp_path)).aggregation() == Aggregation()  # nothing swept: nothing aggregated
    assert load_spec(spec).aggregation() == Aggregation(("lr",), ("seed",))
    path = tmp_path / "spec.yaml"
    import yaml

    path.write_text(yaml.safe_dump(spec))
    text = validate_command(path, check_corpus=False)
    assert "fit: each (N, D) cell aggregated, best over lr, mean over seed (default: the axes sweep them)" in text
    # a list given replaces the default; [] turns it off
    given = load_spec(with_change(spec, "fit.aggregate", {"mean_over": []}))
    assert given.aggregation() == Aggregation(("lr",), ())
    assert load_spec(with_change(spec, "fit.aggregate.best_over", "batch_tokens")).aggregation() == \
        Aggregation(("batch_tokens",), ("seed",))


def lr_runs(n_cells=8, seed=0):
    rng = np.random.default_rng(seed)
    N = np.geomspace(1e7, 1e9, n_cells)
    D = N * np.exp(rng.uniform(np.log(5), np.log(100), n_cells))
    y = chinchilla.predict(TRUTH, {"N": N, "D": D})
    lrs = np.array([1e-3, 3e-3, 1e-2])
    return N, D, lrs, y[:, None] * np.array([1.04, 1.0, 1.09])[None, :]


def test_online_fitter_fits_cells_and_keeps_them_across_a_restore():
    N, D, lrs, loss = lr_runs()
    fitter = OnlineFitter(chinchilla, FAST, aggregate=Aggregation(("lr",)))
    for i in range(len(N)):
        for j, lr in enumerate(lrs):
            fitter.add({"N": N[i], "D": D[i]}, loss[i, j], run_id=f"r{i}-{j}", hyper={"lr": lr})
    assert fitter.n_runs == 24 and fitter.n_cells == 8
    fit = fitter.fit
    assert fit.n_points == 8 and fit.data.aggregation == "24 rows → 8 cells, best over lr"
    np.testing.assert_allclose(fit.data.y, loss.min(axis=1))
    np.testing.assert_array_equal(fit.data.best["lr"], np.full(8, 3e-3, dtype=object))
    restored = OnlineFitter(chinchilla, FAST, aggregate=Aggregation(("lr",)))
    restored.load_state_dict(fitter.state_dict())
    assert restored.fit.n_points == 8


def test_active_searcher_and_report_aggregate_the_lr_axis(tmp_path):
    from orchestrator.active_search import ActiveSearcher
    from orchestrator.budget import BudgetLedger
    from orchestrator.grid import expand_grid
    from orchestrator.report import build_report
    from orchestrator.trial import TrialConfig

    raw = with_change(with_change(good_spec(tmp_path), "axes.lr", [1e-3, 3e-3]), "axes.target_params",
                      [2e4, 4e4, 8e4, 1.6e5])
    spec = load_spec(with_change(raw, "budget.flops", 1e18))
    trials = expand_grid(spec).trials
    assert len(trials) == 16
    searcher = ActiveSearcher(trials, law="chinchilla", settings=TrialConfig(sweep="s", storage="unused"),
                              ledger=BudgetLedger(limit_flops=1e18), max_concurrent=2, fit_config=FAST,
                              aggregate=spec.aggregation())
    for trial in trials:  # "trained": the lower lr is 5 % worse
        n, d = trial.non_embedding_params, trial.dataset_tokens
        loss = float(chinchilla.predict(TRUTH, {"N": [n], "D": [d]})[0]) * (1.05 if trial.lr == 1e-3 else 1.0)
        searcher.observe(trial, {"best_val_loss": loss, "flops": trial.planned_flops}, False)
    fit = searcher.fitter.fit
    assert searcher.fitter.n_runs == 16 and fit.n_points == 8
    assert "  fitted cells: 16 rows → 8 cells, best over lr" in searcher.summary_lines()
    # the report of the same runs, read back from a store: the default aggregates the swept lr
    storage = str(tmp_path / "store")
    for k, trial in enumerate(trials):
        n, d = trial.non_embedding_params, trial.dataset_tokens
        loss = float(chinchilla.predict(TRUTH, {"N": [n], "D": [d]})[0]) * (1.05 if trial.lr == 1e-3 else 1.0)
        writer = TrialWriter(storage, "s", f"t{k}")
        writer.append_curves([{"step": 10, "tokens_seen": d, "flops": 6.0 * n * d, "val_loss": loss}])
        writer.write_run({
            "status": "completed", "n_layer": trial.shape.n_layer, "d_model": trial.shape.d_model,
            "n_heads": trial.shape.n_heads, "d_ff": trial.shape.d_ff, "n_ctx": 64, "vocab_size": 256,
            "non_embedding_params": int(n), "dataset_tokens": int(d), "regime": "tokens", "tokens_seen": int(d),
            "steps": 10, "wall_s": 1.0, "lr": trial.lr, "seed": 0, "batch_tokens": 2048, "flops": 6.0 * n * d,
            "best_val_loss": loss})
    report = build_report(storage, "s", tmp_path / "report", n_bootstrap=0)
    assert report.fit.n_points == 8 and "rows: 16 rows → 8 cells, best over lr" in report.fit_text
    assert not any("repeat the (N, D)" in note for note in report.notes)
    assert [h.column for h in report.fit.diagnostics["optimal_hyperparameters"]] == ["lr", "lr"]
    # a spec may aggregate over any runs-table column (fit.aggregate: n_layer, d_model, ...); the
    # report's table held only lr, batch_tokens and seed, so best_over [lr, n_layer] gave "no fit", exit 0
    from fitting.aggregate import Aggregation

    shaped = build_report(storage, "s", tmp_path / "report2", n_bootstrap=0,
                          aggregate=Aggregation(("lr", "n_layer"), ()))
    assert shaped.fit.n_points == 8 and "best over lr, n_layer" in shaped.fit_text, shaped.fit_text
