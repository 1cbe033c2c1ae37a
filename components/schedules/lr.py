"""Learning-rate schedule: linear warmup, then constant, cosine or linear decay."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from components.registry import SpecModel


class LrSchedule(SpecModel):
    """lr(step) = peak * factor(step); factor rises linearly from 1/warmup to 1 over
    ``warmup_steps``, then decays to ``final_fraction`` at the last training step."""

    peak: float = Field(1e-3, gt=0.0, le=1.0, description="peak learning rate")
    warmup_steps: int = Field(0, ge=0)
    decay: Literal["constant", "cosine", "linear"] = "cosine"
    final_fraction: float = Field(0.1, ge=0.0, le=1.0, description="final lr / peak (cosine, linear)")

    def factor(self, step: int, total_steps: int) -> float:
        """Multiplier of ``peak`` at optimizer step ``step`` (0-based) of ``total_steps``."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.decay == "constant":
            return 1.0
        span = max(1, total_steps - 1 - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        if self.decay == "cosine":
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            shape = 1.0 - progress
        return self.final_fraction + (1.0 - self.final_fraction) * shape
