"""Gated correction passes for two-head models (issue 6): fill the sequence with a base sampler,
then let the holding head pick the tokens to change and the jump head re-predict them.

One correction pass on a finished sequence z (fixed positions are never touched):
1. holding pass: flagged = sigmoid(holding(z, t0)) > threshold at non-fixed positions;
2. jump pass on z with the flagged positions masked (the predicted gate of training);
   each flagged position takes the jump head's argmax.
A sequence stops when nothing is flagged (that pass costs 1 NFE) or a pass changes nothing (2 NFEs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field

from components.backbones.two_head import TwoHeadOutput
from components.batch import Batch
from components.noise.base import NoiseProcess, clean_log_probs
from components.registry import SpecModel
from components.samplers.base import Generation, Sampler
from components.samplers.confidence import ConfidenceConfig
from components.samplers.edit import EditSamplerConfig
from components.samplers.registry import SAMPLERS


class GatedConfig(SpecModel):
    """``sampler: {kind: gated, base: {kind: confidence, k: 1}, threshold: 0.5, passes: 8, t0: 0.1}``."""

    kind: Literal["gated"] = "gated"
    base: Annotated[ConfidenceConfig | EditSamplerConfig, Field(discriminator="kind")] = Field(
        default_factory=ConfidenceConfig, description="sampler that fills the sequence first"
    )
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="flag a token when P(corrupted) > threshold")
    passes: int = Field(8, ge=0, le=100_000, description="correction passes at most")
    t0: float = Field(0.1, gt=0.0, lt=1.0, description="time given to the model in correction passes")

    requires_backbone: ClassVar[tuple[str, ...]] = ("two_head",)


@dataclass(frozen=True)
class GatedStats:
    """Per sequence, tensors [B]: passes (Long, correction passes run), changes (Long, positions
    differing from the base sample at the end), converged (Bool, stopped because nothing was
    flagged or nothing changed)."""

    passes: torch.Tensor
    changes: torch.Tensor
    converged: torch.Tensor


def two_head_output(model: torch.nn.Module, zt: torch.Tensor, t: torch.Tensor, fixed: torch.Tensor, valid: torch.Tensor | None) -> TwoHeadOutput:
    out = model(zt, t, fixed=fixed, valid=valid)
    if not isinstance(out, TwoHeadOutput):
        raise TypeError("the gated sampler needs a two_head backbone (holding and jump heads)")
    return out


@SAMPLERS.register(GatedConfig)
class GatedSampler(Sampler):
    """Base sample, then gated correction passes (see the module docstring); ``self.stats`` holds
    the :class:`GatedStats` of the last batch. Generation.nfe = base NFEs + correction NFEs."""

    def __init__(self, config: GatedConfig):
        self.config = config
        self.base = SAMPLERS.build(config.base)
        self.stats: GatedStats | None = None

    @torch.no_grad()
    def generate(
        self, model: torch.nn.Module, noise: NoiseProcess, batch: Batch, steps: int | None = None
    ) -> Generation:
        """``steps`` is passed to the base sampler."""
        first = self.base.generate(model, noise, batch, steps)
        z = first.tokens.clone()
        fixed = batch.fixed
        passes = torch.zeros_like(first.nfe)
        nfe = first.nfe.clone()
        converged = ~(~fixed).any(-1)
        active = ~converged
        for _ in range(self.config.passes):
            rows = active.nonzero().squeeze(-1)
            if rows.numel() == 0:
                break
            t = torch.full((len(rows),), self.config.t0, device=z.device)
            valid = None if batch.valid is None else batch.valid[rows]
            holding = two_head_output(model, z[rows], t, fixed[rows], valid).holding
            flagged = ~fixed[rows] & (torch.sigmoid(holding.float()) > self.config.threshold)
            passes[rows] += 1
            nfe[rows] += 1
            converged[rows] = ~flagged.any(-1)
            active[rows] = flagged.any(-1)
            keep = flagged.any(-1).nonzero().squeeze(-1)
            if keep.numel() == 0:
                continue
            rows, flagged = rows[keep], flagged[keep]
            zr = z[rows]
            valid = None if batch.valid is None else batch.valid[rows]
            jump = two_head_output(model, zr.masked_fill(flagged, noise.mask_id), t[keep], fixed[rows], valid).jump
            new = torch.where(flagged, clean_log_probs(jump, noise.mask_id).argmax(-1), zr)
            changed = (new != zr).any(-1)
            z[rows] = new
            nfe[rows] += 1
            converged[rows] = ~changed
            active[rows] = changed
        self.stats = GatedStats(passes=passes, changes=(z != first.tokens).sum(-1), converged=converged)
        return Generation(z, nfe)
