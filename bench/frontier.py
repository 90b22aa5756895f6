"""Benchmark: the compute-optimal frontier three ways on Epoch's 240 Chinchilla points
(``--example epoch-chinchilla``), against the published numbers.

Runs ``scalesweep frontier``'s own path (:func:`fitting.frontier_cli.run_frontier`) and prints,
per approach the data supports, a and b (N_opt ∝ C^a, D_opt ∝ C^b) and N_opt at 1e24 FLOPs with
their intervals, beside
* Hoffmann et al. 2022's published exponents (approach 1: a 0.50, b 0.50; approach 2: a 0.49,
  b 0.51; approach 3: a 0.46, b 0.54) — approach 3's N_opt from their printed fit (E 1.69,
  A 406.4, B 410.7, α 0.34, β 0.28; fitting/reference/README.md);
* Epoch's refit (Besiroglu et al. 2024, preferred fit: A 482.01, B 2085.43, E 1.8172, α 0.3478,
  β 0.3658; fitting/reference/README.md): a = β/(α+β), N_opt from the closed form.
The file is read off a figure: no curves, so approach 1 is unsupported here (it needs a store).
The largest disagreement (|Δa| and the N_opt ratio) is printed last.
Usage: python bench/frontier.py [--bootstrap B] [--tolerance T]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from fitting.allocate import chinchilla_optimal  # noqa: E402
from fitting.frontier import compare_frontiers  # noqa: E402
from fitting.frontier_cli import run_frontier  # noqa: E402
from scalesweep.cli import build_parser  # noqa: E402

C_AT = 1e24
HOFFMANN = {"envelope": (0.50, 0.50), "isoflop": (0.49, 0.51), "parametric": (0.46, 0.54)}
HOFFMANN_PRINTED_FIT = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
EPOCH_REFIT = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--tolerance", type=float, default=None, help="decades (default: frontier's)")
    opts = ap.parse_args()
    argv = ["frontier", "--example", "epoch-chinchilla", "--compute", f"{C_AT:g}", "--bootstrap", str(opts.bootstrap)]
    if opts.tolerance is not None:
        argv += ["--tolerance", str(opts.tolerance)]
    t0 = time.perf_counter()
    results, _ = run_frontier(build_parser().parse_args(argv))
    took = time.perf_counter() - t0
    h_n, _, h_a, _ = (float(v) for v in chinchilla_optimal(HOFFMANN_PRINTED_FIT, C_AT))
    e_n, _, e_a, e_b = (float(v) for v in chinchilla_optimal(EPOCH_REFIT, C_AT))
    ci = lambda v, iv, f: f"{v:{f}} [{iv[0]:{f}}, {iv[1]:{f}}]"
    print(f"epoch-chinchilla (240 runs), C = {C_AT:g} FLOPs, 90% intervals, {took:.1f} s")
    print(f"{'approach':<11} {'a':<22} {'b':<22} {'N_opt':<28} {'Hoffmann a, b':<14} {'Epoch refit a, b'}")
    gaps = []
    for r in results:
        ha, hb = HOFFMANN[r.approach]
        if not r.supported:
            print(f"{r.approach:<11} unsupported: {r.reason}   (Hoffmann a {ha:.2f}, b {hb:.2f})")
            continue
        print(f"{r.approach:<11} {ci(r.a, r.a_ci, '.3f'):<22} {ci(r.b, r.b_ci, '.3f'):<22} "
              f"{ci(r.n_opt, r.n_opt_ci, '.3g'):<28} {ha:.2f}, {hb:.2f}     {e_a:.3f}, {e_b:.3f}")
        gaps += [(abs(r.a - ha), f"{r.approach} a {r.a:.3f} vs Hoffmann's {ha:.2f}"),
                 (abs(r.a - e_a), f"{r.approach} a {r.a:.3f} vs Epoch's refit {e_a:.3f}")]
    print(f"{'reference':<11} Hoffmann's printed fit: N_opt {h_n:.3g} (a {h_a:.3f}); "
          f"Epoch's refit: N_opt {e_n:.3g} (a {e_a:.3f})")
    ok = [r for r in results if r.supported]
    ratios = [(max(r.n_opt, ref) / min(r.n_opt, ref), f"{r.approach} N_opt {r.n_opt:.3g} vs {name} {ref:.3g}")
              for r in ok for name, ref in (("Epoch's refit", e_n),) + (
                  (("Hoffmann's printed fit", h_n),) if r.approach == "parametric" else ())]
    print(compare_frontiers(results))
    worst_a = max(gaps)
    worst_n = max(ratios)
    print(f"largest disagreement: |Δa| {worst_a[0]:.3f} ({worst_a[1]}); N_opt ×{worst_n[0]:.2f} ({worst_n[1]})")


if __name__ == "__main__":
    main()
