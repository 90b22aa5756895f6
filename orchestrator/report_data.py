"""What the sweep report shows, read from a store: the runs, the curves, every law fitted to them,
the ledger and the active designer's choices (docs/architecture.md, `orchestrator.report`).

Everything here returns plain tables (lists of row dicts, dicts of numpy arrays) or a
:class:`LawFit` (a FitResult, or the one line saying why there is none), so the figure and page
modules (``report_figures``, ``report_html``) never read the store or fit anything themselves.
"""

from __future__ import annotations

import json
import math
import pickle
import warnings
from dataclasses import dataclass, field

import numpy as np

from metrics.statuses import USABLE_STATUSES

@dataclass
class LawFit:
    """A law fitted for the report: ``fit`` (a fitting.fit.FitResult) or ``message`` (why none);
    ``rows`` what it was fitted to (a dict of arrays, for the figure); ``note`` which rows;
    ``warnings`` what the fit said."""

    name: str
    title: str
    fit: object | None = None
    message: str | None = None
    rows: dict[str, np.ndarray] | None = None
    note: str = ""
    warnings: list[str] = field(default_factory=list)
    critical_batch: dict[str, float] | None = None  # B_crit(L) params the rows' S_min / C_min used

    @property
    def drawable(self):
        """The fit when its line may be drawn: identified (fitting.checks.identifiability) with no
        parameter at a bound (fitting.objective.params_at_bounds); else None (the page says why)."""
        from fitting.objective import params_at_bounds

        if self.fit is None or not self.fit.identifiability.identified:
            return None
        return None if params_at_bounds(self.fit.law, self.fit.z, self.fit.data.X) else self.fit


def usable_runs(runs: list[dict]) -> list[dict]:
    """Runs whose loss is a result (USABLE_STATUSES with a best loss)."""
    return [r for r in runs if r["status"] in USABLE_STATUSES and r.get("best_val_loss") is not None]


def law_runs(runs: list[dict]) -> list[dict]:
    """The runs the report's laws are fitted to: the spec's main grid (runs column ``sub_sweep``:
    a shape or batch-size sub-sweep varies what the laws do not model; a ladder run is the laws'
    test, not their data) of one model family (the
    transformer's where there are several: a law describes one family). Figures of shape,
    family and batch size take every run."""
    from metrics.schema import DEFAULT_FAMILY, MAIN_GRID, SUB_SWEEP_COLUMN, fitted_family

    main = [r for r in runs if (r.get(SUB_SWEEP_COLUMN) or MAIN_GRID) == MAIN_GRID]
    family = fitted_family(r.get("family") or DEFAULT_FAMILY for r in main)
    return [r for r in main if (r.get("family") or DEFAULT_FAMILY) == family]


def curve_table(curves: list[dict], runs: list[dict]) -> dict[str, np.ndarray]:
    """The curves of usable runs as columns (trial_id, step, tokens_seen, flops, val_loss,
    grad_noise_scale; NaN where missing) with the run's N (non_embedding_params), dataset_tokens,
    family (when the runs carry one) and, when stored, ``loss_per_position`` (an object array of
    per-position losses, None where missing)."""
    info = {r["trial_id"]: r for r in usable_runs(runs)}
    rows = [c for c in curves if c["trial_id"] in info]
    num = lambda v: math.nan if v is None else float(v)
    out: dict[str, np.ndarray] = {"trial_id": np.array([c["trial_id"] for c in rows], dtype=str)}
    for col in ("step", "tokens_seen", "flops", "val_loss", "grad_noise_scale"):
        out[col] = np.array([num(c.get(col)) for c in rows], dtype=float)
    out["N"] = np.array([num(info[c["trial_id"]]["non_embedding_params"]) for c in rows], dtype=float)
    out["batch_tokens"] = np.array([num(info[c["trial_id"]]["batch_tokens"]) for c in rows], dtype=float)
    out["dataset_tokens"] = np.array([num(info[c["trial_id"]]["dataset_tokens"]) for c in rows], dtype=float)
    if any("family" in r for r in runs):
        out["family"] = np.array([str(info[c["trial_id"]].get("family") or "transformer") for c in rows], dtype=str)
    if rows and "loss_per_position" in rows[0]:
        out["loss_per_position"] = np.array([c.get("loss_per_position") for c in rows] + [None], dtype=object)[:-1]
    return out


def with_min_compute(curves: dict[str, np.ndarray], critical_batch: dict[str, float] | None) -> dict[str, np.ndarray]:
    """``curves`` with ``flops`` mapped to C_min = C/(1 + B/B_crit(L)) (fitting.dynamics, Kaplan
    eq. 5.5) where B_crit was fitted, so the runs' curves share the frontier's axis. As in
    ``fitting.dynamics.curve_rows``, a run that measured no noise scale keeps C."""
    from fitting.dynamics import b_crit_from, min_compute

    if critical_batch is None or not len(curves["flops"]):
        return curves
    noise = curves["grad_noise_scale"]
    measured = np.isin(curves["trial_id"], curves["trial_id"][np.isfinite(noise) & (noise > 0)])
    with np.errstate(all="ignore"):
        bc = b_crit_from(curves["val_loss"], critical_batch)
        c_min = min_compute(curves["flops"], curves["batch_tokens"], bc)
    return {**curves, "flops": np.where(measured, c_min, curves["flops"])}


def best_per(runs: list[dict], key: str) -> dict[str, np.ndarray]:
    """The lowest best_val_loss among usable runs at each value of ``key`` (e.g. N over every D:
    the loss a model size reaches with the most data tried). → {key: sorted values, "loss": ...}."""
    best: dict[float, float] = {}
    for r in usable_runs(runs):
        k = float(r[key])
        best[k] = min(best.get(k, math.inf), float(r["best_val_loss"]))
    keys = sorted(best)
    return {key: np.array(keys, dtype=float), "loss": np.array([best[k] for k in keys], dtype=float)}


def _fit_rows(name: str, title: str, law_name: str, columns: dict[str, np.ndarray], note: str,
              n_bootstrap: int = 0, curve_points: bool = False) -> LawFit:
    """Fit ``law_name`` to ``columns`` (inputs + "loss"); a fit that cannot be made is a message.
    ``curve_points``: the rows are curve points, whose repeated inputs are expected
    (fitting.data.load_fit_data), not a hyperparameter sweep to aggregate."""
    from fitting.checks import user_messages
    from fitting.fit import fit_law
    from fitting.laws import get_law

    law = get_law(law_name)
    n = len(columns.get("loss", ()))
    if n <= law.n_params:
        return LawFit(name, title, message=f"{n} points cannot identify the {law.n_params} parameters of {law.name} "
                                           f"(need at least {law.min_runs})", rows=columns, note=note)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = fit_law(law, dict(columns), n_bootstrap=n_bootstrap, seed=0, curve_points=curve_points,
                          store_units=True)  # the store's own N and D: no "in millions?" note
        except (ValueError, FloatingPointError, np.linalg.LinAlgError) as err:
            return LawFit(name, title, message=f"no fit: {err}", rows=columns, note=note)
    said = sorted(set(user_messages(caught)) | set(fit.notes()))  # with the verdicts' note
    return LawFit(name, title, fit=fit, rows=columns, note=note, warnings=said)


def size_and_data_fits(runs: list[dict]) -> tuple[LawFit, LawFit]:
    """L(N) on the best loss per model size and L(D) on the best loss per dataset size
    (Kaplan fig. 1 centre and right: each variable with the other not the bottleneck)."""
    by_n, by_d = best_per(runs, "non_embedding_params"), best_per(runs, "dataset_tokens")
    fit_n = _fit_rows("kaplan_n", "L(N) = (N_c/N)^α_N", "kaplan_n",
                      {"N": by_n["non_embedding_params"], "loss": by_n["loss"]},
                      f"best loss per model size over every D ({by_n['loss'].size} sizes)")
    fit_d = _fit_rows("kaplan_d", "L(D) = (D_c/D)^α_D", "kaplan_d",
                      {"D": by_d["dataset_tokens"], "loss": by_d["loss"]},
                      f"best loss per dataset size over every N ({by_d['loss'].size} sizes)")
    return fit_n, fit_d


def curve_fits(sweep_dir: str, n_bootstrap: int = 0) -> dict[str, LawFit]:
    """L(C_min), L(N, S_min) and B_crit(L) from the sweep's curves (`fitting.dynamics.curve_rows`,
    what ``scalesweep fit STORE --law ...`` fits); each a message when the curves cannot give it.
    ``n_bootstrap``: resamples behind L(C_min)'s intervals (0: sandwich); the report passes its
    own, so its headline interval is a bootstrap one like ``fit``'s (a user compared them: the
    sandwich one, on frontier points interpolated from a few curves, was a third as wide).
    The other two keep the sandwich: L(N, S_min) on every curve point is slow to resample."""
    from fitting.dynamics import curve_rows

    titles = {"kaplan_c": "L(C_min) = (C_c/C_min)^α_C", "kaplan_ns": "L(N, S_min) = (N_c/N)^α_N + (S_c/S_min)^α_S",
              "critical_batch": "B_crit(L) = B*/L^(1/α_B)"}
    out = {}
    for name, title in titles.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                rows = curve_rows(sweep_dir, name)
            except (ValueError, FloatingPointError) as err:
                out[name] = LawFit(name, title, message=str(err))
                continue
        # the rows' note names the law for `fit`'s output; here the title does
        fitted = _fit_rows(name, title, name, rows.columns, rows.note.removeprefix(f"{name}: "),
                           n_bootstrap if name == "kaplan_c" else 0, curve_points=True)
        fitted.warnings = rows.warnings + fitted.warnings
        fitted.critical_batch = rows.critical_batch
        if rows.critical_batch is not None:
            fitted.note += f" (B* = {rows.critical_batch['B_star']:.3g} tokens, α_B = {rows.critical_batch['alpha_B']:.3g})"
        out[name] = fitted
    return out


def main_fit(usable: list[dict], law_name: str, n_bootstrap: int, aggregate=None) -> LawFit:
    """The requested law of N and D on the runs table, several runs per (N, D) as one cell
    (``aggregate``, a `fitting.aggregate.Aggregation`; None: the hyperparameter columns the runs
    sweep within a cell); with too few runs (cells) for it, L(N) on the largest D, saying so. A
    prediction-stopped run counts at its planned end, down-weighted (fitting.run_result.as_fitted)."""
    from fitting.checks import user_messages
    from fitting.aggregate import HYPERPARAMETER_COLUMNS, RUN_COLUMNS, default_aggregation, swept_in_cells
    from fitting.data import load_fit_data
    from fitting.fit import FitError, fit_law
    from fitting.hyperparams import optimal_hyperparameters
    from fitting.laws import get_law
    from fitting.run_result import as_fitted

    law = get_law(law_name)
    title = law.name
    notes = []
    if not usable:
        return LawFit("main", law.name, message="no usable runs (completed or early_stopped with a loss)")
    fitted = [as_fitted(r) for r in usable]
    table = {"N": np.array([r["non_embedding_params"] for r, _ in fitted], dtype=float),
             "D": np.array([r["tokens_seen"] for r, _ in fitted], dtype=float),
             "loss": np.array([r["best_val_loss"] for r, _ in fitted], dtype=float),
             **{c: np.array([r.get(c) for r, _ in fitted], dtype=object) for c in RUN_COLUMNS}}
    weights = np.array([w for _, w in fitted])
    if aggregate is None:
        aggregate = default_aggregation(swept_in_cells({"N": table["N"], "D": table["D"]},
                                                       {c: table[c] for c in HYPERPARAMETER_COLUMNS}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = load_fit_data(table, n_col="N", d_col="D", loss_col="loss", law=law, statuses=None,
                                 aggregate=aggregate or None, weights=weights if (weights < 1).any() else None,
                                 store_units=True)  # the store's own N and D: no "in millions?" note
            if len(data) <= law.n_params:
                notes.append(f"{len(data)} usable {'cells' if data.aggregation else 'runs'} cannot identify the "
                             f"{law.n_params} parameters of {law.name}; fitting L(N) on the largest D instead")
                planned = np.array([r["dataset_tokens"] for r in usable], dtype=float)[data.index]
                # titled apart from the page's other L(N) (best loss per size over every D): a user
                # read "kaplan_n: no fit" beside a fitted L(N)
                title = f"L(N) on the largest D ({planned.max():.3g} tokens), in place of {law.name}"
                law = get_law("kaplan_n")
                data = data.subset(planned == planned.max())
                if len(data) <= law.n_params:
                    return LawFit("main", title, message=f"{len(data)} runs at that D, too few for any fit",
                                  warnings=notes + ["too few runs for any fit"])
            fit = fit_law(law, data, n_bootstrap=n_bootstrap, seed=0)
        except (FitError, ValueError, FloatingPointError) as err:
            return LawFit("main", title, message=f"no fit: {err}", rows=table, warnings=notes)
    if data.best:
        fit.diagnostics["optimal_hyperparameters"] = optimal_hyperparameters(data)
    notes += sorted(user_messages(caught))
    what = f"{len(data)} cells ({data.aggregation})" if data.aggregation else f"{len(data)} runs"
    return LawFit("main", title, fit=fit, rows=table, note=f"{what} (N, tokens seen, best loss)",
                  warnings=notes)


def plans(fit, largest_compute: float, factors=(10, 100)) -> list[tuple[float, object]]:
    """[(compute in FLOPs, fitting.allocate.Allocation or the line why not)] at ``factors`` × the
    largest run's compute."""
    from fitting.allocate import compute_optimal_allocation

    out = []
    for factor in factors:
        compute = factor * largest_compute
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out.append((compute, compute_optimal_allocation(fit, compute)))
            except (ValueError, FloatingPointError) as err:
                out.append((compute, f"no plan: {err}"))
    return out


def read_ledger(sweep_dir: str) -> dict | None:
    """``<sweep>/ledger.json`` (orchestrator.sweep.write_ledger) as a dict, None when absent or unreadable."""
    from pyarrow import fs as pafs

    from metrics import resolve

    fs, root = resolve(sweep_dir)
    path = f"{root}/ledger.json"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    try:
        with fs.open_input_stream(path) as stream:
            return json.loads(stream.read())
    except (OSError, ValueError):
        return None


def read_choices(sweep_dir: str) -> list[dict] | None:
    """The active designer's choices in order (``orchestrator.active_search.ActiveSearcher.choices``:
    trial_key, N, D, planned_flops, score, why) from the newest searcher checkpoint Tune keeps under
    ``<sweep>/tune/`` (``searcher-state-*.pkl``, written by ``BudgetedSearcher.save``); None when
    the store has none (a grid sweep, or a store without its Tune folder)."""
    from pyarrow import fs as pafs

    from metrics import resolve

    fs, root = resolve(sweep_dir)
    if fs.get_file_info(f"{root}/tune").type != pafs.FileType.Directory:
        return None
    found = [i for i in fs.get_file_info(pafs.FileSelector(f"{root}/tune", recursive=True))
             if i.type == pafs.FileType.File and i.base_name.startswith("searcher-state-") and i.base_name.endswith(".pkl")]
    for info in sorted(found, key=lambda i: i.mtime or 0, reverse=True):
        try:
            with fs.open_input_stream(info.path) as stream:
                state = pickle.loads(stream.read())  # the sweep's own checkpoint, written by this code
        except Exception:  # noqa: BLE001 - a checkpoint of another searcher kind or version: try the next
            continue
        if isinstance(state, dict) and isinstance(state.get("extra"), dict) and "choices" in state["extra"]:
            return list(state["extra"]["choices"])
    return None
