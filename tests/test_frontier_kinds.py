"""A new user's frontier findings, each as a kind: an interval the data cannot give is reported as
unidentified, never zero-width (3 runs per isoFLOP budget); one owner of the loss interval at C
(plan, frontier and the report print the same kind, its parameter part inside it, and the verdict
compares parameters-only intervals); one default number of bootstrap resamples for the CLI and the
report; one planned cost per run (validate's tables and the budget); the frontier figure's legend
names the isoFLOP vertices; the shipped isoFLOP example sweeps enough sizes to give intervals.
Synthetic tables and plans only: no Ray, no training."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

from fitting.allocate import compute_optimal_allocation
from fitting.fit import fit_law
from fitting.frontier import FrontierResult, compare_frontiers, isoflop_frontier, parametric_frontier
from fitting.laws import chinchilla
from fitting.cli import DEFAULT_BOOTSTRAP
from tests.test_frontier import isoflop_runs

TRUE = {"E": 1.82, "A": 482.0, "alpha": 0.3478, "B": 2085.0, "beta": 0.3658}


def _iso(rows, **kw):
    return isoflop_frontier([x["N"] for x in rows], [x["loss"] for x in rows], [x["C"] for x in rows], 1e22,
                            budget=[x["budget"] for x in rows], **kw)


# -- 1: exactly determined fits give no interval, never a zero-width one ----------------------------

def test_three_sizes_per_budget_give_no_interval_and_the_verdict_does_not_rest_on_them():
    rows = isoflop_runs([1e18, 1e19, 1e20], sizes=3, noise=0.003, seed=2)
    r = _iso(rows, n_bootstrap=100)
    assert r.supported and np.isfinite(r.a) and np.isfinite(r.loss)
    for attr in ("a", "b", "n_opt", "d_opt", "loss"):
        assert not np.isfinite(getattr(r, attr + "_ci")).any(), (attr, getattr(r, attr + "_ci"))
    assert any("not identified" in n and "exactly determined" in n for n in r.notes), r.notes
    assert all("exactly determined" in p["status"] for p in r.profiles)
    other = FrontierResult("parametric", True, compute=1e22, a=r.a, a_ci=(r.a - 0.01, r.a + 0.01), n_opt=r.n_opt,
                           loss=r.loss, loss_ci=(r.loss * 0.99, r.loss * 1.01))
    v = compare_frontiers([r, other])
    assert "a intervals overlap" not in v and "loss intervals (parameters only) overlap" not in v, v
    assert "not compared (no interval: not identified): a of isoflop; loss of isoflop" in v, v
    # with budgets enough to resample them, their scatter carries the exact vertices' spread
    r6 = _iso(isoflop_runs([1e17, 1e18, 1e19, 1e20, 1e21, 1e22], sizes=3, noise=0.003, seed=2), n_bootstrap=100)
    assert r6.a_ci[1] - r6.a_ci[0] > 0 and any("held at its point" in n for n in r6.notes), (r6.a_ci, r6.notes)
    # one more size per budget leaves residuals to resample: real intervals of positive width
    r5 = _iso(isoflop_runs([1e18, 1e19, 1e20], sizes=5, noise=0.003, seed=2), n_bootstrap=100)
    for attr in ("a", "n_opt", "loss"):
        lo, hi = getattr(r5, attr + "_ci")
        assert hi - lo > 0, (attr, lo, hi)


def test_an_interval_no_resample_moves_is_dropped_wherever_it_comes_from():
    """Noise-free runs on 4 sizes: every resample's vertex is the law's own, so the frontier's
    intervals have zero spread; they are reported as unidentified, not as [x, x]."""
    r = _iso(isoflop_runs([1e18, 1e19, 1e20], sizes=4, noise=0.0), n_bootstrap=60)
    widths = [getattr(r, a + "_ci") for a in ("a", "n_opt", "loss")]
    assert all(not np.isfinite(ci).any() or ci[1] - ci[0] > 0 for ci in widths), widths


# -- 2: one owner of the loss interval at C ---------------------------------------------------------

def test_plan_frontier_and_report_print_one_loss_interval_with_its_parameter_part_inside(capsys):
    from fitting.plan_cli import _print_allocation
    from orchestrator.report_html import plan_table

    rng = np.random.default_rng(3)
    N = np.repeat(np.geomspace(1e7, 3e8, 4), 4)
    D = np.tile(np.geomspace(2e8, 2e10, 4), 4) * rng.uniform(0.8, 1.25, N.size)
    y = chinchilla.predict(TRUE, {"N": N, "D": D}) * np.exp(0.01 * rng.standard_normal(N.size))
    fit = fit_law("chinchilla", {"N": N, "D": D, "loss": y}, n_bootstrap=40, seed=0)
    C = 1e22
    p = compute_optimal_allocation(fit, C)
    lo, hi = p.loss_interval
    plo, phi = p.intervals["loss"]
    # the parameters-only interval lies inside the prediction interval (it once fell below it)
    assert lo <= plo <= p.loss <= phi <= hi and (lo, hi) == p.loss_misfit_interval
    assert "misfit" in p.loss_interval_kind and p.to_dict()["loss_interval"] == [lo, hi]
    _print_allocation(p, 0.9)
    out = capsys.readouterr().out
    assert f"[{lo:.4g}, {hi:.4g}]  (90% {p.loss_interval_kind}" in out
    assert f"its parameter part alone: [{plo:.4g}, {phi:.4g}]" in out
    r = parametric_frontier(fit, C)  # the frontier prints the same two, and compares the parameter part
    assert r.loss_ci == (plo, phi) and r.loss_prediction_ci == (lo, hi) and "parameter part" in r.loss_kind
    html = plan_table([(C, p)])  # the report's plan table: the same interval under the same name
    assert f"{lo:.4g}, {hi:.4g}" in html and p.loss_interval_kind in html


# -- 4: one default number of resamples -------------------------------------------------------------

def test_the_report_and_every_command_default_to_the_same_resamples(tmp_path, monkeypatch):
    from fitting.cli import add_bootstrap_arg
    from orchestrator import report_data
    from orchestrator.report import build_report
    from tests.test_frontier import write_store

    parser = argparse.ArgumentParser()
    add_bootstrap_arg(parser)
    assert parser.parse_args([]).bootstrap == DEFAULT_BOOTSTRAP
    seen = {}

    def stop(usable, law_name, n_bootstrap, aggregate=None):
        seen["n"] = n_bootstrap
        raise RuntimeError("stop after the main fit's arguments")

    monkeypatch.setattr(report_data, "main_fit", stop)
    write_store(tmp_path, budgets=(1e16,), sizes=3, points=4)
    with pytest.raises(RuntimeError, match="stop after"):
        build_report(str(tmp_path), "iso", tmp_path / "out")
    assert seen["n"] == DEFAULT_BOOTSTRAP


# -- 5: one planned cost per run ----------------------------------------------------------------------

def test_a_runs_planned_cost_is_what_it_trains_in_every_table_and_the_budget(tmp_path):
    from orchestrator.grid import expand_grid
    from orchestrator.isoflop import format_isoflop_plan, trained_tokens
    from orchestrator.spec import format_grid, load_spec
    from tests.test_spec import with_change
    from tests.test_spec_isoflop import iso_spec, trained_flops
    from trainers.shapes import train_flops

    spec = load_spec(iso_spec(tmp_path))
    grid = expand_grid(spec)
    table, iso_table = format_grid(grid), format_isoflop_plan(grid.trials)
    for t in grid.trials:
        tokens = trained_tokens(t.dataset_tokens, t.shape.n_ctx, t.batch_tokens)
        assert t.planned_tokens == tokens < t.dataset_tokens  # whole batches of windows, not the slice
        assert t.planned_flops == train_flops(t.shape, tokens) == trained_flops(t)
        assert f"{t.planned_flops:.3g}" in table and f"{t.planned_flops:.3g}" in iso_table
    # a budget just above the cheapest run's shown cost keeps that run
    cheapest = min(t.planned_flops for t in grid.trials)
    kept = expand_grid(load_spec(with_change(with_change(iso_spec(tmp_path), "budget.flops", cheapest * 1.001),
                                             "budget.cut", "largest_first")))
    assert [t.planned_flops for t in kept.trials] == [cheapest]


# -- 6: the figure's legend names the vertices ----------------------------------------------------------

def test_the_frontier_figure_legend_names_the_isoflop_vertices(tmp_path, monkeypatch):
    import matplotlib.figure

    from fitting.frontier_plot import plot_frontiers

    saved = {}
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, path, **kw: saved.setdefault("fig", fig))
    r = _iso(isoflop_runs([1e18, 1e19, 1e20], sizes=5, noise=0.003, seed=2), n_bootstrap=40)
    plot_frontiers([r], str(tmp_path / "f.png"))
    right = saved["fig"].axes[1]
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert any("vertices" in s for s in labels), labels
    assert "FLOPs per parameter per token" in right.get_xlabel()


# -- 3: the shipped example is not exactly determined ---------------------------------------------------

def test_the_isoflop_example_sweeps_enough_sizes_for_intervals(tmp_path):
    from orchestrator.grid import expand_grid
    from orchestrator.spec import load_spec
    from trainers.fields import load_yaml

    raw = load_yaml("examples/isoflop.yaml")
    raw["storage"] = str(tmp_path)
    grid = expand_grid(load_spec(raw))
    per_budget = {}
    for t in grid.trials:
        per_budget.setdefault(t.run_columns["isoflop_budget"], set()).add(t.non_embedding_params)
    assert len(per_budget) >= 3 and not grid.cut
    assert all(len(sizes) >= 4 for sizes in per_budget.values()), per_budget
    assert math.isfinite(sum(t.planned_flops for t in grid.trials))
