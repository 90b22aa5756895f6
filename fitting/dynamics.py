"""Training dynamics (Kaplan et al. 2020, §5): the critical batch size and the step and compute
a run would have needed at the ideal batch size.

* :func:`b_crit` — B_crit(L) = B*/L^(1/α_B), tokens (eq. 5.1; the ``critical_batch`` law's form).
* :func:`min_steps` — S_min = S/(1 + B_crit/B) (eq. 5.4): the fewest optimizer steps that reach
  the same loss, at a batch far above B_crit.
* :func:`min_compute` — C_min = C/(1 + B/B_crit) (eq. 5.5): the least compute that reaches the
  same loss, at a batch far below B_crit.

Everything here is pure numpy on arrays (broadcasting); B, B_crit in tokens, S in optimizer
steps, C in FLOPs.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

__all__ = ["b_crit", "b_crit_from", "min_steps", "min_compute", "KAPLAN_B_STAR", "KAPLAN_ALPHA_B"]

#: Kaplan et al. 2020, eq. (5.1) / fig. 10: B* ≈ 2e8 tokens, α_B ≈ 0.21 (L in nats/token).
KAPLAN_B_STAR = 2e8
KAPLAN_ALPHA_B = 0.21


def b_crit(loss, B_star: float = KAPLAN_B_STAR, alpha_B: float = KAPLAN_ALPHA_B):
    """Critical batch size in tokens at loss ``loss`` (nats/token): B*/L^(1/α_B) (Kaplan eq. 5.1).
    ``B_star``/``alpha_B`` may also come as the ``critical_batch`` law's fitted params
    (see :func:`b_crit_from`)."""
    return float(B_star) / np.asarray(loss, dtype=float) ** (1.0 / float(alpha_B))


def b_crit_from(loss, params: Mapping[str, float]):
    """:func:`b_crit` with the ``critical_batch`` law's parameter dict ``{"B_star", "alpha_B"}``."""
    return b_crit(loss, params["B_star"], params["alpha_B"])


def min_steps(steps, batch_tokens, critical_batch_tokens):
    """S_min = S/(1 + B_crit/B) (Kaplan eq. 5.4): optimizer steps → the minimum steps to the same
    loss. ``batch_tokens`` B and ``critical_batch_tokens`` B_crit in tokens."""
    B = np.asarray(batch_tokens, dtype=float)
    return np.asarray(steps, dtype=float) / (1.0 + np.asarray(critical_batch_tokens, dtype=float) / B)


def min_compute(compute, batch_tokens, critical_batch_tokens):
    """C_min = C/(1 + B/B_crit) (Kaplan eq. 5.5): FLOPs → the minimum compute to the same loss.
    ``batch_tokens`` B and ``critical_batch_tokens`` B_crit in tokens."""
    Bc = np.asarray(critical_batch_tokens, dtype=float)
    return np.asarray(compute, dtype=float) / (1.0 + np.asarray(batch_tokens, dtype=float) / Bc)
