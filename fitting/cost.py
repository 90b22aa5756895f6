"""What a run costs the designer: FLOPs, or wall-clock seconds predicted from measured throughput.

FLOPs price every run by its arithmetic, but small models train far below peak (kernel
launches, communication and the optimiser step dominate), so per FLOP they cost more time
than large ones. :class:`ThroughputModel` fits the achieved rate of finished runs as a power
of model size, log(FLOP/s) = a + b·log N, and prices a planned run at flops / rate(N). It never
extrapolates: sizes outside the measured range get the rate of the nearest measured size (a
plateau, the safe guess for both tiny and huge models).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BUDGET_RTOL", "ThroughputModel", "affordable"]

# Relative slack of every budget comparison. A budget is usually a sum (a pool's cost times a
# fraction, a ledger's committed FLOPs), and float sums round: a pool of 31 runs summing to
# ~1e21 FLOPs left the last run 114,688 FLOPs (~1e-16 relative) "over" a --budget-fraction 1.0
# budget. 1e-9 of the total is far above any rounding of a sum yet far below one run's cost.
BUDGET_RTOL = 1e-9


def affordable(cost, left, total):
    """Whether ``cost`` fits in ``left`` of a budget of ``total`` (same unit: FLOPs or seconds).

    The one budget tolerance rule (docs/architecture.md §6): ``cost <= left + BUDGET_RTOL·total``.
    Works elementwise on numpy arrays. Every affordability check (the sweep's ledger, the
    designers, replay) calls this, so a budget that buys "everything" buys everything."""
    return np.asarray(cost) <= np.asarray(left) + BUDGET_RTOL * abs(float(total))


@dataclass(frozen=True)
class ThroughputModel:
    """log rate = intercept + slope·log N on [log_n_min, log_n_max] (clamped outside)."""

    intercept: float
    slope: float
    log_n_min: float
    log_n_max: float
    n_runs: int

    @classmethod
    def fit(cls, N, flops, seconds) -> "ThroughputModel":
        """Least squares in log space over runs with positive N, FLOPs and seconds; one distinct
        size (or one run) gives a constant rate. Raises ValueError with no usable run."""
        N, flops, seconds = (np.asarray(v, dtype=float) for v in (N, flops, seconds))
        ok = np.isfinite(N) & np.isfinite(flops) & np.isfinite(seconds) & (N > 0) & (flops > 0) & (seconds > 0)
        if not ok.any():
            raise ValueError("throughput: no finished run with positive N, FLOPs and wall time")
        x, y = np.log(N[ok]), np.log(flops[ok] / seconds[ok])
        if np.ptp(x) < 1e-9:
            slope, intercept = 0.0, float(np.mean(y))
        else:
            slope, intercept = (float(v) for v in np.polyfit(x, y, 1))
        return cls(intercept, slope, float(x.min()), float(x.max()), int(ok.sum()))

    def rate(self, N) -> np.ndarray:
        """Predicted achieved FLOP/s for models of size N."""
        x = np.clip(np.log(np.asarray(N, dtype=float)), self.log_n_min, self.log_n_max)
        return np.exp(self.intercept + self.slope * x)

    def seconds(self, N, flops) -> np.ndarray:
        """Predicted wall time of runs of size N costing ``flops``."""
        return np.asarray(flops, dtype=float) / self.rate(N)
