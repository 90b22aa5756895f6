"""Stopping a sweep by signal: SIGINT (Ctrl-C) and SIGTERM (a scheduler's kill) end it gracefully,
like Tune's own Ctrl-C, and the driver learns that it was interrupted and by what, so that it can
record the running trials as interrupted, exit 128 + the signal number and print the line that
resumes it (`orchestrator.sweep.run_sweep`, `orchestrator.cli`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any

__all__ = ["StopSignals", "SweepInterrupted", "exit_status"]


def exit_status(signal_name: str) -> int:
    """128 + the signal's number, as a shell reports a process that a signal ended (130 for
    SIGINT, 143 for SIGTERM): what `scalesweep run` exits with when interrupted."""
    return 128 + int(signal.Signals[signal_name])


class _NoTuneInterruptAdvice(logging.Filter):
    """On an interrupt Tune says "Stop signal received ... Press CTRL+C (or send SIGTERM) to
    skip" and "Resume experiment with: Tuner.restore(...)". Neither is true of a sweep (SIGTERM
    stops it gracefully too; it resumes with `scalesweep run SPEC --resume`), and the sweep
    prints its own lines instead (`StopSignals`, `orchestrator.cli`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Stop signal received") or "has been interrupted" in message)


logging.getLogger("ray.tune.tune").addFilter(_NoTuneInterruptAdvice())


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM (a scheduler's kill) stop a sweep gracefully and are
    remembered, so that `run_sweep` can say it was interrupted and by what.

    Tune's own graceful stop does the work (it saves the experiment state and stops the running
    trials, which record themselves ``interrupted`` and resume from their checkpoints). Tune
    catches only SIGINT, and silently, so its SIGINT handler is turned off
    (``TUNE_DISABLE_SIGINT_HANDLER``) and ours calls the handler Tune always installs on SIGUSR1
    while ``Tuner.fit`` runs (ray/tune/tune.py, `_setup_signal_catching`); on leaving, the
    handlers from before (SIGUSR1's too) are back. Before Tune has installed its handler, and on
    a second signal, a signal raises KeyboardInterrupt (stop at once). Only the main thread can
    handle signals; elsewhere this does nothing.
    """

    HANDLED = (signal.SIGINT, signal.SIGTERM)
    _TUNE_ENV = "TUNE_DISABLE_SIGINT_HANDLER"

    def __init__(self) -> None:
        self.signum: int | None = None
        self._saved: dict[int, Any] = {}
        self._env: str | None = None

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread():
            return self
        self._env = os.environ.get(self._TUNE_ENV)
        os.environ[self._TUNE_ENV] = "1"
        for signum in (*self.HANDLED, signal.SIGUSR1):
            self._saved[signum] = signal.getsignal(signum)
        for signum in self.HANDLED:
            signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        if self._saved:
            if self._env is None:
                os.environ.pop(self._TUNE_ENV, None)
            else:
                os.environ[self._TUNE_ENV] = self._env
        self._saved = {}

    def _handle(self, signum: int, frame) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        tune_stop = signal.getsignal(signal.SIGUSR1)
        if not first or not callable(tune_stop) or tune_stop is self._saved.get(signal.SIGUSR1):
            raise KeyboardInterrupt(signal.Signals(signum).name)
        name = signal.Signals(signum).name
        print(f"scalesweep: {name} received: stopping the running trials and saving the sweep's state "
              f"({name} again to quit at once)", file=sys.stderr, flush=True)
        tune_stop(signal.SIGUSR1, frame)


class SweepInterrupted(KeyboardInterrupt):
    """The sweep was stopped at once (a second signal, or one before Tune ran): the state saved
    last is kept, and ``--resume`` continues from it. ``signal``: e.g. "SIGINT"."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal = signal_name
