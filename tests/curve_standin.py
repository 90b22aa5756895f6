"""STAND-IN for helper curvefit's fitting/curve_prediction.py, installed only when that module does
not exist yet. Delete once it is merged."""

import numpy as np

# --- STAND-IN for fitting/curve_prediction.py (helper curvefit's; delete once it is merged) ---
import sys
import types
from dataclasses import dataclass


@dataclass(frozen=True)
class _Pred:
    loss: float
    lo: float
    hi: float
    level: float
    method: str
    n_points: int

    @property
    def rel_half_width(self):
        return (self.hi - self.lo) / (2 * self.loss)


def _predict(steps, losses, target_step, *, level=0.9, sweep_law=None):
    steps, losses = np.asarray(steps, float), np.asarray(losses, float)
    if steps.size < 4:
        raise ValueError(f"{steps.size} curve points, need 4")
    best = None
    for c in np.linspace(0.05, 2.0, 400):
        A = np.stack([np.ones_like(steps), steps ** -c], 1)
        coef, *_ = np.linalg.lstsq(A, losses, rcond=None)
        r = losses - A @ coef
        if best is None or r @ r < best[0]:
            best = (float(r @ r), c, coef)
    rss, c, (a, b) = best
    loss = a + b * target_step ** -c
    half = 1.645 * np.sqrt(rss / max(1, steps.size - 3)) * 3
    return _Pred(float(loss), float(loss - half), float(loss + half), level, "power_law", int(steps.size))


if "fitting.curve_prediction" not in sys.modules:
    try:
        import fitting.curve_prediction  # noqa: F401
    except ImportError:
        _mod = types.ModuleType("fitting.curve_prediction")
        _mod.MIN_CURVE_POINTS, _mod.predict_final_loss, _mod.CurvePrediction = 4, _predict, _Pred
        sys.modules["fitting.curve_prediction"] = _mod
# --- end of stand-in ---
