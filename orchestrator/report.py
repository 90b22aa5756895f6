"""Sweep report: metrics store → fitted laws with uncertainty → compute-optimal plan → one HTML page.

`scalesweep report STORAGE --sweep NAME` writes `report.html` (figures embedded as PNGs, no URL
in it: it opens offline) into `<storage>/<sweep>/report` (`--out`: elsewhere) and prints its path;
store and output may be local paths or any pyarrow.fs URI (s3://...). `scalesweep demo` runs the
built-in demo sweep and then this report. The sections follow Kaplan et al. 2020's figures:
`report_data` reads and fits, `report_figures` draws (one function per figure), `report_html`
lays out the page and its tables.
"""

from __future__ import annotations

import argparse
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from scalesweep.argtypes import positive


@dataclass
class SweepReport:
    sweep: str
    n_runs: int
    n_usable: int
    status_counts: dict[str, int]
    fit_text: str | None = None
    allocation_text: str | None = None
    fit: object | None = None
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # local paths or URIs
    skipped: list = field(default_factory=list)  # metrics.SkippedPart: files left unread
    sections: list[str] = field(default_factory=list)  # the page's section titles
    headline: str | None = None  # the headline law's exponents, one line (report_html.headline)
    headline_source: str | None = None  # which setting chose the headline (`report_settings`)

    def skipped_lines(self) -> list[str]:
        return [f"{p.path}: {p.reason}" for p in self.skipped]

    def summary(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.status_counts.items()))
        lines = [f"sweep {self.sweep}: {self.n_runs} runs ({counts})"]
        if self.headline:
            lines.append(self.headline)
        if self.headline_source:
            lines.append(self.headline_source)
        if self.fit_text:
            lines += ["", self.fit_text]
        if self.allocation_text:
            lines += ["", self.allocation_text]
        lines += [f"note: {n}" for n in self.notes]
        if self.skipped:
            lines += [f"skipped {len(self.skipped)} unreadable store file(s):"]
            lines += [f"  {line}" for line in self.skipped_lines()]
        lines += [f"wrote {p}" for p in self.files]
        return "\n".join(lines)


def build_report(storage: str, sweep: str, out_dir: str | os.PathLike, *, law_name: str = "chinchilla",
                 target_compute: float | None = None, n_bootstrap: int | None = None, aggregate=None,
                 headline: str = "main") -> SweepReport:
    """Read the sweep, fit, plan, draw, write ``report.html``. ``headline``: the fit whose exponents
    the page (and ``summary()``) states first: main (``law_name``), kaplan_n, kaplan_d, kaplan_c or kaplan_ns
    (orchestrator.spec_types.HEADLINES; ValueError naming --headline otherwise). ``aggregate`` (a
    `fitting.aggregate.Aggregation`): how several runs per (N, D) become one cell; None: whatever
    hyperparameter column the runs sweep within a cell (best over lr and batch_tokens, mean over
    seed). Raises FileNotFoundError (creating nothing) when ``storage`` or the sweep in it does not
    exist; writes into ``out_dir`` (a local path or a pyarrow.fs URI) only when there are runs to
    report. Store files that cannot be read are listed in ``report.skipped`` and on the page.
    ``n_bootstrap``: resamples behind the intervals; None: the CLI's default
    (`fitting.cli.DEFAULT_BOOTSTRAP`), so the page and `fit`/`plan`/`frontier` agree."""
    from fitting.laws import get_law
    from fitting.cli import DEFAULT_BOOTSTRAP
    from metrics import UnreadablePartWarning, join, load_curves, load_runs, require_sweep, resolve, write_atomically
    from orchestrator import report_data as rd

    from orchestrator.spec_types import HEADLINES

    if headline not in HEADLINES:
        raise ValueError(f"--headline: one of {', '.join(HEADLINES)}, got {headline!r}")
    n_bootstrap = DEFAULT_BOOTSTRAP if n_bootstrap is None else n_bootstrap
    law = get_law(law_name)
    if not set(law.inputs) <= {"N", "D"}:
        # The report fits the runs table (N, D, loss) and plans from it; a law of steps, compute or
        # loss (kaplan_ns, kaplan_c, critical_batch) is fitted from the curves by `fit`.
        raise ValueError(f"--law {law_name}: the report fits a law of N and D to the runs table; fit "
                         f"{law.name} (inputs {', '.join(law.inputs)}) from the sweep's curves with "
                         f"`scalesweep fit {join(storage, sweep)} --law {law_name}`")
    require_sweep(storage, sweep)
    skipped: list = []
    with warnings.catch_warnings():  # listed in the report instead of warned one by one
        warnings.simplefilter("ignore", UnreadablePartWarning)
        runs = load_runs(storage, sweep, skipped=skipped).to_pylist()
        curves = load_curves(storage, sweep, skipped=skipped).to_pylist()
    usable = rd.usable_runs(runs)
    counts: dict[str, int] = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    report = SweepReport(sweep=sweep, n_runs=len(runs), n_usable=len(usable), status_counts=counts,
                         skipped=skipped)
    if not runs:
        report.notes.append(f"no runs found under {storage}/{sweep}")
        return report

    fitted = rd.law_runs(runs)
    if len(fitted) < len(runs):
        from orchestrator.report_html import run_groups

        kept = {id(r) for r in fitted}
        others = run_groups([r for r in runs if id(r) not in kept])  # by what they served, named
        said = "; ".join(f"{len(rows)} {'scaling-ladder' if grid == 'ladder' else 'main-grid' if grid == 'main' else f'sub-sweep {grid}'} "
                         f"run{'s' if len(rows) != 1 else ''}" + (" of other families" if grid == "main" else "")
                         for grid, rows in others.items())
        report.notes.append(f"laws are fitted to the {len(fitted)} runs of the main grid's {fitted[0]['family'] if fitted else ''} "
                            f"family; the other {len(runs) - len(fitted)} ({said}) are not their data"
                            + (": the ladder's runs test them (ladder section)" if "ladder" in others else "")
                            + (("; the others" if "ladder" in others else ": they") + " feed only the shape, family and "
                               "batch-size figures" if set(others) - {"ladder"} else ""))
    main = rd.main_fit(rd.usable_runs(fitted), law_name, n_bootstrap, aggregate)
    report.notes += main.warnings
    plans = []
    if main.fit is not None:
        report.fit = main.fit
        report.fit_text = main.fit.summary()
        largest = max(float(r["flops"]) for r in rd.usable_runs(fitted))
        if "D" in main.fit.law.inputs:
            plans = rd.plans(main.fit, largest, (10, 100))
            if target_compute:
                plans.append((target_compute, rd.plans(main.fit, target_compute, (1,))[0][1]))
            report.allocation_text = _allocation_text(main.fit, target_compute or 100 * largest, report)
    from orchestrator.report_sections import sections

    sweep_dir = join(storage, sweep)
    page_sections, intro = sections(sweep, sweep_dir, runs, fitted, curves, main, plans, report, n_bootstrap,
                                    headline)
    from orchestrator.report_html import render_page

    page = render_page(f"Sweep {sweep}: scaling report", intro, page_sections)
    report.sections = [s.title for s in page_sections]
    out_fs, out_root = resolve(os.fspath(out_dir))
    write_atomically(f"{out_root}/report.html", lambda stream: stream.write(page.encode()), out_fs)
    report.files.append(join(out_dir, "report.html"))
    return report


def _allocation_text(fit, compute: float, report: SweepReport) -> str | None:
    from fitting.allocate import compute_optimal_allocation
    from fitting.uncertainty import interval_text

    if "D" not in fit.law.inputs:
        return None
    try:
        p = compute_optimal_allocation(fit, compute)
    except (ValueError, FloatingPointError) as err:
        report.notes.append(f"no compute-optimal plan: {err}")
        return None
    if not p.identified:  # printed as unknown, never as a number with an interval
        return (f"compute-optimal at C = {compute:.2e} FLOPs ({p.law}): NOT IDENTIFIED: {p.unidentified_reason}; "
                f"add runs that vary N and D/N independently")
    report.notes += p.notes
    lo, hi = p.loss_interval or (math.nan, math.nan)  # the one `plan` prints (Allocation.loss_interval)

    def interval(key: str) -> str:  # the same intervals `plan` prints, so no number stands alone
        bounds = p.intervals.get(key)
        return f" {interval_text(*bounds, '.3g')}" if bounds else " (no interval)"

    return (f"compute-optimal at C = {compute:.2e} FLOPs ({p.law}): N_opt = {p.N_opt:.3g}{interval('N_opt')}, "
            f"D_opt = {p.D_opt:.3g}{interval('D_opt')} ({p.tokens_per_param:.1f} tokens/param), loss = {p.loss:.4f} "
            f"{interval_text(lo, hi, '.4f')} ({p.level:.0%} {p.loss_interval_kind}; {p.sources(heading=False)}); N_opt ∝ C^{p.exponent_a:.3f}")


def register(subparsers) -> None:
    rep = subparsers.add_parser("report", help="write a sweep's HTML report: fitted laws, figures, plan, runs (prints its path)")
    rep.add_argument("storage", help="metrics store root (a local path or a pyarrow.fs URI, e.g. s3://bucket/prefix)")
    rep.add_argument("--sweep", help="sweep name (the spec's name; runs are in <storage>/<sweep>/); optional when "
                                     "the store holds one sweep")
    rep.add_argument("--law", default="chinchilla", help="law to fit: built-in name, file.py:LAW or pkg.module:LAW (default chinchilla)")
    rep.add_argument("--out", help="output directory, local or a URI (default: <storage>/<sweep>/report)")
    rep.add_argument("--compute", type=positive, help="target compute for the plan (default 100x the largest run)")
    rep.add_argument("--headline", default=None, metavar="FIT",
                     help="the fit whose exponents the page states first: main (--law), kaplan_n (L(N)), kaplan_d "
                          "(L(D)), kaplan_c (L(C_min)) or kaplan_ns (L(N, S_min)) (default: the sweep spec's "
                          "fit.headline, which `run` records in <storage>/<sweep>/fit.json; main without one)")
    rep.add_argument("--best-over", action="append", default=[], metavar="COL",
                     help="fit each (N, D) cell's best setting of COL (repeatable; default: the spec's fit.aggregate "
                          "as `run` recorded it, else lr and batch_tokens where the runs sweep them within a cell)")
    rep.add_argument("--mean-over", action="append", default=[], metavar="COL",
                     help="average each setting over COL first (repeatable; default: seed where swept)")
    from fitting.cli import add_bootstrap_arg

    add_bootstrap_arg(rep)  # the same flag and default as fit, plan and frontier: same runs, same verdicts
    rep.set_defaults(func=run_report)

    demo = subparsers.add_parser("demo", help="run the built-in demo sweep end to end (sweep → metrics → fit → report)")
    demo.add_argument("--spec", default=str(Path(__file__).resolve().parents[1] / "examples" / "demo.yaml"),
                      help="sweep spec to run (default examples/demo.yaml)")
    demo.add_argument("--out", default="demo_out", help="directory (local or a URI) for the metrics store and the report")
    demo.set_defaults(func=run_demo)


def only_sweep(storage: str) -> str:
    """The one sweep under ``storage`` (``report`` without --sweep). FileNotFoundError (one line)
    when the store is missing or holds none, ValueError naming them when it holds several."""
    from metrics import check_reachable, list_sweeps, require_sweep

    check_reachable(storage)  # an object store that does not answer: one line, before listing it
    sweeps = list_sweeps(storage)
    if len(sweeps) == 1:
        return sweeps[0]
    if sweeps:
        raise ValueError(f"--sweep: {storage} holds {len(sweeps)} sweeps ({', '.join(sweeps)}); name one")
    require_sweep(storage)  # raises, naming a missing store or one that holds no sweep
    raise ValueError(f"--sweep: {storage} is one sweep's directory, not a store: give the directory above it "
                     f"and --sweep {os.path.basename(storage.rstrip('/'))}")


def run_report(args: argparse.Namespace) -> int:
    from metrics import join

    from fitting.cli import law_from_args, table_aggregation

    law_from_args(args)  # an unknown --law: one line naming it, before reading the store
    flags = table_aggregation(args)
    _check_aggregation_columns(flags)
    sweep = args.sweep or only_sweep(args.storage)
    out = args.out or join(args.storage, sweep, "report")
    headline, aggregate, said = report_settings(args.storage, sweep, args.headline, flags)
    report = build_report(args.storage, sweep, out, law_name=args.law, target_compute=args.compute,
                          n_bootstrap=args.bootstrap, aggregate=aggregate, headline=headline)
    report.headline_source = said
    print(report.summary())
    return 0 if report.n_runs else 1


def _check_aggregation_columns(aggregate) -> None:
    """Before any work: --best-over/--mean-over name columns of the report's runs table
    (fitting.aggregate.RUN_COLUMNS, the ones a spec's fit.aggregate may name too); another one was
    taken as the fit's failure ("no fit") and the report written, exit 0."""
    from fitting.aggregate import RUN_COLUMNS

    for col in aggregate.columns if aggregate else ():
        if col not in RUN_COLUMNS:
            raise ValueError(f"{aggregate.source(col)} {col}: the report aggregates over the runs table's columns "
                             f"({', '.join(RUN_COLUMNS)})")


def report_settings(storage: str, sweep: str, headline: str | None, aggregate):
    """(headline, aggregation, one line saying where the headline came from) for `report`: the
    user's flags, else what the sweep's spec set (`orchestrator.sweep_settings`, written by
    `run`), else the report's defaults ("main"; aggregation None, from the runs)."""
    from fitting.aggregate import Aggregation
    from orchestrator.sweep_settings import FILE, read_fit_settings

    recorded = read_fit_settings(storage, sweep)
    if aggregate is None and ("best_over" in recorded or "mean_over" in recorded):
        aggregate = Aggregation(tuple(recorded.get("best_over", ())), tuple(recorded.get("mean_over", ())))
    if headline is not None:
        return headline, aggregate, f"headline {headline}: from --headline"
    if recorded.get("headline"):
        return (recorded["headline"], aggregate,
                f"headline {recorded['headline']}: the spec's fit.headline, recorded in {sweep}/{FILE} (--headline "
                f"to change)")
    return "main", aggregate, f"headline main: no fit.headline recorded for sweep {sweep} (--headline to change)"


def run_demo(args: argparse.Namespace) -> int:
    from pyarrow import fs as pafs

    from metrics import join, resolve
    from orchestrator.spec import load_spec
    from orchestrator.sweep import run_sweep
    from trainers.fields import load_yaml  # refuses duplicate keys, names the file

    raw = load_yaml(args.spec)
    if not isinstance(raw, dict):
        raise ValueError(f"--spec: {args.spec} must hold a sweep spec mapping")
    out = args.out if "://" in args.out else os.path.abspath(args.out)
    raw["storage"] = join(out, "store")
    spec = load_spec(raw)
    fs, store = resolve(spec.storage)
    run_sweep(spec, resume=fs.get_file_info(store).type != pafs.FileType.NotFound)
    report = build_report(spec.storage, spec.name, join(out, "report"), aggregate=spec.aggregation(),
                          headline=spec.fit.headline)
    print(report.summary())
    return 0 if report.n_usable else 1
