"""LSTM language model (Kaplan et al. 2020, §3.2.1): the transformer's comparison family.

Same token embedding, vocabulary, untied output head and loss as `trainers.model.GPT`; the
blocks are stacked LSTM layers written out gate by gate (no cuDNN kernel), so the parameters the
count in `trainers.shapes` describes are visible here and ZeRO-3 sees ordinary Linear modules.
Built from a `ModelShape` with ``family="lstm"`` (hidden width = d_model; n_heads, d_ff and
d_attn do not apply). N = 8 * n_layer * d_model^2 (`trainers.shapes.non_embedding_params`):
per layer W_ih and W_hh, each [4 * d_model, d_model]; `exact_param_counts` checks it.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from trainers.model import token_losses
from trainers.shapes import ModelShape


class LSTMLayer(nn.Module):
    """One LSTM layer over a whole sequence (Hochreiter & Schmidhuber 1997, with forget gate):

        i, f, g, o = split(W_ih x_t + b + W_hh h_{t-1})      # 4 gates of width d_model
        c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
        h_t = sigmoid(o) * tanh(c_t)

    with h_0 = c_0 = 0 at the start of every window. One gate bias b (PyTorch's nn.LSTM has two,
    b_ih + b_hh, which only ever appear summed)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.input = nn.Linear(d_model, 4 * d_model)  # W_ih and b
        self.recurrent = nn.Linear(d_model, 4 * d_model, bias=False)  # W_hh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T, d_model] -> h: [B, T, d_model]."""
        B, T, d = x.shape
        # The input projection of every position in one matmul; only W_hh h_{t-1} is sequential.
        gates_in = self.input(x)
        h = x.new_zeros(B, d)
        c = x.new_zeros(B, d)
        outputs = []
        for t in range(T):
            i, f, g, o = (gates_in[:, t] + self.recurrent(h)).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, dim=1)


class LSTM(nn.Module):
    """Token embedding -> n_layer LSTM layers -> LayerNorm -> untied head; `forward` as GPT's."""

    def __init__(self, shape: ModelShape):
        super().__init__()
        shape.validate()
        if shape.family != "lstm":
            raise ValueError(f"ModelShape.family: LSTM needs family 'lstm', got {shape.family!r}")
        self.shape = shape
        self.token_embedding = nn.Embedding(shape.vocab_size, shape.d_model)
        self.layers = nn.ModuleList(LSTMLayer(shape.d_model) for _ in range(shape.n_layer))
        self.ln_final = nn.LayerNorm(shape.d_model)
        self.lm_head = nn.Linear(shape.d_model, shape.vocab_size, bias=False)  # untied
        self._init_weights()

    def _init_weights(self) -> None:
        # Embedding and head as GPT's (N(0, 0.02)); LSTM weights U(-1/sqrt(d), 1/sqrt(d)) as
        # PyTorch's nn.LSTM; forget-gate bias 1 so early training remembers instead of forgetting
        # (Jozefowicz et al. 2015).
        nn.init.normal_(self.token_embedding.weight, mean=0.0, std=0.02)
        nn.init.normal_(self.lm_head.weight, mean=0.0, std=0.02)
        bound = 1 / math.sqrt(self.shape.d_model)
        d = self.shape.d_model
        for layer in self.layers:
            for weight in (layer.input.weight, layer.recurrent.weight):
                nn.init.uniform_(weight, -bound, bound)
            nn.init.zeros_(layer.input.bias)
            with torch.no_grad():
                layer.input.bias[d:2 * d] = 1.0  # gate order i, f, g, o

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx, targets: LongTensor[B, T] with T <= n_ctx. Returns (logits [B, T, vocab],
        mean cross-entropy over all positions, or None without targets)."""
        T = idx.shape[1]
        if T > self.shape.n_ctx:  # the recurrence could run longer; the run's contract is n_ctx
            raise ValueError(f"idx has {T} positions, more than n_ctx = {self.shape.n_ctx}")
        x = self.token_embedding(idx)
        for layer in self.layers:
            x = layer(x)
        logits = self.lm_head(self.ln_final(x))
        return logits, None if targets is None else token_losses(logits, targets).mean()

