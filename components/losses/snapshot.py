"""GDDS snapshot objective (diffusion.md section 2.3; ozekri/gdds ``algorithms/gdds.py``): per
token -log p_theta(x0_i | z_t, t) over every scored position, unweighted.

This is the snapshot bound, not the path ELBO of the CTMC: the ``elbo`` output carries it (so
validation reports eval/elbo and eval/ppl for GDDS runs), but those numbers are not comparable
with masked / uniform / GIDD ELBOs. With ``carry_over`` the model is credited with the forward
process's true jump mask (unobservable at inference), which lowers the number further.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from components.batch import Batch
from components.losses.base import Loss, LossOutput
from components.losses.gidd import LOG_PROB_FLOOR, corrupted_accuracy
from components.losses.registry import LOSSES
from components.noise.base import NoiseProcess, clean_log_probs
from components.registry import SpecModel


class SnapshotLossConfig(SpecModel):
    """``loss: {kind: snapshot, carry_over: false, low_var: false}``."""

    kind: Literal["snapshot"] = "snapshot"
    carry_over: bool = Field(
        False, description="positions that did not jump copy z_t (loss 0 there), using the true jump mask"
    )
    low_var: bool = Field(
        False, description="train on the mean cross-entropy of jumped tokens only (elbo is unchanged)"
    )

    requires_noise: ClassVar[tuple[str, ...]] = ("gdds", "masked", "uniform", "gidd")


@LOSSES.register(SnapshotLossConfig)
class SnapshotLoss(Loss):
    """Metrics: ``elbo`` (= ``snapshot_nll``, nats per scored token: the snapshot bound, not
    an ELBO), ``denoising_nll`` and ``denoising_ppl`` (mean -log p(x0) over jumped tokens, and its
    exp), ``accuracy`` (argmax = x0 on jumped tokens), ``jumped_fraction`` (of scored tokens)."""

    def __init__(self, config: SnapshotLossConfig, *, noise: NoiseProcess):
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
        """mask: Bool[B, L] scored positions; jumped: Bool[B, L] the forward process's jump mask
        (default zt != x0, which misses jumps back onto the clean token). Returns loss (float32
        scalar) and elbo (Float64[B, L], nats: the per-position snapshot NLL, 0 where unscored and,
        with carry_over, where nothing jumped)."""
        mask = torch.ones_like(x0, dtype=torch.bool) if mask is None else mask
        jumped = mask & (zt != x0 if jumped is None else jumped)
        log_x_hat = clean_log_probs(logits, self.noise.mask_id)
        nll = -log_x_hat.clamp_min(LOG_PROB_FLOOR).gather(-1, x0[..., None]).squeeze(-1).double()
        snapshot = torch.where(jumped if self.config.carry_over else mask, nll, 0.0)
        count = mask.sum().clamp_min(1)
        jumped_count = jumped.sum().clamp_min(1)
        denoising = torch.where(jumped, nll, 0.0).sum() / jumped_count
        loss = denoising if self.config.low_var else snapshot.sum() / count
        snapshot_nll = (snapshot.sum() / count).detach().float()
        metrics = {
            "elbo": snapshot_nll,
            "snapshot_nll": snapshot_nll,
            "denoising_nll": denoising.detach().float(),
            "denoising_ppl": denoising.detach().exp().float(),
            "accuracy": corrupted_accuracy(log_x_hat, x0, jumped),
            "jumped_fraction": (jumped.sum() / count).float(),
        }
        return LossOutput(loss=loss.float(), elbo=snapshot, metrics=metrics)

    def objective(self, model: nn.Module, batch: Batch, t: torch.Tensor) -> LossOutput:
        """Noise with the jump mask, run the model, score batch.scored."""
        zt, jumped = self.noise.sample_with_jumps(batch.x0, t, batch.fixed)
        logits = model(zt, t, fixed=batch.fixed, valid=batch.valid)
        return self(logits, batch.x0, zt, t, batch.scored, jumped=jumped)
