"""Multi-head self-attention with rotary positions, on top of PyTorch SDPA: bidirectional by
default, causal on request (``causal=True``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from components.backbones.rotary import apply_rotary, rotary_tables
from components.structure import allowed_pairs


def attended_keys(valid: torch.Tensor) -> torch.Tensor:
    """Bool[B, L] keys that queries may attend to: the valid ones.

    A sequence with no valid position at all attends to every position instead, so that
    attention stays finite (its outputs are padding and are never scored)."""
    return valid | ~valid.any(dim=-1, keepdim=True)


class RotarySelfAttention(nn.Module):
    """x: Float[B, L, width] -> Float[B, L, width]; QKV and output projections without bias.

    RoPE is applied to q and k for positions 0 .. L-1 (L <= ``seq_len``); padding keys
    (``valid`` False) are masked out; attention is bidirectional unless ``causal`` is True, in
    which case position i attends to positions <= i only (and always to itself, so a query with
    no valid key before it stays finite). ``allowed`` Bool[L0, L0] (L0 >= L; a task's
    structured attention) restricts bidirectional attention to the pairs it marks True."""

    def __init__(self, width: int, heads: int, seq_len: int, dropout: float = 0.0, rope_base: float = 10_000.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = width // heads
        self.dropout = dropout
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        cos, sin = rotary_tables(seq_len, self.head_dim, rope_base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(
        self,
        x: torch.Tensor,
        valid: torch.Tensor | None = None,
        causal: bool = False,
        allowed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, length, width = x.shape
        if length > self.cos.shape[0]:
            raise ValueError(f"sequence length {length} exceeds the model's seq_len {self.cos.shape[0]}")
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        cos, sin = self.cos[:length], self.sin[:length]
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if allowed is not None:
            if causal:
                raise ValueError("structured attention is bidirectional; it cannot be combined with causal")
            mask = allowed_pairs(allowed, None if valid is None else attended_keys(valid), length)
        else:
            mask = None if valid is None else attended_keys(valid)[:, None, None, :]
        if causal and mask is not None:
            past = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
            mask = mask & past | torch.eye(length, dtype=torch.bool, device=x.device)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal and mask is None,
        )
        return self.out(y.transpose(1, 2).reshape(batch, length, width))
