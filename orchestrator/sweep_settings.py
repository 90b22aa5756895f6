"""The spec's report settings kept with the sweep's metrics: ``<storage>/<sweep>/fit.json``.

`scalesweep report STORE --sweep NAME` has only the store, not the spec; without this file it
stated the main law's exponents first where the spec asked for ``fit.headline: kaplan_c`` (the
page `make demo` shows), and aggregated by its own defaults where the spec set ``fit.aggregate``.
`run` writes the file before any trial (`write_fit_settings`); `report` reads it for what the
user's flags leave unset (`read_fit_settings`). A store written before the file existed reads as
no settings (the report's own defaults, and it says which it used).
"""

from __future__ import annotations

import json

FILE = "fit.json"


def write_fit_settings(spec) -> str:
    """``fit.json`` for a `SweepSpec`: ``{"headline": str, "best_over": [...], "mean_over": [...]}``
    (``spec.fit.headline`` and ``spec.aggregation()``), written atomically; its path."""
    from metrics import resolve, write_atomically

    aggregation = spec.aggregation()
    payload = json.dumps({"headline": spec.fit.headline, "best_over": list(aggregation.best_over),
                          "mean_over": list(aggregation.mean_over)}, indent=1, sort_keys=True).encode()
    fs, directory = resolve(spec.storage, spec.name)
    path = f"{directory}/{FILE}"
    write_atomically(path, lambda out: out.write(payload), fs)
    return path


def read_fit_settings(storage: str, sweep: str) -> dict:
    """The sweep's ``fit.json`` as written by `write_fit_settings`; {} when it has none (a store
    from before it, or one not written by `run`) or it cannot be read as such."""
    from metrics import resolve

    fs, directory = resolve(storage, sweep)
    try:
        with fs.open_input_stream(f"{directory}/{FILE}") as stream:
            settings = json.loads(stream.read().decode())
    except (OSError, ValueError):
        return {}
    return settings if isinstance(settings, dict) else {}
