"""The HTML report: a store written by the store code (TrialWriter, the ledger writer, a real
ActiveSearcher's checkpoint) → `report` writes one self-contained page with every section the
store supports; every figure function answers empty and degenerate input with a message."""

import re
import types

import numpy as np
import pytest

import metrics
from fitting.dynamics import b_crit
from orchestrator import report_figures as figs
from orchestrator.report import build_report
from orchestrator.report_html import external_urls, render_page

TRUTH = dict(E=1.7, A=400.0, alpha=0.34, B=200.0, beta=0.30)
BATCH = 2**14  # tokens per step
SIZES = (2e5, 6e5, 2e6, 6e6)
DATA = (2e7, 2e8, 2e9)
SHAPE_BASE = dict(n_layer=4, d_model=64, d_ff=256, n_heads=4)


def chinchilla(n, d):
    return TRUTH["E"] + TRUTH["A"] / n ** TRUTH["alpha"] + TRUTH["B"] / d ** TRUTH["beta"]


def write_trial(store, sweep, tid, N, D, rng, *, status="completed", shape=SHAPE_BASE, scale=1.0, **extra):
    """One trial through TrialWriter: 8 evaluations along L(N, tokens seen) with the gradient noise
    scale at B_crit(L) (Kaplan's B*, α_B) times noise, then its run row."""
    tokens = np.unique(np.round(np.geomspace(D / 20, D, 8) / BATCH).astype(int)) * BATCH
    loss = chinchilla(N, tokens) * scale * np.exp(0.002 * rng.standard_normal(tokens.size))
    w = metrics.TrialWriter(store, sweep, tid)
    positions = np.arange(1, 65)  # the per-position loss falls with context, its mean the val_loss
    w.append_curves([{"step": int(t // BATCH), "tokens_seen": int(t), "flops": 6.0 * N * t, "val_loss": float(l),
                      "grad_noise_scale": float(b_crit(l) * np.exp(0.1 * rng.standard_normal())),
                      "loss_per_position": list(l * (1 + 0.3 * positions ** -0.5) / np.mean(1 + 0.3 * positions ** -0.5))}
                     for t, l in zip(tokens, loss)])
    usable = status in ("completed", "early_stopped")
    w.write_run({"status": status, **shape, "n_ctx": 64, "vocab_size": 256, "non_embedding_params": int(N),
                 "dataset_tokens": int(D), "regime": "dataset", "batch_tokens": BATCH, "lr": 1e-3, "seed": 0,
                 "tokens_seen": int(tokens[-1]), "steps": int(tokens[-1] // BATCH), "flops": 6.0 * N * tokens[-1],
                 "wall_s": 1.0, "best_val_loss": float(loss.min()) if usable else None,
                 "final_val_loss": float(loss[-1]), "planned_steps": int(D // BATCH), **extra})


B_CRIT = 4 * BATCH  # the batch sub-sweep's true critical batch (tokens)


def write_batch_sub_sweep(store, sweep, N, D):
    """Runs at one N and D and four batch sizes (a ``sub_sweep: batch``) whose curves follow
    McCandlish's trade-off exactly: reaching a loss takes E_min(L)·(1 + B/B_crit) tokens."""
    for B in (BATCH, 2 * BATCH, 8 * BATCH, 32 * BATCH):
        steps = np.unique(np.geomspace(2, D * (1 + B / B_CRIT) / B, 24).astype(int))
        loss = chinchilla(N, steps * B / (1 + B / B_CRIT))
        w = metrics.TrialWriter(store, sweep, f"batch{B}")
        w.append_curves([{"step": int(s), "tokens_seen": int(s * B), "flops": 6.0 * N * s * B, "val_loss": float(l)}
                         for s, l in zip(steps, loss)])
        w.write_run({"status": "completed", **SHAPE_BASE, "n_ctx": 64, "vocab_size": 256, "non_embedding_params": int(N),
                     "dataset_tokens": int(D), "regime": "tokens", "batch_tokens": int(B), "lr": 1e-3, "seed": 0,
                     "tokens_seen": int(steps[-1] * B), "steps": int(steps[-1]), "flops": 6.0 * N * steps[-1] * B,
                     "wall_s": 1.0, "best_val_loss": float(loss.min()), "final_val_loss": float(loss[-1]),
                     "sub_sweep": "batch"})


def write_sweep(root, sweep="mini"):
    """A 4 × 3 grid in N and D, a shape sub-sweep at N ≈ 2e6, and runs that diverged, failed,
    stopped on patience and ran out of budget; the ledger; an active designer's checkpoint."""
    store = str(root / "store")
    rng = np.random.default_rng(0)
    k = 0
    for N in SIZES:
        for D in DATA:
            write_trial(store, sweep, f"t{k}", N, D, rng)
            k += 1
    shapes = [dict(n_layer=2, d_model=96, d_ff=384, n_heads=4), dict(n_layer=8, d_model=48, d_ff=192, n_heads=2),
              dict(n_layer=4, d_model=64, d_ff=512, n_heads=8)]
    for i, (shape, n) in enumerate(zip(shapes, (2.1e6, 2.2e6, 2.3e6))):
        write_trial(store, sweep, f"shape{i}", n, DATA[-1], rng, shape=shape, scale=1.0 + 0.01 * (i + 1))
    write_trial(store, sweep, "div", 6e6, 2e8, rng, status="diverged", error="loss is NaN at step 12")
    write_trial(store, sweep, "fail", 2e5, 2e8, rng, status="failed",
                error="Traceback (most recent call last):\n  ...\nRuntimeError: worker died")
    write_trial(store, sweep, "pat", 6e5, 2e9, rng, status="early_stopped", stop_reason="patience", scale=1.01)
    write_trial(store, sweep, "bud", 6e6, 2e9, rng, status="budget_stopped")
    write_batch_sub_sweep(store, sweep, 6e5, DATA[1])

    from orchestrator.budget import BudgetLedger
    from orchestrator.sweep import write_ledger

    ledger = BudgetLedger(limit_flops=5e17)
    ledger.start("t0", 1e15)
    ledger.finish("t0", 8e14)
    write_ledger(types.SimpleNamespace(storage=store, name=sweep), ledger)
    _write_active_checkpoint(root / "store" / sweep / "tune" / "exp")
    return store


def _write_active_checkpoint(directory):
    """A real ActiveSearcher, asked for 3 runs (its seed design), saved where Tune keeps it."""
    from fitting.online import OnlineFitConfig
    from orchestrator.active_search import ActiveSearcher
    from orchestrator.budget import BudgetLedger
    from orchestrator.grid import expand_grid
    from orchestrator.spec import load_spec
    from orchestrator.trial import TrialConfig

    spec = {"name": "active", "storage": "unused", "corpus": {"source": "builtin", "tokenizer": "byte"},
            "axes": {"target_params": [2.5e4, 1e5, 4e5], "aspect_ratio": 16, "head_dim": 16, "n_ctx": 64,
                     "dataset_tokens": [1e5, 1e6, 1e7], "regime": "tokens", "seeds": [0], "batch_tokens": 2048},
            "trainer": {"zero_stage": 0, "precision": "fp32"},
            "resources": {"cpus_per_worker": 1, "gpus_per_worker": 0, "workers": 1},
            "search": {"kind": "grid"}, "budget": {"flops": 1e18}}
    searcher = ActiveSearcher(expand_grid(load_spec(spec)).trials, law="chinchilla",
                              settings=TrialConfig(sweep="active", storage="unused"),
                              ledger=BudgetLedger(limit_flops=1e18), max_concurrent=3,
                              fit_config=OnlineFitConfig(loss="ls", full_every=16, max_starts=256, screen=8))
    for i in range(3):
        assert isinstance(searcher.suggest(f"trial{i}"), dict)
    directory.mkdir(parents=True)
    searcher.save(str(directory / "searcher-state-2026-01-01.pkl"))
    return searcher.choices


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    store = write_sweep(root)
    report = build_report(store, "mini", root / "out", n_bootstrap=20)
    return report, (root / "out" / "report.html").read_text()


def section(html, title):
    """The HTML of one section (from its h2 to the next)."""
    m = re.search(rf'<h2 id="[^"]*">{re.escape(title)}</h2>(.*?)(?=<h2 |</body>)', html, flags=re.S)
    assert m, f"no section {title!r}"
    return m.group(1)


def images(fragment):
    return re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', fragment)


def test_report_writes_one_offline_page_with_every_supported_section(page):
    report, html = page
    assert report.files[-1].endswith("report.html") and report.summary().splitlines()[-1].endswith("report.html")
    assert external_urls(html) == [] and not re.search(r"(src|href)\s*=\s*[\"']?https?://", html, flags=re.I)
    # sections the fixture supports each embed a figure (a PNG that decodes)
    for title, n in [("Loss vs compute", 1), ("Loss vs data and model size", 2), ("L(N, D) and overfitting", 2),
                     ("Learning curves", 2), ("Model shape", 1), ("Critical batch size", 2),
                     ("Per-position loss", 1)]:
        found = images(section(html, title))
        assert len(found) == n, (title, len(found))
        import base64

        assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in found)
    # sections whose data the store lacks are one message each, no figure
    for title, words in [("Transformer vs LSTM", "transformer"),
                         ("Ladder: predicted vs observed", "no ladder/ table")]:
        part = section(html, title)
        assert not images(part) and words in part, (title, part[:300])


def test_report_tables_show_laws_with_intervals_plans_budget_and_why_runs_stopped(page):
    report, html = page
    laws = section(html, "Fitted laws")
    for law in ("chinchilla", "L(N) = (N_c/N)^α_N", "L(D) = (D_c/D)^α_D", "L(C_min)", "L(N, S_min)", "B_crit(L)"):
        assert law in laws, law
    alpha = re.search(r"<td>alpha</td><td class=num>([0-9.]+)</td><td>\[([0-9.]+), ([0-9.]+)\]</td><td>0.34 \(0.3478\)",
                      laws)
    assert alpha, laws[:2000]
    lo, hi = report.fit.ci(0.9)["alpha"]  # the fit's own 90 % interval, not another computation
    assert (alpha.group(2), alpha.group(3)) == (f"{lo:.4g}", f"{hi:.4g}")
    assert float(alpha.group(1)) == pytest.approx(TRUTH["alpha"], rel=0.15)
    assert "<td>alpha_B</td>" in laws and ">0.21<" in laws  # B_crit fitted, next to Kaplan's
    plan = section(html, "Compute-optimal plan")
    largest = max(r["flops"] for r in metrics.load_runs(str(report.files[0]).rsplit("/out/", 1)[0] + "/store", "mini")
                  .to_pylist() if r["status"] in ("completed", "early_stopped"))
    for factor in (10, 100):
        assert f"<td class=num>{factor * largest:.3g}</td>" in plan
    runs = section(html, "Compute and runs")
    assert ">5e+17<" in runs and ">8e+14<" in runs  # the ledger's limit and spend
    for row in ("<td>div</td><td>diverged</td>", "<td>fail</td><td>failed</td>", "<td>pat</td><td>early_stopped</td><td>patience</td>",
                "<td>bud</td><td>budget_stopped</td>"):
        assert row in runs, row
    assert "loss is NaN at step 12" in runs and "RuntimeError: worker died" in runs
    assert runs.count("seed (space-filling)") == 3  # the active designer's three choices, in order


def test_the_page_opens_with_what_was_measured_and_the_headline_exponents(page, tmp_path, capsys):
    """Before any section: the runs measured, then the headline law's exponents with their 90 %
    intervals (the fit's own, where identified) next to the paper's; the printed summary says the
    same line. --headline picks another fit (here L(C_min) from the curves); a bad one exits 2."""
    from scalesweep.cli import main

    report, html = page
    top = html[html.index("<h1>"):html.index("<nav>")]
    assert top.index('<div class="headline">') < top.index("runs (")
    assert "What was measured:</b> 20 usable runs of transformer language models (dataset, tokens regime): grid of 7 model sizes N = 2e+05–6e+06" in top
    lo, hi = report.fit.ci(0.9)["beta"]
    assert (f"beta = {report.fit.params['beta']:#.3g} (90 % interval [{lo:#.3g}, {hi:#.3g}]; Hoffmann et al. 2022 "
            f"(Epoch AI refit): 0.280 (0.366))") in top
    assert report.summary().splitlines()[1] == report.headline and report.headline.startswith("headline: chinchilla")
    store = str(report.files[0]).rsplit("/out/", 1)[0] + "/store"
    assert main(["report", store, "--sweep", "mini", "--out", str(tmp_path / "c"), "--headline", "kaplan_c",
                 "--bootstrap", "20"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith("headline: L(C_min) = (C_c/C_min)^α_C with alpha_C = ") and "Kaplan et al. 2020: 0.0500)" in line
    assert main(["report", store, "--sweep", "mini", "--out", str(tmp_path / "x"), "--headline", "E"]) == 2
    assert "--headline: one of main, kaplan_n" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_unidentified_fit_is_said_never_given_an_interval(tmp_path):
    """Runs at one tokens-per-parameter ratio cannot split loss between N and D: the page says so
    for each chinchilla parameter and draws no L(N, ∞)."""
    store = str(tmp_path / "store")
    rng = np.random.default_rng(1)
    for i, N in enumerate(np.geomspace(2e5, 2e7, 8)):
        write_trial(store, "ratio", f"t{i}", N, 20 * N, rng)
    build_report(store, "ratio", tmp_path / "out", n_bootstrap=0)
    html = (tmp_path / "out" / "report.html").read_text()
    laws = section(html, "Fitted laws")
    for p in ("E", "A", "alpha", "B", "beta"):
        assert re.search(rf"<td>{p}</td><td class=num>[^<]+</td><td>not identified: every run has \(almost\) the "
                         rf"same tokens-per-parameter ratio", laws), p
    assert "needs a fitted law of N and D" in section(html, "L(N, D) and overfitting")
    assert "not identified" in section(html, "Compute-optimal plan")


EMPTY_CURVES = {k: np.array([]) for k in ("trial_id", "step", "tokens_seen", "flops", "val_loss", "N")}


def test_the_batch_sub_sweep_gives_b_crit_without_the_noise_scale_and_stays_out_of_the_laws(page):
    report, html = page
    part = section(html, "Critical batch size")
    rows = re.findall(r"<tr><td>([\d.]+)</td><td>[^<]*</td><td>[^<]*</td><td>([^<]+)</td>", part)
    assert len(rows) >= 2, part[-800:]
    assert all(abs(float(b) / B_CRIT - 1) < 0.25 for _, b in rows), (rows, B_CRIT)
    # the laws are fitted to the main grid: the 12 N x D runs, the shape and patience-stopped runs
    assert "feed only the shape, family and batch-size figures" in html


def one_point_curves():
    return {"trial_id": np.array(["a"]), "step": np.array([1.0]), "tokens_seen": np.array([1e6]),
            "flops": np.array([1e12]), "val_loss": np.array([3.0]), "N": np.array([1e6])}


def run_row(N=1e6, D=1e8, loss=3.0, **kw):
    return {"trial_id": "a", "status": "completed", "non_embedding_params": N, "dataset_tokens": D,
            "tokens_seen": D, "best_val_loss": loss, "n_layer": 4, "d_model": 64, "d_ff": 256, "n_heads": 4,
            "flops": 6 * N * D, **kw}


@pytest.mark.parametrize("call", [
    lambda: figs.loss_vs_compute(EMPTY_CURVES, None, None),
    lambda: figs.loss_vs_compute(one_point_curves(), {"C": np.array([]), "loss": np.array([])}, None),
    lambda: figs.loss_vs_compute({**one_point_curves(), "val_loss": np.array([np.nan])}, None, None),
    lambda: figs.loss_vs_variable({"N": np.array([]), "loss": np.array([])}, "N", None, "N (params)", "t"),
    lambda: figs.loss_vs_variable({"N": np.array([1e6, 1e6]), "loss": np.array([3.0, -1.0])}, "N", None, "N", "t"),
    lambda: figs.loss_vs_size_per_data([], None),
    lambda: figs.loss_vs_size_per_data([run_row(status="diverged", best_val_loss=None)], None),
    lambda: figs.overfitting_penalty([run_row(), run_row(N=2e6)], None),
    lambda: figs.learning_curves(EMPTY_CURVES),
    lambda: figs.learning_curves(one_point_curves()),
    lambda: figs.loss_vs_min_steps(None, None),
    lambda: figs.loss_vs_min_steps({"N": np.array([1e6]), "S": np.array([0.0]), "loss": np.array([3.0])}, None),
    lambda: figs.shape_dependence([]),
    lambda: figs.shape_dependence([run_row(), run_row(loss=3.1)]),  # two runs of one shape: nothing varied
    # an LSTM beside a transformer of the same N and D is not a shape variant (it has no d_ff or heads)
    lambda: figs.shape_dependence([run_row(), run_row(loss=3.1, family="lstm", d_ff=None, n_heads=None)]),
    lambda: figs.critical_batch_vs_loss(None, None),
    lambda: figs.critical_batch_vs_loss({"L": np.array([3.0]), "loss": np.array([1e6])}, None),
    lambda: figs.loss_per_position(EMPTY_CURVES),
    lambda: figs.loss_per_position({**one_point_curves(), "loss_per_position": np.array([None], dtype=object)}),
    lambda: figs.loss_vs_size_per_family([]),
    lambda: figs.overfitting_penalty_measured([]),
    lambda: figs.overfitting_penalty_measured([run_row(regime="dataset"), run_row(D=2e8, loss=3.1, regime="dataset")]),
    lambda: figs.ladder_prediction([]),
    lambda: figs.ladder_prediction([{"trial_id": "ladder-x4", "compute": 4e15, "predicted_loss": None}]),
    lambda: figs.loss_vs_size_per_family([run_row(family="lstm"), run_row(N=2e6, family="lstm")]),
])
def test_every_figure_answers_empty_or_degenerate_input_with_a_message(call):
    result = call()
    assert isinstance(result, str) and result and "\n" not in result


def test_figures_draw_columns_the_store_is_about_to_gain():
    """loss_per_position (a list per eval row) and the runs' family column, as plain tables."""
    from matplotlib.figure import Figure

    curves = {**one_point_curves(), "loss_per_position": np.array([None], dtype=object)}
    curves["loss_per_position"][0] = [4.0, 3.5, 3.2, 3.1]
    assert isinstance(figs.loss_per_position(curves), Figure)
    rows = [run_row(N=n, loss=l, family=f) for n, l, f in [(1e6, 3.0, "transformer"), (4e6, 2.8, "transformer"),
                                                           (1e6, 3.3, "lstm"), (4e6, 3.2, "lstm")]]
    assert isinstance(figs.loss_vs_size_per_family(rows), Figure)
    assert set(figs.FIGURES) >= {figs.loss_per_position, figs.loss_vs_size_per_family}


def test_render_page_refuses_an_external_url():
    from orchestrator.report_html import Section

    with pytest.raises(ValueError, match="must open offline"):
        render_page("t", [], [Section("s", ['<img src="https://example.org/x.png">'])])
    assert external_urls('<a href="#x">x</a><img src="data:image/png;base64,AA==">') == []


def test_a_store_of_failed_runs_gets_a_page_of_messages_not_a_traceback(tmp_path, capsys):
    """Every run diverged or failed: no fit, no figure, each section one line; the CLI exits 0 and
    its last line is the page's path."""
    from scalesweep.cli import main

    store = str(tmp_path / "store")
    rng = np.random.default_rng(2)
    write_trial(store, "bad", "a", 1e6, 1e8, rng, status="diverged", error="loss is NaN")
    write_trial(store, "bad", "b", 2e6, 1e8, rng, status="failed", error="OOM")
    assert main(["report", store, "--sweep", "bad", "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"wrote {tmp_path / 'out' / 'report.html'}"
    html = (tmp_path / "out" / "report.html").read_text()
    assert not images(html) and external_urls(html) == []
    assert "no usable runs" in html and "no curves of usable runs" in html
    assert "<td>a</td><td>diverged</td>" in section(html, "Compute and runs")


def test_a_scale_known_only_within_decades_is_not_given_an_interval():
    """The demo's L(N): three sizes, losses 2.33-2.23 → alpha_N ≈ 0.02 and N_c (≈ 1e22) known to no
    better than many decades: said in words, the profile's interval as evidence. The verdict reads
    the profile likelihood (FitResult.verdicts), whose one degree of freedom leaves N_c open above
    and alpha_N over twice its value wide; the sandwich's interval for alpha_N looked usable."""
    from fitting.fit import fit_law
    from fitting.laws import kaplan_n
    from fitting.checks import MAX_SCALE_DECADES
    from orchestrator.report_html import param_rows

    fit = fit_law(kaplan_n(), {"N": np.array([2.5e4, 8e4, 2e5]), "loss": np.array([2.332, 2.288, 2.233])})
    rows = {name: text for name, _, text in param_rows(fit)}
    lo, hi = fit.ci(0.9)["N_c"]
    assert np.log10(hi / lo) > MAX_SCALE_DECADES
    assert rows["N_c"].startswith("not identified by these runs: its profile interval [")
    assert "open on the upper side" in rows["N_c"]
    assert rows["alpha_N"].startswith("not identified by these runs: its profile interval [")
    assert "wider than 2× the value" in rows["alpha_N"]


def test_report_without_sweep_takes_the_stores_only_sweep_and_names_several(tmp_path, capsys):
    from scalesweep.cli import main

    store = tmp_path / "store"
    rng = np.random.default_rng(3)
    write_trial(str(store), "one", "a", 1e6, 1e8, rng, status="failed", error="x")
    assert main(["report", str(store), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.html").is_file()
    write_trial(str(store), "two", "a", 1e6, 1e8, rng, status="failed", error="x")
    assert main(["report", str(store), "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"scalesweep report: error: --sweep: {store} holds 2 sweeps (one, two); name one"], err
    assert main(["report", str(store / "one"), "--out", str(tmp_path / "out3")]) == 2
    assert "is one sweep's directory, not a store" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists() and not (tmp_path / "out3").exists()


def test_the_ladder_section_draws_predicted_against_observed(tmp_path):
    """A store with a ladder row (written by the ladder's writer): the section has the figure and
    the row; without one, a message (the fixture page above)."""
    from orchestrator.report_sections import ladder_section

    row = {"sweep": "s", "trial_id": "ladder-x4", "multiplier": 4.0, "reference_compute": 1e15, "compute": 4e15,
           "law": "chinchilla", "n_runs": 9, "n_opt": 2e6, "d_opt": 3e8, "loss_opt": 3.1, "n_actual": 2_100_000,
           "d_actual": 310_000_000, "planned_flops": 4e15, "predicted_loss": 3.1, "predicted_lo": 2.9,
           "predicted_hi": 3.3, "predicted_level": 0.9, "status": "completed", "flops": 3.9e15,
           "final_val_loss": 3.2, "loss_column": "best_val_loss", "observed_loss": 3.15, "covered": True}
    metrics.write_ladder_row(str(tmp_path), "s", row)
    part = "".join(ladder_section(str(tmp_path / "s")).parts)
    assert len(images(part)) == 1 and "ladder-x4" in part and "3.15" in part
    assert "no ladder/ table" in "".join(ladder_section(str(tmp_path / "none")).parts)


def test_what_was_measured_describes_the_design_as_planned():
    """A 3 x 3 grid plus a ladder run reads as that (not 4 x 4), an isoFLOP design as budgets x
    sizes (not 9 x 9), the ladder run named apart."""
    from orchestrator.report_html import measured_text

    grid = [run_row(N=n, D=d, trial_id=f"g{i}", regime="tokens")
            for i, (n, d) in enumerate((n, d) for n in (2.5e4, 8e4, 2e5) for d in (5e4, 1.5e5, 4.5e5))]
    ladder = run_row(N=1.3e5, D=1e6, trial_id="ladder-x1.5", sub_sweep="ladder", regime="tokens")
    text = measured_text(grid + [ladder])
    assert "10 usable runs of transformer language models (tokens regime): grid of 3 model sizes N = 2.5e+04–2e+05" in text
    assert "× 3 dataset sizes D = 5e+04–4.5e+05 tokens; plus 1 scaling-ladder run (ladder-x1.5: N = 1.3e+05" in text
    assert "cells run" not in text  # every cell of the 3 x 3 grid ran
    assert "grid of 2 model sizes N = 2.5e+04–2e+05 non-embedding parameters × 3 dataset sizes D = 5e+04–4.5e+05 tokens, 3 of its 6 cells run" in measured_text(grid[:2] + [run_row(N=2e5, D=4.5e5)])
    iso = [run_row(N=n * b / 5e9, D=b / (6 * n * b / 5e9), trial_id=f"i{k}", isoflop_budget=b)
           for k, (b, n) in enumerate((b, n) for b in (5e9, 1.5e10, 4.5e10) for n in (768, 2e3, 5e3))]
    text = measured_text(iso)
    assert "isoFLOP design: 3 compute budgets C = 5e+09–4.5e+10 FLOPs × 3 model sizes each" in text
    assert "9 model sizes" not in text


def test_the_report_does_not_warn_about_the_units_of_its_own_store():
    """A units warning is for a user's table; the report's runs are the store's own (N 768 here)."""
    import warnings

    from fitting.data import load_fit_data
    from orchestrator import report_data as rd

    rows = [run_row(N=n, D=d, regime="tokens") for n in (768.0, 2e3, 5e3, 1.2e4) for d in (1e6,)]
    for i, r in enumerate(rows):
        r.update(trial_id=f"t{i}", best_val_loss=2.0 + 50 / r["non_embedding_params"] ** 0.3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_fit_data({"N": [r["non_embedding_params"] for r in rows], "D": [1e6] * 4,
                       "loss": [r["best_val_loss"] for r in rows]}, law="kaplan_n")
    assert any("multiply it out" in str(w.message) for w in caught)  # a user's table of the same numbers is warned
    fit = rd.main_fit(rows, "kaplan_n", 0)
    assert fit.fit is not None and not any("multiply it out" in w for w in fit.warnings), fit.warnings


def test_figures_without_their_data_are_one_line_saying_why():
    """The overfitting penalty needs runs that repeat their data; the frontier figure's isoFLOP
    panel needs an isoFLOP approach that answered (a plain grid's is not supported)."""
    import io

    from fitting.frontier import unsupported
    from fitting.frontier_plot import plot_frontiers, profiles_panel

    a_fit = types.SimpleNamespace(law=types.SimpleNamespace(inputs=("N", "D")))
    said = figs.overfitting_penalty([run_row(regime="tokens"), run_row(N=2e6, regime="tokens")], a_fit)
    assert isinstance(said, str) and said.startswith("no overfitting penalty: no run repeats its data")
    iso = unsupported("isoflop", "no budget has 3 runs", 1e13, 0.9)
    iso.profiles.append({"compute": 1e10, "N": [1e4, 2e4], "loss": [3.0, 2.9], "used": False})
    assert profiles_panel([iso]) == ("no isoFLOP profiles panel: the isoFLOP approach is not supported here "
                                     "(no budget has 3 runs)")
    buffer = io.BytesIO()
    plot_frontiers([iso], buffer)
    import matplotlib.image

    buffer.seek(0)
    width = matplotlib.image.imread(buffer, format="png").shape[1]
    assert width < 6.8 * 110 + 1  # one panel (N_opt vs C), no panel of stray dots
