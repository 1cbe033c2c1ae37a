"""Two-head loss (diffusion.md section 5, issue 6): BCE on the holding head over every scored
position plus cross-entropy on the jump head over the positions whose jump-head input is wrong,

    loss = holding_weight * BCE(sigmoid(holding), 1[z_t != x0]) + jump_weight * CE(jump, x0),

with holding = P(corrupted) (see :mod:`components.backbones.two_head`).

The gate decides what the jump head sees. ``none``: z_t itself (one pass; the jump head is
scored at corrupted positions). Otherwise a second pass of the same network reads z_t with the
gated positions replaced by the mask, and its jump head is scored wherever that input differs
from x0 (the corrupted positions the gate missed, and every masked one, including clean tokens
the gate masked): ``oracle`` masks the true corrupted positions; ``predicted`` masks positions with
sigmoid(holding) > threshold from the first pass (no gradient through the gate); ``scheduled``
uses the oracle gate for a sequence with probability s(progress), else the predicted one, where
s = 1 until ``anneal_start``, falls linearly to 0 at ``anneal_end`` and stays 0 (the answer to the
bootstrapping problem of training the predicted gate from scratch).

Not an ELBO. ``elbo`` is the NELBO of the combined prediction x_hat of the first pass: the GIDD
ELBO for uniform / gidd noise, the mask-only MDLM NELBO for edit noise (validation draws with
the edits off, as in :mod:`components.losses.edit`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from components.backbones.two_head import TwoHeadOutput
from components.batch import Batch
from components.losses.base import Loss, LossOutput
from components.losses.edit import draw_of, fraction, masked_nelbo
from components.losses.gidd import LOG_PROB_FLOOR, elbo_terms
from components.losses.registry import LOSSES
from components.noise.base import InterpolatingNoise, NoiseProcess, clean_log_probs
from components.noise.edit import EditDraw, EditNoise
from components.registry import BuildError, SpecModel

Gate = Literal["none", "oracle", "predicted", "scheduled"]


class TwoHeadLossConfig(SpecModel):
    """``loss: {kind: two_head, gate: scheduled, threshold: 0.5, anneal_start: 0.0, anneal_end: 0.5}``."""

    kind: Literal["two_head"] = "two_head"
    holding_weight: float = Field(1.0, ge=0.0, le=1e3, description="weight of the holding BCE")
    jump_weight: float = Field(1.0, ge=0.0, le=1e3, description="weight of the jump cross-entropy")
    gate: Gate = Field(
        "none", description="jump-head input: none (z_t) | oracle | predicted | scheduled (oracle annealed to predicted)"
    )
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="predicted gate: mask where P(corrupted) > threshold")
    anneal_start: float = Field(0.0, ge=0.0, le=1.0, description="scheduled gate: training fraction where annealing starts")
    anneal_end: float = Field(0.5, ge=0.0, le=1.0, description="scheduled gate: training fraction from which the gate is fully predicted")

    requires_noise: ClassVar[tuple[str, ...]] = ("edit", "uniform", "gidd")
    requires_backbone: ClassVar[tuple[str, ...]] = ("two_head",)

    @model_validator(mode="after")
    def _ordered(self) -> "TwoHeadLossConfig":
        if self.anneal_start > self.anneal_end:
            raise ValueError(f"anneal_start {self.anneal_start} exceeds anneal_end {self.anneal_end}")
        return self


def holding_metrics(holding: torch.Tensor, corrupted: torch.Tensor, visible: torch.Tensor) -> dict[str, torch.Tensor]:
    """Holding-head diagnostics over ``visible`` Bool[B, L] positions (scored, not masked: where
    the decision is not trivial). holding: Float[B, L] logits of P(corrupted); corrupted:
    Bool[B, L]. ``holding_precision`` / ``holding_recall``: of the positions flagged at 0.5, the
    share actually corrupted, and of the corrupted ones, the share flagged; ``score_corrupted`` /
    ``score_clean``: mean P(corrupted) on each; ``separation``: their difference."""
    score = torch.sigmoid(holding.detach().float())
    flagged = visible & (score > 0.5)
    wrong = visible & corrupted
    right = visible & ~corrupted
    on_wrong = torch.where(wrong, score, 0.0).sum() / wrong.sum().clamp_min(1)
    on_right = torch.where(right, score, 0.0).sum() / right.sum().clamp_min(1)
    return {
        "holding_precision": fraction(flagged & corrupted, flagged),
        "holding_recall": fraction(flagged & corrupted, wrong),
        "score_corrupted": on_wrong,
        "score_clean": on_right,
        "separation": on_wrong - on_right,
    }


@LOSSES.register(TwoHeadLossConfig)
class TwoHeadLoss(Loss):
    """Metrics: ``bce``, ``ce_jump``, ``jump_accuracy`` (argmax of the jump head = x0 where its
    input is wrong), :func:`holding_metrics`, ``gated_fraction`` (scored positions the gate
    masked), ``oracle_share`` (gate: share of sequences gated by the oracle), ``elbo``."""

    def __init__(self, config: TwoHeadLossConfig, *, noise: NoiseProcess):
        if not isinstance(noise, (EditNoise, InterpolatingNoise)):
            raise BuildError(f"losses (two_head) needs edit or interpolating noise, got {type(noise).__name__}")
        self.config = config
        self.noise = noise
        self.progress = 0.0

    def set_progress(self, fraction: float) -> None:
        self.progress = fraction

    def oracle_share(self) -> float:
        """Probability that a sequence is gated by the oracle at the latest progress."""
        cfg = self.config
        if cfg.gate != "scheduled":
            return 1.0 if cfg.gate == "oracle" else 0.0
        if self.progress <= cfg.anneal_start:
            return 1.0
        if self.progress >= cfg.anneal_end:
            return 0.0
        return (cfg.anneal_end - self.progress) / (cfg.anneal_end - cfg.anneal_start)

    def gate_mask(self, holding: torch.Tensor, corrupted: torch.Tensor) -> torch.Tensor:
        """Bool[B, L] positions the gate masks for the jump head: the oracle's (``corrupted``)
        for a sequence drawn with probability :meth:`oracle_share`, else sigmoid(holding) >
        threshold (holding: Float[B, L] logits, detached)."""
        predicted = torch.sigmoid(holding.detach().float()) > self.config.threshold
        share = self.oracle_share()
        if share == 1.0:
            return corrupted
        if share == 0.0:
            return predicted
        oracle_rows = torch.rand(holding.shape[0], 1, device=holding.device) < share
        return torch.where(oracle_rows, corrupted, predicted)

    def corrupt(self, batch: Batch, t: torch.Tensor, training: bool) -> EditDraw:
        """The forward draw: edit noise with the curriculum's edits while training (mask-only
        otherwise); interpolating noise as is."""
        if isinstance(self.noise, EditNoise):
            return self.noise.draw(batch.x0, t, batch.fixed, edits=self.noise.edits_active and training)
        return draw_of(self.noise.mask_id, batch.x0, self.noise.sample(batch.x0, t, batch.fixed))

    def __call__(
        self,
        logits: TwoHeadOutput,
        x0: torch.Tensor,
        zt: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor | None = None,
        draw: EditDraw | None = None,
        jump: TwoHeadOutput | None = None,
        jump_input: torch.Tensor | None = None,
    ) -> LossOutput:
        """logits: the first pass on zt (a :class:`TwoHeadOutput`); mask: Bool[B, L] scored
        positions; draw: the noise draw (default inferred from x0 and zt); jump / jump_input: the
        gated pass and its input Long[B, L] (default: the first pass and zt).
        Returns loss (float32 scalar) and elbo (Float64[B, L], nats)."""
        if not isinstance(logits, TwoHeadOutput):
            raise TypeError("losses (two_head) needs a two_head backbone (holding and jump heads)")
        mask = torch.ones_like(x0, dtype=torch.bool) if mask is None else mask
        draw = draw_of(self.noise.mask_id, x0, zt) if draw is None else draw
        jump = logits if jump is None else jump
        jump_input = draw.zt if jump_input is None else jump_input
        corrupted = draw.corrupted
        count = mask.sum().clamp_min(1)

        bce = F.binary_cross_entropy_with_logits(logits.holding.float(), corrupted.float(), reduction="none")
        bce = torch.where(mask, bce, 0.0).sum() / count
        scored_jump = mask & (jump_input != draw.target)
        log_jump = clean_log_probs(jump.jump, self.noise.mask_id)
        nll = -log_jump.clamp_min(LOG_PROB_FLOOR).gather(-1, draw.target[..., None]).squeeze(-1)
        ce = torch.where(scored_jump, nll, 0.0).sum() / scored_jump.sum().clamp_min(1)
        loss = self.config.holding_weight * bce + self.config.jump_weight * ce

        with torch.no_grad():
            log_x_hat = clean_log_probs(logits.logits, self.noise.mask_id)
            if isinstance(self.noise, EditNoise):
                elbo = masked_nelbo(self.noise, log_x_hat, draw, t)
            else:
                elbo = elbo_terms(self.noise, log_x_hat, draw.target, draw.zt, t).elbo
            elbo = torch.where(mask, elbo, 0.0)
        gated = mask & (jump_input == self.noise.mask_id) & ~draw.masked
        metrics = {
            "elbo": (elbo.sum() / count).float(),
            "bce": bce.detach().float(),
            "ce_jump": ce.detach().float(),
            "jump_accuracy": fraction(scored_jump & (log_jump.argmax(-1) == draw.target), scored_jump),
            "gated_fraction": fraction(gated, mask),
            "oracle_share": torch.tensor(self.oracle_share()),
            **holding_metrics(logits.holding, corrupted, mask & ~draw.masked),
        }
        return LossOutput(loss=loss.float(), elbo=elbo, metrics=metrics)

    def objective(self, model: nn.Module, batch: Batch, t: torch.Tensor) -> LossOutput:
        """Draw, run the holding pass, gate, run the jump pass (unless gate: none), score."""
        draw = self.corrupt(batch, t, model.training)
        first = model(draw.zt, t, fixed=batch.fixed, valid=batch.valid)
        if self.config.gate == "none":
            return self(first, batch.x0, draw.zt, t, batch.scored, draw=draw)
        gate = self.gate_mask(first.holding, draw.corrupted) & batch.scored
        jump_input = draw.zt.masked_fill(gate, self.noise.mask_id)
        second = model(jump_input, t, fixed=batch.fixed, valid=batch.valid)
        return self(first, batch.x0, draw.zt, t, batch.scored, draw=draw, jump=second, jump_input=jump_input)
