"""Diffusion-time sampling for training: one t per sequence in [eps, 1 - eps]."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from components.registry import SpecModel
from components.schedules.registry import TIME_SAMPLERS


class TimeSampler:
    """Draws t: Float[n] for this rank's n sequences.

    ``generator`` must be seeded identically on every rank so that stratification is over the
    global batch (n * world_size strata), each rank taking its own slice (Duo's scheme)."""

    def __init__(self, eps: float):
        self.eps = eps

    def _unit(self, n: int, generator: torch.Generator, rank: int, world_size: int) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        u = self._unit(n, generator, rank, world_size)
        return (1.0 - 2.0 * self.eps) * u + self.eps


class UniformTimeConfig(SpecModel):
    kind: Literal["uniform"] = "uniform"
    eps: float = Field(1e-4, gt=0.0, lt=0.5, description="t is mapped into [eps, 1 - eps]; > 0 keeps ELBO weights finite")


class LowDiscrepancyTimeConfig(SpecModel):
    kind: Literal["low_discrepancy"] = "low_discrepancy"
    eps: float = Field(1e-4, gt=0.0, lt=0.5, description="t is mapped into [eps, 1 - eps]; > 0 keeps ELBO weights finite")


@TIME_SAMPLERS.register(UniformTimeConfig)
class UniformTime(TimeSampler):
    """i.i.d. t ~ U(0, 1) per sequence."""

    def __init__(self, config: UniformTimeConfig):
        super().__init__(config.eps)

    def _unit(self, n: int, generator: torch.Generator, rank: int, world_size: int) -> torch.Tensor:
        # Draw the global batch and slice, so the RNG stream is identical on every rank.
        u = torch.rand(n * world_size, generator=generator, dtype=torch.float64)
        return u[rank * n : (rank + 1) * n].float()


@TIME_SAMPLERS.register(LowDiscrepancyTimeConfig)
class LowDiscrepancyTime(TimeSampler):
    """Stratified t: one shared U ~ U(0, 1), t_i = (i / (n * W) + U) mod 1 over the global batch;
    exactly one sample falls in each of the n * W strata of [0, 1)."""

    def __init__(self, config: LowDiscrepancyTimeConfig):
        super().__init__(config.eps)

    def _unit(self, n: int, generator: torch.Generator, rank: int, world_size: int) -> torch.Tensor:
        total = n * world_size
        offset = torch.rand((), generator=generator, dtype=torch.float64)
        i = torch.arange(rank * n, (rank + 1) * n, dtype=torch.float64)
        return torch.remainder(i / total + offset, 1.0).float()
