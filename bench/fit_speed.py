"""Benchmark: the 4,500-start Huber fit on Epoch's 240 Chinchilla points.

fitting.fit.fit_law (batched multi-start L-BFGS + polish) vs a straightforward loop of
scipy.optimize.minimize(method="L-BFGS-B") over the same 4,500 Hoffmann starts with the same
objective and analytic gradient. Prints both times, both optima, and the speed ratio last.
Usage: python bench/fit_speed.py [--every K]   (K > 1 runs the scipy loop on every K-th start
and extrapolates its time; the default runs all 4,500).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # same for both: tiny problems, no BLAS threads

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from fitting import reference  # noqa: E402
from fitting.fit import fit_law  # noqa: E402
from fitting.laws import HOFFMANN_GRID, chinchilla  # noqa: E402



def scipy_loop(N, D, y, starts, delta=1e-3):
    lN, lD, ly = np.log(N), np.log(D), np.log(y)

    def f(z):
        e, a, al, b, be = z
        tn, td = np.exp(a - al * lN), np.exp(b - be * lD)
        mu = np.exp(e) + tn + td
        r = np.log(mu) - ly
        psi = np.clip(r, -delta, delta)
        c = psi / mu
        g = np.array([np.exp(e) * c.sum(), (c * tn).sum(), -(c * tn * lN).sum(), (c * td).sum(), -(c * td * lD).sum()])
        return float((psi * (r - 0.5 * psi)).sum()), g

    best = (np.inf, None)
    for z0 in starts:
        with np.errstate(all="ignore"):
            res = minimize(f, z0, jac=True, method="L-BFGS-B")
        if res.fun < best[0]:
            best = (res.fun, res.x)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=1, help="scipy loop on every K-th start (time extrapolated)")
    args = ap.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = reference.load("epoch-chinchilla", law=chinchilla)  # Epoch's 240 runs (5 highest-loss dropped)
    print(f"data: {len(data)} points, {len(HOFFMANN_GRID)} starts (Hoffmann grid), Huber delta=1e-3")
    fit_law(chinchilla, data)  # warm-up (imports, caches)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        fit = fit_law(chinchilla, data)
        times.append(time.perf_counter() - t)
    t_engine = min(times)
    print(f"engine: {t_engine:.3f} s (best of 3; runs {', '.join(f'{x:.3f}' for x in times)})  objective {fit.objective:.10g}")
    print("        " + "  ".join(f"{k}={v:.6g}" for k, v in fit.params.items()))
    starts = HOFFMANN_GRID[:: args.every]
    t = time.perf_counter()
    fbest, zbest = scipy_loop(data.X["N"], data.X["D"], data.y, starts)
    t_scipy = (time.perf_counter() - t) * args.every
    sp = chinchilla.as_dict(chinchilla.from_z(zbest))
    note = f" (extrapolated from {len(starts)} starts)" if args.every > 1 else ""
    print(f"scipy L-BFGS-B loop: {t_scipy:.3f} s{note}  objective {fbest:.10g}")
    print("        " + "  ".join(f"{k}={v:.6g}" for k, v in sp.items()))
    diff = max(abs(fit.params[k] / sp[k] - 1) for k in sp)
    print(f"max relative parameter difference: {diff:.2e}; engine objective {'<=' if fit.objective <= fbest * (1 + 1e-9) else '>'} scipy's")
    print(f"speed ratio (scipy loop / engine): {t_scipy / t_engine:.1f}x")


if __name__ == "__main__":
    main()
