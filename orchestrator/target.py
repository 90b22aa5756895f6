"""``search.target``: the spec's mapping -> the region whose loss the active search pins down.

One interpreter for `scalesweep validate` and the active searcher (`orchestrator.active_search`),
so a target that validates is the target that runs. No Ray import.

Forms (exactly one; none means ``{largest: 5}``):
  ``{largest: K}``                       the K most expensive planned runs
  ``{compute: C, reference: {...}}``     the compute-optimal frontier around C FLOPs under the
                                         reference law parameters (default: Epoch's Chinchilla fit,
                                         so another law needs its own reference)
  ``{points: [[N, D], ...]}``            explicit configurations
``stop_when: {rel_pred_ci: x}`` may sit inside the target too.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from fitting.design import Candidates, TargetRegion
from fitting.laws import CHINCHILLA_EPOCH, get_law
from trainers.fields import SpecError, fail, mapping, number, positive, positive_int

TARGET_FORMS = ("largest", "compute", "points")
TARGET_KEYS = (*TARGET_FORMS, "reference", "stop_when")
STOP_WHEN_KEYS = ("rel_pred_ci",)


def parse_stop_when(raw: Any, path: str) -> dict[str, float]:
    raw = mapping(raw, path, STOP_WHEN_KEYS)
    return {key: positive(value, f"{path}.{key}") for key, value in raw.items()}


def parse_target(raw: Any, law: str, path: str = "search.target") -> dict[str, Any]:
    """A checked, typed copy of a target mapping (numbers as floats/ints, points as pairs)."""
    raw = mapping(raw, path, TARGET_KEYS)
    forms = [key for key in TARGET_FORMS if key in raw]
    if len(forms) > 1:
        raise fail(path, f"give one of {', '.join(TARGET_FORMS)}, not {' and '.join(forms)}")
    if "reference" in raw and "compute" not in raw:
        raise fail(f"{path}.reference", "only with compute")
    target: dict[str, Any] = {}
    if "largest" in raw:
        target["largest"] = positive_int(raw["largest"], f"{path}.largest")
    if "compute" in raw:
        target["compute"] = positive(raw["compute"], f"{path}.compute")
        params = get_law(law).param_names
        reference = raw.get("reference")
        if reference is None and set(params) != set(CHINCHILLA_EPOCH):
            raise fail(f"{path}.reference", f"required for law {law} (the default is Epoch's "
                                            f"Chinchilla fit); give {', '.join(params)}")
        if reference is not None:
            reference = mapping(reference, f"{path}.reference", params, required=params)
            target["reference"] = {k: number(v, f"{path}.reference.{k}") for k, v in reference.items()}
    if "points" in raw:
        points = raw["points"]
        if not isinstance(points, (list, tuple)) or not points:
            raise fail(f"{path}.points", f"must be a non-empty list of [N, D] pairs, got {points!r}")
        pairs = []
        for i, point in enumerate(points):
            if not isinstance(point, (list, tuple)) or len(point) != 2:
                raise fail(f"{path}.points[{i}]", f"must be an [N, D] pair, got {point!r}")
            pairs.append([positive(v, f"{path}.points[{i}][{j}]") for j, v in enumerate(point)])
        target["points"] = pairs
    if "stop_when" in raw:
        target["stop_when"] = parse_stop_when(raw["stop_when"], f"{path}.stop_when")
    return target


def trial_candidates(trials: Iterable) -> Candidates:
    """The active designer's candidates: each planned trial's (N, D), costed in planned FLOPs."""
    trials = list(trials)
    return Candidates.from_columns(
        {"N": [t.non_embedding_params for t in trials], "D": [t.dataset_tokens for t in trials]},
        cost=[float(t.planned_flops) for t in trials])


def target_region(target: Mapping[str, Any], candidates: Candidates, law) -> TargetRegion:
    """The spec's ``search.target`` mapping -> a :class:`TargetRegion` (SpecError if malformed)."""
    law = get_law(law)
    target = parse_target(target, law.name)
    if "points" in target:
        pts = np.asarray(target["points"], dtype=float)
        return TargetRegion.explicit({"N": pts[:, 0], "D": pts[:, 1]})
    if "compute" in target:
        ref = target.get("reference", CHINCHILLA_EPOCH)
        try:
            return TargetRegion.compute_frontier(law, ref, target["compute"])
        except ValueError as err:
            raise fail("search.target", f"compute-optimal frontier under the reference: {err}") from None
    return TargetRegion.largest_planned(candidates, target.get("largest", 5))


def check_target(target: Mapping[str, Any], law: str, trials: Iterable) -> None:
    """Build the region exactly as the searcher will; every error names search.target."""
    try:
        target_region(target, trial_candidates(trials), law)
    except SpecError:
        raise
    except (ValueError, FloatingPointError) as err:
        raise fail("search.target", str(err)) from None
