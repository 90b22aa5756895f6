"""Typed sweep spec: the frozen dataclasses `orchestrator.spec.load_spec` returns.

`SweepSpec` and its parts (`Axes`, `Resources`, `SearchSpec`, `Budget`), plus the key lists the
parser and the grid expansion (`orchestrator.plan`) both check against. No parsing here: the
YAML/mapping validation lives in `orchestrator.spec`, the trial grid in `orchestrator.plan`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from trainers.config import TrainConfig
from trainers.data import CorpusSpec

TOKENIZER_VOCAB = {"byte": 256, "tiktoken:gpt2": 50257}  # plus "bpe:<vocab>"

# Trainer settings a spec may set: every TrainConfig field the grid axes, corpus and budget do
# not own. Derived, so a new trainer option is accepted here without a second list to keep in sync.
_AXIS_OWNED = {"shape", "dataset_tokens", "regime", "corpus", "batch_tokens", "lr", "seed",
               "budget_flops"}
TRAINER_KEYS = tuple(sorted(f.name for f in dataclasses.fields(TrainConfig) if f.name not in _AXIS_OWNED))

_AXES_KEYS = ("target_params", "shapes", "aspect_ratio", "d_ff_ratio", "head_dim", "n_heads",
              "n_ctx", "dataset_tokens", "regime", "seeds", "lr", "batch_tokens")


# --------------------------------------------------------------------------------------------
# Typed spec


@dataclass(frozen=True)
class Axes:
    """Grid axes; the trial grid is their Cartesian product. Either target_params (shapes made by
    `shape_for_params` for each aspect_ratio x d_ff_ratio x head_dim/n_heads) or explicit shapes."""

    target_params: tuple[float, ...] = ()
    shapes: tuple[Mapping[str, int], ...] = ()
    aspect_ratio: tuple[float, ...] = (64.0,)
    d_ff_ratio: tuple[float, ...] = (4.0,)
    head_dim: tuple[int, ...] = (64,)
    n_heads: tuple[int, ...] = ()  # alternative to head_dim: fixed head counts
    n_ctx: tuple[int, ...] = (1024,)
    dataset_tokens: tuple[int, ...] = ()
    regime: tuple[str, ...] = ("tokens",)
    seeds: tuple[int, ...] = (0,)
    lr: tuple[float | None, ...] = (None,)  # None: Kaplan's rule from the trial's actual N
    batch_tokens: tuple[int, ...] = (8192,)


@dataclass(frozen=True)
class Resources:
    """Per trial: `workers` data-parallel ranks, each with these CPUs and GPUs."""

    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    workers: int = 1


@dataclass(frozen=True)
class SearchSpec:
    kind: str = "grid"
    law: str | None = None  # active only
    max_trials: int | None = None  # active only
    target: Mapping[str, Any] = field(default_factory=dict, hash=False)  # active only, not interpreted here
    stop_when: Mapping[str, float] = field(default_factory=dict, hash=False)  # active only: {rel_pred_ci: x}
    seed_runs: int | None = None  # active only: space-filling seed size (default 2·(params + 1); params + 3 if misfit 0)
    cost: str = "flops"  # active only: rank runs per planned FLOPs or per predicted seconds ("time")
    misfit: float | None = None  # active only: prior sd of the law's misfit in log loss (0: trust it exactly)


@dataclass(frozen=True)
class Budget:
    """Limits on planned compute. GPU-hours are planned FLOPs / (gpu_flops_per_s * 3600): the
    sustained per-GPU throughput is the user's estimate, so it must be stated with gpu_hours."""

    flops: float | None = None
    gpu_hours: float | None = None
    gpu_flops_per_s: float | None = None
    cut: str = "cheapest_first"

    def cost_fraction(self, flops: float) -> float:
        """Planned FLOPs as a fraction of the tightest limit."""
        fractions = []
        if self.flops is not None:
            fractions.append(flops / self.flops)
        if self.gpu_hours is not None:
            fractions.append(flops / self.gpu_flops_per_s / 3600 / self.gpu_hours)
        return max(fractions)


@dataclass(frozen=True)
class SweepSpec:
    name: str
    storage: str
    corpus: CorpusSpec
    axes: Axes
    trainer: Mapping[str, Any] = field(hash=False)
    resources: Resources
    search: SearchSpec
    budget: Budget

    @property
    def vocab_size(self) -> int:
        return _vocab_size(self.corpus)


def _vocab_size(corpus: CorpusSpec) -> int:
    tokenizer_vocab = TOKENIZER_VOCAB.get(corpus.tokenizer) or int(corpus.tokenizer[4:])
    return max(tokenizer_vocab, corpus.vocab_size or 0)
