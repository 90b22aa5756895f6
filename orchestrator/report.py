"""Sweep report: metrics store → fitted law with uncertainty → compute-optimal plan → plots.

`scalesweep report STORAGE --sweep NAME` writes `report.md`, `curves.png` and `scaling.png`
next to the store (`--out`: elsewhere); store and output may be local paths or any pyarrow.fs
URI (s3://...). `scalesweep demo` runs the built-in demo sweep and then this report.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metrics.statuses import USABLE_STATUSES



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

    def skipped_lines(self) -> list[str]:
        return [f"{p.path}: {p.reason}" for p in self.skipped]

    def summary(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.status_counts.items()))
        lines = [f"sweep {self.sweep}: {self.n_runs} runs ({counts})"]
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
                 target_compute: float | None = None, n_bootstrap: int = 200, aggregate=None) -> SweepReport:
    """Read the sweep, fit, plan, plot. ``aggregate`` (a `fitting.aggregate.Aggregation`): how
    several runs per (N, D) become one cell; None: whatever hyperparameter column the runs sweep
    within a cell (best over lr and batch_tokens, mean over seed). Raises FileNotFoundError (creating nothing) when
    ``storage`` or the sweep in it does not exist; writes into ``out_dir`` (a local path or a
    pyarrow.fs URI) only when there are runs to report. Store files that cannot be read are
    listed in ``report.skipped``."""
    from fitting.laws import get_law
    from metrics import UnreadablePartWarning, join, load_curves, load_runs, require_sweep, resolve, write_atomically

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
    usable = [r for r in runs if r["status"] in USABLE_STATUSES and r["best_val_loss"] is not None]
    counts: dict[str, int] = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    report = SweepReport(sweep=sweep, n_runs=len(runs), n_usable=len(usable), status_counts=counts,
                         skipped=skipped)
    if not runs:
        report.notes.append(f"no runs found under {storage}/{sweep}")
        return report
    out_fs, out_root = resolve(os.fspath(out_dir))

    def write(name: str, content: bytes) -> str:
        write_atomically(f"{out_root}/{name}", lambda stream: stream.write(content), out_fs)
        return join(out_dir, name)

    fit = _fit(usable, law_name, n_bootstrap, report, aggregate)
    if fit is not None:
        report.fit = fit
        report.fit_text = fit.summary()
        compute = target_compute or 100 * max(r["flops"] for r in usable)
        report.allocation_text = _allocation_text(fit, compute, report)
    report.files.append(write("curves.png", _plot_curves(curves, runs)))
    report.files.append(write("scaling.png", _plot_scaling(usable, fit)))
    report.files.append(write("report.md", _markdown(report, runs).encode()))
    return report


def _fit(usable: list[dict], law_name: str, n_bootstrap: int, report: SweepReport, aggregate=None):
    """Fit the requested law to the runs, several per (N, D) as one cell (``aggregate``; None:
    the hyperparameter columns the runs sweep within a cell, `fitting.aggregate`); with too few
    runs (cells) for it, fall back to L(N) on the largest D and say so."""
    from fitting.aggregate import HYPERPARAMETER_COLUMNS, default_aggregation, swept_in_cells
    from fitting.data import load_fit_data
    from fitting.fit import fit_law
    from fitting.hyperparams import optimal_hyperparameters
    from fitting.laws import get_law
    from fitting.run_result import as_fitted

    fitted = [as_fitted(r) for r in usable]  # a prediction-stopped run: its planned end, down-weighted
    table = {"N": np.array([r["non_embedding_params"] for r, _ in fitted], dtype=float),
             "D": np.array([r["tokens_seen"] for r, _ in fitted], dtype=float),
             "loss": np.array([r["best_val_loss"] for r, _ in fitted], dtype=float),
             **{c: np.array([r.get(c) for r, _ in fitted], dtype=object) for c in HYPERPARAMETER_COLUMNS}}
    weights = np.array([w for _, w in fitted])
    if aggregate is None:
        aggregate = default_aggregation(swept_in_cells({"N": table["N"], "D": table["D"]},
                                                       {c: table[c] for c in HYPERPARAMETER_COLUMNS}))
    law = get_law(law_name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_fit_data(table, n_col="N", d_col="D", loss_col="loss", law=law, statuses=None,
                             aggregate=aggregate or None, weights=weights if (weights < 1).any() else None)
        if len(data) <= law.n_params:
            report.notes.append(f"{len(data)} usable {'cells' if data.aggregation else 'runs'} cannot identify the "
                                f"{law.n_params} parameters of {law.name}; fitting L(N) on the largest D instead")
            law = get_law("kaplan_n")
            planned = np.array([r["dataset_tokens"] for r in usable], dtype=float)[data.index]
            data = data.subset(planned == planned.max())
            if len(data) <= law.n_params:
                report.notes.append("too few runs for any fit")
                return None
        fit = fit_law(law, data, n_bootstrap=n_bootstrap, seed=0)
    if data.best:
        fit.diagnostics["optimal_hyperparameters"] = optimal_hyperparameters(data)
    report.notes += sorted({str(w.message) for w in caught})
    return fit


def _allocation_text(fit, compute: float, report: SweepReport) -> str | None:
    from fitting.allocate import compute_optimal_allocation

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
    lo, hi = p.loss_prediction_interval or (math.nan, math.nan)

    def interval(key: str) -> str:  # the same intervals `plan` prints, so no number stands alone
        bounds = p.intervals.get(key)
        return f" [{bounds[0]:.3g}, {bounds[1]:.3g}]" if bounds else " (no interval)"

    return (f"compute-optimal at C = {compute:.2e} FLOPs ({p.law}): N_opt = {p.N_opt:.3g}{interval('N_opt')}, "
            f"D_opt = {p.D_opt:.3g}{interval('D_opt')} ({p.tokens_per_param:.1f} tokens/param), loss = {p.loss:.4f} "
            f"[{lo:.4f}, {hi:.4f}] ({p.uncertainty}); N_opt ∝ C^{p.exponent_a:.3f}")


def _new_plot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.5))


def _png(fig, ax, legend_size: int, **labels) -> bytes:
    """The finished plot as PNG bytes (written through the output's filesystem)."""
    import matplotlib.pyplot as plt

    ax.set(xscale="log", yscale="log", **labels)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()


def _plot_curves(curves: list[dict], runs: list[dict]) -> bytes:
    by_trial: dict[str, list[dict]] = {}
    for row in curves:
        by_trial.setdefault(row["trial_id"], []).append(row)
    n_of = {r["trial_id"]: r["non_embedding_params"] for r in runs}
    fig, ax = _new_plot()
    for trial, rows in sorted(by_trial.items(), key=lambda kv: n_of.get(kv[0], 0)):
        rows.sort(key=lambda r: r["step"])
        ax.plot([r["tokens_seen"] for r in rows], [r["val_loss"] for r in rows], marker=".", label=trial)
    return _png(fig, ax, 6, xlabel="tokens seen", ylabel="validation loss (nats/token)",
                      title="Validation loss curves")


def _plot_scaling(usable: list[dict], fit) -> bytes:
    fig, ax = _new_plot()
    for d in sorted({r["dataset_tokens"] for r in usable}):
        rows = sorted((r for r in usable if r["dataset_tokens"] == d), key=lambda r: r["non_embedding_params"])
        n = np.array([r["non_embedding_params"] for r in rows], dtype=float)
        line = ax.plot(n, [r["best_val_loss"] for r in rows], "o", label=f"D = {d:.2g}")[0]
        if fit is not None and len(n):
            grid = np.geomspace(n.min() / 2, n.max() * 2, 50)
            seen = np.mean([r["tokens_seen"] for r in rows])
            columns = {"N": grid, "D": np.full_like(grid, seen)}
            ax.plot(grid, fit.predict({k: v for k, v in columns.items() if k in fit.law.inputs}), "-",
                    color=line.get_color(), alpha=0.6)
    return _png(fig, ax, 7, xlabel="non-embedding parameters N", ylabel="best validation loss",
                      title="Loss vs model size (lines: fitted law)")


def _markdown(report: SweepReport, runs: list[dict]) -> str:
    lines = [f"# Sweep `{report.sweep}`", "", "| trial | status | N | D | tokens seen | FLOPs | best val loss |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in sorted(runs, key=lambda r: (r["non_embedding_params"], r["dataset_tokens"])):
        best = f"{r['best_val_loss']:.4f}" if r["best_val_loss"] is not None else "—"
        lines.append(f"| {r['trial_id']} | {r['status']} | {r['non_embedding_params']:,} | {r['dataset_tokens']:,} "
                     f"| {r['tokens_seen']:,} | {r['flops']:.3g} | {best} |")
    if report.fit_text:
        lines += ["", "## Fitted law", "", "```", report.fit_text, "```"]
    if report.allocation_text:
        lines += ["", "## Compute-optimal plan", "", report.allocation_text]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    if report.skipped:
        lines += ["", "## Skipped store files", "", "These files could not be read and are not in the tables above:",
                  ""] + [f"- `{p.path}`: {p.reason}" for p in report.skipped]
    lines += ["", "![curves](curves.png)", "", "![scaling](scaling.png)", ""]
    return "\n".join(lines)


def register(subparsers) -> None:
    rep = subparsers.add_parser("report", help="fit and plot a finished sweep's metrics")
    rep.add_argument("storage", help="metrics store root (a local path or a pyarrow.fs URI, e.g. s3://bucket/prefix)")
    rep.add_argument("--sweep", required=True, help="sweep name (the spec's name; runs are in <storage>/<sweep>/)")
    rep.add_argument("--law", default="chinchilla", help="law to fit: built-in name, file.py:LAW or pkg.module:LAW (default chinchilla)")
    rep.add_argument("--out", help="output directory, local or a URI (default: <storage>/<sweep>/report)")
    rep.add_argument("--compute", type=float, help="target compute for the plan (default 100x the largest run)")
    rep.add_argument("--best-over", action="append", default=[], metavar="COL",
                     help="fit each (N, D) cell's best setting of COL (repeatable; default: lr and batch_tokens "
                          "where the runs sweep them within a cell)")
    rep.add_argument("--mean-over", action="append", default=[], metavar="COL",
                     help="average each setting over COL first (repeatable; default: seed where swept)")
    rep.set_defaults(func=run_report)

    demo = subparsers.add_parser("demo", help="run the built-in demo sweep end to end (sweep → metrics → fit → report)")
    demo.add_argument("--spec", default=str(Path(__file__).resolve().parents[1] / "examples" / "demo.yaml"),
                      help="sweep spec to run (default examples/demo.yaml)")
    demo.add_argument("--out", default="demo_out", help="directory (local or a URI) for the metrics store and the report")
    demo.set_defaults(func=run_demo)


def run_report(args: argparse.Namespace) -> int:
    from metrics import join

    from fitting.cli import table_aggregation

    out = args.out or join(args.storage, args.sweep, "report")
    report = build_report(args.storage, args.sweep, out, law_name=args.law, target_compute=args.compute,
                          aggregate=table_aggregation(args))
    print(report.summary())
    return 0 if report.n_runs else 1


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
    report = build_report(spec.storage, spec.name, join(out, "report"), aggregate=spec.aggregation())
    print(report.summary())
    return 0 if report.n_usable else 1
