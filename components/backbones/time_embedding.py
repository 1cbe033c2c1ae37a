"""Diffusion-time embedding: sinusoidal features of t followed by an MLP (DiT / MDLM style)."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_features(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Float32[B, dim] features [cos(t * f_k), sin(t * f_k)] of t: Float[B] (any scale).

    Frequencies f_k = max_period**(-k / (dim/2)), k = 0 .. dim/2 - 1; ``dim`` must be even."""
    if dim % 2:
        raise ValueError(f"sinusoidal features need an even dim, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedding(nn.Module):
    """t: Float[B] in [0, 1] -> Float[B, out_dim]: Linear(freq_dim, out_dim) -> SiLU -> Linear.

    The MLP input is ``freq_dim`` sinusoidal features (256 as in DiT/MDLM) of ``time_scale * t``;
    the scale of 1000 makes t in [0, 1] span the frequencies the way DiT's integer timesteps
    do. No final nonlinearity is applied; callers that need c = SiLU(.) apply it."""

    def __init__(self, out_dim: int, freq_dim: int = 256, time_scale: float = 1000.0):
        super().__init__()
        self.freq_dim = freq_dim
        self.time_scale = time_scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_features(self.time_scale * t.float(), self.freq_dim))
