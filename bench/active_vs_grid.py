"""Active design vs baselines: target-region error per strategy and budget fraction.

Settings
  chinchilla  simulated oracle: Chinchilla surface (Epoch's fit) + 1.5 % log-normal noise,
              candidates a 7×7 grid N 1e7…1e9 × D 3e8…1e11, cost 6ND, targets the
              compute-optimal frontier around 1e22 FLOPs (16× past the largest grid run)
  kaplan      simulated oracle: Kaplan et al. L(N, D) with the paper's constants + 1.5 % noise,
              same grid and targets, fitted with the Kaplan law
  misfit      simulated oracle whose truth strays from the law as the Epoch runs do: Chinchilla
              × exp(undertraining_misfit) (runs below ~12 tokens/parameter read up to 2 % high)
              + 0.5 % noise, same grid and targets, fitted with Chinchilla (Huber)
  epoch       replay of the Epoch Chinchilla runs: pool C ≤ 1e21 (217 runs), targets C > 1e21 (23)
  nine        simulated oracle of a 9-parameter law with N-dependent exponents (issue 15 item 6): the
              law at fixed parameters × exp(1.5 % · sin(ln N / 1.5)), a misfit no exponent absorbs,
              + 1 % noise, same grid and targets, fitted with the same law (Huber); prints mean and
              worst-decile target R² (mean of the worst 10 % of seeds) per strategy and budget and
              whether active meets the goal (mean ≥ the best baseline's mean and worst decile ≥ the
              best baseline's worst decile at every budget). Its own defaults: fractions
              0.01,0.05,0.1 and strategies active,v_optimal,d_optimal,random. Measured (20 seeds,
              mean / worst-decile R²; 1 %, 5 %, 10 %): active before the hedge −27.1/−137.7,
              −3.47/−18.7, −0.59/−7.93; with the hedge −17.0/−73.0, −1.23/−6.43, −0.54/−5.34; with
              the hedge and the posterior mixture (fitting.strategies, mixture_draws)
              −17.0/−73.0, −1.29/−6.43, −0.05/−1.79; baselines v_optimal −17.0/−73.0,
              −1.42/−6.43, −0.48/−7.21; d_optimal −25.5/−86.2, −3.87/−27.4, −0.15/−4.96; random
              −∞ at 1 % and 5 % (seeds that bought too few runs to fit), −0.52/−5.47 at 10 %: the
              goal is met at every budget (at 1 % a tie: active's seed and hedge are
              V-optimal's; at 5 % the worst decile ties). The mixture's setting was chosen on those
              seeds, so it was checked on others (``--first-seed 20``): seeds 20-39 alone, active
              −18.2/−89.6, −2.91/−11.6, −0.54/−4.03 (without the mixture −18.2/−89.6, −2.77/−11.2,
              −0.81/−6.52); v_optimal −18.2/−89.6, −3.60/−15.1, −0.59/−5.30; d_optimal −15.8/−70.7,
              −1.29/−7.96, −0.65/−11.0: met at 10 % only, d_optimal ahead at 1 % and 5 %. Over
              seeds 0-39 (``--seeds 40``): active −17.6/−81.3, −2.10/−10.1, −0.29/−3.89;
              v_optimal −17.6/−81.3, −2.51/−13.2, −0.53/−6.61; d_optimal −20.7/−86.7, −2.58/−18.3,
              −0.40/−8.59: met at every budget (1 % a tie). Twenty seeds do not settle the 1 % and
              5 % rankings: one seed moves a mean by several units of R². Those figures scored each
              design's last warm refit. Since every design ends with a full multi-start refit (the
              fit command's optimum, `OnlineFitter.final_fit`), seeds 0-39 give active
              −18.2/−81.1, −3.01/−18.0, −0.21/−3.89; v_optimal −18.2/−81.1, −3.39/−19.3,
              −0.46/−6.61; d_optimal −20.6/−86.3, −1.55/−9.32, −0.014/−4.80: NOT met at 5 % and
              10 % (d_optimal's mean ahead at both, its worst decile at 5 %). The full refit lifted
              both at 5 % (their warm fits: active −5.76/−42.3, d_optimal −5.19/−42.4) but
              d_optimal's broad designs more; refitting fully before every pick did not help active
              (−3.44/−18.2), nor did a D-optimal hedge or dropping the mixture (20 seeds).

For every setting: the full grid (pool) fit as reference, then each strategy at each budget
fraction (of the whole grid's/pool's compute) over seeds; prints target R² (of loss) and mean
absolute relative error (ARE), the smallest fraction at which active matches the full grid,
whether active beats every baseline at each fraction, and the time of one active suggest()
with 1,000 completed runs and 10,000 candidates. On the oracles "clairvoyant" is the same
criterion linearised at the true parameters: what a designer that knew the answer would buy,
so the gap between it and the full grid is what *no* design can close at that budget.

    python bench/active_vs_grid.py            # 20 seeds, all settings (tens of minutes on 2 cores)
    python bench/active_vs_grid.py --quick    # 4 seeds
    python bench/active_vs_grid.py --settings nine [--seeds 20]   # the 9-parameter table (~10 min)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fitting import reference  # noqa: E402
from nine_law import NINE, NINE_TRUTH  # noqa: E402  (bench/, beside this file)
from fitting.design import Candidates, DesignState, TargetRegion  # noqa: E402
from fitting.fit import fit_law  # noqa: E402
from fitting.laws import CHINCHILLA_EPOCH, KAPLAN_PAPER, chinchilla  # noqa: E402
from fitting.objective import params_at_bounds  # noqa: E402
from fitting.online import OnlineFitConfig  # noqa: E402
from fitting.replay import SimulatedOracle, run_design, target_metrics, undertraining_misfit  # noqa: E402
from fitting.strategies import ActiveDesign, ReferenceDesign, make_strategy  # noqa: E402



@dataclass
class Setting:
    """One benchmark problem: a law, candidates, targets, and per-seed reveal/truth."""

    name: str
    law: str
    candidates: Candidates
    target: TargetRegion
    world: Callable[[int], tuple[Callable, np.ndarray]]  # seed -> (reveal, target truth)
    fit_config: OnlineFitConfig
    truth: dict | None = None  # parameters of an exactly true law (None: real data, or a law that misfits)


def _grid() -> Candidates:
    N, D = np.meshgrid(np.geomspace(1e7, 1e9, 7), np.geomspace(3e8, 1e11, 7), indexing="ij")
    return Candidates.from_columns({"N": N.ravel(), "D": D.ravel()})


def oracle_setting(name: str, law: str, params: dict, loss: str, noise: float = 0.015, misfit=None) -> Setting:
    cands = _grid()
    target = TargetRegion.compute_frontier(law, params, 1e22)

    def world(seed):
        orc = SimulatedOracle(law, params, noise=noise, seed=seed, misfit=misfit)
        return orc.observe_rows(cands), orc.truth(target.X)

    # designers are told the truth only where the law is the truth
    return Setting(name, law, cands, target, world, OnlineFitConfig(loss=loss, full_every=16, max_starts=256, screen=8),
                   truth=dict(params) if misfit is None else None)


def epoch_setting() -> Setting:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = reference.load("epoch-chinchilla", law="chinchilla")  # Epoch's 240 runs (5 highest-loss dropped)
    small = d.compute() <= reference.get("epoch-chinchilla").holdout_compute  # pool C <= 1e21, targets above
    pool, targets = d.subset(small), d.subset(~small)
    return Setting("epoch", "chinchilla", Candidates.from_columns(pool.X), TargetRegion.explicit(targets.X),
                   lambda seed: ((lambda idx: pool.y[idx]), targets.y),
                   OnlineFitConfig(full_every=16, max_starts=256, screen=8))


def nine_setting() -> Setting:
    """The 9-parameter oracle; the misfit is smooth in ln N and no N-dependent exponent absorbs it."""
    s = oracle_setting("nine", NINE, NINE_TRUTH, "huber", noise=0.01,
                       misfit=lambda X: 0.015 * np.sin(np.log(np.asarray(X["N"], dtype=float)) / 1.5))
    s.fit_config = OnlineFitConfig(loss="huber", full_every=16, max_starts=64, screen=4)  # 240 designs in ~10 min
    return s


def strategy_for(name: str, setting: Setting):
    """Where the truth *is* the law (exact oracles) the designers model no discrepancy (see
    fitting.posterior.Discrepancy); "clairvoyant" is the same criterion linearised at the truth."""
    if setting.truth is not None and name == "active":
        return ActiveDesign(discrepancy=False, cost_power=0.5)
    if name == "clairvoyant":
        return ReferenceDesign(setting.truth, discrepancy=False, cost_power=0.5)
    return make_strategy(name)


def evaluate_seed(setting: Setting, strategy: str, fraction: float, seed: int) -> dict | None:
    """One design at one seed: target R², mean ARE and how many parameters ended at a bound
    (None when the budget bought too few runs to fit)."""
    total = setting.candidates.cost.sum() * (1 + 1e-9)
    reveal, truth = setting.world(seed)
    run = run_design(setting.law, setting.candidates, reveal, strategy_for(strategy, setting), fraction * total,
                     setting.target, batch=4 if fraction < 1 else len(setting.candidates), seed=seed,
                     fit_config=setting.fit_config)
    if run.fit is None:
        return None
    m = target_metrics(run.fit.predict(setting.target.X), truth)
    return {"r2": m["r2"], "are": m["mean_are"], "at_bounds": len(params_at_bounds(run.fit.law, run.fit.z, run.fit.data.X)), "runs": len(run.bought)}


def evaluate(setting: Setting, strategy: str, fraction: float, seeds) -> tuple[float, float, int]:
    """Mean R², mean ARE over seeds and the number of seeds with no fit (too few runs bought)."""
    rows = [evaluate_seed(setting, strategy, fraction, seed) for seed in seeds]
    ok = [r for r in rows if r is not None]
    r2, are = [r["r2"] for r in ok], [r["are"] for r in ok]
    return (float(np.mean(r2)) if r2 else float("nan"), float(np.mean(are)) if are else float("nan"),
            len(rows) - len(ok))


def worst_decile(values) -> float:
    """Mean of the worst 10 % (at least one) of ``values`` (R²: the lowest)."""
    v = np.sort(np.asarray(values, dtype=float))
    return float(v[: max(1, int(np.ceil(0.1 * v.size)))].mean()) if v.size else float("nan")


def nine_table(seeds, fractions, strategies) -> bool:
    """The issue-15 item-6 table on the 9-parameter oracle; returns whether active meets the goal.
    A seed whose budget bought too few runs to fit counts as R² = −∞ (the design failed)."""
    setting = nine_setting()
    print(f"\n== nine: {len(setting.candidates)} candidates, {len(setting.target.weights)} targets, 9 parameters, "
          f"{len(seeds)} seeds, budget fractions {fractions}")
    print(f"{'strategy':<11}" + "".join(f"{'f=' + format(f, 'g'):>30}" for f in fractions))
    stats: dict[str, list[tuple[float, float]]] = {}
    t0 = time.time()
    for st in strategies:
        cells, stats[st] = [], []
        for f in fractions:
            rows = [evaluate_seed(setting, st, f, seed) for seed in seeds]
            r2 = [-np.inf if r is None else r["r2"] for r in rows]
            bounds = sum(1 for r in rows if r is None or r["at_bounds"])
            stats[st].append((float(np.mean(r2)), worst_decile(r2)))
            cells.append(f"{stats[st][-1][0]:>9.4f} {stats[st][-1][1]:>9.4f} ({bounds:>2}⊥)")
        print(f"{st:<11}" + "".join(f"{c:>30}" for c in cells), flush=True)
    print(f"(cells: mean R² of target loss, worst-decile R², n⊥ = seeds ending with a parameter at a bound or "
          f"with no fit) {time.time() - t0:.0f} s")
    if "active" not in stats or len(stats) < 2:
        return False
    base = [st for st in stats if st != "active"]
    ok = True
    for i, f in enumerate(fractions):
        best_mean = max(stats[st][i][0] for st in base)
        best_worst = max(stats[st][i][1] for st in base)
        meets = stats["active"][i][0] >= best_mean and stats["active"][i][1] >= best_worst
        ok &= meets
        print(f"  f={f:g}: active mean {stats['active'][i][0]:.4f} (best baseline {best_mean:.4f}), worst decile "
              f"{stats['active'][i][1]:.4f} (best baseline {best_worst:.4f}): {'meets' if meets else 'misses'}")
    print(f"nine: active {'meets' if ok else 'does NOT meet'} the goal at every budget "
          f"(mean ≥ best baseline's mean, worst decile ≥ best baseline's worst decile)")
    return ok


def suggest_timing(n_runs: int = 1000, n_cands: int = 10_000) -> float:
    rng = np.random.default_rng(0)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), n_runs + n_cands))
    D = N * np.exp(rng.uniform(0, np.log(500), n_runs + n_cands))
    X = {"N": N[:n_runs], "D": D[:n_runs]}
    y = SimulatedOracle("chinchilla", CHINCHILLA_EPOCH, seed=0).observe(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_law("chinchilla", X | {"loss": y}, starts=(), init=CHINCHILLA_EPOCH)
    cands = Candidates.from_columns({"N": N[n_runs:], "D": D[n_runs:]})
    state = DesignState(chinchilla, cands, TargetRegion.compute_frontier("chinchilla", CHINCHILLA_EPOCH, 1e22),
                        np.zeros(n_cands, dtype=bool), 1e30, 1e30, fit)
    strategy = ActiveDesign()
    strategy.select(state, 1)  # warm-up
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        strategy.select(state, 1)
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 seeds")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="seeds first_seed … first_seed+seeds−1 (a second set checks a setting chosen on the first)")
    ap.add_argument("--settings", default="chinchilla,kaplan,misfit,epoch")
    ap.add_argument("--strategies", default=None,
                    help="default active,clairvoyant,random,cost_random,cheapest,grid,d_optimal,v_optimal "
                         "(nine: active,v_optimal,d_optimal,random)")
    ap.add_argument("--fractions", default=None, help="default 0.01,0.03,0.1,0.3 (nine: 0.01,0.05,0.1)")
    args = ap.parse_args(argv)
    seeds = range(args.first_seed, args.first_seed + (4 if args.quick else args.seeds))
    fractions = [float(f) for f in (args.fractions or "0.01,0.03,0.1,0.3").split(",")]
    strategies = (args.strategies or "active,clairvoyant,random,cost_random,cheapest,grid,d_optimal,v_optimal").split(",")
    makers = {
        "chinchilla": lambda: oracle_setting("chinchilla", "chinchilla", CHINCHILLA_EPOCH, "ls"),
        "kaplan": lambda: oracle_setting("kaplan", "kaplan", KAPLAN_PAPER["kaplan"], "ls"),
        "misfit": lambda: oracle_setting("misfit", "chinchilla", CHINCHILLA_EPOCH, "huber", noise=0.005,
                                         misfit=undertraining_misfit()),
        "epoch": epoch_setting,
    }
    # unknown names fail here, in one line, not minutes in (a KeyError or a strategy's ValueError)
    unknown = sorted(set(args.settings.split(",")) - {*makers, "nine"})
    if unknown:
        ap.error(f"--settings: unknown {unknown}; choose from {', '.join([*makers, 'nine'])}")
    from fitting.strategies import STRATEGIES

    given = (args.strategies or "").split(",") if args.strategies else []
    unknown = sorted(set(given) - {*STRATEGIES, "clairvoyant"})
    if unknown:
        ap.error(f"--strategies: unknown {unknown}; choose from {', '.join([*STRATEGIES, 'clairvoyant'])}")
    warnings.simplefilter("ignore")
    print(f"seeds {seeds.start}-{seeds.stop - 1}")
    if set(args.settings.split(",")) - {"nine"}:
        print(f"seeds: {len(seeds)}; budget fractions of the full grid's compute: {fractions}")
    for name in args.settings.split(","):
        if name == "nine":
            nine_table(seeds, [float(f) for f in (args.fractions or "0.01,0.05,0.1").split(",")],
                       (args.strategies or "active,v_optimal,d_optimal,random").split(","))
            continue
        setting = makers[name]()
        t0 = time.time()
        full_r2, full_are, _ = evaluate(setting, "grid", 1.0, seeds if name != "epoch" else [0])
        print(f"\n== {name}: {len(setting.candidates)} candidates, {len(setting.target.weights)} targets; "
              f"full grid R² {full_r2:.4f}, mean ARE {full_are:.4%}")
        print(f"{'strategy':<11}" + "".join(f"{'f=' + format(f, 'g'):>22}" for f in fractions))
        table: dict[str, list[float]] = {}
        for st in strategies:
            if st == "clairvoyant" and setting.truth is None:
                continue
            cells, table[st] = [], []
            for f in fractions:
                r2, are, failed = evaluate(setting, st, f, seeds)
                table[st].append(are)
                cells.append(f"{r2:>8.4f} {are:>8.3%}" + (f" ({failed}✗)" if failed else "    "))
            print(f"{st:<11}" + "".join(f"{c:>22}" for c in cells), flush=True)
        print(f"(cells: R² of target loss, mean ARE; n✗ = seeds whose budget bought too few runs to fit, left "
              f"out of the mean) {time.time() - t0:.0f} s")
        if "active" in table:
            hit = next((f for f, are in zip(fractions, table["active"]) if are <= full_are), None)
            print(f"active first matches the full grid's error at "
                  f"{'fraction ' + format(hit, 'g') if hit else 'none of the fractions tried'}")
            baselines = [st for st in table if st not in ("active", "clairvoyant")]
            for i, f in enumerate(fractions):
                best = min(baselines, key=lambda st: table[st][i]) if baselines else None
                if best is not None:
                    verdict = "beats" if table["active"][i] < table[best][i] else "does not beat"
                    print(f"  f={f:g}: active {table['active'][i]:.3%} {verdict} every baseline (best: {best} "
                          f"{table[best][i]:.3%})")
    if set(args.settings.split(",")) - {"nine"}:
        print(f"\nactive suggest(): {suggest_timing() * 1e3:.0f} ms with 1,000 completed runs × 10,000 candidates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
