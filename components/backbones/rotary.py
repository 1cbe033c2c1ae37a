"""Rotary position embedding (RoPE, rotate-half convention as in GPT-NeoX and MDLM).

Channel i of the first half of a head is paired with channel i + head_dim/2 and the pair is
rotated by the angle ``position * base**(-2i / head_dim)``. The dot product of a rotated query
at position m and a rotated key at position n then depends on m - n only.
"""

from __future__ import annotations

import torch


def rotary_tables(seq_len: int, head_dim: int, base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each Float32[seq_len, head_dim] (the half-dim table repeated twice).

    ``head_dim`` must be even; ``base`` sets the wavelength range (radians per position)."""
    if head_dim % 2:
        raise ValueError(f"rotary embedding needs an even head dim, got {head_dim}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(seq_len, dtype=torch.float64)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x: [..., L, head_dim] by the tables cos, sin: [L, head_dim].

    Computed in float32 and returned in x's dtype (bf16-safe)."""
    xf = x.float()
    first, second = xf.chunk(2, dim=-1)
    rotated_half = torch.cat([-second, first], dim=-1)
    return (xf * cos + rotated_half * sin).to(x.dtype)
