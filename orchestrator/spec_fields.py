"""Field parsers for YAML-born configuration: each takes (value, path) and returns the typed
value or raises `SpecError` whose message starts with the field path
(``axes.dataset_tokens[2]: must be a positive integer, got -5``).

PyYAML reads ``2e5`` (no dot) as a string, so numeric parsers also accept strings that parse as
numbers, and integer parsers accept integral floats (``2.0e+5``). Booleans are never numbers.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence


class SpecError(ValueError):
    """A spec that cannot run; the message starts with the offending field path."""




def fail(path: str, message: str) -> SpecError:
    return SpecError(f"{path}: {message}")


def number(value: Any, path: str) -> float:
    if isinstance(value, bool) or value is None:
        raise fail(path, f"must be a number, got {value!r}")
    try:
        parsed = float(value)
    except (TypeError, ValueError):
        raise fail(path, f"must be a number, got {value!r}") from None
    if not math.isfinite(parsed):
        raise fail(path, f"must be finite, got {value!r}")
    return parsed


def positive(value: Any, path: str) -> float:
    parsed = number(value, path)
    if parsed <= 0:
        raise fail(path, f"must be a positive number, got {value!r}")
    return parsed


def non_negative(value: Any, path: str) -> float:
    parsed = number(value, path)
    if parsed < 0:
        raise fail(path, f"must be >= 0, got {value!r}")
    return parsed


def _integer(value: Any, path: str, minimum: int) -> int:
    kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    try:
        parsed = number(value, path)
    except SpecError:
        raise fail(path, f"must be {kind}, got {value!r}") from None
    if not parsed.is_integer() or parsed < minimum:
        raise fail(path, f"must be {kind}, got {value!r}")
    return int(parsed)


def positive_int(value: Any, path: str) -> int:
    return _integer(value, path, 1)


def non_negative_int(value: Any, path: str) -> int:
    return _integer(value, path, 0)


def choice(allowed: Sequence) -> Callable[[Any, str], Any]:
    def parse(value: Any, path: str) -> Any:
        if isinstance(value, bool) or value not in allowed:
            raise fail(path, f"must be one of {', '.join(map(str, allowed))}; got {value!r}")
        return value

    return parse


def mapping(raw: Any, path: str, allowed: Sequence[str], required: Sequence[str] = ()) -> dict:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise fail(path or "spec", f"must be a mapping with keys {', '.join(allowed)}; got {raw!r}")
    prefix = f"{path}." if path else ""
    for key in raw:
        if key not in allowed:
            raise fail(f"{prefix}{key}", f"unknown key; allowed keys: {', '.join(allowed)}")
    for key in required:
        if raw.get(key) is None:
            raise fail(f"{prefix}{key}", "required")
    return dict(raw)


def axis(raw: Mapping, key: str, parse: Callable[[Any, str], Any], default: tuple) -> tuple:
    """An axis value: a scalar or a non-empty list, each item parsed with its index in the path."""
    path = f"axes.{key}"
    if key not in raw:
        return default
    values = raw[key]
    if not isinstance(values, (list, tuple)):
        return (parse(values, path),)
    if not values:
        raise fail(path, "must not be empty")
    return tuple(parse(value, f"{path}[{i}]") for i, value in enumerate(values))
