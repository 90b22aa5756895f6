"""The expected-error algebra of active design: the linearised posterior of a law's parameters,
the law's misfit as a smooth discrepancy, and the gain of observing a candidate. Candidates,
target regions and seeds live in :mod:`fitting.design`; the strategies that use both in
:mod:`fitting.strategies`; :mod:`fitting.extrapolation` reuses the discrepancy for intervals.

The model is the *linearised (Laplace/Fisher) posterior* of the law in its transformed
parameters z, with J the Jacobian of log L̂ (:func:`fitting.objective.log_jacobian`) at the current
fit and s the run-to-run scatter of log loss. The truth is allowed to differ from the law by a
smooth *discrepancy* δ(x) (a Gaussian process in log N × log D/N, random Fourier features Φ so
everything stays a linear model of fixed size) that the fit does not model, so it leaks into
the fitted parameters. For the law-only estimator the expected squared error of log loss at a
target t is

    E[e_t²] = g_tᵀ Σ g_t + |r_t|²,     Σ = (JᵀJ/s² + Λ₀)⁻¹,   r_t = Bᵀg_t − φ_t,   B = Σ JᵀΦ/s²,

variance plus the squared bias that the discrepancy at the design points (B: parameter shift
per unit discrepancy) causes at t, less the discrepancy at t itself. Observing a candidate c
(law gradient g_c, discrepancy features φ_c) is a rank-one update, u = Σ g_c, d = s² + g_cᵀu:

    Σ' = Σ − u uᵀ/d,   B' = B − u r_cᵀ/d,   r_t' = r_t − β r_c,   β = g_tᵀu/d,

so the expected reduction of the weighted target error is, vectorised over candidates,

    gain(c) = Σ_t w_t [β² (d − |r_c|²) + 2 β r_tᵀr_c]

(O(K·(P² + P·m + R·m))). With no discrepancy (Φ = 0) it is the classical reduction of target
predictive variance; with one, runs whose own misfit would drag the parameters (large |r_c|,
high leverage far from the targets) can score *negative*: the Box–Draper lesson that designs at
the extremes of the space are the least robust to a wrong model. Fantasised observations are
free in a linear model, so batches are greedy with these updates and concurrent slots get
diverse runs. Variance of *log* loss is relative error squared, so targets at different loss
scales are weighed alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from fitting.law import Law
from fitting.objective import log_jacobian

__all__ = [
    "log_coordinates",
    "Discrepancy",
    "LinearPosterior",
    "law_gradients",
    "posterior_cov",
    "quad_rows",
    "target_gain",
    "expected_error_reduction",
    "fantasise",
    "posterior_draws",
]


# ====================================================================== coordinates and misfit
def log_coordinates(X: Mapping[str, np.ndarray]) -> np.ndarray:
    """Unscaled design coordinates: (ln N, ln D/N) for (N, D) laws, else ln of every input."""
    if {"N", "D"} <= set(X):
        return np.column_stack([np.log(X["N"]), np.log(X["D"] / X["N"])])
    return np.column_stack([np.log(np.asarray(v, dtype=float)) for v in X.values()])

@dataclass(frozen=True)
class Discrepancy:
    """Prior on how far the truth may stray from the law: a smooth Gaussian process in log
    coordinates (squared-exponential kernel), approximated by ``n_features`` random Fourier
    features. ``amplitude``: prior sd of the misfit in log loss (0.04 = the law may be off by a
    few per cent); ``length``: its correlation length in ln units (2 = a factor e² ≈ 7 in N or
    D/N). Defaults measured on the Epoch replay (bench/active_vs_grid.py): target error is flat
    for amplitude 0.04–0.06 and length 2–3, and much worse with no discrepancy at all."""

    amplitude: float = 0.04
    length: float = 2.0
    n_features: int = 128
    seed: int = 0

    def features(self, X: Mapping[str, np.ndarray]) -> np.ndarray:
        U = log_coordinates(X)
        rng = np.random.default_rng(self.seed)
        W = rng.standard_normal((U.shape[1], self.n_features)) / self.length
        b = rng.uniform(0, 2 * np.pi, self.n_features)
        return self.amplitude * np.sqrt(2.0 / self.n_features) * np.cos(U @ W + b)


# ====================================================================== linear algebra (pure)
def law_gradients(law: Law, z: np.ndarray, X: Mapping[str, np.ndarray]) -> np.ndarray:
    """∂ log L̂ / ∂z at each row of X (non-finite entries, e.g. a term that underflowed, as 0)."""
    if len(next(iter(X.values()))) == 0:
        return np.zeros((0, law.n_params))
    G = log_jacobian(law, z, X)
    return np.where(np.isfinite(G), G, 0.0)


def posterior_cov(J_obs: np.ndarray, s2: float, prior_sd: float | np.ndarray = 3.0) -> np.ndarray:
    """Σ = (JᵀJ/s² + I/prior_sd²)⁻¹ in z space; the weak prior keeps Σ finite on tiny designs."""
    P = J_obs.shape[1]
    prec = J_obs.T @ J_obs / s2 + np.diag(np.broadcast_to(1.0 / np.asarray(prior_sd, dtype=float) ** 2, (P,)))
    return np.linalg.inv(prec)


def quad_rows(G: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Row-wise quadratic forms gᵀ A g (one BLAS matmul; einsum's loop is ~10× slower here)."""
    return np.sum((G @ A) * G, axis=1)


def target_gain(Sigma: np.ndarray, G_T: np.ndarray, w_T: np.ndarray, G_C: np.ndarray, s2: float) -> np.ndarray:
    """Expected reduction of Σ_t w_t Var[log L̂(t)] from observing each candidate (rows of G_C)."""
    A = Sigma @ (G_T.T * w_T) @ G_T @ Sigma  # M = Σ G_Tᵀ W G_T Σ
    return quad_rows(G_C, A) / (s2 + quad_rows(G_C, Sigma))


def expected_error_reduction(Sigma: np.ndarray, B: np.ndarray, G_T: np.ndarray, Phi_T: np.ndarray, w_T: np.ndarray,
                             G_C: np.ndarray, Phi_C: np.ndarray, s2: float) -> np.ndarray:
    """Expected reduction of Σ_t w_t E[(log L̂(t) − log L(t))²] (variance + discrepancy bias, see
    the module docstring) from observing each candidate (rows of G_C, Phi_C)."""
    U = G_C @ Sigma
    d = s2 + np.sum(U * G_C, axis=1)
    R_C = G_C @ B - Phi_C
    R_T = G_T @ B - Phi_T
    beta = (U @ G_T.T) / d[:, None]  # (K, m)
    per_target = beta**2 * (d - np.sum(R_C**2, axis=1))[:, None] + 2.0 * beta * (R_C @ R_T.T)
    return per_target @ w_T


def fantasise(Sigma: np.ndarray, g: np.ndarray, s2: float) -> np.ndarray:
    """Posterior covariance after one more observation with gradient ``g`` (rank-one update)."""
    Sg = Sigma @ g
    return Sigma - np.outer(Sg, Sg) / (s2 + g @ Sg)


@dataclass
class LinearPosterior:
    """Σ and B (see the module docstring) for the runs observed so far, updated in place as runs
    are (really or fantastically) added. ``B`` has zero columns when no discrepancy is modelled."""

    Sigma: np.ndarray
    B: np.ndarray
    s2: float

    @classmethod
    def from_runs(cls, G_obs: np.ndarray, Phi_obs: np.ndarray, s2: float, prior_sd: float = 3.0) -> "LinearPosterior":
        Sigma = posterior_cov(G_obs, s2, prior_sd)
        return cls(Sigma, Sigma @ G_obs.T @ Phi_obs / s2, s2)

    def add(self, g: np.ndarray, phi: np.ndarray) -> None:
        u = self.Sigma @ g
        d = self.s2 + g @ u
        r = self.B.T @ g - phi
        self.Sigma = self.Sigma - np.outer(u, u) / d
        self.B = self.B - np.outer(u, r) / d


def posterior_draws(z: np.ndarray, Sigma: np.ndarray, n: int, rng: np.random.Generator, *, inflation: float = 2.0,
                    max_step: float = 2.0, bounds: np.ndarray | None = None) -> np.ndarray:
    """``n`` parameter vectors (n, P) drawn around ``z`` from the linearised posterior N(z, Σ),
    its sd multiplied by ``inflation`` (the linearisation at one point understates how far the
    truth may be when the law has many parameters), each coordinate's step capped at
    ``max_step`` (z units: a factor e² for a log-transformed parameter) and clipped into
    ``bounds`` (P, 2; the law's ``z_bounds``). For scoring a design under a mixture of plausible
    fits instead of the one point (Bayesian design's expected utility over the posterior,
    Chaloner & Verdinelli 1995, Stat. Sci. 10(3), §2.2)."""
    L = np.linalg.cholesky(Sigma + 1e-12 * np.eye(z.size))
    Z = z + np.clip(inflation * (rng.standard_normal((n, z.size)) @ L.T), -max_step, max_step)
    return Z if bounds is None else np.clip(Z, bounds[:, 0], bounds[:, 1])
