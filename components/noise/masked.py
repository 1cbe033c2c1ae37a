"""Masked (absorbing-state) noise, MDLM: each token is replaced by the mask with probability
1 - alpha_t (Sahoo et al. 2024; docs/math.md "Forward processes")."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from components.noise.base import SCHEDULE_HELP, Schedule, ScheduledMixtureNoise, mask_vector
from components.noise.registry import NOISES
from components.registry import SpecModel


class MaskedNoiseConfig(SpecModel):
    """``noise: {kind: masked, schedule: loglinear, eps: 1.0e-3}``."""

    kind: Literal["masked"] = "masked"
    schedule: Schedule = Field("loglinear", description=SCHEDULE_HELP)
    eps: float = Field(1e-3, ge=0.0, lt=1.0, description="schedule offset: alpha_1 = eps")


@NOISES.register(MaskedNoiseConfig)
class MaskedNoise(ScheduledMixtureNoise):
    """q_t(. | x) = alpha_t onehot(x) + (1 - alpha_t) e_m; the prior is all mask. With eps > 0,
    alpha_1 = eps (loglinear) is not exactly 0, as in MDLM."""

    def __init__(self, config: MaskedNoiseConfig, *, vocab_size: int, mask_id: int):
        super().__init__(config.schedule, config.eps, vocab_size, mask_id)
        self.config = config

    def pi(self, device: torch.device | str) -> torch.Tensor:
        return mask_vector(self.vocab_size, self.mask_id, device)

    def prior(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.full(shape, self.mask_id, dtype=torch.long, device=device)
