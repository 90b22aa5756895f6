"""Active search: the sweep asks the designer which planned run to start whenever a slot frees.

`ActiveSearcher` is a `BudgetedSearcher` (ledger, concurrency, Tune bookkeeping, save/restore)
whose `propose` asks :class:`fitting.strategies.ActiveDesign` for the planned trial that most
reduces the expected error of the predicted loss over the target region per cost, with the running
trials fantasised as already observed so concurrent slots get different runs. Every completed
trial is fed to an :class:`fitting.online.OnlineFitter`, which fits runs sharing an (N, D) as one
cell when the spec's axes sweep lr, batch or seeds (``aggregate``: `SweepSpec.aggregation`,
fitting/aggregate.py). The search finishes when nothing
affordable is left (``budget``), every planned run was taken (``all_taken``), ``max_trials``
were started, or the target's relative confidence half-width falls to
``stop_when["rel_pred_ci"]``; the summary says which, and why the law could not be fitted if
it was not (too few planned or affordable runs, unusable results).

Cost (``search.cost``): ``flops`` (default) ranks runs by gain per planned FLOPs^¼; ``time``
ranks them by gain per predicted seconds^¼, from a :class:`fitting.cost.ThroughputModel` fitted
to the finished trials' measured FLOP/s (small models run far below peak, so FLOPs under-price
them). Either way the hard budget stays in FLOPs.

Target (``search.target`` in the spec): interpreted by `orchestrator.target.target_region`, the
same code `scalesweep validate` checks it with: ``{"compute": 1e22}`` (compute-optimal frontier
there, under ``reference`` params, default Epoch's Chinchilla fit), ``{"largest": 5}`` (the most
expensive planned runs; the default), or ``{"points": [[N, D], ...]}``; ``stop_when`` may sit
inside it too.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping

import numpy as np
from ray.tune.search import Searcher

from fitting.cost import ThroughputModel, affordable
from fitting.design import DesignState
from fitting.laws import get_law
from fitting.online import OnlineFitConfig, OnlineFitter
from fitting.strategies import ActiveDesign
from orchestrator.search import BudgetedSearcher
from orchestrator.grid import TrialSpec
from orchestrator.target import target_region, trial_candidates

SEED_WHY = "seed (space-filling)"
"""Why a choice made before any fit was made: the seed design (fitting.design.seed_design)."""


def choice_why(choice: Mapping[str, Any]) -> str:
    """A seed choice's reason as the summary and the report print it (``why`` of a choice
    without a score; a store written before the reason was stored whole says ``seed``)."""
    why = choice.get("why") or SEED_WHY
    return SEED_WHY if why == "seed" else why


__all__ = ["ActiveSearcher", "choice_why"]


class ActiveSearcher(BudgetedSearcher):
    """Picks the next planned trial with the active designer; refits on every completion."""

    def __init__(self, trials: Iterable[TrialSpec], *, law="chinchilla", target: Mapping[str, Any] | None = None,
                 max_trials: int | None = None, stop_when: Mapping[str, float] | None = None,
                 done_keys: Iterable[str] = (), seed: int = 0, fit_config: OnlineFitConfig | None = None,
                 strategy: ActiveDesign | None = None, cost: str = "flops", aggregate=None, **kwargs):
        super().__init__(**kwargs)
        if cost not in ("flops", "time"):
            raise ValueError(f"active search: cost must be 'flops' or 'time', got {cost!r}")
        self.cost = cost
        self.run_times: list[tuple[float, float, float]] = []  # (N, FLOPs, wall seconds) of finished trials
        self.trials = list(trials)
        if not self.trials:
            raise ValueError("active search: no planned trials")
        self.law = get_law(law)
        self._index = {p.trial_key: i for i, p in enumerate(self.trials)}
        self.candidates = trial_candidates(self.trials)
        target = dict(target or {})
        self.stop_when = dict(stop_when or target.pop("stop_when", {}) or {})
        self.target = target_region(target, self.candidates, self.law)
        self.max_trials = max_trials
        self.n_started = 0
        self.seed = seed
        self.strategy = strategy or ActiveDesign()
        self.fitter = OnlineFitter(self.law, fit_config or OnlineFitConfig(seed=seed), aggregate=aggregate)
        self.finished_keys |= set(done_keys)
        self.stop_reason: str | None = None
        self.stop_detail = ""  # the numbers behind stop_reason
        self.outcomes: Counter = Counter()  # run status of each observed trial (failed: after retries)
        self.choices: list[dict[str, Any]] = []  # what the designer picked, in order, and why

    # -- progress measure ----------------------------------------------------------------------
    def rel_pred_ci(self, final: bool = False) -> float:
        """Largest relative half-width of the 90 % confidence interval of the target losses, on the
        current fit or (``final``) on the full refit a stop and the summary report
        (:meth:`fitting.online.OnlineFitter.final_fit`)."""
        fit = self.fitter.final_fit() if final else self.fitter.fit
        if fit is None or not fit.identifiability.identified:  # a tight interval on an arbitrary answer
            return float("inf")
        iv = fit.interval(self.target.X, level=0.9, kind="confidence")
        return float(np.max((iv.hi - iv.lo) / (2 * iv.mean)))

    def _finished(self, reason: str, detail: str = "") -> str:
        self.stop_reason, self.stop_detail = reason, detail
        return Searcher.FINISHED

    def _why_nothing(self, taken: np.ndarray) -> tuple[str, str]:
        """(reason, detail) when the designer picks nothing and no trial runs."""
        cost = self.candidates.cost[~taken]
        if cost.size == 0:
            return "all_taken", f"every one of the {len(self.trials)} planned runs was chosen"
        if not self.ledger.fits(cost.min()):
            return "budget", (f"the cheapest of the {cost.size} runs left needs {cost.min():.3g} FLOPs, "
                              f"{max(self.ledger.remaining, 0.0):.3g} remain")
        return "no_score", f"none of the {cost.size} affordable runs left has a finite score"

    def _no_fit_reason(self) -> str:
        """Why the law has no fit: too few usable runs, and what limited them."""
        need, usable = self.law.min_runs, self.fitter.n_cells
        runs = f"{self.fitter.n_runs} usable runs in {usable} cells" if usable != self.fitter.n_runs else \
            f"{usable} usable runs"
        if usable >= need:
            return f"the fit of {runs} did not converge"
        why = [f"{runs}, needs {need}"]
        cheapest = np.sort(self.candidates.cost)
        if len(self.trials) < need:
            why.append(f"the plan has only {len(self.trials)} runs")
        elif not affordable(cheapest[:need].sum(), self.ledger.limit_flops, self.ledger.limit_flops):
            n_fit = int(affordable(np.cumsum(cheapest), self.ledger.limit_flops, self.ledger.limit_flops).sum())
            why.append(f"the budget affords at most {n_fit} of the planned runs (the {need} cheapest "
                       f"cost {cheapest[:need].sum():.3g} FLOPs)")
        if self.max_trials is not None and self.max_trials < need:
            why.append(f"max_trials is {self.max_trials}")
        if self.fitter.n_failed:
            n = self.fitter.n_failed
            why.append(f"{n} run{'s' if n != 1 else ''} ended without a usable loss")
        return "; ".join(why)

    # -- BudgetedSearcher hooks ----------------------------------------------------------------
    def propose(self) -> TrialSpec | None | str:
        if self.max_trials is not None and self.n_started >= self.max_trials:
            return None if self.live else self._finished("max_trials")
        goal = self.stop_when.get("rel_pred_ci")
        # confirmed on the full refit: a warm fit in a basin the runs have left can look pinned
        if goal is not None and self.rel_pred_ci() <= float(goal) and self.rel_pred_ci(final=True) <= float(goal):
            return self._finished("rel_pred_ci")
        taken = np.zeros(len(self.trials), dtype=bool)
        for key in self.finished_keys:
            if key in self._index:
                taken[self._index[key]] = True
        pending = [self._index[p.trial_key] for p in self.live.values()]
        taken[pending] = True
        state = DesignState(law=self.law, candidates=self.candidates, target=self.target, taken=taken,
                            budget_total=self.ledger.limit_flops, budget_left=self.ledger.remaining,
                            fit=self.fitter.fit, pending=np.asarray(pending, dtype=int),
                            rng=np.random.default_rng([self.seed, self.n_started]), score_cost=self.predicted_seconds())
        pick = self.strategy.select(state, 1)
        if not pick:
            # nothing affordable now; running trials may finish under their planned FLOPs and free budget
            return None if self.live else self._finished(*self._why_nothing(taken))
        self.n_started += 1
        self._record_choice(pick[0])
        return self.trials[pick[0]]

    def throughput(self) -> ThroughputModel | None:
        """Measured FLOP/s vs model size, from the finished trials (None before any)."""
        if not self.run_times:
            return None
        N, flops, seconds = np.asarray(self.run_times, dtype=float).T
        return ThroughputModel.fit(N, flops, seconds)

    def predicted_seconds(self) -> np.ndarray | None:
        """Per-candidate ranking cost for ``cost="time"``; None (rank by FLOPs) otherwise or
        before any trial has finished."""
        model = self.throughput() if self.cost == "time" else None
        return None if model is None else model.seconds(self.candidates.X["N"], self.candidates.cost)

    def _record_choice(self, index: int) -> None:
        scores = getattr(self.strategy, "last_scores", {})
        trial = self.trials[index]
        ranked_by = "seconds" if self.cost == "time" and self.run_times else "FLOPs"
        power = getattr(self.strategy, "cost_power", 1.0)
        hedged = getattr(self.strategy, "hedged", None)  # the fit was unreliable: the hedge's criterion
        if index in scores:
            why = (f"{self.strategy.hedge_criterion} per {ranked_by}^{power:g} (hedged: {hedged})" if hedged
                   else f"error reduction per {ranked_by}^{power:g}")
        elif self.fitter.fit is None and len(self.choices) >= max(self.law.min_runs,
                                                                  getattr(self.strategy, "seed_size", None) or 0):
            # picked as many runs as a fit needs and still seeding: runs still running, ended
            # without a loss, or a fit that did not converge; without the reason this reads as
            # the designer ignoring seed_runs (a new user's finding)
            running = f"; {len(self.live)} running" if self.live else ""
            why = f"seed (no fit yet: {self._no_fit_reason()}{running})"
        else:
            why = SEED_WHY
        self.choices.append({"trial_key": trial.trial_key, "N": trial.non_embedding_params, "D": trial.dataset_tokens,
                             "planned_flops": float(trial.planned_flops), "score": scores.get(index), "why": why})

    def observe_point(self, key: str, n: float, d: float, result: dict | None, failed: bool) -> None:
        from fitting.run_result import result_loss

        loss, weight = (None, 1.0) if not result else result_loss(result, self.metric)
        wall, flops = (result or {}).get("wall_s"), (result or {}).get("flops")
        self.outcomes["failed" if failed else (result or {}).get("status") or "ended"] += 1
        if not failed and wall and flops and wall > 0 and flops > 0:
            self.run_times.append((float(n), float(flops), float(wall)))
        self.fitter.add({"N": n, "D": d}, loss, failed=failed, run_id=key, weight=weight,
                        hyper=self._hyper(key, result))

    def _hyper(self, key: str, result: dict | None) -> dict:
        """The run's values of the aggregation's columns: its runs row (a stored run), else its
        planned trial (a Tune result carries no lr or seed)."""
        trial = self.trials[self._index[key]] if key in self._index else None
        out = {}
        for column in self.fitter.aggregate.columns if self.fitter.aggregate else ():
            value = (result or {}).get(column)
            if value is None and trial is not None:
                value = getattr(trial, column, getattr(trial.shape, column, None))
            out[column] = value
        return out

    def get_extra_state(self) -> dict:
        return {"fitter": self.fitter.state_dict(), "n_started": self.n_started, "stop_reason": self.stop_reason,
                "stop_detail": self.stop_detail, "outcomes": dict(self.outcomes),
                "choices": self.choices, "run_times": [list(r) for r in self.run_times]}

    def set_extra_state(self, state: dict) -> None:
        self.fitter.load_state_dict(state["fitter"])
        self.n_started = int(state["n_started"])
        self.stop_reason = state.get("stop_reason")
        self.stop_detail = state.get("stop_detail", "")
        self.outcomes = Counter(state.get("outcomes", {}))
        self.choices = list(state.get("choices", []))
        self.run_times = [tuple(r) for r in state.get("run_times", [])]

    def on_restored(self, ended_since: set[str]) -> None:
        """Picks made after Tune's last checkpoint of this searcher whose runs ended before the
        driver stopped are picks all the same: they count toward ``max_trials`` (a resumed
        sweep once could run more) and are listed among the choices."""
        chosen = {c["trial_key"] for c in self.choices}
        for key in sorted(k for k in ended_since if k in self._index and k not in chosen):
            self.n_started += 1
            trial = self.trials[self._index[key]]
            self.choices.append({"trial_key": key, "N": trial.non_embedding_params, "D": trial.dataset_tokens,
                                 "planned_flops": float(trial.planned_flops), "score": None,
                                 "why": "picked before the driver stopped (after Tune's last checkpoint)"})

    # -- end-of-run report ---------------------------------------------------------------------
    def _flops_text(self, choice: dict) -> str:
        """A chosen run's FLOPs as the ledger counts them: spent once it ended (an early-stopped,
        diverged or failed run spends less than planned), planned while it runs or never ran."""
        planned = choice["planned_flops"]
        spent = self.ledger.finished.get(choice["trial_key"])
        if spent is None:
            return f"{planned:.3g} FLOPs planned"
        if abs(spent - planned) <= 1e-3 * planned:
            return f"{spent:.3g} FLOPs"
        return f"{spent:.3g} of {planned:.3g} planned FLOPs"

    def summary_lines(self) -> list[str]:
        """The fitted law with its 90 % CIs, compute spent vs budget, and each chosen run with
        why (seed design, or its gain/cost score)."""
        ledger = self.ledger
        stopped = f"{self.stop_reason} ({self.stop_detail})" if self.stop_detail else self.stop_reason
        ended = ", ".join(f"{n} {status}" for status, n in sorted(self.outcomes.items()))
        lines = [f"active design: stopped by {stopped or 'end of trials'}; "
                 f"{len(self.choices)} of {len(self.trials)} planned runs chosen"
                 f"{f' ({ended})' if ended else ''}; spent "
                 f"{ledger.spent:.3g} of {ledger.limit_flops:.3g} FLOPs ({ledger.spent / ledger.limit_flops:.0%})"]
        fit = self.fitter.final_fit()  # the fit command's optimum on these runs, not the last warm refit
        if fit is not None and fit.data.aggregation:
            lines.append(f"  fitted cells: {fit.data.aggregation}")
        if fit is None:
            lines.append(f"  law {self.law.name}: no fit ({self._no_fit_reason()})")
        elif not fit.identifiability.identified:  # no interval printed as if the data fixed it
            terms = ", ".join(f"{k}={v:.3g}" for k, v in fit.params.items())
            lines.append(f"  law {self.law.name}: NOT IDENTIFIED by the {fit.n_points} runs "
                         f"({fit.identifiability.reason}); point fit {terms}, no intervals")
        else:
            ivs = fit.intervals(0.9)  # a side the data leave open is marked, never shown as pinned
            tags = fit.param_tags(0.9)  # fit's and replay's tags: the profile's verdict, bootstrap or not
            side = lambda v, is_open: f"{v:.3g}" + (" (open)" if is_open else "")
            terms = ", ".join(f"{k}={v:.3g} [{side(ivs[k].lo, ivs[k].lo_open)}, {side(ivs[k].hi, ivs[k].hi_open)}]"
                              + (f" ({tags[k]})" if tags[k] else "") for k, v in fit.params.items())
            # a fit pinned at a bound is linearised where the law stops, not where the data point:
            # its target interval is not evidence, and a bare number read as one (a new user's finding)
            caveat = " (parameters at their bounds: not to be trusted)" if fit.bounds_note else ""
            how = {"profile": "profile likelihood", "sandwich": "sandwich covariance"}.get(fit.uncertainty, fit.uncertainty)
            lines.append(f"  law {self.law.name} (90% CI from the {how}): {terms}; target rel. CI half-width "
                         f"{self.rel_pred_ci(final=True):.3g} (parameters only, {how}: the stop rule's){caveat}")
        if fit is not None and fit.bounds_note:
            lines.append(f"  warning: {fit.bounds_note}")
        model = self.throughput() if self.cost == "time" else None
        if model is not None:
            lines.append(f"  throughput ({model.n_runs} runs): FLOP/s ≈ {np.exp(model.intercept):.3g}·N^{model.slope:.2f} "
                         f"for N in [{np.exp(model.log_n_min):.3g}, {np.exp(model.log_n_max):.3g}]")
        for i, c in enumerate(self.choices, 1):
            if c["score"] is None:
                why = choice_why(c)
            else:
                why = f"score {c['score']:.3g} ({c.get('why', 'gain/cost')})"
            lines.append(f"  {i}. {c['trial_key']}: N={c['N']:.3g} D={c['D']:.3g} "
                         f"{self._flops_text(c)}, {why}")
        return lines
