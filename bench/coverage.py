"""Coverage of the 90 % prediction intervals when extrapolating (issue 15 item 5).

For each law, a simulated oracle (the law at known parameters, a misfit the law cannot express,
log-normal run-to-run noise) is observed on a 7 x 7 grid of small runs (N 1e7-1e9, D 3e8-1e11;
the largest 6e20 FLOPs) and on 5 compute-optimal targets around 1e22 FLOPs, 1.2-2.2 decades
beyond. Each seeded replicate draws new noise, fits the law on the small runs (the ``fit``
command's defaults: Huber, the law's multi-start), widens the prediction interval by the misfit
calibrated on those runs (:func:`fitting.extrapolation.extrapolation_interval`, what ``replay``,
``predict`` and ``plan`` print) and
counts the targets whose observed loss falls inside. With
``--fractions`` the active designer also buys that share of the grid's compute first
(:func:`fitting.replay.run_design`) and the fit is on what it bought.

Laws and misfits:
  chinchilla       E + A/N^α + B/D^β at Epoch's fit; undertrained runs (D/N < 12) read high
                   (:func:`fitting.replay.undertraining_misfit`, +2 % at D/N = 1)
  kaplan           Kaplan et al.'s L(N, D) at the paper's constants; the same misfit
  data_constrained Muennighoff et al.'s law at Epoch's Chinchilla terms, R_D* 15.4, R_N* 5.3,
                   U = 3e9 unique tokens (runs past 3e9 tokens repeat data); the same misfit
  nine             a 9-parameter law with N-dependent exponents (α, β linear in ln N, B scaled by a
                   quadratic in ln N); a smooth misfit of 1.5 % across ln N

Prints one row per law and strategy: coverage (mean over replicates of the share of targets
covered, and its standard error over replicates), the plain interval's coverage (parameters and
run-to-run scatter with the misfit taken out of the residuals, :func:`fitting.extrapolation.noise_parts`;
the misfit interval adds the misfit sd to it in quadrature, so where it alone covers more than 95 %
the goal cannot be met), mean calibrated misfit amplitude, how often it was the stated prior (too
few runs) or 0, how many target predictions were not identified ("unb": an interval open to 0 or
infinity, counted apart and left out of the coverage), mean |error|, the interval's parts at the
targets (mean log-loss sd from the parameters, the run-to-run scatter and the misfit) against the rms of the observed log error and the rms error
of the predicted mean against the noise-free truth ("vs truth": what the parameter and misfit parts
should cover; both pooled over replicates and targets); last line the worst coverage against the
goal (85-95 %). ``--exact`` makes every oracle the law itself (no misfit): the parameter and
scatter parts alone, to see what the misfit adds to them.
``--scales`` adds a line per row: the coverage had the misfit sd been multiplied by each scale
(the same fits), the trade-off any one misfit calibration faces across the laws.

The parameter part is the one every command prints (:func:`fitting.extrapolation.default_parameter_part`:
the profile likelihood of each prediction below 4 runs per parameter, else the delta method's);
``--parameter-part delta|profile`` forces one, ``--bootstrap B`` takes it from B bootstrap resamples.

  python bench/coverage.py [--replicates 50] [--first-seed 0] [--laws chinchilla,kaplan,...] [--fractions 0.05,0.1] [--exact]
                           [--scales 0,0.5,0.75,1,1.25] [--bootstrap 200 | --parameter-part delta|profile]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/nine_law.py

from fitting.design import Candidates, TargetRegion  # noqa: E402
from fitting.extrapolation import (calibrate_misfit, default_parameter_part, extrapolation_interval,  # noqa: E402
                                   misfit_sd, noise_parts, parameter_interval)
from fitting.fit import fit_law  # noqa: E402
from fitting.laws import CHINCHILLA_EPOCH, KAPLAN_PAPER  # noqa: E402
from fitting.online import OnlineFitConfig  # noqa: E402
from fitting.replay import SimulatedOracle, run_design, undertraining_misfit  # noqa: E402
from fitting.strategies import make_strategy  # noqa: E402
from fitting.prediction_profile import prediction_profile  # noqa: E402
from fitting.uncertainty import bootstrap  # noqa: E402
from nine_law import NINE, NINE_TRUTH  # noqa: E402

GOAL = (0.85, 0.95)
LEVEL = 0.9
NOISE = 0.01  # sd of log loss between runs
# the 90 % interval's parts at the targets (mean log-loss sd); the rms over replicates and targets of
# the observed log error ("rms", noise included) and of the predicted mean's error against the noise-free
# truth ("truth": what the parameter and misfit parts are there to cover), squared per replicate and
# pooled in coverage() (a mean of per-replicate rms reads low with 5 correlated targets)
PARTS = ("param", "scatter", "misfit", "rms", "truth")


UNIQUE = 3e9  # data_constrained: unique tokens available


def _wiggle(amplitude: float = 0.015) -> Callable:
    """A smooth misfit across ln N that no N-dependent exponent absorbs: amplitude·sin(ln N / 1.5)."""
    return lambda X: amplitude * np.sin(np.log(np.asarray(X["N"], dtype=float)) / 1.5)


@dataclass
class Setting:
    name: str
    law: object
    truth: dict
    misfit: Callable
    fixed: dict | None = None  # inputs held fixed (data_constrained's U)

    def pool(self) -> Candidates:
        N, D = np.meshgrid(np.geomspace(1e7, 1e9, 7), np.geomspace(3e8, 1e11, 7), indexing="ij")
        X = {"N": N.ravel(), "D": D.ravel()}
        for k, v in (self.fixed or {}).items():
            X[k] = np.minimum(np.full(X["N"].size, v), X["D"]) if k == "U" else np.full(X["N"].size, v)
        return Candidates.from_columns(X)

    def targets(self) -> TargetRegion:
        return TargetRegion.compute_frontier(self.law, self.truth, 1e22, fixed=self.fixed)


SETTINGS = {
    "chinchilla": lambda: Setting("chinchilla", "chinchilla", CHINCHILLA_EPOCH, undertraining_misfit()),
    "kaplan": lambda: Setting("kaplan", "kaplan", KAPLAN_PAPER["kaplan"], undertraining_misfit()),
    "data_constrained": lambda: Setting("data_constrained", "data_constrained",
                                        dict(CHINCHILLA_EPOCH, R_D_star=15.4, R_N_star=5.3), undertraining_misfit(),
                                        fixed={"U": UNIQUE}),
    "nine": lambda: Setting("nine", NINE, NINE_TRUTH, _wiggle()),
}


def replicate(setting: Setting, seed: int, fraction: float = 1.0, warm: bool = False, exact: bool = False,
              scales: tuple[float, ...] = (), n_bootstrap: int = 0, parameter_part: str | None = None) -> dict:
    """One seeded replicate: → covered share of the targets, misfit sd and whether calibrated,
    mean |relative error| of the predictions (NaN entries when the budget bought too few runs).
    ``warm``: fit the full pool from the true parameters only (a local fit, no multi-start: what
    the CI test uses to stay within seconds; the intervals, not the search, are under test).
    ``exact``: the oracle is the law itself (no misfit), so the parameter and scatter parts can be
    checked against the error they alone should cover. ``scales``: also the coverage with the misfit
    sd multiplied by each (key ``"scale"``, one entry per scale; 1 is the interval printed).
    ``n_bootstrap``: the parameter part from that many bootstrap resamples (what ``fit``, ``predict``,
    ``plan`` and ``replay`` print with ``--parameter-part bootstrap``); an active design's runs are refitted
    first with the fit command's defaults, as ``predict`` on them would. ``parameter_part``: "delta" or
    "profile"; None: :func:`fitting.extrapolation.default_parameter_part`'s, what every command prints."""
    pool, target = setting.pool(), setting.targets()
    orc = SimulatedOracle(setting.law, setting.truth, noise=NOISE, seed=seed, misfit=None if exact else setting.misfit)
    y_pool, y_target = orc.observe(pool.X), orc.observe(target.X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fraction >= 1.0:
            fit = fit_law(setting.law, dict(pool.X) | {"loss": y_pool}, seed=seed,
                          **({"starts": (), "init": setting.truth} if warm else {}))
        else:
            run = run_design(setting.law, pool, lambda idx: y_pool[idx], make_strategy("active"),
                             fraction * float(pool.cost.sum()), target, batch=4, seed=seed,
                             fit_config=OnlineFitConfig(full_every=16, max_starts=256, screen=8, seed=seed))
            fit = run.fit
            if fit is not None and n_bootstrap:
                fit = fit_law(setting.law, dict(fit.data.X) | {"loss": fit.data.y}, seed=seed)
        if fit is None:
            return dict.fromkeys(("coverage", "plain", "amplitude", "are") + PARTS, np.nan) | {
            "calibrated": False, "unbounded": 0, "scale": [np.nan] * len(scales)}
        if n_bootstrap:
            bootstrap(fit, n_boot=n_bootstrap, seed=seed)
        part = "bootstrap" if n_bootstrap else parameter_part or default_parameter_part(fit)
        cal = calibrate_misfit(fit, parameter_part=part)
        prof = prediction_profile(fit, target.X, LEVEL) if part == "profile" else None  # traced once, every scale reads it
        iv = extrapolation_interval(fit, target.X, level=LEVEL, calibration=cal, parameter_part=part, profile=prof)
        X_t = fit.law.columns(target.X)
        noise = noise_parts(fit, X_t, cal.length)  # parameters and run-to-run scatter, the misfit taken out

        # an interval open to 0 or infinity is the prediction reported as not identified (a null
        # direction of the fit, fitting.uncertainty.null_space): counted apart, never as covering
        stated = np.isfinite(iv.hi) & (iv.lo > 0)

        def share_inside(interval) -> float:  # of the targets with a stated interval
            inside = (y_target >= interval.lo) & (y_target <= interval.hi)
            return float(np.mean(inside[stated])) if stated.any() else float("nan")

        def covered(scale: float) -> float:  # the same interval with the misfit sd times ``scale``
            cal_c = replace(cal, amplitude=scale * cal.amplitude, estimate=scale * cal.estimate, prior=scale * cal.prior)
            return share_inside(extrapolation_interval(fit, target.X, level=LEVEL, calibration=cal_c,
                                                       parameter_part=part, profile=prof))

        coverage_share = share_inside(iv)
        plain = covered(0.0)
        by_scale = [covered(c) for c in scales]
    err = np.log(y_target) - np.log(iv.mean)
    m = misfit_sd(fit, X_t, cal)
    # the interval's log-sd parts at the targets: parameters, run-to-run scatter (both noise only), misfit;
    # mean squared errors (observed, and of the mean against the noise-free truth), pooled in coverage()
    param_sd = parameter_interval(fit, X_t, LEVEL, cal.length, part, prof).se_log  # the part the interval used
    parts = {"param": float(np.mean(param_sd)), "scatter": noise.noise_sd,
             "misfit": float(np.mean(m)),
             "rms": float(np.mean(err**2)), "truth": float(np.mean((np.log(orc.truth(target.X)) - np.log(iv.mean)) ** 2))}
    return {"coverage": coverage_share, "unbounded": int((~stated).sum()), "amplitude": cal.amplitude,
            "plain": plain,
            "calibrated": cal.calibrated, "are": float(np.mean(np.abs(iv.mean / y_target - 1))),
            "scale": by_scale} | parts


def coverage(name: str, replicates: int, fraction: float = 1.0, first_seed: int = 0, warm: bool = False,
             exact: bool = False, scales: tuple[float, ...] = (), n_bootstrap: int = 0, parameter_part: str | None = None) -> dict:
    """Mean over ``replicates`` seeded replicates of :func:`replicate` for law ``name``."""
    setting = SETTINGS[name]()
    rows = [replicate(setting, seed, fraction, warm, exact, scales, n_bootstrap, parameter_part)
            for seed in range(first_seed, first_seed + replicates)]
    cov = np.array([r["coverage"] for r in rows])
    ok = np.isfinite(cov)
    return {"law": name, "fraction": fraction, "n": int(ok.sum()), "coverage": float(cov[ok].mean()),
            "se": float(cov[ok].std(ddof=1) / np.sqrt(max(ok.sum(), 1))) if ok.sum() > 1 else float("nan"),
            "amplitude": float(np.nanmean([r["amplitude"] for r in rows])),
            "prior": int(sum(not r["calibrated"] for r in rows)),
            "unbounded": int(sum(r["unbounded"] for r in rows)),
            "zero": int(sum(r["amplitude"] == 0 for r in rows)),
            "are": float(np.nanmean([r["are"] for r in rows])), "plain": float(np.nanmean([r["plain"] for r in rows])),
            "scale": np.nanmean([r["scale"] for r in rows], axis=0).tolist() if scales else []} | {
            k: float(np.nanmean([r[k] for r in rows]) ** (0.5 if k in ("rms", "truth") else 1)) for k in PARTS}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicates", type=int, default=50)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + replicates - 1 (rules "
                    "are chosen on 0-49; confirm on others)")
    ap.add_argument("--laws", default=",".join(SETTINGS))
    ap.add_argument("--fractions", default="", help="active design at these budget fractions too (e.g. 0.05,0.1)")
    ap.add_argument("--no-full", action="store_true", help="skip the full-pool row (only the --fractions ones)")
    ap.add_argument("--exact", action="store_true", help="oracles without misfit: the parameter and scatter parts alone")
    ap.add_argument("--bootstrap", type=int, default=0, metavar="B",
                    help="parameter part from B bootstrap resamples instead of the default part")
    ap.add_argument("--parameter-part", choices=["delta", "profile"], help="this parameter part for every fit (default: "
                    "fitting.extrapolation.default_parameter_part's, what every command prints: the profile below "
                    "4 runs per parameter, else the delta method's)")
    ap.add_argument("--scales", default="", help="also the coverage with the misfit sd times each of these (e.g. "
                    "0,0.5,1,1.5): the trade-off one calibration would face across laws")
    args = ap.parse_args(argv)
    laws = [s for s in args.laws.split(",") if s]
    unknown = [s for s in laws if s not in SETTINGS]
    if unknown:
        print(f"--laws: unknown {unknown}; choose from {sorted(SETTINGS)}", file=sys.stderr)
        return 2
    if args.bootstrap and args.parameter_part:
        print("--parameter-part and --bootstrap: choose one parameter part", file=sys.stderr)
        return 2
    fractions = ([] if args.no_full else [1.0]) + [float(f) for f in args.fractions.split(",") if f]
    scales = tuple(float(c) for c in args.scales.split(",") if c)
    if not fractions:
        print("--no-full needs --fractions", file=sys.stderr)
        return 2
    print(f"{'law':<17} {'strategy':<12} {'reps':>4} {'coverage':>9} {'± se':>6} {'plain':>6} {'misfit sd':>9} {'prior':>5} "
          f"{'zero':>4} {'unb':>4} {'mean|err|':>9} {'sd: param':>9} {'scatter':>7} {'misfit':>6} {'rms err':>7} {'vs truth':>8} {'s':>6}")
    rows = []
    for name in laws:
        for frac in fractions:
            t0 = time.perf_counter()
            r = coverage(name, args.replicates, frac, first_seed=args.first_seed, exact=args.exact, scales=scales,
                         n_bootstrap=args.bootstrap, parameter_part=args.parameter_part)
            strategy = "full pool" if frac >= 1 else f"active {frac:.0%}"
            print(f"{name:<17} {strategy:<12} {r['n']:>4} {r['coverage']:>9.1%} {r['se']:>6.1%} {r['plain']:>6.1%} {r['amplitude']:>9.4f} "
                  f"{r['prior']:>5} {r['zero']:>4} {r['unbounded']:>4} {r['are']:>9.2%} {r['param']:>9.4f} {r['scatter']:>7.4f} {r['misfit']:>6.4f} "
                  f"{r['rms']:>7.4f} {r['truth']:>8.4f} {time.perf_counter() - t0:>6.0f}", flush=True)
            if scales:
                print(f"{'':<17} {'':<12} misfit sd x " + ", ".join(f"{c:g}: {v:.1%}" for c, v in zip(scales, r["scale"])))
            rows.append((name, strategy, r["coverage"]))
    worst = min(rows, key=lambda row: row[2])
    outside = [f"{n} {s} {c:.1%}" for n, s, c in rows if not GOAL[0] <= c <= GOAL[1]]
    print(f"worst coverage: {worst[2]:.1%} ({worst[0]}, {worst[1]}); goal {GOAL[0]:.0%}-{GOAL[1]:.0%} for every "
          f"law: {'met' if not outside else 'NOT met (' + '; '.join(outside) + ')'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
