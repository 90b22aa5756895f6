"""Batched L-BFGS: many independent small problems (starts, bootstrap replicates) at once.

Every row of ``z`` is its own problem; ``fg(z, rows)`` returns the objectives ``(S,)`` and
gradients ``(S, P)`` of the problems ``rows`` at ``z``. One numpy pass per iteration serves all
active rows; rows leave the active set as they converge, so the cost shrinks as starts finish.
Box bounds are handled by projection (directions into an active bound are zeroed, steps are
clipped), which is what a multi-start of small, mostly interior problems needs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["batched_lbfgs"]

#: Backtracking steps a row tries in one objective call once its first step failed (batched_lbfgs).
LS_BATCH = 4


def batched_lbfgs(fg, z0, lo=None, hi=None, *, m: int = 10, maxiter: int = 500, gtol: float = 1e-9,
                  ftol: float = 1e-13, max_ls: int = 40, c1: float = 1e-4, prune: float | None = None,
                  prune_after: int = 20):
    """Minimise S independent objectives from the rows of ``z0`` (shape ``(S, P)``).

    Returns ``(z, f, n_iter, converged)``. Converged means the projected gradient's max-norm fell
    below ``gtol * max(1, |f|)`` or the relative decrease fell below ``ftol`` (twice in a row).
    ``prune``: after ``prune_after`` iterations, stop rows whose objective exceeds the best row's by
    more than ``prune`` × |best| (for multi-start where only the best row matters; they are
    reported as not converged).
    """
    z = np.array(z0, dtype=float, copy=True)
    S, P = z.shape
    lo = np.full(P, -np.inf) if lo is None else np.asarray(lo, dtype=float)
    hi = np.full(P, np.inf) if hi is None else np.asarray(hi, dtype=float)
    z = np.clip(z, lo, hi)
    f, g = fg(z, np.arange(S))
    f = np.where(np.isfinite(f), f, np.inf)
    g = np.where(np.isfinite(g), g, 0.0)
    s_mem = np.zeros((S, m, P))
    y_mem = np.zeros((S, m, P))
    rho = np.zeros((S, m))
    n_mem = np.zeros(S, dtype=int)  # number of stored pairs
    head = np.zeros(S, dtype=int)  # next slot
    active = np.isfinite(f)
    converged = np.zeros(S, dtype=bool)
    small = np.zeros(S, dtype=int)
    iters = np.zeros(S, dtype=int)
    first = np.ones(S, dtype=bool)

    for it in range(maxiter):
        if prune is not None and it >= prune_after and it % 5 == 0:
            fb = np.min(f)
            active &= ~(f > fb + prune * abs(fb))
        idx = np.where(active)[0]
        if idx.size == 0:
            break
        za, fa, ga = z[idx], f[idx], g[idx]
        # ---- two-loop recursion, batched over active rows
        q = ga.copy()
        A = idx.size
        alpha = np.zeros((A, m))
        nm, hd = n_mem[idx], head[idx]
        for j in range(m):
            slot = (hd - 1 - j) % m
            use = j < nm
            if not use.any():
                break
            s_j = s_mem[idx, slot]
            y_j = y_mem[idx, slot]
            r_j = rho[idx, slot]
            a_j = np.where(use, r_j * np.einsum("ij,ij->i", s_j, q), 0.0)
            alpha[:, j] = a_j
            q -= a_j[:, None] * y_j
        last = (hd - 1) % m
        s_l, y_l = s_mem[idx, last], y_mem[idx, last]
        yy = np.einsum("ij,ij->i", y_l, y_l)
        gamma = np.where(nm > 0, np.einsum("ij,ij->i", s_l, y_l) / np.where(yy > 0, yy, 1.0), 1.0)
        r = gamma[:, None] * q
        for j in range(m - 1, -1, -1):
            slot = (hd - 1 - j) % m
            use = j < nm
            if not use.any():
                continue
            s_j = s_mem[idx, slot]
            y_j = y_mem[idx, slot]
            b_j = rho[idx, slot] * np.einsum("ij,ij->i", y_j, r)
            r += np.where(use, alpha[:, j] - b_j, 0.0)[:, None] * s_j
        d = -r
        # zero components pushing into an active bound
        at_lo = (za <= lo) & (d < 0)
        at_hi = (za >= hi) & (d > 0)
        d[at_lo | at_hi] = 0.0
        slope = np.einsum("ij,ij->i", ga, d)
        bad = ~(slope < 0) | ~np.isfinite(slope)
        if bad.any():  # not a descent direction: restart from steepest descent
            d[bad] = -ga[bad]
            d[bad] = np.where(((za[bad] <= lo) & (d[bad] < 0)) | ((za[bad] >= hi) & (d[bad] > 0)), 0.0, d[bad])
            n_mem[idx[bad]] = 0
            slope = np.einsum("ij,ij->i", ga, d)
        gnorm = np.abs(d).max(axis=1)
        t = np.where(first[idx] | bad, np.minimum(1.0, 1.0 / np.maximum(gnorm, 1e-300)), 1.0)
        # ---- backtracking Armijo line search on the projected step
        pending = np.ones(A, dtype=bool) & (slope < 0)
        z_new = za.copy()
        f_new = fa.copy()
        g_new = ga.copy()
        tries = 0
        while tries < max_ls:
            pi = np.where(pending)[0]
            if pi.size == 0:
                break
            # the first try is one step per row (most accept it); a row that backtracked then tries its next
            # LS_BATCH steps t, 0.3t, 0.09t, ... in one call and takes the first that passes, as one at a time
            # would: the same step for a quarter of the calls, which cost per call more than per row
            k = 1 if tries == 0 else min(LS_BATCH, max_ls - tries)
            steps = t[pi, None] * 0.3 ** np.arange(k)  # (p, k)
            zt = np.clip(za[pi, None, :] + steps[:, :, None] * d[pi, None, :], lo, hi)  # (p, k, P)
            ft, gt = fg(zt.reshape(-1, P), np.repeat(idx[pi], k))
            ft, gt = ft.reshape(-1, k), gt.reshape(-1, k, P)
            dec = np.einsum("ij,ikj->ik", ga[pi], zt - za[pi, None, :])
            ok = np.isfinite(ft) & (ft <= fa[pi, None] + c1 * dec)  # (p, k)
            acc = ok.any(axis=1)
            ai, fk = pi[acc], np.argmax(ok, axis=1)[acc]
            z_new[ai], f_new[ai] = zt[acc, fk], ft[acc, fk]
            g_new[ai] = np.where(np.isfinite(gt[acc, fk]), gt[acc, fk], 0.0)
            pending[ai] = False
            t[pi[~acc]] *= 0.3**k
            tries += k
        failed = pending | ~(slope < 0)
        # ---- memory update
        s = z_new - za
        yv = g_new - ga
        sy = np.einsum("ij,ij->i", s, yv)
        upd = ~failed & (sy > 1e-12 * np.sqrt(np.einsum("ij,ij->i", s, s) * np.einsum("ij,ij->i", yv, yv)) + 1e-300)
        ui = idx[upd]
        slot = head[ui]
        s_mem[ui, slot] = s[upd]
        y_mem[ui, slot] = yv[upd]
        rho[ui, slot] = 1.0 / sy[upd]
        head[ui] = (slot + 1) % m
        n_mem[ui] = np.minimum(n_mem[ui] + 1, m)
        first[idx] = False
        # ---- convergence
        rel = (fa - f_new) / np.maximum(np.maximum(np.abs(fa), np.abs(f_new)), 1e-300)
        z[idx], f[idx], g[idx] = z_new, f_new, g_new
        iters[idx] += 1
        pg = np.abs(z_new - np.clip(z_new - g_new, lo, hi)).max(axis=1)
        gconv = pg <= gtol * np.maximum(1.0, np.abs(f_new))
        small[idx] = np.where(rel <= ftol, small[idx] + 1, 0)
        done = gconv | (small[idx] >= 2) | failed
        converged[idx] = gconv | (small[idx] >= 2) | (failed & (pg <= 1e-5 * np.maximum(1.0, np.abs(f_new))))
        active[idx[done]] = False
    return z, f, iters, converged
