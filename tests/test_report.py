"""Sweep report: store rows drawn from a known L(N, D) surface → the report recovers it,
writes its HTML page, and falls back honestly when there are too few runs."""

import numpy as np
import pytest

from orchestrator.report import build_report
from metrics import TrialWriter

TRUTH = dict(E=1.7, A=400.0, B=1200.0, alpha=0.34, beta=0.30)


def chinchilla(n, d):
    return TRUTH["E"] + TRUTH["A"] / n**TRUTH["alpha"] + TRUTH["B"] / d**TRUTH["beta"]


def write_runs(storage, sizes, tokens, *, noise=0.003, seed=0, diverged=0):
    rng = np.random.default_rng(seed)
    k = 0
    for n in sizes:
        for d in tokens:
            loss = chinchilla(n, d) * np.exp(noise * rng.standard_normal())
            writer = TrialWriter(storage, "synthetic", f"t{k}")
            status = "diverged" if k < diverged else "completed"
            writer.append_curves([{"step": 10, "tokens_seen": d // 2, "flops": 3 * n * d, "val_loss": loss + 0.2},
                                  {"step": 20, "tokens_seen": d, "flops": 6 * n * d, "val_loss": loss}])
            writer.write_run({
                "status": status, "n_layer": 2, "d_model": 64, "n_heads": 4, "d_ff": 256, "n_ctx": 64,
                "vocab_size": 256, "non_embedding_params": int(n), "dataset_tokens": int(d), "regime": "tokens",
                "batch_tokens": 1024, "lr": 1e-3, "seed": 0, "tokens_seen": int(d), "steps": 20,
                "flops": int(6 * n * d), "wall_s": 1.0, "best_val_loss": None if status == "diverged" else loss,
                "final_val_loss": loss,
            })
            k += 1


def test_report_fits_the_known_surface_and_writes_files(tmp_path):
    storage = str(tmp_path / "store")
    write_runs(storage, np.geomspace(1e6, 3e8, 6), np.geomspace(1e8, 3e10, 6), diverged=2)
    report = build_report(storage, "synthetic", tmp_path / "report", n_bootstrap=50)
    assert report.n_runs == 36 and report.n_usable == 34
    assert report.status_counts == {"completed": 34, "diverged": 2}
    params = report.fit.params
    assert params["E"] == pytest.approx(TRUTH["E"], rel=0.05)
    assert params["alpha"] == pytest.approx(TRUTH["alpha"], rel=0.15)
    assert params["beta"] == pytest.approx(TRUTH["beta"], rel=0.15)
    assert "N_opt" in report.allocation_text
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["report.html"]  # one file, figures inside
    text = (tmp_path / "report" / "report.html").read_text()
    assert "<tr><td>t5</td><td>completed</td>" in text and '<h2 id="fitted-laws">Fitted laws</h2>' in text
    assert text.count('src="data:image/png;base64,') >= 4


def test_report_with_too_few_runs_falls_back_to_l_of_n(tmp_path):
    storage = str(tmp_path / "store")
    write_runs(storage, [1e6, 1e7, 1e8], [1e9])
    report = build_report(storage, "synthetic", tmp_path / "report", n_bootstrap=0)
    assert any("cannot identify" in note for note in report.notes)
    assert report.fit.law.name.startswith("kaplan_n")
    assert report.allocation_text is None  # L(N) alone says nothing about D
    # titled apart from the page's L(N) over every D (a user read "kaplan_n: no fit" beside a fitted L(N))
    assert report.headline.startswith("headline: L(N) on the largest D (1e+09 tokens), in place of chinchilla with alpha_N = ")


def test_report_on_missing_sweep_names_it_and_creates_nothing(tmp_path):
    write_runs(str(tmp_path / "store"), [1e6], [1e9])
    with pytest.raises(FileNotFoundError, match="no sweep 'nothing' under .*sweeps there: synthetic"):
        build_report(str(tmp_path / "store"), "nothing", tmp_path / "report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["synthetic"]


def test_report_cli_on_a_missing_store_exits_2_and_creates_nothing(tmp_path, capsys):
    from scalesweep.cli import main

    missing = tmp_path / "nonexistent"
    assert main(["report", str(missing), "--sweep", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"storage: {missing} is not a directory" in err
    assert list(tmp_path.iterdir()) == []


def test_report_lists_the_store_files_it_skipped(tmp_path):
    storage = tmp_path / "store"
    write_runs(str(storage), [1e6, 1e7, 1e8], [1e9])
    bad_run = storage / "synthetic/runs/trial_id=t1/part-1.parquet"  # a newer attempt, corrupt
    bad_run.write_bytes(b"PAR1 truncated")
    bad_curve = storage / "synthetic/curves/trial_id=t0/part-0-000009.parquet"
    bad_curve.write_bytes(b"")
    report = build_report(str(storage), "synthetic", tmp_path / "report", n_bootstrap=0)
    assert report.n_runs == 3  # t1's readable attempt still counts
    assert sorted(p.path for p in report.skipped) == sorted([str(bad_run), str(bad_curve)])
    summary = report.summary()
    assert "skipped 2 unreadable store file(s):" in summary
    assert f"{bad_run}: not a readable Parquet file" in summary
    text = (tmp_path / "report" / "report.html").read_text()
    assert "2 store file(s) could not be read" in text and f"{bad_curve}: not a readable Parquet file" in text


@pytest.mark.parametrize("law", ["kaplan_ns", "kaplan_c", "critical_batch"])
def test_report_with_a_curve_law_points_to_fit_and_creates_nothing(tmp_path, capsys, law):
    """A law of steps, compute or loss is not fitted to the runs table (it used to fail asking for
    an --s-col the report does not have)."""
    from scalesweep.cli import main

    store = str(tmp_path / "store")
    write_runs(store, [1e6, 2e6, 4e6], [1e9, 1e9, 1e9])
    assert main(["report", store, "--sweep", "synthetic", "--law", law, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--law {law}: the report fits a law of N and D" in err[0], err
    assert f"scalesweep fit {store}/synthetic --law {law}" in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_fit_of_a_store_names_the_status_of_the_runs_it_drops(tmp_path):
    """`fit` on a sweep with diverged runs said 'dropped 2 rows' with a list of the statuses it
    keeps; it names the dropped runs' status (a new user could not tell they were the diverged)."""
    import warnings

    from fitting.data import load_fit_data

    storage = str(tmp_path / "store")
    write_runs(storage, np.geomspace(1e6, 3e8, 3), np.geomspace(1e8, 3e10, 3), diverged=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_fit_data(f"{storage}/synthetic", law="chinchilla")
    said = " ".join(str(w.message) for w in caught)
    assert len(data.y) == 7 and "dropped 2 of 9 rows" in said
    assert "2 for status diverged (fitted: completed, early_stopped)" in said, said


def test_report_uses_the_headline_and_aggregation_the_sweep_spec_recorded(tmp_path):
    """`report STORE --sweep NAME` has no spec: `run` records fit.headline and fit.aggregate in the
    sweep's fit.json and the report takes them where the user's flags leave them unset."""
    from fitting.aggregate import Aggregation
    from orchestrator.report import report_settings
    from orchestrator.spec import load_spec
    from orchestrator.sweep_settings import write_fit_settings

    storage = str(tmp_path / "store")
    write_runs(storage, [1e6, 1e7], [1e9])
    assert report_settings(storage, "synthetic", None, None)[:2] == ("main", None)  # nothing recorded
    spec = load_spec({"name": "synthetic", "storage": storage,
                      "axes": {"target_params": [1e5], "dataset_tokens": [1e6], "lr": [1e-3, 3e-3], "seeds": [0, 1]},
                      "fit": {"headline": "kaplan_c"}, "budget": {"flops": 1e15}})
    write_fit_settings(spec)
    headline, aggregate, said = report_settings(storage, "synthetic", None, None)
    assert headline == "kaplan_c" and "the spec's fit.headline" in said
    assert aggregate == spec.aggregation() and aggregate.best_over == ("lr",) and aggregate.mean_over == ("seed",)
    mine = Aggregation(("batch_tokens",), ())
    assert report_settings(storage, "synthetic", "main", mine)[:2] == ("main", mine)  # the flags win
