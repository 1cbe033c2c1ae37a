"""Autoregressive next-token cross-entropy (the AR baseline, diffusion.md sections 6 and 7).

-log p(x) = sum_i -log p_theta(x_i | x_<i) exactly, so the ``elbo`` output is the exact NLL per
token and validation PPL / bits per token of an ``ar`` run are exact, not bounds.

There is no forward process: the objective feeds the clean tokens shifted right by one
(:func:`~components.backbones.causal.shift_right`, start token = the noise's mask id, which never
occurs in data) through a causal pass (``model(..., causal=True)``) at t = 0, and ignores z_t and
t. A spec still names a noise section (any kind; ``{kind: masked}`` reads best); only its mask id
is used. Every scored position is predicted, the first one from the start token alone, so an AR
run scores exactly the tokens a diffusion run scores.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import nn

from components.backbones.causal import shift_right, shift_valid
from components.batch import Batch
from components.losses.base import Loss, LossOutput
from components.losses.gidd import LOG_PROB_FLOOR
from components.losses.registry import LOSSES
from components.noise.base import NoiseProcess
from components.registry import BuildError, SpecModel


class ArLossConfig(SpecModel):
    """``loss: {kind: ar}`` (with ``backbone: {kind: causal}``)."""

    kind: Literal["ar"] = "ar"
    requires_backbone: ClassVar[tuple[str, ...]] = ("causal",)


@LOSSES.register(ArLossConfig)
class ArLoss(Loss):
    """Next-token NLL over the full vocabulary, mean over scored tokens.

    Metrics (per scored token): ``elbo`` (the exact NLL, nats) and ``accuracy`` (argmax = x0)."""

    def __init__(self, config: ArLossConfig, *, noise: NoiseProcess):
        if noise.mask_id is None:
            raise BuildError(f"losses (ar) uses the noise's mask id as its start token; {type(noise).__name__} has none")
        self.config = config
        self.noise = noise
        self.start_id = noise.mask_id

    def __call__(
        self,
        logits: torch.Tensor,
        x0: torch.Tensor,
        zt: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> LossOutput:
        """logits: Float[B, L, V] of a causal pass over shift_right(x0) (logits[:, i] predict
        x0[:, i]); x0: Long[B, L]; zt, t: ignored; mask: Bool[B, L] scored positions (default all).
        Returns loss (float32 scalar) and elbo = the NLL, Float64[B, L] in nats (0 where unscored)."""
        logits = logits if isinstance(logits, torch.Tensor) else logits.logits
        mask = torch.ones_like(x0, dtype=torch.bool) if mask is None else mask
        log_p = torch.log_softmax(logits.float(), dim=-1).clamp_min(LOG_PROB_FLOOR)
        nll = -log_p.gather(-1, x0.unsqueeze(-1)).squeeze(-1).double()
        elbo = torch.where(mask, nll, 0.0)
        count = mask.sum().clamp_min(1)
        hits = (log_p.argmax(-1) == x0) & mask
        metrics = {
            "elbo": (elbo.sum() / count).detach().float(),
            "accuracy": (hits.sum() / count).detach().float(),
        }
        return LossOutput(loss=(elbo.sum() / count).float(), elbo=elbo, metrics=metrics)

    def bound_time(self) -> float:
        """1: the elbo does not depend on t, so validation's unit-measure average over t returns it."""
        return 1.0

    def prior_term(self, x0: torch.Tensor) -> torch.Tensor:
        """0: the NLL is exact; there is no prior."""
        return torch.zeros(x0.shape, dtype=torch.float64, device=x0.device)

    def objective(self, model: nn.Module, batch: Batch, t: torch.Tensor) -> LossOutput:
        """One causal pass over the shifted clean tokens at t = 0; scores batch.scored."""
        inputs = shift_right(batch.x0, self.start_id)
        logits = model(inputs, torch.zeros_like(t), fixed=None, valid=shift_valid(batch.valid), causal=True)
        return self(logits, batch.x0, batch.x0, t, batch.scored)
