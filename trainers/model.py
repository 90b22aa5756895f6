"""GPT-style decoder-only transformer (pre-LN, untied output head) built from a `ModelShape`.

The shape and all counting on it (N, FLOPs, Kaplan's LR rule, the shape generator) live in
`trainers.shapes`, which needs no torch; `exact_param_counts` here counts a built model's real
parameters by role, and its "non_embedding_matrices" equals `trainers.shapes.non_embedding_params`.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainers.shapes import ModelShape


class CausalSelfAttention(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.n_heads = shape.n_heads
        self.qkv = nn.Linear(shape.d_model, 3 * shape.d_attn)
        self.proj = nn.Linear(shape.d_attn, shape.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split(self.qkv.out_features // 3, dim=2)
        # [B, T, d_attn] -> [B, n_heads, T, head_dim]
        q, k, v = (t.view(B, T, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.fc = nn.Linear(shape.d_model, shape.d_ff)
        self.proj = nn.Linear(shape.d_ff, shape.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """Pre-LN residual block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, shape: ModelShape):
        super().__init__()
        self.ln_attn = nn.LayerNorm(shape.d_model)
        self.attn = CausalSelfAttention(shape)
        self.ln_mlp = nn.LayerNorm(shape.d_model)
        self.mlp = MLP(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x))
        return x + self.mlp(self.ln_mlp(x))


class GPT(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        shape.validate()
        self.shape = shape
        self.token_embedding = nn.Embedding(shape.vocab_size, shape.d_model)
        self.position_embedding = nn.Embedding(shape.n_ctx, shape.d_model)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.n_layer))
        self.ln_final = nn.LayerNorm(shape.d_model)
        self.lm_head = nn.Linear(shape.d_model, shape.vocab_size, bias=False)  # untied
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2 / nanoGPT: N(0, 0.02) everywhere, zero biases; the two projections that write into
        # the residual stream get std / sqrt(2 * n_layer) so the residual variance stays O(1)
        # after summing 2 * n_layer contributions.
        residual_std = 0.02 / math.sqrt(2 * self.shape.n_layer)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=residual_std)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx, targets: LongTensor[B, T] with T <= n_ctx. Returns (logits [B, T, vocab],
        mean cross-entropy over all positions, or None without targets)."""
        T = idx.shape[1]
        if T > self.shape.n_ctx:
            raise ValueError(f"idx has {T} positions, more than n_ctx = {self.shape.n_ctx}")
        positions = torch.arange(T, device=idx.device)
        x = self.token_embedding(idx) + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_final(x))
        return logits, None if targets is None else token_losses(logits, targets).mean()


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of every token, in nats: Tensor[B, T] (float32). Its mean is the
    training loss; its mean over the batch is the loss at each context position (Kaplan fig. 20).
    In fp32 even under bf16: log-softmax over the vocab loses precision in bf16."""
    per_token = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return per_token.view(targets.shape)


def exact_param_counts(model: nn.Module) -> dict[str, int]:
    """Count a model's (GPT's or trainers.lstm.LSTM's) real parameters by role.

    Keys: total; embedding (token + position embeddings + untied output head);
    non_embedding_matrices (Linear weights inside the blocks or LSTM layers, equal to
    `non_embedding_params`); biases (Linear biases); layernorm (LayerNorm gains and biases,
    including the final one).
    """
    counts = {"embedding": 0, "non_embedding_matrices": 0, "biases": 0, "layernorm": 0}
    for module in model.modules():
        if isinstance(module, nn.Embedding) or module is model.lm_head:
            counts["embedding"] += module.weight.numel()
        elif isinstance(module, nn.LayerNorm):
            counts["layernorm"] += sum(p.numel() for p in module.parameters(recurse=False))
        elif isinstance(module, nn.Linear):
            counts["non_embedding_matrices"] += module.weight.numel()
            counts["biases"] += module.bias.numel() if module.bias is not None else 0
    counts["total"] = sum(p.numel() for p in model.parameters())
    categorised = sum(v for k, v in counts.items() if k != "total")
    if categorised != counts["total"]:  # a new parameter type was added without a category
        raise RuntimeError(f"uncategorised parameters: {counts['total'] - categorised}")
    return counts
