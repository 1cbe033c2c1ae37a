"""Autoregressive baseline ("AR twin" of the DiT, diffusion.md section 7): the same width, depth,
heads, MLP and RoPE attention, pre-norm residual blocks, no adaLN and no time input.

Attention is causal whenever the caller asks for it (``causal=True``: the ``ar`` loss, the
``autoregressive`` sampler, the generative-PPL judge); without the flag the same weights run
bidirectionally, which is how a ``mixture`` loss shares one network between an AR pass and a
diffusion pass. Next-token prediction is expressed with :func:`shift_right`: position i of the
input holds token i - 1 (a start token at position 0), so logits at position i are the model's
distribution of token i given tokens < i, aligned with the sequence as a denoiser's output is.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from components.backbones.attention import RotarySelfAttention
from components.backbones.base import Backbone
from components.backbones.dit import PRESETS, LayerNorm, padded_vocab
from components.backbones.registry import BACKBONES
from components.registry import SpecModel


def shift_right(tokens: torch.Tensor, start_id: int) -> torch.Tensor:
    """Long[B, L] -> Long[B, L]: ``start_id`` followed by tokens[:, :-1] (next-token inputs)."""
    start = torch.full_like(tokens[:, :1], start_id)
    return torch.cat([start, tokens[:, :-1]], dim=1)


def shift_valid(valid: torch.Tensor | None) -> torch.Tensor | None:
    """Bool[B, L] validity of the :func:`shift_right` inputs: the start token is valid, position
    i > 0 is valid where token i - 1 is. None stays None (every position valid)."""
    if valid is None:
        return None
    return torch.cat([torch.ones_like(valid[:, :1]), valid[:, :-1]], dim=1)


class CausalConfig(SpecModel):
    """``backbone: {kind: causal, size: small}``: sizes as the DiT (``size`` picks a preset;
    ``layers``/``heads``/``width`` override it; without a size the tiny values are used)."""

    kind: Literal["causal"] = "causal"
    size: Literal["tiny", "small", "base"] | None = Field(None, description="preset: tiny | small | base")
    layers: int | None = Field(None, ge=1, le=128, description="transformer blocks (overrides size)")
    heads: int | None = Field(None, ge=1, le=128, description="attention heads (overrides size)")
    width: int | None = Field(None, ge=2, le=16384, description="model width d (overrides size)")
    mlp_ratio: int = Field(4, ge=1, le=16, description="MLP hidden width / d")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on attention and residual branches")
    rope_base: float = Field(10_000.0, gt=1.0, le=1.0e7, description="RoPE wavelength base")

    def dims(self) -> tuple[int, int, int]:
        """(layers, heads, width) after applying the preset and the explicit overrides."""
        preset = PRESETS[self.size or "tiny"]
        return (
            self.layers if self.layers is not None else preset["layers"],
            self.heads if self.heads is not None else preset["heads"],
            self.width if self.width is not None else preset["width"],
        )

    @model_validator(mode="after")
    def _check_dims(self) -> "CausalConfig":
        _, heads, width = self.dims()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        if (width // heads) % 2:
            raise ValueError(f"head dim width/heads = {width // heads} must be even for RoPE")
        return self


class CausalBlock(nn.Module):
    """x: Float[B, L, d] -> Float[B, L, d]; pre-norm attention and MLP residual branches (the DiT
    block without its adaLN modulation and gates)."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, seq_len: int, dropout: float, rope_base: float):
        super().__init__()
        self.norm1 = LayerNorm(width)
        self.attn = RotarySelfAttention(width, heads, seq_len, dropout, rope_base)
        self.norm2 = LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_ratio * width, width),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None, causal: bool) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), valid, causal))
        return x + self.drop(self.mlp(self.norm2(x)))


@BACKBONES.register(CausalConfig)
class CausalTransformer(Backbone):
    """forward(tokens: Long[B, L], t: Float[B] (ignored), fixed: Bool[B, L] | None (ignored),
    valid: Bool[B, L] | None, causal: bool = False) -> Float32[B, L, vocab_size].

    Token embedding, ``layers`` :class:`CausalBlock` s, a final LayerNorm and a zero-initialised
    head over the vocabulary padded to a multiple of 128 (so the untrained model predicts the
    uniform distribution over ``vocab_size``). L may be anything up to ``seq_len``."""

    def __init__(self, config: CausalConfig, *, vocab_size: int, seq_len: int):
        super().__init__()
        self.config = config
        self.layers, self.heads, self.width = config.dims()
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.padded_vocab = padded_vocab(vocab_size)
        self.tok_emb = nn.Embedding(self.padded_vocab, self.width)
        self.blocks = nn.ModuleList(
            CausalBlock(self.width, self.heads, config.mlp_ratio, seq_len, config.dropout, config.rope_base)
            for _ in range(self.layers)
        )
        self.norm = LayerNorm(self.width)
        self.head = nn.Linear(self.width, self.padded_vocab)
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        zt: torch.Tensor,
        t: torch.Tensor,
        fixed: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        x = self.tok_emb(zt)
        for block in self.blocks:
            x = block(x, valid, causal)
        return self.head(self.norm(x))[..., : self.vocab_size].float()

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward) at context ``seq_len``, in the DiT's
        convention so that runs compare at equal compute: 6 * N_matmul + 12 * layers * width *
        seq_len, N_matmul = layers * (4 + 2 * mlp_ratio) * d^2 + d * V_padded (block matmuls and
        head; embeddings excluded; causal attention counted as full, as is usual)."""
        d = self.width
        n_matmul = self.layers * (4 + 2 * self.config.mlp_ratio) * d * d + d * self.padded_vocab
        return 6.0 * n_matmul + 12.0 * self.layers * d * seq_len
