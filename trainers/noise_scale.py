"""The gradient noise scale B_simple = tr(Σ)/|G|² (McCandlish et al. 2018, appendix A). No torch.

Notation (per token; the loss is a mean over tokens, so a batch of B tokens has gradient
G_B = G + noise with E|G_B|² = |G|² + tr(Σ)/B):
- G: the true gradient of the expected loss; |G|² its squared norm.
- Σ: the per-token gradient covariance; tr(Σ) its trace.
- |G_B|²: the squared norm of a gradient measured on a batch of B tokens.

From squared norms at two batch sizes B_small < B_big (appendix A, eqs. A.2–A.3), unbiased:

    |G|²  ≈ (B_big·|G_big|² − B_small·|G_small|²) / (B_big − B_small)
    tr(Σ) ≈ (|G_small|² − |G_big|²) / (1/B_small − 1/B_big)

Each estimate is very noisy on its own, so each is smoothed by an exponential moving average
and the noise scale is the ratio of the two EMAs (not the EMA of the ratio, which is biased and
can divide by a negative |G|² estimate): B_simple = EMA(tr Σ)/EMA(|G|²), in the unit of B —
**tokens** here. Both EMAs start at 0 with the same decay, so Adam-style bias correction
cancels in the ratio and is not applied. The trainer's probe (trainers/noise_probe.py) supplies
the norms; the state travels in the run's checkpoint so a resumed run continues its EMAs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# Per-measurement EMA decay: an effective window of ~1/(1 − 0.9) = 10 measurements, long
# enough to average out single-batch noise, short enough to follow a noise scale that grows
# as the loss falls (Kaplan et al. 2020 fig. 10).
EMA_DECAY = 0.9


def unbiased_estimates(b_small: float, sq_small: float, b_big: float, sq_big: float) -> tuple[float, float]:
    """(|G|², tr(Σ)) from squared gradient norms at two batch sizes (McCandlish et al. 2018,
    eqs. A.2–A.3). b_small < b_big in tokens; sq_* in (loss unit / parameter unit)². |G|² is
    in the same unit as sq_*, tr(Σ) in that unit × tokens. Either may come out negative on one
    measurement (they are differences of noisy terms); only their averages are meaningful.
    Raises ValueError if the batch sizes are not 0 < b_small < b_big."""
    if not 0 < b_small < b_big:
        raise ValueError(f"batch sizes: need 0 < b_small < b_big, got {b_small}, {b_big}")
    g2 = (b_big * sq_big - b_small * sq_small) / (b_big - b_small)
    trace = (sq_small - sq_big) / (1.0 / b_small - 1.0 / b_big)
    return g2, trace


@dataclass
class NoiseScaleEMA:
    """EMAs of |G|² and tr(Σ), and the noise scale they give. Plain numbers only, so
    `state_dict()` can go into a checkpoint and `load_state_dict()` restore it exactly."""

    decay: float = EMA_DECAY
    g2: float = 0.0  # EMA of the |G|² estimates
    trace: float = 0.0  # EMA of the tr(Σ) estimates
    count: int = 0  # measurements folded in

    def update(self, b_small: float, sq_small: float, b_big: float, sq_big: float) -> None:
        """Fold in one measurement (arguments as `unbiased_estimates`). A non-finite
        measurement (a diverging step) is skipped rather than poisoning the averages."""
        g2, trace = unbiased_estimates(b_small, sq_small, b_big, sq_big)
        if not (math.isfinite(g2) and math.isfinite(trace)):
            return
        self.g2 = self.decay * self.g2 + (1 - self.decay) * g2
        self.trace = self.decay * self.trace + (1 - self.decay) * trace
        self.count += 1

    @property
    def value(self) -> float | None:
        """B_simple = EMA(tr Σ)/EMA(|G|²) in tokens; None before the first measurement or
        while the |G|² average is not positive (the signal is not yet resolved from the noise)."""
        if self.count == 0 or self.g2 <= 0:
            return None
        return self.trace / self.g2

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
