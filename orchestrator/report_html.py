"""The sweep report's page: one self-contained HTML file (figures as base64 PNGs, CSS inline, no
URL of any kind), and the tables it shows. Pure functions of what ``orchestrator.report_data``
read; every string from the store is escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass, field

import numpy as np

def paper_values(law_name: str) -> tuple[str, dict[str, float]] | None:
    """(source, {parameter: value}) the paper printed for ``law_name`` (Kaplan et al. 2020 Table 1
    / §1.2 via fitting.laws.KAPLAN_PAPER; for chinchilla Hoffmann et al. 2022 with Epoch AI's
    refit as a pair); None for a law no paper fitted."""
    from fitting.laws import CHINCHILLA_EPOCH, CHINCHILLA_HOFFMANN, KAPLAN_PAPER

    base = law_name.split("+")[0]
    if base == "chinchilla":
        return "Hoffmann et al. 2022 (Epoch AI refit)", {k: (CHINCHILLA_HOFFMANN[k], CHINCHILLA_EPOCH[k])
                                                          for k in CHINCHILLA_HOFFMANN}
    if base in KAPLAN_PAPER:
        return "Kaplan et al. 2020", KAPLAN_PAPER[base]
    return None


STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1180px;margin:24px auto;padding:0 16px;
color:#1d1d1f;line-height:1.45}
h1{font-size:1.6em;margin-bottom:4px}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:3px}
h3{font-size:1.05em;margin:1.2em 0 .3em}
p.msg{color:#6b6b6b;font-style:italic;margin:.3em 0 .8em}
p.caption{color:#444;font-size:.92em;margin:.2em 0 1.2em}
img{max-width:100%;height:auto;display:block}
table{border-collapse:collapse;font-size:.88em;margin:.4em 0 1em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f6}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.warn{color:#9a3412}ul.notes li{margin:.15em 0}nav a{margin-right:.8em}
details summary{cursor:pointer;color:#333}
.row{display:flex;gap:20px;align-items:flex-start}.row>div{flex:1;min-width:0}
div.headline{background:#f4f7fb;border:1px solid #c9d6e8;border-radius:6px;padding:6px 14px;margin:10px 0 14px}
div.headline p{margin:.45em 0}
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def num(value, digits: int = 4) -> str:
    """A number for a table cell; '—' for None/NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    return f"{float(value):.{digits}g}"


def figure_png(fig) -> bytes:
    """A matplotlib Figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def figure_html(result, caption: str = "") -> str:
    """A figure function's result: the embedded PNG, or its message as one line (never a fake figure)."""
    if isinstance(result, str):
        return f'<p class="msg">{esc(result)}</p>'
    return png_html(figure_png(result), caption)


def png_html(png: bytes, caption: str = "") -> str:
    """PNG bytes embedded as a data: URI, with its caption."""
    data = base64.b64encode(png).decode()
    cap = f'<p class="caption">{esc(caption)}</p>' if caption else ""
    return f'<img alt="{esc(caption or "figure")}" src="data:image/png;base64,{data}">{cap}'


def message_html(text: str) -> str:
    return f'<p class="msg">{esc(text)}</p>'


def table_html(header: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    """An HTML table; cells are escaped (pass already-formatted strings), columns in ``numeric``
    right-aligned."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{esc(c)}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class Section:
    """One section of the page: a title and its parts (HTML fragments, in order)."""

    title: str
    parts: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


def render_page(title: str, intro: list[str], sections: list[Section]) -> str:
    """The whole page. Raises ValueError if any external URL slipped in (the file must open offline)."""
    nav = " ".join(f'<a href="#{s.anchor}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<h2 id="{s.anchor}">{esc(s.title)}</h2>' + "".join(s.parts) for s in sections)
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>{''.join(intro)}<nav>{nav}</nav>{body}"
            f"</body></html>")
    external = external_urls(page)
    if external:
        raise ValueError(f"report page would load {external[0]!r}: the report must open offline")
    return page


def external_urls(page: str) -> list[str]:
    """Every src/href/url() in ``page`` that is not a data: URI or an in-page #anchor."""
    found = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']|url\(\s*["']?([^)"']*)""", page, flags=re.I)
    return [a or b for a, b in found if not (a or b).startswith(("data:", "#"))]


# ====================================================================== tables
def param_rows(fit, level: float = 0.9) -> list[tuple[str, float, str]]:
    """(parameter, value, interval text) for each parameter of ``fit``: the interval where the runs
    identify it, else why not in words with the interval as evidence (``FitResult.verdicts``, the
    verdict fit, plan, frontier and predict print: fitting.checks.parameter_verdicts)."""
    return [(name, v.value, v.text()) for name, v in fit.verdicts(level).items()]


def run_groups(runs: list[dict]) -> dict[str, list[dict]]:
    """The runs by the grid they served (runs column ``sub_sweep``): ``main``, ``ladder`` (the
    scaling ladder's runs, by grid or trial key) and each sub-sweep's name, in that order."""
    from metrics.schema import LADDER_GRID, LADDER_PREFIX, MAIN_GRID, SUB_SWEEP_COLUMN

    groups: dict[str, list[dict]] = {MAIN_GRID: [], LADDER_GRID: []}
    for r in runs:
        grid = r.get(SUB_SWEEP_COLUMN) or MAIN_GRID
        if str(r.get("trial_id", "")).startswith(LADDER_PREFIX):
            grid = LADDER_GRID
        groups.setdefault(grid, []).append(r)
    return {k: v for k, v in groups.items() if v}


def design_text(runs: list[dict]) -> str:
    """The design of ``runs`` of one grid as it was planned: an isoFLOP design (runs with an
    ``isoflop_budget``) as k budgets x the model sizes per budget, else the grid of distinct N x
    planned D (``dataset_tokens``), saying how many of its cells ran."""
    N = [float(r["non_embedding_params"]) for r in runs]
    D = [float(r["dataset_tokens"]) for r in runs]
    span = lambda v: f"{min(v):.3g}" if len({*v}) == 1 else f"{min(v):.3g}–{max(v):.3g}"
    budgets: dict[float, int] = {}
    for r in runs:
        if r.get("isoflop_budget") is not None:
            budgets[float(r["isoflop_budget"])] = budgets.get(float(r["isoflop_budget"]), 0) + 1
    if budgets:
        sizes = sorted(set(budgets.values()))
        per = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]}"
        return (f"isoFLOP design: {len(budgets)} compute budget{'s' if len(budgets) != 1 else ''} C = "
                f"{span(list(budgets))} FLOPs × {per} model sizes each (N = {span(N)} non-embedding parameters, "
                f"D = {span(D)} tokens)")
    n, m = len({*N}), len({*D})
    cells = len({(a, b) for a, b in zip(N, D)})
    filled = "" if cells == n * m else f", {cells} of its {n * m} cells run"
    return (f"grid of {n} model size{'s' if n != 1 else ''} N = {span(N)} non-embedding parameters × {m} dataset "
            f"size{'s' if m != 1 else ''} D = {span(D)} tokens{filled}")


def measured_text(runs: list[dict]) -> str:
    """One sentence on what the usable runs are: family, the main grid's design as planned
    (`design_text`: grid n x m or isoFLOP k budgets x s sizes), the ladder runs and sub-sweeps
    named apart, regime, vocabulary."""
    if not runs:
        return "no usable runs"
    from metrics.schema import LADDER_GRID, MAIN_GRID

    groups = run_groups(runs)
    kinds = lambda key: ", ".join(sorted({str(r.get(key)) for r in runs if r.get(key) is not None})) or "—"
    vocab = {r.get("vocab_size") for r in runs}
    unit = " (bytes)" if vocab == {256} else ""
    parts = [design_text(groups[MAIN_GRID])] if MAIN_GRID in groups else []
    for grid, rows in groups.items():
        if grid == LADDER_GRID:
            parts.append(f"plus {len(rows)} scaling-ladder run{'s' if len(rows) != 1 else ''} ("
                         + ", ".join(f"{r['trial_id']}: N = {float(r['non_embedding_params']):.3g}, D = "
                                     f"{float(r['dataset_tokens']):.3g}" for r in rows) + "; the laws' test, not their data)")
        elif grid != MAIN_GRID:
            parts.append(f"plus sub-sweep {grid}: {design_text(rows)}")
    return (f"{len(runs)} usable runs of {kinds('family') if any(r.get('family') for r in runs) else 'transformer'} "
            f"language models ({kinds('regime')} regime): {'; '.join(parts)}; vocabulary "
            f"{kinds('vocab_size')}{unit}; loss is the best validation loss in nats per token.")


def headline(lf, runs: list[dict], level: float = 0.9) -> tuple[str, str]:
    """(HTML block, one plain line) stating the headline law's exponents: each with its ``level``
    interval where the runs identify it (``FitResult.verdicts``), else why not, next to the
    paper's value; then what the law was fitted to and how well. ``lf`` is a report_data.LawFit;
    ``runs`` the usable runs."""
    from fitting.law import IDENTITY

    pct = round(level * 100)
    if lf.fit is None:
        line, detail = f"{lf.title}: no fit ({lf.message})", ""
    else:
        fit = lf.fit
        paper = paper_values(fit.law.name)
        verdicts = fit.verdicts(level)
        said = []
        for name, transform in zip(fit.law.param_names, fit.law.transforms):
            if transform != IDENTITY:  # exponents only: scale constants depend on the tokenizer
                continue
            v = verdicts[name]
            ref = paper[1].get(name) if paper else None
            ref = "" if ref is None else f"; {paper[0]}: " + (f"{ref[0]:#.3g} ({ref[1]:#.3g})" if isinstance(ref, tuple)
                                                               else f"{ref:#.3g}")
            said.append(f"{name} = {v.value:#.3g} ({pct} % interval [{v.lo:#.3g}, {v.hi:#.3g}]{ref})" if v.identified
                        else f"{name} = {v.value:#.3g} ({v.text('#.3g')}{ref})")
        line = f"{lf.title} with " + ", ".join(said)
        detail = f"Fitted to {lf.note}; rms misfit {fit.gof()['rmse_log']:.1%} in log loss."
        if not all(verdicts[n].identified for n, t in zip(fit.law.param_names, fit.law.transforms) if t == IDENTITY):
            detail += " An exponent these runs do not identify is a guess, not a measurement."
    block = (f'<div class="headline"><p><b>What was measured:</b> {esc(measured_text(runs))}</p>'
             f"<p><b>Headline:</b> {esc(line)}.</p>"
             + (f'<p class="caption">{esc(detail)}</p>' if detail else "") + "</div>")
    return block, f"headline: {line}"


def laws_table(fits) -> str:
    """Every fitted law: parameter, value, 90 % CI (or why none), the paper's value."""
    rows = []
    for lf in fits:
        if lf.fit is None:
            rows.append([lf.title, "—", "—", lf.message or "no fit", "—", lf.note])
            continue
        paper = paper_values(lf.fit.law.name)
        for i, (name, value, text) in enumerate(param_rows(lf.fit)):
            ref = "—"
            if paper is not None and name in paper[1]:
                v = paper[1][name]
                ref = f"{v[0]:.4g} ({v[1]:.4g})" if isinstance(v, tuple) else f"{v:.4g}"
            rows.append([lf.title if i == 0 else "", name, num(value), text, ref,
                         f"{lf.fit.n_points} points; {lf.note}" if i == 0 else ""])
    return table_html(["law", "parameter", "fitted", "90 % interval", "paper", "fitted to"], rows, {2})


def plan_table(plans) -> str:
    """The compute-optimal plan at each budget (fitting.allocate.Allocation), intervals beside."""
    from fitting.uncertainty import interval_text

    rows, kinds, sources = [], set(), set()
    for compute, p in plans:
        if isinstance(p, str):
            rows.append([f"{compute:.3g}", p, "", "", "", ""])
        elif not p.identified:
            rows.append([f"{compute:.3g}", f"not identified: {p.unidentified_reason}", "", "", "", ""])
        else:
            iv = lambda k: f" {interval_text(*p.intervals[k], '.3g')}" if k in p.intervals else ""
            lo, hi = p.loss_interval or (math.nan, math.nan)  # the one `plan` prints (Allocation.loss_interval)
            kinds.add(p.loss_interval_kind)
            sources.add(p.sources())  # where each interval comes from, as plan's heading says it
            rows.append([f"{compute:.3g}", f"{p.N_opt:.3g}{iv('N_opt')}", f"{p.D_opt:.3g}{iv('D_opt')}",
                         f"{p.tokens_per_param:.3g}", f"{p.loss:.4g} {interval_text(lo, hi)}", f"{p.exponent_a:.3g}{iv('exponent_a')}"])
    kind = " or ".join(sorted(k for k in kinds if k)) or "prediction interval"
    return table_html(["compute C (FLOPs)", "N_opt (params)", "D_opt (tokens)", "tokens / param",
                       f"loss (90 % {kind})", "a in N_opt ∝ C^a"], rows, {0, 3, 5}) + "".join(
        f'<p class="caption">{esc(s)}</p>' for s in sorted(sources))


def budget_table(ledger: dict | None, runs: list[dict]) -> str:
    """Compute the runs spent (sum of their FLOPs) against the sweep's ledger (ledger.json)."""
    spent = sum(float(r["flops"] or 0) for r in runs)
    rows = [["spent by the stored runs (sum of runs.flops)", f"{spent:.3g}"]]
    if ledger is None:
        return table_html(["", "FLOPs"], rows, {1}) + message_html("no ledger.json in the store: the budget is unknown")
    limit = float(ledger.get("limit_flops") or math.nan)
    rows += [["spent (ledger)", f"{float(ledger.get('spent', math.nan)):.3g}"],
             ["committed (ledger)", f"{float(ledger.get('committed', math.nan)):.3g}"],
             ["budget limit", f"{limit:.3g}"],
             ["fraction of the budget spent", f"{float(ledger.get('spent', math.nan)) / limit:.1%}"]]
    return table_html(["", "FLOPs"], rows, {1})


def problem_runs_table(runs: list[dict]) -> str:
    """Every run that did not complete: status, why (stop_reason, error), how far it got."""
    bad = [r for r in runs if r["status"] != "completed"]
    if not bad:
        return message_html(f"all {len(runs)} runs completed")
    rows = []
    for r in sorted(bad, key=lambda r: (r["status"], r["trial_id"])):
        err = (r.get("error") or "").strip().splitlines()
        planned = r.get("planned_steps")
        rows.append([r["trial_id"], r["status"], r.get("stop_reason") or "—", num(r["non_embedding_params"]),
                     num(r["dataset_tokens"]), f"{num(r['steps'])}" + (f" / {num(planned)}" if planned else ""),
                     (err[-1][:200] if err else "—")])
    return table_html(["trial", "status", "stop reason", "N", "D (tokens)", "steps / planned", "error (last line)"],
                      rows, {3, 4, 5})


def choices_table(choices: list[dict] | None) -> str:
    from orchestrator.active_search import choice_why
    if choices is None:
        return message_html("no active-search checkpoint in the store (a grid sweep, or no Tune folder)")
    if not choices:
        return message_html("the active designer chose no run")
    rows = [[i, c["trial_key"], f"{c['N']:.3g}", f"{c['D']:.3g}", f"{c['planned_flops']:.3g}",
             "—" if c.get("score") is None else f"{c['score']:.3g}",
             choice_why(c) if c.get("score") is None else c.get("why", "gain/cost")]
            for i, c in enumerate(choices, 1)]
    return table_html(["#", "trial", "N", "D (tokens)", "planned FLOPs", "score", "why"], rows, {0, 2, 3, 4, 5})


def runs_table(runs: list[dict]) -> str:
    rows = [[r["trial_id"], r["status"], num(r["non_embedding_params"]), num(r["dataset_tokens"]),
             num(r["tokens_seen"]), f"{float(r['flops'] or 0):.3g}", num(r.get("best_val_loss"))]
            for r in sorted(runs, key=lambda r: (r["non_embedding_params"], r["dataset_tokens"], r["trial_id"]))]
    return table_html(["trial", "status", "N", "D (tokens)", "tokens seen", "FLOPs", "best val loss (nats/token)"],
                      rows, {2, 3, 4, 5, 6})
