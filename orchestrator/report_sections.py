"""The sweep report's sections, in the order of Kaplan et al. 2020's figures: which data each reads
(``report_data``), which figure draws it (``report_figures``) and the words around it
(``report_html``). A section whose data the store does not hold says so in one line.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np

from fitting.checks import MAX_EXPONENT_WIDTH, MAX_SCALE_DECADES, unidentified_note
from orchestrator import report_data as rd
from orchestrator import report_figures as figs
from orchestrator.report_html import (
    Section, budget_table, param_rows, choices_table, esc, figure_html, laws_table, message_html, plan_table,
    png_html, problem_runs_table, runs_table, table_html,
)
from orchestrator.report_html import headline as headline_block


def _fit_note(lf: rd.LawFit) -> str:
    """The lines under a figure: what the law was fitted to and what the fit warned, or why there is
    no fit; a fit whose line is not drawn (not identified, a parameter at a bound) says so."""
    if lf.fit is None:
        return message_html(f"{lf.title}: {lf.message}")
    text = f"Fitted {lf.title} to {lf.note}."
    if lf.drawable is None:
        text += " Its line is not drawn: the runs do not identify it (see the warnings and the fitted-laws table)."
    else:
        unknown = [name for name, _, row in param_rows(lf.fit) if row.startswith("not identified")]
        if unknown:
            text += (f" Not identified by these runs: {', '.join(unknown)} (see Fitted laws); the line fits the points "
                     f"but its extrapolation is a guess.")
    # the caption above names the unidentified parameters of a drawn line: its warning would repeat it
    said = unidentified_note(lf.fit.verdicts(), f"law {lf.fit.law.name!r}") if lf.drawable is not None else None
    return f'<p class="caption">{esc(text)}</p>' + "".join(f'<p class="caption warn">{esc(w)}</p>' for w in lf.warnings
                                                          if w != said)


def _curve_figure(lf: rd.LawFit, draw, caption: str) -> list[str]:
    """A figure of a law fitted on the curves: its message alone when the curves cannot give the
    rows (the figure would only repeat it), else the figure and the fit's lines."""
    if lf.rows is None:
        return [message_html(f"{lf.title}: {lf.message}")]
    return [figure_html(draw(lf.rows, lf.drawable), caption), _fit_note(lf)]


def _row(*parts: str) -> str:
    """Fragments side by side (two narrow figures of one Kaplan figure)."""
    return '<div class="row">' + "".join(f"<div>{p}</div>" for p in parts) + "</div>"


def sections(sweep: str, sweep_dir: str, runs: list[dict], fitted: list[dict], curves: list[dict],
             main: rd.LawFit, plans: list, report, n_bootstrap: int,
             headline: str = "main") -> tuple[list[Section], list[str]]:
    """(page sections, intro fragments) for one sweep. ``fitted`` are the runs the laws describe
    (`report_data.law_runs`), ``runs`` every run; ``report`` is the SweepReport (notes, skipped;
    its ``headline`` line is set here); ``n_bootstrap`` the resamples behind the frontier
    approaches' intervals (at least 20); ``headline`` which fit the page states first
    (spec_types.HEADLINES)."""
    table = rd.curve_table(curves, fitted)
    every_curve = rd.curve_table(curves, runs)
    fit_n, fit_d = rd.size_and_data_fits(fitted)
    from_curves = rd.curve_fits(sweep_dir, n_bootstrap)
    kc, ns, bc = from_curves["kaplan_c"], from_curves["kaplan_ns"], from_curves["critical_batch"]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.status_counts.items()))
    block, report.headline = headline_block({"main": main, "kaplan_n": fit_n, "kaplan_d": fit_d, "kaplan_c": kc,
                                             "kaplan_ns": ns}[headline],
                                            rd.usable_runs(runs))
    intro = [block, f"<p>{esc(report.n_runs)} runs ({esc(counts)}); {esc(report.n_usable)} usable for fits "
             f"(completed or early-stopped with a loss). Losses are validation losses in nats per token; "
             f"N counts non-embedding parameters, D tokens, C training FLOPs.</p>"]
    if report.notes:  # what the main fit and its plan warned (orchestrator.report.build_report): say which
        intro.append(f'<p class="warn">About the main fit ({esc(main.title)}, a law of N and D) and its compute-optimal plan '
                     f'(see Fitted laws):</p><ul class="notes">'
                     + "".join(f'<li class="warn">{esc(n)}</li>' for n in report.notes) + "</ul>")
    if report.skipped:
        intro.append(message_html(f"{len(report.skipped)} store file(s) could not be read and are left out: "
                                  + "; ".join(report.skipped_lines())))

    out = []
    s = Section("Loss vs compute")
    on_cmin = rd.with_min_compute(table, kc.critical_batch)
    s.parts += [figure_html(figs.loss_vs_compute(on_cmin, kc.rows, kc.drawable, "compute C_min (FLOPs at B ≪ B_crit)"
                                                 if kc.critical_batch else "compute C (FLOPs)"),
                            "Lines: each run's validation loss as it trained (colour: model size). Circles: the "
                            "compute-efficient frontier. Dashed: the fitted L(C_min) (Kaplan fig. 1 left)."),
                _fit_note(kc)]
    out.append(s)

    s = Section("Loss vs data and model size")
    s.parts.append(_row(
        figure_html(figs.loss_vs_variable(fit_d.rows, "D", fit_d.drawable, "dataset size D (tokens)",
                                          "Loss vs dataset size"),
                    "Points: the best run at each dataset size. Dashed: the fitted L(D) (Kaplan fig. 1 centre).")
        + _fit_note(fit_d),
        figure_html(figs.loss_vs_variable(fit_n.rows, "N", fit_n.drawable, "non-embedding parameters N",
                                          "Loss vs model size"),
                    "Points: the best run at each model size. Dashed: the fitted L(N) (Kaplan fig. 1 right).")
        + _fit_note(fit_n)))
    out.append(s)

    s = Section("L(N, D) and overfitting")
    s.parts += [figure_html(figs.loss_vs_size_per_data(fitted, main.drawable),
                            f"Loss vs N at each dataset size (colour), with the fitted {main.title} at that D "
                            f"(Kaplan fig. 9 left)."),
                _fit_note(main),
                figure_html(figs.overfitting_penalty(fitted, main.drawable),
                            "The overfitting penalty L(N, D)/L(N, ∞) − 1 against N^0.74/D, L(N, ∞) from the fit; the "
                            "paper finds one curve for all N (Kaplan fig. 9 right).")]
    if any(r.get("regime") == "dataset" for r in runs) and any(r.get("regime") != "dataset" for r in fitted):
        s.parts.append(figure_html(figs.overfitting_penalty_measured(runs),
                                   "The same penalty from the dataset-regime runs (repeated D, early stopping), each "
                                   "model size against its own largest D (Kaplan fig. 9 right's setting)."))
    out.append(s)

    s = Section("Learning curves")
    s.parts += [figure_html(figs.learning_curves(table), "Validation loss vs tokens processed (Kaplan fig. 2): larger "
                                                         "models reach a given loss with fewer tokens."),
                *_curve_figure(ns, figs.loss_vs_min_steps,
                               "Loss vs S_min per model size with the fitted L(N, S_min) (Kaplan fig. 4 right).")]
    out.append(s)

    s = Section("Model shape")
    s.parts.append(figure_html(figs.shape_dependence(runs), "Loss relative to the best shape at about the same N and D "
                                                            "(Kaplan fig. 5: shape matters little)."))
    out.append(s)

    s = Section("Critical batch size")
    s.parts += _curve_figure(bc, figs.critical_batch_vs_loss,
                             "Gradient noise scale (≈ B_crit) vs loss, the fitted B_crit(L) dashed, Kaplan et al.'s "
                             "dotted (Kaplan fig. 10).")
    s.parts += batch_tradeoff_parts(runs, every_curve, bc)
    out.append(s)

    s = Section("Per-position loss")
    s.parts.append(figure_html(figs.loss_per_position(every_curve), "Loss at each position in the context (Kaplan "
                                                                    "fig. 20; fig. 7 right: LSTM runs dashed)."))
    out.append(s)

    s = Section("Transformer vs LSTM")
    s.parts.append(figure_html(figs.loss_vs_size_per_family(runs), "Best loss vs N per model family (Kaplan fig. 7)."))
    out.append(s)

    out.append(frontier_section(fitted, table, main.fit, plans, n_bootstrap))
    out.append(ladder_section(sweep_dir))

    s = Section("Fitted laws")
    s.parts += [laws_table([main, fit_n, fit_d, kc, ns, bc]),
                f'<p class="caption">Intervals are 90 % (bootstrap of {n_bootstrap} resamples for the main law when it ran, '
                "as `fit --bootstrap` (default the same), else sandwich). "
                "Paper values: Kaplan et al. 2020 (Table 1, §1.2; C_c converted from PF-days to FLOPs); for "
                "chinchilla Hoffmann et al. 2022 with Epoch AI's refit in parentheses. Exponents compare with the paper's; scale constants (N_c, D_c, C_c, S_c, B*, A, B, E) depend on the "
                "tokenizer and data, so a byte-level sweep's differ by construction. A parameter the runs do not "
                f"identify has no interval (the same verdict fit, plan, frontier and predict print): the N/D split not identified, a parameter at a bound, or an interval open to a "
                f"bound, over {MAX_SCALE_DECADES:g} decades (scales) or wider than {MAX_EXPONENT_WIDTH:g}× the value "
                f"(exponents).</p>"]
    out.append(s)

    s = Section("Compute-optimal plan")
    s.parts.append(plan_table(plans) if plans else message_html(
        "no plan: needs a fitted law of N and D" + (f" ({main.message})" if main.message else "")))
    unknown = [name for name, _, text in param_rows(main.fit) if text.startswith("not identified")] if plans else []
    if unknown:
        s.parts.append(f'<p class="caption warn">{esc(", ".join(unknown))} of {esc(main.title)} are not identified '
                       f"by these runs (see Fitted laws): the plan extrapolates through them, so read it as a guess "
                       f"whose intervals understate the uncertainty.</p>")
    out.append(s)

    s = Section("Compute and runs")
    s.parts += ["<h3>Compute spent vs budget</h3>", budget_table(rd.read_ledger(sweep_dir), runs),
                "<h3>Runs that did not complete</h3>", problem_runs_table(runs),
                "<h3>Active search: order of choices</h3>", choices_table(rd.read_choices(sweep_dir)),
                f"<details><summary>All {len(runs)} runs</summary>{runs_table(runs)}</details>"]
    out.append(s)
    return out, intro


def batch_tradeoff_parts(runs: list[dict], curves: dict, noise_fit: rd.LawFit) -> list[str]:
    """Kaplan fig. 11 from runs that differ only in batch size (orchestrator.report_batch), with
    a table of each target loss's B_crit beside the noise-scale fit's B_crit(L) at that loss."""
    from orchestrator.report_batch import steps_vs_tokens

    fig, rows = steps_vs_tokens(runs, curves)
    parts = [figure_html(fig, "Optimizer steps vs training tokens needed to reach each loss, one point per batch "
                              "size; dashed: S/S_min − 1 = (E/E_min − 1)^−1 fitted to them (Kaplan fig. 11, "
                              "McCandlish et al. 2018). B_crit = E_min/S_min needs no noise-scale estimate.")]
    if rows:
        fit = noise_fit.drawable
        body = []
        for loss, s_min, e_min, b in rows:
            from_noise = float(fit.predict({"L": np.array([loss])})[0]) if fit is not None else None
            body.append((f"{loss:.3f}", f"{s_min:.3g}", f"{e_min:.3g}", f"{b:.3g}",
                         f"{from_noise:.3g}" if from_noise is not None else "—"))
        parts.append(table_html(("target loss", "S_min (steps)", "E_min (tokens)", "B_crit from batch sizes",
                                 "B_crit(L) from noise scale"), body))
    return parts


def frontier_section(runs: list[dict], curves: dict, fit, plans: list, n_bootstrap: int) -> Section:
    """The compute-optimal frontier from the three approaches (fitting.frontier: envelope over the
    curves, isoFLOP profiles over the runs, the parametric fit) at the largest planned budget, with
    ``scalesweep frontier --plot``'s figure; a message while that module is not in this build."""
    s = Section("Frontier: three approaches")
    try:
        from fitting.frontier import (
            compare_frontiers, envelope_frontier, frontier_resamples, isoflop_frontier, parametric_frontier,
            unsupported,
        )
        from fitting.frontier_plot import plot_frontiers, profiles_panel
    except ImportError:
        s.parts.append(message_html("fitting.frontier (envelope, isoFLOP and parametric frontiers) is not in this "
                                    "build: no frontier comparison"))
        return s
    usable = rd.usable_runs(runs)
    if not usable or not plans:
        s.parts.append(message_html("needs usable runs and a fitted law of N and D"))
        return s
    compute = plans[-1][0]
    N, L, C = (np.array([r[k] for r in usable], float) for k in ("non_embedding_params", "best_val_loss", "flops"))
    budget = np.array([math.nan if r.get("isoflop_budget") is None else r["isoflop_budget"] for r in usable], float)
    n_frontier = frontier_resamples(n_bootstrap)  # as `scalesweep frontier --bootstrap n_bootstrap`
    calls = (("envelope", lambda: envelope_frontier(curves, compute, n_bootstrap=n_frontier)),
             ("isoflop", lambda: isoflop_frontier(N, L, C, compute, budget=budget if np.isfinite(budget).any() else None,
                                                    n_bootstrap=n_frontier)),
             ("parametric", lambda: parametric_frontier(fit, compute)))
    results = []
    for name, call in calls:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                results.append(call())
            except (ValueError, FloatingPointError, KeyError, TypeError) as err:  # one line, never a traceback
                results.append(unsupported(name, f"{type(err).__name__}: {err}", compute, 0.9))
    iv = lambda v, ci: (f"{v:.4g} [{ci[0]:.4g}, {ci[1]:.4g}]" if all(map(math.isfinite, ci)) else
                        f"{v:.4g} (no interval)")
    pred = lambda r: iv(r.loss, r.loss_prediction_ci) if math.isfinite(r.loss_prediction_ci[0]) else "—"
    rows = [[r.approach, iv(r.a, r.a_ci), iv(r.n_opt, r.n_opt_ci), iv(r.d_opt, r.d_opt_ci), iv(r.loss, r.loss_ci),
             pred(r), "; ".join(r.notes) or "—"] if r.supported else
            [r.approach, "—", "—", "—", "—", "—", f"not supported: {r.reason}"] for r in results]
    s.parts.append(table_html(["approach", "a in N_opt ∝ C^a", f"N_opt at C = {compute:.3g} FLOPs", "D_opt (tokens)",
                               "loss, parameters only", "loss, prediction interval", "notes"], rows))
    kinds = "; ".join(f"{r.approach}: {r.loss_kind}" for r in results if r.supported)
    s.parts.append(f'<p class="caption">{esc(compare_frontiers(results))} (90 % intervals; C = k·N·D with k = 6 '
                   f"FLOPs per parameter per token. Loss in nats/token: 'parameters only' is each approach's "
                   f"confidence interval ({esc(kinds)}), what the verdict compares; 'prediction interval' adds run "
                   f"scatter and the law misfit, the interval the plan table and `scalesweep plan` print.)</p>")
    if any(r.supported for r in results):
        buffer = io.BytesIO()
        plot_frontiers(results, buffer)
        why_not = profiles_panel(results)
        s.parts.append(png_html(buffer.getvalue(), "N_opt vs C from each approach that answered." if why_not else
                                "Left: isoFLOP profiles (loss vs N per budget, parabolas, vertices). Right: N_opt vs C "
                                "from each approach that answered."))
        if why_not:
            s.parts.append(message_html(why_not))
    return s


def ladder_section(sweep_dir: str) -> Section:
    """The ladder's predicted vs observed loss (`metrics.load_ladder`): a figure and the rows; a
    message when the store has none."""
    from metrics import load_ladder

    s = Section("Ladder: predicted vs observed")
    with warnings.catch_warnings(record=True) as caught:  # an unreadable part: named on the page
        warnings.simplefilter("always")
        rows = load_ladder(sweep_dir).to_pylist()
    for w in caught:
        s.parts.append(message_html(str(w.message)))
    if not rows:
        s.parts.append(message_html("no ladder/ table in this store (`scalesweep ladder` writes it)"))
        return s
    s.parts.append(figure_html(figs.ladder_prediction(rows), "Each ladder run: the loss the sweep's law predicted "
                                                            "at its compute-optimal (N, D), and the loss it reached."))
    def row(r: dict) -> list[str]:
        num = lambda v, f: "—" if v is None else format(v, f)
        level = r.get("predicted_level") or 0.9
        interval = f"{num(r.get('predicted_lo'), '.3f')} – {num(r.get('predicted_hi'), '.3f')} ({level:.0%})"
        covered = {True: "yes", False: "NO"}.get(r.get("covered"), "not trained yet")
        return [str(r["trial_id"]), num(r.get("multiplier"), "g"), num(r.get("compute"), ".3g"),
                num(r.get("n_actual"), ".3g"), num(r.get("d_actual"), ".3g"), num(r.get("predicted_loss"), ".3f"),
                interval, num(r.get("observed_loss"), ".3f"), covered]

    s.parts.append(table_html(["run", "K", "compute (FLOPs)", "N", "D (tokens)", "predicted loss",
                               "prediction interval", "observed loss", "covered"],
                              [row(r) for r in rows], numeric={1, 2, 3, 4, 5, 7}))
    return s
