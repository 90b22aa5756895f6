"""A model's shape and the arithmetic on it (Kaplan et al. 2020): non-embedding parameters N,
embedding parameters, FLOPs per token and per run, Kaplan's learning-rate rule, and the shape
generator that picks (n_layer, d_model, d_ff, heads) for a target N. A shape's `family` is its
architecture: ``transformer`` (trainers/model.py) or ``lstm`` (trainers/lstm.py, Kaplan §3.2.1);
every count here follows it, so no caller can count an LSTM as a transformer.

Pure integer/float math on a `ModelShape`, no torch: sweep planning, `scalesweep validate` and law
fitting call it in microseconds without loading an engine. The torch module built from a shape is
`trainers.model.GPT`; `trainers.model.exact_param_counts` counts a built model's real parameters
and checks them against `non_embedding_params` here.

Conventions (Kaplan et al. 2020, Table 1):
  N (non-embedding parameters) = 2 * d_model * n_layer * (2 * d_attn + d_ff)
      counts only the weight matrices inside the transformer blocks: per layer, Q/K/V
      (3 * d_model * d_attn), the attention output projection (d_attn * d_model) and the MLP
      (2 * d_model * d_ff). Biases and LayerNorm gains/biases are left out (they are O(d_model),
      negligible against O(d_model^2) matrices), as are all embeddings.
  Embedding parameters = (vocab_size + n_ctx) * d_model for token + position embeddings, plus
      vocab_size * d_model for the output head, because this model does NOT tie the head to the
      token embedding. Untied keeps "what is an embedding" unambiguous in `exact_param_counts`
      (every parameter belongs to exactly one module); Kaplan excludes embeddings from N either way,
      so the scaling-law axis is unaffected by this choice.

LSTM family (n_heads, d_ff and d_attn do not apply and are None; hidden width = d_model):
  N = 8 * n_layer * d_model^2: per layer the input weights W_ih (4 gates x d_model x d_model) and
      the recurrent weights W_hh (4 x d_model x d_model); the gate biases and the final LayerNorm
      are left out as for the transformer, as are the embeddings.
  Embedding parameters = 2 * vocab_size * d_model (token embedding and untied head; a recurrent
      model has no position embedding).
  C_forward = 2N per token: every weight is used once per token (one multiply-add); the
      elementwise gate math (~ 10 * d_model FLOPs per layer: sigmoids, tanh, products) is left
      out, as the transformer count leaves out softmax and LayerNorm. There is no n_ctx term: the
      recurrence costs the same per token at every position.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass


FAMILIES = ("transformer", "lstm")
_TRANSFORMER_ONLY = ("n_heads", "d_ff", "d_attn")  # None for an LSTM


@dataclass(frozen=True, kw_only=True)
class ModelShape:
    """A language model's architecture: widths in units (features), n_ctx in tokens, vocab_size
    in token ids; `family` one of FAMILIES (an LSTM has no n_heads, d_ff or d_attn: None).
    Raises ValueError naming the field if it cannot be built."""

    n_layer: int
    d_model: int
    n_heads: int | None = None  # transformer: required
    d_ff: int | None = None  # transformer: required
    n_ctx: int
    vocab_size: int
    d_attn: int | None = None  # n_heads * head_dim; None -> d_model (transformer, in __post_init__)
    family: str = "transformer"

    def __post_init__(self) -> None:
        if self.d_attn is None and self.family == "transformer":
            object.__setattr__(self, "d_attn", self.d_model)
        self.validate()

    @property
    def head_dim(self) -> int | None:
        return self.d_attn // self.n_heads if self.family == "transformer" else None

    def validate(self) -> None:
        """Raise ValueError naming the offending field if this shape cannot be built."""
        if self.family not in FAMILIES:
            raise ValueError(f"ModelShape.family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        sizes = ("n_layer", "d_model", "n_ctx", "vocab_size")
        if self.family == "lstm":
            given = [name for name in _TRANSFORMER_ONLY if getattr(self, name) is not None]
            if given:
                raise ValueError(f"ModelShape.{given[0]} does not apply to the lstm family (leave it out)")
        else:
            sizes += _TRANSFORMER_ONLY
        for name in sizes:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelShape.{name} must be a positive int, got {value!r}")
        if self.family == "transformer" and self.d_attn % self.n_heads != 0:
            raise ValueError(
                f"ModelShape.d_attn ({self.d_attn}) must be divisible by n_heads ({self.n_heads})"
            )


# ---------------------------------------------------------------------------------------------
# Counting: parameters, FLOPs, learning rate
# ---------------------------------------------------------------------------------------------

def non_embedding_params(shape: ModelShape) -> int:
    """Kaplan's N = 2 * d_model * n_layer * (2 * d_attn + d_ff); for an LSTM 8 * n_layer * d_model^2
    (W_ih and W_hh of every layer; module docstring).

    Weight matrices of the transformer blocks only: excludes biases, LayerNorm gains/biases and
    all embeddings (token, position and the untied output head). `exact_param_counts(model)`
    reports the excluded groups separately, and its "non_embedding_matrices" equals this number.
    """
    if shape.family == "lstm":
        return 8 * shape.n_layer * shape.d_model**2
    return 2 * shape.d_model * shape.n_layer * (2 * shape.d_attn + shape.d_ff)


def embedding_params(shape: ModelShape) -> int:
    """Token + position embeddings, (vocab_size + n_ctx) * d_model, plus the untied output head
    (vocab_size * d_model). Kaplan's table counts only the first term; the head is added because
    this model really has those weights (see module docstring). LSTM: token embedding and head,
    2 * vocab_size * d_model (no position embedding)."""
    if shape.family == "lstm":
        return 2 * shape.vocab_size * shape.d_model
    input_embeddings = (shape.vocab_size + shape.n_ctx) * shape.d_model
    output_head = shape.vocab_size * shape.d_model
    return input_embeddings + output_head


def forward_flops_per_token(shape: ModelShape) -> int:
    """Kaplan's C_forward = 2N + 2 * n_layer * n_ctx * d_attn (multiply-adds counted as 2 FLOPs;
    the second term is the attention score/value products over a full context). LSTM: 2N, no
    context term (module docstring)."""
    if shape.family == "lstm":
        return 2 * non_embedding_params(shape)
    return 2 * non_embedding_params(shape) + 2 * shape.n_layer * shape.n_ctx * shape.d_attn


def train_flops(shape: ModelShape, tokens: int) -> int:
    """Exact Kaplan training compute: backward costs twice the forward, so 3 * C_forward per token."""
    return 3 * forward_flops_per_token(shape) * tokens


def six_n_flops(shape: ModelShape, tokens: int) -> int:
    """The usual approximation C = 6 * N * tokens (drops the context-dependent attention term)."""
    return 6 * non_embedding_params(shape) * tokens


# Kaplan's fit LR(N) = 0.003239 - 0.0001395 * ln(N) crosses zero at N ~ 1.2e10, beyond the models
# it was fitted on (<= 1.5e9). A negative or zero LR would silently stall training, so the rule
# is clipped to a small positive floor there instead.
KAPLAN_LR_FLOOR = 1e-5


def kaplan_lr(non_embedding_params: float) -> float:
    """Kaplan et al. (eq. D.1) learning rate for a model with N non-embedding parameters."""
    if not non_embedding_params > 0:
        raise ValueError(f"non_embedding_params must be > 0, got {non_embedding_params!r}")
    return max(0.003239 - 0.0001395 * math.log(non_embedding_params), KAPLAN_LR_FLOOR)


# Kaplan (fig. 5) found loss within a few percent over d_model / n_layer from ~20 to ~200; 64 sits
# in the flat middle. Very small models cannot honour it (N = 1e4 allows one layer of width ~29),
# so `shape_for_params` treats the target N as the goal and the aspect ratio as a preference.
DEFAULT_ASPECT_RATIO = 64.0
# Head widths (and so d_model) are multiples of this: keeps matmuls aligned and tiny models legal.
_HEAD_WIDTH_STEP = 8
# Bounds of the shape search: far beyond any trained transformer (widths ~1e4, depths ~1e2), small
# enough that the search stays under a second and a few MB.
_MAX_SEARCH_WIDTH = 1_000_000
_MAX_SEARCH_DEPTH = 10_000


def heads_for_width(d_model: int, head_dim: int) -> int | None:
    """n_heads = round(d_model / head_dim) (at least 1), if that splits d_model into heads whose
    width is a multiple of 8; else None. With the default head_dim = 64 every multiple of 64 is
    allowed with exactly 64-wide heads; other widths get heads of width near head_dim, and models
    narrower than one head get a single head of width d_model."""
    n_heads = max(1, round(d_model / head_dim))
    if d_model % n_heads or (d_model // n_heads) % _HEAD_WIDTH_STEP:
        return None
    return n_heads


def shape_for_params(
    target_params: float,
    *,
    aspect_ratio: float = DEFAULT_ASPECT_RATIO,
    d_ff_ratio: float = 4.0,
    head_dim: int = 64,
    n_ctx: int = 1024,
    vocab_size: int = 256,
    tolerance: float = 0.05,
    family: str = "transformer",
) -> ModelShape:
    """A shape with d_attn = d_model, heads from `heads_for_width`, and non-embedding N near
    `target_params`. ``family="lstm"``: `lstm_shape_for_params` (d_ff_ratio and head_dim do not
    apply and are ignored).

    Rule: candidates are (n_layer, d_model) pairs bracketing the exact-N width for each depth,
    each with the nominal d_ff = d_ff_ratio * d_model and with the d_ff (a multiple of 8, within
    [d_model, 2 * d_ff_ratio * d_model]) that makes N hit the target. Among candidates whose N is
    within `tolerance` of the target, take the one with the smallest
    |log(aspect / aspect_ratio)| + |log(d_ff / (d_ff_ratio * d_model))|: Kaplan et al. found loss
    nearly flat over wide ranges of both, so a factor 2 off in either costs the same. Only if no
    candidate is that close (tiny targets) take the smallest N error. Letting d_ff absorb the
    remainder keeps tiny models sane (1e4 at aspect 16 gives 1 x 32 with d_ff 96, not 13 x 8).
    Deterministic, ~1 ms. The returned shape's true N is `non_embedding_params(shape)`.
    """
    for name, value in (("target_params", target_params), ("aspect_ratio", aspect_ratio),
                        ("d_ff_ratio", d_ff_ratio), ("tolerance", tolerance)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    if family == "lstm":
        return lstm_shape_for_params(target_params, aspect_ratio=aspect_ratio, n_ctx=n_ctx,
                                     vocab_size=vocab_size)
    if family != "transformer":
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if not isinstance(head_dim, int) or head_dim < _HEAD_WIDTH_STEP or head_dim % _HEAD_WIDTH_STEP:
        raise ValueError(f"head_dim must be a positive multiple of {_HEAD_WIDTH_STEP}, got {head_dim!r}")

    per_layer_coeff = 2 * (2 + d_ff_ratio)  # N ~= per_layer_coeff * n_layer * d_model^2
    suggested_depth = (target_params / (per_layer_coeff * aspect_ratio**2)) ** (1 / 3)
    max_width = int(math.sqrt(target_params / per_layer_coeff)) + 2 * head_dim
    # The search scans every width up to max_width and every depth up to 8x the suggested one:
    # a typo such as 1e21 or aspect_ratio 1e-6 would scan billions (minutes and tens of GB).
    if max_width > _MAX_SEARCH_WIDTH or suggested_depth > _MAX_SEARCH_DEPTH:
        raise ValueError(f"target_params {target_params:g} at aspect_ratio {aspect_ratio:g} asks for a model "
                         f"{'wider than ' + format(_MAX_SEARCH_WIDTH, ',') if max_width > _MAX_SEARCH_WIDTH else 'deeper than ' + format(_MAX_SEARCH_DEPTH, ',')}"
                         f": is a unit or exponent wrong?")
    widths = [w for w in range(_HEAD_WIDTH_STEP, max_width + 1, _HEAD_WIDTH_STEP)
              if heads_for_width(w, head_dim) is not None]

    def d_ff_options(n_layer: int, d_model: int) -> set[int]:
        nominal = max(1, round(d_ff_ratio * d_model))
        exact = target_params / (2 * d_model * n_layer) - 2 * d_model
        fitted = _HEAD_WIDTH_STEP * round(exact / _HEAD_WIDTH_STEP)
        return {nominal} | ({fitted} if d_model <= fitted <= 2 * nominal else set())

    # (outside tolerance?, error to minimise, n_layer, d_model, d_ff): min() applies the rule.
    candidates = []
    for n_layer in range(1, max(16, int(8 * suggested_depth)) + 1):
        ideal_width = math.sqrt(target_params / (per_layer_coeff * n_layer))
        split = bisect.bisect_right(widths, ideal_width)
        for d_model in widths[max(0, split - 1):split + 1]:
            for d_ff in d_ff_options(n_layer, d_model):
                n = 2 * d_model * n_layer * (2 * d_model + d_ff)
                params_error = abs(math.log(n / target_params))
                shape_error = (abs(math.log(d_model / n_layer / aspect_ratio))
                               + abs(math.log(d_ff / (d_ff_ratio * d_model))))
                outside = params_error > math.log1p(tolerance)
                candidates.append((outside, params_error if outside else shape_error, n_layer, d_model, d_ff))
    _, _, n_layer, d_model, d_ff = min(candidates)
    return ModelShape(
        n_layer=n_layer, d_model=d_model, n_heads=heads_for_width(d_model, head_dim),
        d_ff=d_ff, n_ctx=n_ctx, vocab_size=vocab_size,
    )


def lstm_shape_for_params(target_params: float, *, aspect_ratio: float = DEFAULT_ASPECT_RATIO,
                          n_ctx: int = 1024, vocab_size: int = 256) -> ModelShape:
    """An LSTM shape with N = 8 * n_layer * d_model^2 near `target_params`.

    Rule (the transformer's aspect-ratio preference, without d_ff to absorb the remainder): for
    each depth the width is the integer nearest sqrt(target / (8 n_layer)), so N is within
    ~2 / d_model of the target; take the depth whose d_model / n_layer is nearest `aspect_ratio`
    in log. Widths are not rounded to multiples of 8: an LSTM has no heads to split, and at these
    sizes a multiple of 8 would miss the target by up to ~20 %. Raises ValueError naming the
    argument (an absurd target fails instead of building a billion-unit model).
    """
    for name, value in (("target_params", target_params), ("aspect_ratio", aspect_ratio)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    if math.sqrt(target_params / 8) > _MAX_SEARCH_WIDTH:
        raise ValueError(f"target_params {target_params:g} asks for an LSTM wider than "
                         f"{_MAX_SEARCH_WIDTH:,}: is a unit or exponent wrong?")
    suggested_depth = (target_params / (8 * aspect_ratio**2)) ** (1 / 3)
    best = None
    for n_layer in range(1, min(_MAX_SEARCH_DEPTH, max(16, int(8 * suggested_depth))) + 1):
        d_model = max(1, round(math.sqrt(target_params / (8 * n_layer))))
        error = abs(math.log(d_model / n_layer / aspect_ratio))
        if best is None or error < best[0]:
            best = (error, n_layer, d_model)
    _, n_layer, d_model = best
    return ModelShape(n_layer=n_layer, d_model=d_model, n_ctx=n_ctx, vocab_size=vocab_size, family="lstm")
