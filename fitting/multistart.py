"""Multi-start driver for :func:`fitting.fit.fit_law`: screen the starts, run the survivors in
one batched L-BFGS (:mod:`fitting.optim`), then polish the best few with scipy's L-BFGS-B; and
the single-threaded-BLAS guard every batched solve (fits and bootstrap) runs under.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from fitting.optim import batched_lbfgs


def single_threaded_blas():
    """L-BFGS-B calls BLAS on vectors of a few elements; a multi-threaded OpenBLAS pays thread
    wake-ups on each call, which measured 6x slower on a busy 2-core machine."""
    return threadpool_limits(limits=1, user_api="blas")


def multistart_lbfgs(fg, Z0, lo, hi, *, screen="auto", maxiter=1000, gtol=1e-10, ftol=1e-15, n_polish=3, prune=0.25,
                n_keep_first=0):
    """Batched multi-start L-BFGS with optional screening, then a scipy polish of the best few.

    Returns (Z, f, converged) for the surviving starts (polished ones updated in place)."""
    from scipy.optimize import minimize

    S = Z0.shape[0]
    keep = None
    if screen == "auto":
        keep = 32 if S > 64 else None
    elif screen is not None:
        keep = int(screen)
    Z = Z0
    if keep is not None and S > keep:
        f0, _ = fg(Z, np.arange(S))
        f0 = np.where(np.isfinite(f0), f0, np.inf)
        first = np.argsort(f0, kind="stable")[: max(4 * keep, S // 4)]
        if n_keep_first and not np.isin(np.arange(n_keep_first), first).all():  # warm starts survive
            first = np.unique(np.concatenate([np.arange(n_keep_first), first]))
        Zs, fs, _, _ = batched_lbfgs(lambda z, r: fg(z, first[r]), Z[first], lo, hi, maxiter=3)
        fs = np.where(np.isfinite(fs), fs, np.inf)
        pos_first = np.flatnonzero(first < n_keep_first)
        fs_rank = fs.copy()
        fs_rank[pos_first] = -np.inf
        order = np.argsort(fs_rank, kind="stable")[:keep]
        rows = first[order]
        Z = Zs[order]
    else:
        rows = np.arange(S)
    # the batched stage only has to find the best basins; the scipy polish converges tightly
    Zf, ff, _, conv = batched_lbfgs(lambda z, r: fg(z, rows[r]), Z, lo, hi, maxiter=min(maxiter, 100 if Z.shape[0] > 64 else 300),
                                    gtol=1e-6, ftol=1e-10, prune=prune if Z.shape[0] > 64 else None)
    ff = np.where(np.isfinite(ff), ff, np.inf)
    # polish the best distinct candidates one at a time (tight tolerances)
    order = np.argsort(ff, kind="stable")
    picked: list[int] = []
    for i in order:
        if not np.isfinite(ff[i]) or len(picked) >= n_polish:
            break
        if any(np.allclose(Zf[i], Zf[j], rtol=1e-4, atol=1e-6) for j in picked):
            continue
        picked.append(int(i))
    bounds = [(None if not np.isfinite(a) else a, None if not np.isfinite(b) else b) for a, b in zip(lo, hi)]
    for i in picked:
        row = rows[i : i + 1]

        def single(z, row=row):
            f, g = fg(z[None, :], row)
            return float(f[0]), g[0]

        try:
            res = minimize(single, Zf[i], jac=True, method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": maxiter, "ftol": ftol, "gtol": gtol, "maxcor": 20})
        except (ValueError, FloatingPointError):  # pragma: no cover - polish is best effort
            continue
        if np.isfinite(res.fun) and res.fun <= ff[i]:
            Zf[i], ff[i] = res.x, res.fun
            conv[i] = conv[i] or bool(res.success)
    return Zf, ff, conv
