"""Uniform-state noise (UDLM / Duo): each token is resampled uniformly with probability
1 - alpha_t (docs/math.md "Forward processes"). The task vocabulary carries a mask token, which this
process never produces: the uniform draw is over the N = V - 1 non-mask tokens."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from components.noise.base import SCHEDULE_HELP, Schedule, ScheduledMixtureNoise, uniform_vector
from components.noise.registry import NOISES
from components.registry import SpecModel


class UniformNoiseConfig(SpecModel):
    """``noise: {kind: uniform, schedule: loglinear, eps: 1.0e-3}``."""

    kind: Literal["uniform"] = "uniform"
    schedule: Schedule = Field("loglinear", description=SCHEDULE_HELP)
    eps: float = Field(1e-3, ge=0.0, lt=1.0, description="schedule offset: alpha_1 = eps")


@NOISES.register(UniformNoiseConfig)
class UniformNoise(ScheduledMixtureNoise):
    """q_t(. | x) = alpha_t onehot(x) + (1 - alpha_t)/N over the non-mask tokens; the prior is
    uniform over them. A jump may land on the clean token again."""

    def __init__(self, config: UniformNoiseConfig, *, vocab_size: int, mask_id: int):
        super().__init__(config.schedule, config.eps, vocab_size, mask_id)
        self.config = config

    def pi(self, device: torch.device | str) -> torch.Tensor:
        return uniform_vector(self.vocab_size, self.mask_id, device)

    def prior(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
        draw = torch.randint(self.vocab_size - 1, shape, device=device)
        return draw + (draw >= self.mask_id).long()
