"""`sub_sweeps`: named extra grids beside the main axes (Kaplan's shape, LSTM and batch-size sweeps
in one sweep and budget), the runs column that records them, and fits that keep them apart."""

from __future__ import annotations

import pytest

MAIN = {"n_ctx": 16, "target_params": [2e4, 8e4], "dataset_tokens": [2e4, 4e4], "batch_tokens": 256}


def _raw(tmp_path, sub_sweeps, **axes):
    return {"name": "mini", "storage": str(tmp_path / "store"), "corpus": {"source": "builtin"},
            "axes": {**MAIN, **axes}, "sub_sweeps": sub_sweeps, "budget": {"flops": 1e15}}


def test_sub_sweeps_add_their_grids_once_and_name_them_in_the_runs_column(tmp_path):
    from orchestrator.grid import expand_grid
    from orchestrator.spec import load_spec

    spec = load_spec(_raw(tmp_path, {
        "shape": {"target_params": 8e4, "dataset_tokens": 4e4, "aspect_ratio": [4, 64]},  # 64: the main grid's
        "lstm": {"family": "lstm", "dataset_tokens": 4e4},
        "batch": {"target_params": 2e4, "dataset_tokens": 4e4, "batch_tokens": [128, 512]},
    }))
    grid = expand_grid(spec)
    by_grid: dict[str, list[str]] = {}
    for t in grid.trials:
        by_grid.setdefault(t.run_columns.get("sub_sweep", "main"), []).append(t.trial_key)
    assert len(by_grid["main"]) == 4
    # aspect ratio 64 at N=8e4, D=4e4 is a main-grid run: it runs once, under the main grid
    assert by_grid["shape"] == ["N8e4-ar4-c16-D4e4-B256-s0"]
    assert sorted(by_grid["lstm"]) == ["lstm-N2e4-c16-D4e4-B256-s0", "lstm-N8e4-c16-D4e4-B256-s0"]
    assert sorted(by_grid["batch"]) == ["N2e4-c16-D4e4-B128-s0", "N2e4-c16-D4e4-B512-s0"]
    assert len({t.trial_key for t in grid.trials}) == len(grid.trials) == 9


@pytest.mark.parametrize("sub_sweeps, line", [
    ({"shape": {"aspect_ratio": [4, -1]}}, r"^sub_sweeps\.shape\.aspect_ratio\[1\]: "),
    ({"shape": {"depth": 3}}, r"^sub_sweeps\.shape\.depth: unknown key"),
    ({"shape": {}}, r"^sub_sweeps\.shape: must replace at least one axis"),
    ({"main": {"seeds": [1]}}, r"^sub_sweeps\.main: 'main' names the main axes grid"),
    ({"my shape": {"seeds": [1]}}, r"^sub_sweeps\.my shape: a sub-sweep's name is letters, digits, '_' or '-', got 'my shape'"),
    ([{"seeds": [1]}], r"^sub_sweeps: must be a mapping"),
    ({"batch": {"batch_tokens": 100}}, r"^sub_sweeps\.batch\.batch_tokens: .*multiple of n_ctx"),
    ({"shape": {"head_dim": 7}}, r"^sub_sweeps\.shape\.head_dim\[0\]: "),
    ({"same": {"batch_tokens": 256}}, r"^sub_sweeps\.same: adds no run"),
])
def test_a_bad_sub_sweep_names_its_own_field(tmp_path, sub_sweeps, line):
    from orchestrator.grid import expand_grid
    from orchestrator.spec import load_spec
    from trainers.fields import SpecError

    with pytest.raises(SpecError, match=line):
        expand_grid(load_spec(_raw(tmp_path, sub_sweeps)))


def test_a_dataset_regime_sub_sweep_needs_max_steps(tmp_path):
    from orchestrator.spec import load_spec
    from trainers.fields import SpecError

    with pytest.raises(SpecError, match=r"trainer\.max_steps: required in the dataset regime"):
        load_spec(_raw(tmp_path, {"data": {"regime": "dataset"}}))


def _write_runs(root):
    from metrics import TrialWriter

    base = dict(status="completed", family="transformer", n_layer=1, d_model=32, n_heads=2, d_ff=64, n_ctx=16,
                vocab_size=256, regime="tokens", batch_tokens=256, lr=1e-3, seed=0, steps=10, wall_s=1.0)
    rows = [("main", 2e4, 2e4, 3.0), ("main", 8e4, 2e4, 2.8), ("main", 2e4, 4e4, 2.9), ("main", 8e4, 4e4, 2.6),
            ("shape", 7.9e4, 4e4, 2.7), ("batch", 2e4, 4e4, 3.2)]
    for i, (grid, n, d, loss) in enumerate(rows):
        extra = {} if grid == "main" else {"sub_sweep": grid}
        writer = TrialWriter(str(root), "s", f"t{i}")
        writer.append_curves([{"step": k, "tokens_seen": k * 256, "flops": 6 * n * k * 256,
                               "val_loss": loss * (1 + 1 / k)} for k in (10, 20, 40)])
        writer.write_run(dict(
            base, non_embedding_params=int(n), dataset_tokens=int(d), tokens_seen=int(d), flops=6 * n * d,
            best_val_loss=loss, final_val_loss=loss, **extra))
    return str(root / "s")


def test_fits_take_the_main_grid_unless_told(tmp_path):
    from fitting.data import load_fit_data
    from metrics import load_runs
    from orchestrator.report_data import law_runs

    store = _write_runs(tmp_path)
    runs = load_runs(store).to_pylist()
    assert sorted(r["sub_sweep"] for r in runs) == ["batch", "main", "main", "main", "main", "shape"]
    assert len(law_runs(runs)) == 4
    assert len(load_fit_data(store)) == 4
    assert len(load_fit_data(store, sub_sweep="shape")) == 1
    assert len(load_fit_data(store, sub_sweep="all")) == 6
    with pytest.raises(ValueError, match=r"^--sub-sweep: .* has no sub-sweep 'lstm' \(it holds batch, main, shape\)"):
        load_fit_data(store, sub_sweep="lstm")


def test_curve_laws_read_the_main_grids_curves_unless_told(tmp_path):
    from fitting.dynamics import curve_rows

    store = _write_runs(tmp_path)
    main = curve_rows(store, "kaplan_ns")
    assert "12 curve points from 4 runs" in main.note
    assert any("2 runs of other grids left out" in n for n in main.warnings)
    assert "18 curve points from 6 runs" in curve_rows(store, "kaplan_ns", sub_sweep="all").note


def test_an_lstm_sub_sweep_left_out_is_not_called_a_mixed_fit(tmp_path):
    import warnings

    from fitting.data import load_fit_data
    from metrics import TrialWriter

    store = _write_runs(tmp_path)
    TrialWriter(str(tmp_path), "s", "lstm0").write_run(dict(
        status="completed", family="lstm", n_layer=1, d_model=32, n_ctx=16, vocab_size=256, regime="tokens",
        batch_tokens=256, lr=1e-3, seed=0, steps=10, wall_s=1.0, non_embedding_params=20000, dataset_tokens=40000,
        tokens_seen=40000, flops=4.8e9, best_val_loss=3.1, final_val_loss=3.1, sub_sweep="lstm"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(load_fit_data(store)) == 4
    assert not any("several model families" in str(w.message) for w in caught)
