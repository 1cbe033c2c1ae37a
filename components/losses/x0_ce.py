"""Plain x0 cross-entropy on corrupted positions (the simple Sudoku baselines): -log x_hat(x0)
where the forward process jumped, unweighted (no 1/t). Not an ELBO; the ``elbo`` output is the
true GIDD NELBO over all scored positions so runs still compare on validation ELBO."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import nn

from components.batch import Batch
from components.losses.base import Loss, LossOutput
from components.losses.gidd import LOG_PROB_FLOOR, corrupted_accuracy, elbo_terms
from components.losses.registry import LOSSES
from components.noise.base import InterpolatingNoise, NoiseProcess, clean_log_probs
from components.registry import BuildError, SpecModel


class X0CeLossConfig(SpecModel):
    """``loss: {kind: x0_ce}``."""

    kind: Literal["x0_ce"] = "x0_ce"

    requires_noise: ClassVar[tuple[str, ...]] = ("masked", "uniform", "gidd")


@LOSSES.register(X0CeLossConfig)
class X0CeLoss(Loss):
    """Training loss: mean of -log x_hat(x0) over the corrupted scored positions (those the forward
    process jumped; see :meth:`objective`). Metrics: ``ce`` (= the loss), ``elbo`` (per scored
    token), ``accuracy`` (on corrupted positions), ``corrupted_fraction`` (of scored positions)."""

    def __init__(self, config: X0CeLossConfig, *, noise: NoiseProcess):
        if not isinstance(noise, InterpolatingNoise):
            raise BuildError(f"losses (x0_ce) needs an interpolating noise process, got {type(noise).__name__}")
        self.config = config
        self.noise = noise

    def __call__(
        self,
        logits: torch.Tensor,
        x0: torch.Tensor,
        zt: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor | None = None,
        jumped: torch.Tensor | None = None,
    ) -> LossOutput:
        """mask: Bool[B, L] scored positions (the ELBO covers all of them); jumped: Bool[B, L] the
        forward process's jump mask. Cross-entropy is taken on mask & jumped, or on mask & (zt != x0)
        when jumped is not given (which misses uniform jumps back onto the clean token).
        Returns loss (float32 scalar) and elbo (Float64[B, L], nats)."""
        mask = torch.ones_like(x0, dtype=torch.bool) if mask is None else mask
        corrupted = mask & (zt != x0 if jumped is None else jumped)
        log_x_hat = clean_log_probs(logits, self.noise.mask_id)
        nll = -log_x_hat.clamp_min(LOG_PROB_FLOOR).gather(-1, x0[..., None]).squeeze(-1)
        loss = torch.where(corrupted, nll, 0.0).sum() / corrupted.sum().clamp_min(1)
        with torch.no_grad():
            elbo = torch.where(mask, elbo_terms(self.noise, log_x_hat, x0, zt, t).elbo, 0.0)
        count = mask.sum().clamp_min(1)
        metrics = {
            "ce": loss.detach().float(),
            "elbo": (elbo.sum() / count).float(),
            "accuracy": corrupted_accuracy(log_x_hat, x0, corrupted),
            "corrupted_fraction": (corrupted.sum() / count).float(),
        }
        return LossOutput(loss=loss.float(), elbo=elbo, metrics=metrics)

    def objective(self, model: nn.Module, batch: Batch, t: torch.Tensor) -> LossOutput:
        """Noise with the jump mask, run the model, score the jumped positions of batch.scored."""
        zt, jumped = self.noise.sample_with_jumps(batch.x0, t, batch.fixed)
        logits = model(zt, t, fixed=batch.fixed, valid=batch.valid)
        return self(logits, batch.x0, zt, t, batch.scored, jumped=jumped)
