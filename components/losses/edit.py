"""Loss for the edit noise (diffusion.md section 5): cross-entropy of the target token at masked
positions (MDLM weight or plain) and at visible positions (substituted, inserted and, with
``tokens: all``, untouched ones, so the model stops trusting every visible token).

The switch between scoring all tokens or only corrupted ones lives here, not on the noise: the
noise decides what the corruption is, the loss decides what is scored and how it is weighted
(as mdlm's ``low_var`` and snapshot's ``carry_over`` do).

Not an ELBO. The ``elbo`` output is the masked-diffusion NELBO: MDLM's
-log x_hat(x0) (-alpha'_t) / (1 - alpha_t) at masked positions. Validation (model in eval mode)
draws with the edits off, where this is the exact NELBO of the mask-only process; during
training it is computed on the curriculum's draw and is exact only before the edit stage.
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
from components.noise.edit import EditDraw, EditNoise
from components.registry import BuildError, SpecModel


class EditLossConfig(SpecModel):
    """``loss: {kind: edit, tokens: all, masked_weight: elbo, visible_weight: 1.0}``."""

    kind: Literal["edit"] = "edit"
    tokens: Literal["all", "corrupted"] = Field(
        "all", description="all: every scored token; corrupted: masked, substituted and inserted tokens only"
    )
    masked_weight: Literal["elbo", "one"] = Field(
        "elbo", description="weight of masked tokens: elbo = (-alpha'_t)/(1 - alpha_t) (1/t for loglinear); one = 1"
    )
    visible_weight: float = Field(1.0, ge=0.0, le=1e3, description="weight of scored visible tokens")

    requires_noise: ClassVar[tuple[str, ...]] = ("edit",)


def draw_of(mask_id: int, x0: torch.Tensor, zt: torch.Tensor) -> EditDraw:
    """The :class:`EditDraw` a pair (x0, zt) without insertions stands for: masked where zt is the
    mask token ``mask_id``, substituted where another token differs from x0."""
    masked = zt == mask_id
    return EditDraw(zt=zt, target=x0, masked=masked, substituted=~masked & (zt != x0), inserted=torch.zeros_like(masked))


def masked_nelbo(noise: EditNoise, log_x_hat: torch.Tensor, draw: EditDraw, t: torch.Tensor) -> torch.Tensor:
    """Float64[B, L]: -log x_hat(target) (-alpha'_t) / (1 - alpha_t) at masked positions, 0
    elsewhere (the MDLM NELBO integrand of the mask-only process). log_x_hat: Float[B, L, V]."""
    nll = -log_x_hat.clamp_min(LOG_PROB_FLOOR).gather(-1, draw.target[..., None]).squeeze(-1).double()
    one_minus_alpha = 1.0 - noise.alpha(t).to(nll.device)
    rate = -noise.alpha_prime(t).to(nll.device) / torch.where(one_minus_alpha > 0, one_minus_alpha, 1.0)
    return torch.where(draw.masked, rate[:, None] * nll, 0.0)


def fraction(part: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    """Detached float scalar |part| / |whole| (0 for an empty whole)."""
    return (part.sum() / whole.sum().clamp_min(1)).float()


@LOSSES.register(EditLossConfig)
class EditLoss(Loss):
    """Metrics (per scored token unless stated): ``elbo`` (mask-only NELBO), ``ce_masked``,
    ``ce_substituted``, ``ce_clean`` (mean cross-entropy on each kind of position), ``accuracy``
    (argmax = target on masked tokens), ``correction_accuracy`` (on substituted and inserted
    tokens), ``keep_accuracy`` (argmax = z_t on untouched visible tokens), ``substituted_fraction``,
    ``inserted_fraction``, ``edit_stage`` (1 when the draw had edits switched on)."""

    def __init__(self, config: EditLossConfig, *, noise: NoiseProcess):
        if not isinstance(noise, EditNoise):
            raise BuildError(f"losses (edit) needs edit noise, got {type(noise).__name__}")
        self.config = config
        self.noise = noise

    def __call__(
        self,
        logits: torch.Tensor,
        x0: torch.Tensor,
        zt: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor | None = None,
        draw: EditDraw | None = None,
        edit_stage: bool = False,
    ) -> LossOutput:
        """mask: Bool[B, L] scored positions; draw: the noise draw (default: inferred from x0 and
        zt, see :func:`draw_of`); edit_stage: reported as the ``edit_stage`` metric.
        Returns loss (float32 scalar, per scored token) and elbo (Float64[B, L], nats)."""
        mask = torch.ones_like(x0, dtype=torch.bool) if mask is None else mask
        draw = draw_of(self.noise.mask_id, x0, zt) if draw is None else draw
        log_x_hat = clean_log_probs(logits, self.noise.mask_id)
        nll = -log_x_hat.clamp_min(LOG_PROB_FLOOR).gather(-1, draw.target[..., None]).squeeze(-1).double()
        masked = mask & draw.masked
        wrong = mask & (draw.substituted | draw.inserted)
        clean = mask & ~draw.corrupted
        elbo = torch.where(mask, masked_nelbo(self.noise, log_x_hat, draw, t), 0.0)
        masked_term = elbo if self.config.masked_weight == "elbo" else torch.where(masked, nll, 0.0)
        visible = wrong | clean if self.config.tokens == "all" else wrong
        train = masked_term + torch.where(visible, self.config.visible_weight * nll, 0.0)
        count = mask.sum().clamp_min(1)
        predicted = log_x_hat.argmax(-1)
        metrics = {
            "elbo": (elbo.sum() / count).detach().float(),
            "ce_masked": (torch.where(masked, nll, 0.0).sum() / masked.sum().clamp_min(1)).detach().float(),
            "ce_substituted": (torch.where(wrong, nll, 0.0).sum() / wrong.sum().clamp_min(1)).detach().float(),
            "ce_clean": (torch.where(clean, nll, 0.0).sum() / clean.sum().clamp_min(1)).detach().float(),
            "accuracy": corrupted_accuracy(log_x_hat, draw.target, masked),
            "correction_accuracy": fraction(wrong & (predicted == draw.target), wrong),
            "keep_accuracy": fraction(clean & (predicted == draw.zt), clean),
            "substituted_fraction": fraction(mask & draw.substituted, mask),
            "inserted_fraction": fraction(mask & draw.inserted, mask),
            "edit_stage": torch.tensor(float(edit_stage)),
        }
        return LossOutput(loss=(train.sum() / count).float(), elbo=elbo, metrics=metrics)

    def objective(self, model: nn.Module, batch: Batch, t: torch.Tensor) -> LossOutput:
        """Draw with the curriculum's edits while the model trains, mask-only while it is in eval
        mode (validation NELBO); run the model and score batch.scored."""
        edits = self.noise.edits_active and model.training
        draw = self.noise.draw(batch.x0, t, batch.fixed, edits=edits)
        logits = model(draw.zt, t, fixed=batch.fixed, valid=batch.valid)
        return self(logits, batch.x0, draw.zt, t, batch.scored, draw=draw, edit_stage=edits)
