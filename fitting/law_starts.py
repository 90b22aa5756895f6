"""Start points placed from the data's own scale, for the built-in laws' ``data_init``
(:class:`fitting.law.Law`).

A fixed start grid for a scale parameter (``N_c``, ``C_c``, ``A``) is written for one unit: the
Kaplan grid for ``C_c`` stops at 1e14, while C in FLOPs at LLM scale needs ``C_c`` near 1e25, and
an exponent started far from its basin sticks at 0 (the loss flat in ``C_c``). These starts
solve the law for its scale parameters at the data's centre instead: for a term
``(X_c / X)^alpha`` worth ``share`` of the reducible loss ``L - E`` at the median row,

    log X_c = median(log X) + log(share * (median L - E)) / alpha,

and for ``A / X^alpha``, ``log A = alpha * median(log X) + log(share * (median L - E))``. They
are equivariant: multiplying an input by k moves every start by the amount the optimum moves, so
the same runs in other units give the same exponents (tests/test_law_scale.py).

Every function takes the rows ``X`` (mapping of 1-D columns) and targets ``y`` ``(n,)`` and
returns starts in the law's ``z`` space, shape ``(S, P)`` (log for scales and E).
"""

from __future__ import annotations

import itertools

import numpy as np

from fitting.law import logcol

#: Exponents each term is started at, and the shares of the reducible loss a term is given.
EXPONENTS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8)
SHARES = (0.2, 0.5, 0.8)
#: Irreducible-loss starts as fractions of the smallest loss (E must stay below every loss).
FLOOR_FRACTIONS = (0.1, 0.5, 0.8)


def _centre(X, column: str) -> float:
    return float(np.median(logcol(X, column)))


def _floors(y, irreducible: bool):
    """(E or None, log of median reducible loss) pairs."""
    y = np.asarray(y, dtype=float)
    middle = float(np.median(y))
    if not irreducible:
        return [(None, np.log(middle))]
    return [(f * y.min(), np.log(middle - f * y.min())) for f in FLOOR_FRACTIONS]


def power_terms(columns, irreducible: bool, *, divided: bool = True, exponents=EXPONENTS):
    """Starts for ``[E +] sum_k term_k`` with one term per column, in parameter order
    ``[log E,] (scale_1, alpha_1), (scale_2, alpha_2), ...``: ``divided=True`` for
    ``(X_c / X)^alpha`` (scale ``log X_c``), ``False`` for ``A / X^alpha`` (``log A``).
    One column: ``share`` is 1 with three offsets of the loss level (× e^-0.5, 1, e^0.5)."""
    columns = tuple(columns)
    if len(columns) > 1 and exponents is EXPONENTS:  # a product of grids: keep it small
        exponents = (0.05, 0.2, 0.8)
    shares = [(1.0,)] if len(columns) == 1 else [(s, 1.0 - s) for s in SHARES]
    levels = (-0.5, 0.0, 0.5) if len(columns) == 1 else (0.0,)

    def starts(X, y):
        centres = [_centre(X, c) for c in columns]
        rows = []
        for (E, log_rest), split, level, alphas in itertools.product(
                _floors(y, irreducible), shares, levels, itertools.product(exponents, repeat=len(columns))):
            row = [] if E is None else [np.log(E)]
            for m, share, a in zip(centres, split, alphas):
                log_term = np.log(share) + log_rest + level
                row += [m + log_term / a, a] if divided else [a * m + log_term, a]
            rows.append(row)
        return np.array(rows)

    return starts


def kaplan_nd_starts(irreducible: bool, exponents=(0.03, 0.08, 0.2, 0.4)):
    """``[E +] [(N_c/N)^(a_N/a_D) + D_c/D]^a_D``, parameters ``[log E,] log N_c, a_N, log D_c, a_D``
    (Kaplan et al. 2020, eq. 1.5): the bracket is ``(L - E)^(1/a_D)``, split ``share : 1 - share``."""

    def starts(X, y):
        mN, mD = _centre(X, "N"), _centre(X, "D")
        rows = []
        for (E, log_rest), s, aN, aD in itertools.product(_floors(y, irreducible), SHARES, exponents, exponents):
            log_bracket = log_rest / aD
            row = [] if E is None else [np.log(E)]
            rows.append(row + [mN + (aD / aN) * (np.log(s) + log_bracket), aN, mD + np.log(1 - s) + log_bracket, aD])
        return np.array(rows)

    return starts


def chinchilla_starts(X, y):
    """``E + A/N^alpha + B/D^beta``, parameters ``log E, log A, alpha, log B, beta``
    (Hoffmann et al. 2022, eq. 2)."""
    return power_terms(("N", "D"), True, divided=False, exponents=(0.1, 0.3, 0.6, 1.0))(X, y)


def data_constrained_starts(X, y):
    """Muennighoff et al. 2023's law, parameters ``log E, log A, alpha, log B, beta, log R_D*,
    log R_N*``: the Chinchilla starts (with D' ≈ D, N' ≈ N) and the paper's R_D* 15.4, R_N* 5.3."""
    base = power_terms(("N", "D"), True, divided=False, exponents=(0.3, 0.6))(X, y)
    tail = np.broadcast_to(np.log([15.4, 5.3]), (base.shape[0], 2))
    return np.hstack([base, tail])


def critical_batch_starts(X, y, exponents=(0.1, 0.2, 0.4, 0.8)):
    """``B_crit = B* / L^(1/alpha_B)``, parameters ``log B*, alpha_B`` (Kaplan et al. 2020, eq. 1.4)."""
    mL, my = _centre(X, "L"), float(np.median(np.log(y)))
    return np.array([[my + level + mL / a, a] for a in exponents for level in (-0.5, 0.0, 0.5)])
