"""DiT denoiser (MDLM / GIDD style): adaLN-zero time conditioning, RoPE, SDPA, bias-free LayerNorm.
Optionally reads the task's structure (structured.py): per-axis positions, restricted attention.

Sizes (the MDLM / GIDD presets; cond_dim 128, MLP ratio 4, GELU-tanh, head dim 64):
tiny 512 width / 8 layers / 8 heads, small 768 / 12 / 12, base 1024 / 24 / 16.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from components.backbones.attention import RotarySelfAttention
from components.backbones.base import Backbone
from components.backbones.registry import BACKBONES
from components.backbones.structured import AxisEmbedding, StructureOptions, checked_structure
from components.backbones.time_embedding import TimestepEmbedding
from components.registry import SpecModel
from components.structure import Structure

PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"width": 512, "layers": 8, "heads": 8},
    "small": {"width": 768, "layers": 12, "heads": 12},
    "base": {"width": 1024, "layers": 24, "heads": 16},
}
VOCAB_MULTIPLE = 128


class TransformerSizeConfig(SpecModel):
    """Size fields shared by the DiT and its causal twin. ``size`` picks a preset;
    ``layers``/``heads``/``width`` given explicitly override it. Without a size, unspecified
    dimensions take the tiny values."""

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
    def _check_dims(self) -> "TransformerSizeConfig":
        _, heads, width = self.dims()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        if (width // heads) % 2:
            raise ValueError(f"head dim width/heads = {width // heads} must be even for RoPE")
        return self


class DiTConfig(TransformerSizeConfig, StructureOptions):
    """``backbone: {kind: dit, ...}``: the sizes of :class:`TransformerSizeConfig` plus the
    time and fixed-position conditioning and the structure options (``positions: structured``
    adds per-axis position embeddings to the tokens; RoPE stays)."""

    kind: Literal["dit"] = "dit"
    cond_dim: int = Field(128, ge=1, le=4096, description="time-conditioning width")
    time_conditioning: bool = Field(
        True,
        description="false: t is ignored (constant adaLN conditioning); true: the time embedding reads 1000 t "
        "(the scale of DiT's integer timesteps; GIDD's DiT feeds t itself, so weights do not carry over)",
    )
    fixed_embedding: bool = Field(False, description="add a learned embedding telling fixed positions apart")


def padded_vocab(vocab_size: int, multiple: int = VOCAB_MULTIPLE) -> int:
    """Smallest multiple of ``multiple`` that is >= vocab_size."""
    return -(-vocab_size // multiple) * multiple


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x: [B, L, d] shifted and scaled per sequence by shift, scale: [B, d]."""
    return x * (1.0 + scale[:, None, :]) + shift[:, None, :]


class LayerNorm(nn.Module):
    """Bias-free LayerNorm over the last dim, computed in float32, returned in x's dtype."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.weight.shape, self.weight.float(), None, self.eps).to(x.dtype)


class PreNormBlock(nn.Module):
    """x: Float[B, L, d] -> Float[B, L, d]; pre-norm RoPE attention and MLP residual branches
    (the causal backbone's block; the DiT block adds its adaLN modulation and gates)."""

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

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None, causal: bool = False) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), valid, causal))
        return x + self.drop(self.mlp(self.norm2(x)))


class DiTBlock(PreNormBlock):
    """x: Float[B, L, d], c: Float[B, cond_dim] -> Float[B, L, d].

    Pre-norm attention and MLP branches, each modulated (shift, scale) and gated by adaLN-zero:
    a zero-initialised Linear(cond_dim, 6d), so every block starts as the identity."""

    def __init__(self, width: int, heads: int, cond_dim: int, mlp_ratio: int, seq_len: int, dropout: float, rope_base: float):
        super().__init__(width, heads, mlp_ratio, seq_len, dropout, rope_base)
        self.adaln = nn.Linear(cond_dim, 6 * width)
        nn.init.zeros_(self.adaln.weight)
        nn.init.zeros_(self.adaln.bias)

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, valid: torch.Tensor | None, allowed: torch.Tensor | None = None
    ) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaln(c).chunk(6, dim=-1)
        h = modulate(self.norm1(x), shift_a, scale_a)
        x = x + gate_a[:, None, :] * self.drop(self.attn(h, valid, allowed=allowed))
        return x + gate_m[:, None, :] * self.drop(self.mlp(modulate(self.norm2(x), shift_m, scale_m)))


class FinalLayer(nn.Module):
    """x: Float[B, L, d], c: Float[B, cond_dim] -> Float[B, L, V_padded]; adaLN (2d) and a
    zero-initialised output projection, so the untrained model predicts uniform logits."""

    def __init__(self, width: int, cond_dim: int, out_dim: int):
        super().__init__()
        self.norm = LayerNorm(width)
        self.adaln = nn.Linear(cond_dim, 2 * width)
        self.linear = nn.Linear(width, out_dim)
        for layer in (self.adaln, self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaln(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


@BACKBONES.register(DiTConfig)
class DiT(Backbone):
    """Diffusion transformer. forward(zt: Long[B, L], t: Float[B] in [0, 1],
    fixed: Bool[B, L] | None, valid: Bool[B, L] | None) -> Float32[B, L, vocab_size].

    The vocabulary is padded to a multiple of 128 inside (embedding and head); the returned
    logits cover exactly ``vocab_size`` entries. L may be anything up to ``seq_len``.
    ``structure``: the task's, read when ``positions`` or ``attention`` is structured."""

    def __init__(self, config: DiTConfig, *, vocab_size: int, seq_len: int, structure: Structure | None = None):
        super().__init__()
        self.config = config
        self.layers, self.heads, self.width = config.dims()
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.padded_vocab = padded_vocab(vocab_size)
        structure = checked_structure(config, structure, seq_len)
        self.tok_emb = nn.Embedding(self.padded_vocab, self.width)
        if config.positions == "structured":
            self.pos_emb = AxisEmbedding(structure.axis_sizes, self.width)
            self.register_buffer("positions", structure.positions[:seq_len].clone(), persistent=False)
        else:
            self.pos_emb = None
            self.register_buffer("positions", None, persistent=False)
        allowed = structure.attention.clone() if config.attention == "structured" else None
        self.register_buffer("allowed", allowed, persistent=False)
        self.fixed_emb = nn.Embedding(2, self.width) if config.fixed_embedding else None
        self.time_emb = TimestepEmbedding(config.cond_dim)
        self.blocks = nn.ModuleList(
            DiTBlock(self.width, self.heads, config.cond_dim, config.mlp_ratio, seq_len, config.dropout, config.rope_base)
            for _ in range(self.layers)
        )
        self.final = FinalLayer(self.width, config.cond_dim, self.padded_vocab)
        embeddings = [self.tok_emb, self.fixed_emb, *([] if self.pos_emb is None else self.pos_emb.axes)]
        for emb in embeddings:
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.02)

    def forward(
        self,
        zt: torch.Tensor,
        t: torch.Tensor,
        fixed: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.tok_emb(zt)
        if self.pos_emb is not None:
            x = x + self.pos_emb(self.positions[: zt.shape[1]])
        if self.fixed_emb is not None:
            x = x + self.fixed_emb(torch.zeros_like(zt) if fixed is None else fixed.long())
        if not self.config.time_conditioning:
            t = torch.zeros_like(t)
        c = F.silu(self.time_emb(t))
        for block in self.blocks:
            x = block(x, c, valid, self.allowed)
        return self.final(x, c)[..., : self.vocab_size].float()

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward) at context ``seq_len``:
        6 * N_matmul + 12 * layers * width * seq_len (orchestration.md section 5).

        N_matmul counts the block matmuls ((4 + 2 * mlp_ratio) * d^2 per layer), adaLN
        (cond_dim * 6d per layer, cond_dim * 2d final) and the output head over the padded
        vocabulary (d * V_padded). As in that convention adaLN is counted per token, although
        it runs once per sequence here; embeddings and the time MLP are not counted."""
        d, cond = self.width, self.config.cond_dim
        per_layer = (4 + 2 * self.config.mlp_ratio) * d * d + cond * 6 * d
        n_matmul = self.layers * per_layer + cond * 2 * d + d * self.padded_vocab
        return 6.0 * n_matmul + 12.0 * self.layers * d * seq_len
