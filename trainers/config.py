"""Typed configuration of one training run, and the batch geometry derived from it.

A run is fully described by a `TrainConfig` (what to train, on what, how long) plus a
`RunOutput` (where its metrics and checkpoints go). Both are plain dataclasses so the
orchestrator can build them from a sweep spec and a user can write them as YAML.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from trainers.data import CorpusSpec
from trainers.tokenizers import corpus_vocab_size
from trainers.fields import (
    SpecError, choice, coerce_fields, fail, interval, non_negative, non_negative_int, option,
    positive, positive_int,
)
from trainers.shapes import FAMILIES, ModelShape, kaplan_lr, non_embedding_params, shape_for_params

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

    shape: ModelShape = option(doc="model shape (in a sweep: from the axes)")
    dataset_tokens: int = option(doc="D: training tokens (unique tokens in the dataset regime)",
                                 parse=positive_int)
    regime: str = option("tokens", "tokens: each token seen at most once, LR schedule spans D; "
                         "dataset: repeat D until early stopping or max_steps", choice(REGIMES))
    corpus: CorpusSpec = option(default_factory=CorpusSpec, doc="training corpus and tokenizer")
    val_tokens: int = option(65_536, "validation tokens held out of the corpus (same for every D "
                             "and seed)", positive_int)
    extra_evals: Mapping[str, CorpusSpec] = option(
        default_factory=dict, doc="more evaluation sets: name -> corpus (source, tokenizer, ...); "
        "the first val_tokens tokens of each are evaluated beside the validation split")
    # Optimisation. batch_tokens is the global batch (all ranks, all micro-steps).
    batch_tokens: int = option(8_192, "global batch in tokens (all ranks, all micro-steps); a "
                               "multiple of n_ctx", positive_int)
    micro_batch_size: int | None = option(None, "sequences per rank per micro-step; must divide the "
                                          "per-rank batch; None: the whole per-rank batch (no "
                                          "accumulation)", positive_int, optional=True)
    lr: float | None = option(None, "peak learning rate; None: Kaplan's rule LR(N) = 0.003239 - "
                              "0.0001395 ln N", positive, optional=True)
    warmup_frac: float = option(0.05, "linear warmup, as a fraction of the schedule",
                                interval(0, 1, hi_open=True))
    min_lr_ratio: float = option(0.1, "cosine decay ends at this fraction of the peak LR",
                                 interval(0, 1))
    weight_decay: float = option(0.1, "AdamW weight decay on weight matrices", non_negative)
    grad_clip: float = option(1.0, "gradient-norm clipping threshold (0 disables)", non_negative)
    max_steps: int | None = option(None, "optimizer-step cap; required in the dataset regime (it sets "
                                   "the LR schedule length)", positive_int, optional=True)
    # Evaluation and stopping.
    eval_every: int = option(50, "evaluate every this many steps", positive_int)
    eval_tokens: int | None = option(None, "tokens per evaluation; None: the whole validation split",
                                     positive_int, optional=True)
    patience: int = option(3, "dataset regime: stop after this many evaluations without improvement",
                           positive_int)
    min_delta: float = option(0.0, "an improvement smaller than this (in loss) does not count",
                              non_negative)
    noise_scale_every: int = option(25, "measure the gradient noise scale (curves column "
                                    "grad_noise_scale, tokens) on every this many steps' batch "
                                    "with an extra forward+backward; 0: off", non_negative_int)
    # System.
    zero_stage: int = option(0, "DeepSpeed ZeRO stage", choice(ZERO_STAGES))
    precision: str = option("auto", "auto: bf16 on a GPU that supports it, else fp32",
                            choice(PRECISIONS))
    seed: int = option(0, "initialisation and data-order seed", non_negative_int)
    threads: int | None = option(None, "torch threads per rank; None: CPUs available / local ranks",
                                 positive_int, optional=True)
    peak_flops: float | None = option(None, "peak FLOP/s per device for MFU; None: measured (CPU) "
                                      "or looked up (GPU)", positive, optional=True)
    budget_flops: float | None = option(None, "stop as budget_stopped before exceeding this many "
                                        "FLOPs", positive, optional=True)
    # With a checkpoint directory: save at an evaluation only when this many seconds have
    # passed since the last save (0: every evaluation); the last step always saves. Saving a
    # large model's optimizer state at every evaluation can cost more than the training.
    checkpoint_interval_s: float = option(0.0, "with a checkpoint directory: save at an evaluation "
                                          "only after this many seconds since the last save (0: "
                                          "every evaluation)", non_negative)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def family(self) -> str:
        """The model family, a property of the shape (`shape.family`: ``--family`` on `train`)."""
        return self.shape.family

    @property
    def non_embedding_params(self) -> int:
        return non_embedding_params(self.shape)

    @property
    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else kaplan_lr(self.non_embedding_params)

    def validate(self) -> None:
        """Parse every field to its type and range (YAML's "1e-2" becomes 0.01), then the
        cross-field rules; raises ValueError (SpecError) naming the field, before any data is
        loaded or engine built."""
        self.shape.validate()
        coerce_fields(self)
        if self.batch_tokens % self.shape.n_ctx:
            raise SpecError(
                f"batch_tokens: must be a multiple of n_ctx={self.shape.n_ctx}, got {self.batch_tokens}"
            )
        if self.dataset_tokens < self.batch_tokens + self.batch_tokens // self.shape.n_ctx:
            raise SpecError(
                f"dataset_tokens: {self.dataset_tokens} is smaller than one batch "
                f"(batch_tokens={self.batch_tokens} plus one target token per sequence)"
            )
        if self.regime == "dataset" and self.max_steps is None:
            raise SpecError("max_steps: required in the dataset regime (it sets the LR schedule length)")
        vocab = corpus_vocab_size(self.corpus, "corpus")
        if vocab != self.shape.vocab_size:
            raise SpecError(f"shape.vocab_size: {self.shape.vocab_size} does not match the "
                             f"corpus's vocabulary of {vocab} ({self.corpus.tokenizer})")
        for name, spec in self.extra_evals.items():
            extra = corpus_vocab_size(spec, f"extra_evals.{name}")
            if extra > vocab:  # ids >= the model's vocabulary have no embedding row
                raise SpecError(f"extra_evals.{name}: its vocabulary ({extra}, {spec.tokenizer}) "
                                 f"is larger than the model's ({vocab})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data that `from_dict` reads back: the edges that need a dict (Tune's param
        dict, a `train --config` YAML) serialise the config itself, never a parallel dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "TrainConfig":
        """Build from plain data (YAML). `shape` is either explicit fields or
        `{target_params, aspect_ratio, d_ff_ratio, head_dim, n_ctx}` resolved by
        `shape_for_params`; numbers may be strings as YAML reads them (``1e-2``). Raises
        SpecError (a ValueError) naming the field."""
        if not isinstance(raw, Mapping):
            raise fail("config", f"must be a mapping of TrainConfig fields, got {raw!r}")
        raw = dict(raw)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if "family" in unknown:  # the family is part of the architecture, so of the shape
            raise SpecError("family: give it in the shape (shape: {family: lstm, ...}; --family on train)")
        if unknown:
            raise SpecError(f"{unknown[0]}: unknown key; allowed keys: {', '.join(sorted(known))}")
        if raw.get("shape") is None:
            raise SpecError("shape: required (explicit n_layer/d_model/... or target_params)")
        corpus = raw["corpus"] = corpus_from(raw.get("corpus") or {}, "corpus")
        extra = raw.get("extra_evals") or {}
        if not isinstance(extra, Mapping):
            raise fail("extra_evals", f"must be a mapping of name -> corpus, got {extra!r}")
        raw["extra_evals"] = {name: corpus_from(spec, f"extra_evals.{name}") for name, spec in extra.items()}
        if not isinstance(raw["shape"], ModelShape):
            raw["shape"] = _shape_from(raw["shape"], corpus_vocab_size(corpus, "corpus"))
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
    # extra scalar columns of the runs row, e.g. a sweep's isoflop_budget (docs/architecture.md §3)
    run_columns: Mapping[str, Any] = field(default_factory=dict)


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
        raise SpecError(
            f"batch_tokens: {config.batch_tokens} tokens = {seqs} sequences, not divisible by "
            f"world_size={world_size}"
        )
    per_rank = seqs // world_size
    micro = config.micro_batch_size or per_rank
    if micro > per_rank or per_rank % micro:  # never clamped: the user's setting or an error
        raise SpecError(
            f"micro_batch_size: {micro} does not divide the per-rank batch of {per_rank} sequences "
            f"(batch_tokens {config.batch_tokens} / n_ctx {config.shape.n_ctx} / world_size {world_size})"
        )
    if config.regime == "tokens":
        total = train_windows // seqs
        if config.max_steps is not None:
            total = min(total, config.max_steps)
    else:
        total = int(config.max_steps)  # validated non-None for this regime
    if total < 1:
        raise SpecError(
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


def corpus_from(raw: Any, where: str) -> CorpusSpec:
    """A CorpusSpec from a source string or a mapping; errors name ``where.<field>``."""
    if isinstance(raw, CorpusSpec):
        return raw
    if isinstance(raw, str):
        raw = {"source": raw}
    known = [f.name for f in dataclasses.fields(CorpusSpec)]
    if not isinstance(raw, Mapping):
        raise fail(where, f"must be a source string or a mapping with keys {', '.join(known)}; got {raw!r}")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise SpecError(f"{where}.{unknown[0]}: unknown key; allowed keys: {', '.join(known)}")
    try:
        return CorpusSpec(**raw)
    except SpecError as err:  # CorpusSpec names its own field; say whose corpus it is
        raise SpecError(f"{where}.{err}") from None


# The `shape: {target_params: ...}` form: shape_for_params's arguments.
SHAPE_TARGET_PARSERS = {"target_params": positive, "aspect_ratio": positive, "d_ff_ratio": positive,
                         "head_dim": positive_int, "n_ctx": positive_int, "vocab_size": positive_int,
                         "tolerance": positive, "family": choice(FAMILIES)}
# The explicit form: ModelShape's fields (sizes are integers; family is a name).
SHAPE_PARSERS = {f.name: positive_int for f in dataclasses.fields(ModelShape)} | {"family": choice(FAMILIES)}


def _shape_from(raw: Any, vocab_size: int) -> ModelShape:
    if not isinstance(raw, Mapping):
        raise fail("shape", f"must be a mapping (n_layer, d_model, ... or target_params), got {raw!r}")
    raw = {"vocab_size": vocab_size, **raw}
    parsers = SHAPE_TARGET_PARSERS if "target_params" in raw else SHAPE_PARSERS
    unknown = sorted(set(raw) - set(parsers))
    if unknown:
        raise SpecError(f"shape.{unknown[0]}: unknown key; allowed keys: {', '.join(parsers)}")
    # None: a size left to its default (d_attn = d_model; an LSTM has no n_heads, d_ff, d_attn)
    parsed = {key: None if value is None and key != "family" else parsers[key](value, f"shape.{key}")
              for key, value in raw.items()}
    if "target_params" in parsed:
        return shape_for_params(parsed.pop("target_params"), **parsed)
    required = ("n_layer", "d_model") + (() if parsed.get("family") == "lstm" else ("n_heads", "d_ff"))
    missing = [key for key in required if key not in parsed]
    if missing:
        raise SpecError(f"shape.{missing[0]}: required (or give target_params)")
    try:
        return ModelShape(**parsed)
    except ValueError as err:  # ModelShape names its field as ModelShape.<field>
        raise SpecError(re.sub(r"^ModelShape\.(\w+) ", r"shape.\1: ", str(err))) from None
