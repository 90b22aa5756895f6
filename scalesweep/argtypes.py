"""Typed command-line numbers: the one ``type=`` every numeric flag of every sub-command uses.

``argparse`` turns an :class:`argparse.ArgumentTypeError` raised here into "argument --flag:
MESSAGE", which :class:`scalesweep.cli.Parser` prints as one line with exit 2 (no usage block).
Non-finite values (``inf``, ``nan``) are refused by every type: no flag means them, and letting
them through leaks numpy RuntimeWarnings further down. Pure Python (imported by ``--help``).
"""

from __future__ import annotations

import argparse
import math

__all__ = ["number", "positive", "non_negative", "fraction", "share", "count", "positive_count"]


def number(kind=float, *, low: float | None = None, low_open: bool = False, high: float | None = None,
           high_open: bool = False, what: str | None = None):
    """An argparse ``type``: text → ``kind`` (float or int), finite and within [low, high]
    (``low_open``/``high_open``: that end excluded). ``what`` describes the range in messages."""
    if what is None:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        what = ("a whole number" if kind is int else "a number") + (f" {lo}" if lo else "") + \
               (" and" if lo and hi else "") + (f" {hi}" if hi else "")

    def parse(text: str):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r} (not finite)")
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    parse.__name__ = what  # argparse names the type in some of its own messages
    return parse


positive = number(float, low=0, low_open=True, what="a positive number")  # FLOPs, tolerances, k
non_negative = number(float, low=0, what="a number >= 0")
fraction = number(float, low=0, low_open=True, high=1, high_open=True, what="a number in (0, 1)")  # levels
share = number(float, low=0, low_open=True, high=1, what="a number in (0, 1]")  # budget fractions: all of it allowed
count = number(int, low=0, what="a whole number >= 0")  # resamples, seeds, rows to drop
positive_count = number(int, low=1, what="a whole number >= 1")  # workers, batch sizes
