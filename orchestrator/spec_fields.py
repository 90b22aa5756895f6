"""The sweep spec's structural parsing helpers: `axis` (a scalar or list axis, each item parsed
with its index in the path) and `Problems` (collect every section's errors before raising).
The generic field parsers (numbers, integers, choices, `mapping`) are `trainers.fields`, shared
with the trainer's own config. Errors are `SpecError`s whose message starts with the field path
(``axes.dataset_tokens[2]: must be a positive integer, got -5``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from trainers.fields import SpecError, fail


def axis(raw: Mapping, key: str, parse: Callable[[Any, str], Any], default: tuple,
         section: str = "axes") -> tuple:
    """An axis value: a scalar or a non-empty list, each item parsed with its index in the path
    (``section``: where the axes mapping sits, ``axes`` or ``sub_sweeps.<name>``)."""
    path = f"{section}.{key}"
    if key not in raw:
        return default
    values = raw[key]
    if not isinstance(values, (list, tuple)):
        return (parse(values, path),)
    if not values:
        raise fail(path, "must not be empty")
    return tuple(parse(value, f"{path}[{i}]") for i, value in enumerate(values))


class Problems:
    """Collects SpecErrors so a spec's sections are all checked before one error is raised.

    ``problems.parse(parse_fn, *args, default=...)`` returns parse_fn's value, or records the
    error and returns `default`; `raise_any` raises one SpecError with a line per problem."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, err: SpecError) -> None:
        self.lines += [line for line in str(err).splitlines() if line not in self.lines]

    def parse(self, parse_fn: Callable[..., Any], *args: Any, default: Any = None) -> Any:
        try:
            return parse_fn(*args)
        except SpecError as err:
            self.add(err)
            return default

    def raise_any(self) -> None:
        if self.lines:
            raise SpecError("\n".join(self.lines))
