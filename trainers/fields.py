"""Typed fields for YAML-born configuration: parsers, documented dataclass fields, strict YAML.

Every parser takes (value, path) and returns the typed value or raises `SpecError` whose message
starts with the field path (``axes.dataset_tokens[2]: must be a positive integer, got -5``).
PyYAML reads ``1e-2`` (no dot) as a string, so numeric parsers also accept strings that parse as
numbers, and integer parsers accept integral floats (``2.0e+5``). Booleans are never numbers.

A dataclass field made with `option(default, doc, parse)` carries its help text and its parser
in `dataclasses.Field.metadata`; `coerce_fields(obj)` applies the parsers (so a config built from
YAML holds real numbers in range), and `orchestrator.spec_reference` prints the help. One owner:
the trainer's `TrainConfig` and the sweep spec (`orchestrator.spec`) both parse with these.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Mapping, Sequence

import yaml

Parser = Callable[[Any, str], Any]


class SpecError(ValueError):
    """A spec or config that cannot run; the message starts with the offending field path."""


def fail(path: str, message: str) -> SpecError:
    return SpecError(f"{path}: {message}")


def _rule(text: str) -> Callable[[Parser], Parser]:
    """Attach the constraint a parser enforces, as the field reference prints it."""
    def attach(parse: Parser) -> Parser:
        parse.rule = text
        return parse
    return attach


@_rule("number")
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


@_rule("number > 0")
def positive(value: Any, path: str) -> float:
    parsed = number(value, path)
    if parsed <= 0:
        raise fail(path, f"must be a positive number, got {value!r}")
    return parsed


@_rule("number >= 0")
def non_negative(value: Any, path: str) -> float:
    parsed = number(value, path)
    if parsed < 0:
        raise fail(path, f"must be >= 0, got {value!r}")
    return parsed


def interval(lo: float, hi: float, *, hi_open: bool = False) -> Parser:
    """A number in [lo, hi] (or [lo, hi) with `hi_open`)."""
    text = f"[{lo:g}, {hi:g}{')' if hi_open else ']'}"

    @_rule(f"number in {text}")
    def parse(value: Any, path: str) -> float:
        parsed = number(value, path)
        if parsed < lo or parsed > hi or (hi_open and parsed == hi):
            raise fail(path, f"must be in {text}, got {value!r}")
        return parsed

    return parse


def _integer(value: Any, path: str, minimum: int) -> int:
    kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    try:
        parsed = number(value, path)
    except SpecError:
        raise fail(path, f"must be {kind}, got {value!r}") from None
    if not parsed.is_integer() or parsed < minimum:
        raise fail(path, f"must be {kind}, got {value!r}")
    return int(parsed)


@_rule("integer > 0")
def positive_int(value: Any, path: str) -> int:
    return _integer(value, path, 1)


@_rule("integer >= 0")
def non_negative_int(value: Any, path: str) -> int:
    return _integer(value, path, 0)


def choice(allowed: Sequence) -> Parser:
    @_rule("one of " + ", ".join(map(str, allowed)))
    def parse(value: Any, path: str) -> Any:
        if isinstance(value, bool) or value not in allowed:
            raise fail(path, f"must be one of {', '.join(map(str, allowed))}; got {value!r}")
        return value

    return parse


@_rule("non-empty string")
def text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise fail(path, f"must be a non-empty string, got {value!r}")
    return value


def mapping(raw: Any, path: str, allowed: Sequence[str], required: Sequence[str] = ()) -> dict:
    """A mapping (None: empty) with only `allowed` keys and every `required` one present."""
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


# --------------------------------------------------------------------------------------------
# Documented dataclass fields


def option(default: Any = dataclasses.MISSING, doc: str = "", parse: Parser | None = None, *,
           default_factory: Any = dataclasses.MISSING, optional: bool = False,
           shown_default: str | None = None, **kwargs) -> Any:
    """A dataclass field with its help text (`doc`) and parser (`parse`) in its metadata.
    `optional`: None is allowed (and means what `doc` says); `shown_default`: the default as the
    reference prints it, where the dataclass has none (a parser fills it in)."""
    metadata = {"doc": doc, "parse": parse, "optional": optional, "shown_default": shown_default}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata, **kwargs)


def coerce_fields(obj: Any, prefix: str = "") -> None:
    """Parse every field of the (frozen) dataclass `obj` that has a parser, in place: YAML's
    ``"1e-2"`` becomes 0.01, and a value out of range raises SpecError naming ``prefix + field``."""
    for f in dataclasses.fields(obj):
        parse, value = f.metadata.get("parse"), getattr(obj, f.name)
        if parse is None or (value is None and f.metadata.get("optional")):
            continue
        object.__setattr__(obj, f.name, parse(value, prefix + f.name))


# --------------------------------------------------------------------------------------------
# YAML


def _check_duplicate_keys(node: yaml.Node, path: str) -> None:
    """PyYAML keeps the last of two equal keys; a spec that says a field twice is refused."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            where = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in seen:
                raise fail(where, f"written twice (lines {seen[key]} and {line}); keep one")
            seen[key] = line
            _check_duplicate_keys(value_node, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, f"{path}[{i}]")


def load_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file, rejecting duplicate keys; errors name the file (a directory or a
    missing file is a one-line error, not a traceback)."""
    if os.path.isdir(path):
        raise SpecError(f"{path}: is a directory, not a YAML file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with open(path) as handle:
            node = yaml.compose(handle, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    if node is None:
        return None
    _check_duplicate_keys(node, "")
    return yaml.SafeLoader("").construct_document(node)
