"""Plain bidirectional transformer encoder, as the published Sudoku reference model (sudoku.md
section 5): nn.TransformerEncoder, post-LN, ReLU, learned absolute positions, Linear head.
Optionally reads the task's structure (structured.py): per-axis positions, restricted attention."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from components.backbones.attention import attended_keys
from components.backbones.base import Backbone
from components.backbones.registry import BACKBONES
from components.backbones.structured import AxisEmbedding, StructureOptions, checked_structure
from components.backbones.time_embedding import TimestepEmbedding
from components.structure import Structure, allowed_pairs


class EncoderConfig(StructureOptions):
    """``backbone: {kind: encoder, ...}``; defaults are the published Sudoku model."""

    kind: Literal["encoder"] = "encoder"
    layers: int = Field(4, ge=1, le=64, description="encoder layers")
    heads: int = Field(4, ge=1, le=64, description="attention heads")
    width: int = Field(128, ge=1, le=8192, description="model width d")
    ffn: int = Field(512, ge=1, le=32768, description="feed-forward hidden width")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout (attention, FFN, residual)")
    norm_first: bool = Field(False, description="pre-LN (adds a final LayerNorm) instead of post-LN")
    time_conditioning: bool = Field(False, description="add an embedding of t to every token")
    fixed_embedding: bool = Field(False, description="add a learned embedding telling fixed positions apart")

    @model_validator(mode="after")
    def _check_heads(self) -> "EncoderConfig":
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")
        return self


@BACKBONES.register(EncoderConfig)
class Encoder(Backbone):
    """forward(zt: Long[B, L], t: Float[B] in [0, 1], fixed: Bool[B, L] | None,
    valid: Bool[B, L] | None) -> Float32[B, L, vocab_size]; L may be anything up to ``seq_len``.

    Token + position embeddings (+ fixed-position and time embeddings when enabled),
    ``layers`` nn.TransformerEncoderLayer blocks, and a Linear(width, vocab_size) head.
    Positions: a learned embedding per sequence position, or with ``positions: structured`` the
    sum of learned embeddings of the ``structure``'s position ids (one table per axis). With
    ``attention: structured`` every layer attends only to the pairs ``structure.attention`` allows."""

    def __init__(self, config: EncoderConfig, *, vocab_size: int, seq_len: int, structure: Structure | None = None):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        structure = checked_structure(config, structure, seq_len)
        self.tok_emb = nn.Embedding(vocab_size, config.width)
        if config.positions == "structured":
            self.pos_emb = AxisEmbedding(structure.axis_sizes, config.width)
            self.register_buffer("positions", structure.positions[:seq_len].clone(), persistent=False)
        else:
            self.pos_emb = nn.Embedding(seq_len, config.width)
            self.register_buffer("positions", None, persistent=False)
        if config.attention == "structured":
            self.register_buffer("allowed", structure.attention.clone(), persistent=False)
        else:
            self.register_buffer("allowed", None, persistent=False)
        self.fixed_emb = nn.Embedding(2, config.width) if config.fixed_embedding else None
        self.time_emb = TimestepEmbedding(config.width) if config.time_conditioning else None
        layer = nn.TransformerEncoderLayer(
            config.width,
            config.heads,
            config.ffn,
            config.dropout,
            activation="relu",
            batch_first=True,
            norm_first=config.norm_first,
        )
        self.encoder = nn.TransformerEncoder(
            layer,
            config.layers,
            norm=nn.LayerNorm(config.width) if config.norm_first else None,
            enable_nested_tensor=False,
        )
        self.head = nn.Linear(config.width, vocab_size)

    def forward(
        self,
        zt: torch.Tensor,
        t: torch.Tensor,
        fixed: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        length = zt.shape[1]
        if length > self.seq_len:
            raise ValueError(f"sequence length {length} exceeds the model's seq_len {self.seq_len}")
        if self.positions is None:
            x = self.tok_emb(zt) + self.pos_emb(torch.arange(length, device=zt.device))
        else:
            x = self.tok_emb(zt) + self.pos_emb(self.positions[:length])
        if self.fixed_emb is not None:
            x = x + self.fixed_emb(torch.zeros_like(zt) if fixed is None else fixed.long())
        if self.time_emb is not None:
            x = x + self.time_emb(t)[:, None, :]
        keys = None if valid is None else attended_keys(valid)
        if self.allowed is None:
            padding = None if keys is None else ~keys
            return self.head(self.encoder(x, src_key_padding_mask=padding)).float()
        return self.head(self.encoder(x, mask=self._blocked(keys, zt.shape[0], length))).float()

    def _blocked(self, keys: torch.Tensor | None, batch: int, length: int) -> torch.Tensor:
        """Bool[L, L] (no padding) or Bool[B * heads, L, L]: True where attention is blocked,
        nn.MultiheadAttention's mask convention."""
        allowed = allowed_pairs(self.allowed, keys, length)
        if keys is None:
            return ~allowed[0, 0]
        heads = self.config.heads
        return ~allowed.expand(batch, heads, length, length).reshape(batch * heads, length, length)

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward) at context ``seq_len``:
        6 * N_matmul + 12 * layers * width * seq_len, with N_matmul = layers * (4 d^2 + 2 d ffn)
        + d * vocab_size (attention projections, FFN, head); embeddings and time MLP excluded."""
        d = self.config.width
        n_matmul = self.config.layers * (4 * d * d + 2 * d * self.config.ffn) + d * self.vocab_size
        return 6.0 * n_matmul + 12.0 * self.config.layers * d * seq_len
