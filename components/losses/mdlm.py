"""MDLM loss (diffusion.md section 2.2): on masked tokens, -log x_hat(x) (-alpha'_t)/(1 - alpha_t),
which is -log x_hat(x) / t for the log-linear schedule (exact including eps); unmasked tokens carry
over and contribute 0."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field

from components.losses.base import Loss, LossOutput
from components.losses.gidd import LOG_PROB_FLOOR, corrupted_accuracy
from components.losses.registry import LOSSES
from components.noise.base import NoiseProcess, clean_log_probs
from components.noise.masked import MaskedNoise
from components.registry import BuildError, SpecModel


class MdlmLossConfig(SpecModel):
    """``loss: {kind: mdlm, low_var: false}``."""

    kind: Literal["mdlm"] = "mdlm"
    low_var: bool = Field(
        False, description="train on plain cross-entropy of masked tokens (no 1/t); not an ELBO, elbo stays exact"
    )

    requires_noise: ClassVar[tuple[str, ...]] = ("masked",)


@LOSSES.register(MdlmLossConfig)
class MdlmLoss(Loss):
    """Metrics (per scored token): ``elbo``, ``ce`` (mean -log x_hat(x) over masked tokens),
    ``weight_mean`` (mean ELBO weight over masked tokens), ``accuracy`` (on masked tokens)."""

    def __init__(self, config: MdlmLossConfig, *, noise: NoiseProcess):
        if not isinstance(noise, MaskedNoise):
            raise BuildError(f"losses (mdlm) needs masked noise, got {type(noise).__name__}")
        self.config = config
        self.noise = noise

    def __call__(
        self,
        logits: torch.Tensor,
        x0: torch.Tensor,
        zt: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> LossOutput:
        """Returns loss (float32 scalar, mean over scored tokens) and elbo (Float64[B, L], nats)."""
        mask = torch.ones_like(x0, dtype=torch.bool) if mask is None else mask
        log_x_hat = clean_log_probs(logits, self.noise.mask_id)
        nll = -log_x_hat.clamp_min(LOG_PROB_FLOOR).gather(-1, x0[..., None]).squeeze(-1).double()
        masked = mask & (zt == self.noise.mask_id)
        one_minus_alpha = 1.0 - self.noise.alpha(t)
        rate = -self.noise.alpha_prime(t) / torch.where(one_minus_alpha > 0, one_minus_alpha, 1.0)
        weight = torch.where(masked, rate[:, None], 0.0)  # Float64[B, L]
        elbo = weight * nll
        train = torch.where(masked, nll, 0.0) if self.config.low_var else elbo
        count = mask.sum().clamp_min(1)
        masked_count = masked.sum().clamp_min(1)
        metrics = {
            "elbo": (elbo.sum() / count).detach().float(),
            "ce": (torch.where(masked, nll, 0.0).sum() / masked_count).detach().float(),
            "weight_mean": (weight.sum() / masked_count).detach().float(),
            "accuracy": corrupted_accuracy(log_x_hat, x0, masked),
        }
        return LossOutput(loss=(train.sum() / count).float(), elbo=elbo, metrics=metrics)
