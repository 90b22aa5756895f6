"""Typed configuration of one training run, and the batch geometry derived from it.

A run is fully described by a `TrainConfig` (what to train, on what, how long) plus a
`RunOutput` (where its metrics and checkpoints go). Both are plain dataclasses so the
orchestrator can build them from a sweep spec and a user can write them as YAML.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from trainers.data import CorpusSpec
from trainers.model import ModelShape, kaplan_lr, non_embedding_params, shape_for_params

REGIMES = ("tokens", "dataset")
PRECISIONS = ("auto", "fp32", "bf16")
ZERO_STAGES = (0, 1, 2, 3)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the numbers a run produces.

    `dataset_tokens` is D. In the ``tokens`` regime (Chinchilla) every training token is seen
    at most once and the LR schedule spans exactly D tokens. In the ``dataset`` regime (Kaplan)
    D unique tokens are repeated until validation loss stops improving (`patience` evals
    without improvement) or `max_steps` is reached; the schedule spans `max_steps`.
    """

    shape: ModelShape
    dataset_tokens: int
    regime: str = "tokens"
    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    val_tokens: int = 65_536
    extra_evals: Mapping[str, CorpusSpec] = field(default_factory=dict)
    # Optimisation. batch_tokens is the global batch (all ranks, all micro-steps).
    batch_tokens: int = 8_192
    micro_batch_size: int | None = None  # sequences per rank per micro-step; None: no accumulation
    lr: float | None = None  # None: Kaplan's rule LR(N) = 0.003239 - 0.0001395 ln N
    warmup_frac: float = 0.05
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    max_steps: int | None = None  # required cap for the dataset regime; optional cap for tokens
    # Evaluation and stopping.
    eval_every: int = 50
    eval_tokens: int | None = None  # None: the whole validation split
    patience: int = 3
    min_delta: float = 0.0
    # System.
    zero_stage: int = 0
    precision: str = "auto"
    seed: int = 0
    threads: int | None = None  # torch threads per rank; None: CPUs available / local ranks
    peak_flops: float | None = None  # per device; None: measured (CPU) or looked up (GPU)
    budget_flops: float | None = None  # stop as budget_stopped before exceeding this
    # With a checkpoint directory: save at an evaluation only when this many seconds have
    # passed since the last save (0: every evaluation); the last step always saves. Saving a
    # large model's optimizer state at every evaluation can cost more than the training.
    checkpoint_interval_s: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    @property
    def non_embedding_params(self) -> int:
        return non_embedding_params(self.shape)

    @property
    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else kaplan_lr(self.non_embedding_params)

    def validate(self) -> None:
        """Raise ValueError naming the field; runs before any data is loaded or engine built."""
        self.shape.validate()
        _positive_int("dataset_tokens", self.dataset_tokens)
        _choice("regime", self.regime, REGIMES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("zero_stage", self.zero_stage, ZERO_STAGES)
        _positive_int("batch_tokens", self.batch_tokens)
        _positive_int("val_tokens", self.val_tokens)
        _positive_int("eval_every", self.eval_every)
        _positive_int("patience", self.patience)
        for name in ("micro_batch_size", "max_steps", "eval_tokens", "threads"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if self.batch_tokens % self.shape.n_ctx:
            raise ValueError(
                f"batch_tokens: must be a multiple of n_ctx={self.shape.n_ctx}, got {self.batch_tokens}"
            )
        if self.dataset_tokens < self.batch_tokens + self.batch_tokens // self.shape.n_ctx:
            raise ValueError(
                f"dataset_tokens: {self.dataset_tokens} is smaller than one batch "
                f"(batch_tokens={self.batch_tokens} plus one target token per sequence)"
            )
        if self.regime == "dataset" and self.max_steps is None:
            raise ValueError("max_steps: required in the dataset regime (it sets the LR schedule length)")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr: must be a positive finite number, got {self.lr}")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac: must be in [0, 1), got {self.warmup_frac}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip: must be >= 0 (0 disables), got {self.grad_clip}")
        if not self.checkpoint_interval_s >= 0:
            raise ValueError(f"checkpoint_interval_s: must be >= 0, got {self.checkpoint_interval_s}")
        if self.budget_flops is not None and not self.budget_flops > 0:
            raise ValueError(f"budget_flops: must be positive, got {self.budget_flops}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "TrainConfig":
        """Build from plain data (YAML). `shape` is either explicit fields or
        `{target_params, aspect_ratio, d_ff_ratio, head_dim}` resolved by `shape_for_params`."""
        raw = dict(raw)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown key; allowed keys: {', '.join(sorted(known))}")
        if "shape" not in raw:
            raise ValueError("shape: required (explicit n_layer/d_model/... or target_params)")
        corpus = raw.get("corpus", {})
        corpus = corpus if isinstance(corpus, CorpusSpec) else _corpus_from(corpus, "corpus")
        raw["corpus"] = corpus
        raw["extra_evals"] = {
            name: spec if isinstance(spec, CorpusSpec) else _corpus_from(spec, f"extra_evals.{name}")
            for name, spec in dict(raw.get("extra_evals") or {}).items()
        }
        shape = raw["shape"]
        if not isinstance(shape, ModelShape):
            raw["shape"] = _shape_from(dict(shape), vocab_size=_vocab_size_of(corpus))
        return cls(**raw)


@dataclass(frozen=True)
class RunOutput:
    """Where a run writes: metrics store rows and DeepSpeed checkpoints (both optional)."""

    storage: str | None = None  # metrics store root (local path or pyarrow.fs URI)
    sweep: str = "default"
    trial_id: str = "run"
    attempt: int = 0
    checkpoint_dir: str | None = None  # where this attempt saves checkpoints
    resume_from: str | None = None  # a checkpoint directory to continue from
    checkpoint_every: int | None = None  # steps; None: at every evaluation


@dataclass(frozen=True)
class BatchGeometry:
    """How the global batch splits over ranks and micro-steps, and how long the run is."""

    seqs_per_step: int  # global batch in sequences
    micro_batch_size: int  # sequences per rank per micro-step
    grad_accum_steps: int
    total_steps: int  # schedule length
    tokens_per_step: int


def batch_geometry(config: TrainConfig, world_size: int, train_windows: int) -> BatchGeometry:
    """Derive the DeepSpeed batch settings; errors name the field that makes them impossible.

    `train_windows` is how many non-overlapping (n_ctx + 1)-token windows the training subset
    holds. In the tokens regime the run ends when each has been seen once.
    """
    seqs = config.batch_tokens // config.shape.n_ctx
    if seqs % world_size:
        raise ValueError(
            f"batch_tokens: {config.batch_tokens} tokens = {seqs} sequences, not divisible by "
            f"world_size={world_size}"
        )
    per_rank = seqs // world_size
    micro = min(config.micro_batch_size or per_rank, per_rank)
    if per_rank % micro:
        raise ValueError(
            f"micro_batch_size: {micro} does not divide the per-rank batch of {per_rank} sequences"
        )
    if config.regime == "tokens":
        total = train_windows // seqs
        if config.max_steps is not None:
            total = min(total, config.max_steps)
    else:
        total = int(config.max_steps)  # validated non-None for this regime
    if total < 1:
        raise ValueError(
            f"dataset_tokens: {config.dataset_tokens} tokens give {train_windows} windows, "
            f"fewer than one global batch of {seqs}"
        )
    return BatchGeometry(
        seqs_per_step=seqs,
        micro_batch_size=micro,
        grad_accum_steps=per_rank // micro,
        total_steps=total,
        tokens_per_step=seqs * config.shape.n_ctx,
    )


def lr_multiplier(step: int, total_steps: int, warmup_frac: float, min_lr_ratio: float) -> float:
    """Linear warmup then cosine decay to `min_lr_ratio` of the peak, over `total_steps`."""
    warmup = max(1, int(round(warmup_frac * total_steps))) if warmup_frac > 0 else 0
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}: must be a positive integer, got {value!r}")


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: must be one of {', '.join(map(str, allowed))}; got {value!r}")


def _corpus_from(raw: Any, where: str) -> CorpusSpec:
    if isinstance(raw, str):
        return CorpusSpec(source=raw)
    known = {f.name for f in dataclasses.fields(CorpusSpec)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key; allowed keys: {', '.join(sorted(known))}")
    return CorpusSpec(**raw)


def _vocab_size_of(corpus: CorpusSpec) -> int | None:
    if corpus.tokenizer == "byte":
        return 256
    if corpus.tokenizer.startswith("bpe:"):
        return int(corpus.tokenizer.split(":", 1)[1])
    return corpus.vocab_size


def _shape_from(raw: dict[str, Any], vocab_size: int | None) -> ModelShape:
    if vocab_size is not None:
        raw.setdefault("vocab_size", vocab_size)
    if "vocab_size" not in raw:
        raise ValueError("shape.vocab_size: required for this corpus/tokenizer")
    if "target_params" in raw:
        target = raw.pop("target_params")
        return shape_for_params(float(target), **raw)
    known = {f.name for f in dataclasses.fields(ModelShape)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"shape.{unknown[0]}: unknown key; allowed keys: {', '.join(sorted(known))}")
    return ModelShape(**raw)
