"""scalesweep: measure neural scaling laws (Kaplan et al. 2020) end to end.

The top-level package is deliberately thin: the metrics-store readers are the user-facing
entry points (``scalesweep.load_runs`` / ``scalesweep.load_curves``); everything else lives in
``trainers`` (model, data, DeepSpeed), ``orchestrator`` (Ray Tune) and ``fitting`` (laws).
Imports are lazy so ``import scalesweep`` costs neither torch nor Ray.
"""

__version__ = "0.1.0"


def load_runs(path, sweep=None, **kwargs):
    """Runs table (one row per trial, latest attempt) of a metrics store; see ``metrics.readers``."""
    from metrics import load_runs as _load_runs

    return _load_runs(path, sweep, **kwargs)


def load_curves(path, sweep=None, **kwargs):
    """Curves table (one row per evaluation, deduped by trial and step); see ``metrics.readers``."""
    from metrics import load_curves as _load_curves

    return _load_curves(path, sweep, **kwargs)
