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
from torch import nn

from components.backbones.base import Backbone
from components.backbones.dit import LayerNorm, PreNormBlock, TransformerSizeConfig, padded_vocab
from components.backbones.registry import BACKBONES


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


class CausalConfig(TransformerSizeConfig):
    """``backbone: {kind: causal, size: small}``: sizes as the DiT (``size`` picks a preset;
    ``layers``/``heads``/``width`` override it; without a size the tiny values are used)."""

    kind: Literal["causal"] = "causal"


@BACKBONES.register(CausalConfig)
class CausalTransformer(Backbone):
    """forward(tokens: Long[B, L], t: Float[B] (ignored), fixed: Bool[B, L] | None (ignored),
    valid: Bool[B, L] | None, causal: bool = False) -> Float32[B, L, vocab_size].

    Token embedding, ``layers`` :class:`PreNormBlock` s (the DiT block without adaLN), a final LayerNorm and a zero-initialised
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
            PreNormBlock(self.width, self.heads, config.mlp_ratio, seq_len, config.dropout, config.rope_base)
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
