"""Confidence (top-k) decoding: commit the k most confident unresolved positions per pass.

Sudoku's "k cells per pass" protocol and LLaDA's decoding (Nie et al. 2025; docs/math.md
"Samplers"): committed positions are never revisited, so a sequence with u unknown positions
takes exactly ceil(u / k) passes.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from components.batch import Batch
from components.noise.base import NoiseProcess, clean_log_probs
from components.registry import SpecModel
from components.samplers.ancestral import model_logits, sample_categorical
from components.samplers.base import Generation, Sampler
from components.samplers.registry import SAMPLERS

Score = Literal["max_prob", "margin", "neg_entropy"]


def descending_ranks(score: torch.Tensor) -> torch.Tensor:
    """Long[..., L]: rank of each entry of ``score`` Float[..., L] in descending order (0 = best);
    ties go to the lower position."""
    order = score.argsort(dim=-1, descending=True, stable=True)
    positions = torch.arange(score.shape[-1], device=score.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, positions)


def confidence(probs: torch.Tensor, tokens: torch.Tensor, score: Score) -> torch.Tensor:
    """Float[n, L] confidence of committing ``tokens`` Long[n, L] under ``probs`` Float[n, L, V]:
    max_prob = probs of the committed token (the max probability when it is the argmax),
    margin = top-1 minus top-2 probability, neg_entropy = sum_v p_v log p_v (nats)."""
    if score == "max_prob":
        return probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    if score == "margin":
        top = probs.topk(2, dim=-1).values
        return top[..., 0] - top[..., 1]
    return torch.special.xlogy(probs, probs).sum(-1)


class ConfidenceConfig(SpecModel):
    kind: Literal["confidence"] = "confidence"
    k: int = Field(1, ge=1, le=1_000_000, description="positions committed per pass (large = one shot)")
    score: Score = Field("max_prob", description="confidence used to rank unresolved positions")
    temperature: float = Field(
        0.0, ge=0.0, le=100.0, description="0 commits the argmax; > 0 commits a sample of softmax(logits / T)"
    )


def per_pass(unknown: torch.Tensor, k: int, steps: int | None) -> torch.Tensor:
    """Long[B]: positions committed per pass for rows with ``unknown`` (Long[B]) open positions:
    ``k``, or with ``steps`` given, ceil(unknown / steps) (at least 1), so every row finishes in
    at most ``steps`` passes."""
    if steps is None:
        return torch.full_like(unknown, k)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.div(unknown + steps - 1, steps, rounding_mode="floor").clamp_min(1)


@SAMPLERS.register(ConfidenceConfig)
class ConfidenceSampler(Sampler):
    """Resolve the unknown (non-fixed) positions k at a time.

    Unknown positions start from ``noise.prior`` (the mask for masked/GIDD noise, random tokens
    for uniform noise; a separate "unresolved" mask tracks them, so a random token is never taken
    for a committed one). Each pass calls the model on the sequences that still have unresolved
    positions, with t = (#unresolved / #unknown) per sequence (1 on the first pass): the masked
    fraction, which is the diffusion time only for masked noise with the loglinear schedule
    (1 - alpha_t = (1 - eps) t); for the cosine schedules, uniform and GIDD noise a
    time-conditioned model sees a time that approximates its input's noise level (docs/math.md,
    "Samplers"). Confidence is computed
    from x_hat = softmax(logits) with the mask logit at -inf; the top min(k, #unresolved)
    unresolved positions are set to the argmax (temperature 0) or to a float64 sample of
    softmax(logits / temperature), and never change again.

    ``steps`` given to :meth:`generate` replaces k by ceil(#unknown / steps) per sequence, so
    every sequence finishes in at most ``steps`` passes.
    """

    def __init__(self, config: ConfidenceConfig):
        self.config = config

    @torch.no_grad()
    def generate(
        self, model: torch.nn.Module, noise: NoiseProcess, batch: Batch, steps: int | None = None
    ) -> Generation:
        """tokens: Long[B, L]; nfe: Long[B], the passes each sequence took: ceil(#unknown / k),
        0 for a sequence without unknown positions."""
        fixed = batch.fixed
        unknown = (~fixed).sum(-1)
        k = per_pass(unknown, self.config.k, steps)

        z = torch.where(fixed, batch.x0, noise.prior(tuple(fixed.shape), device=fixed.device))
        unresolved = ~fixed
        nfe = torch.zeros_like(unknown)
        while (rows := unresolved.any(-1).nonzero().squeeze(-1)).numel():
            open_ = unresolved[rows]
            t = open_.sum(-1).float() / unknown[rows].float()
            valid = None if batch.valid is None else batch.valid[rows]
            logits = model_logits(model, z[rows], t, fixed[rows], valid)
            probs = clean_log_probs(logits, noise.mask_id).exp()
            if self.config.temperature == 0.0:
                tokens = probs.argmax(-1)
            else:
                tokens = sample_categorical(
                    clean_log_probs(logits / self.config.temperature, noise.mask_id).exp()
                )
            score = confidence(probs, tokens, self.config.score).masked_fill(~open_, float("-inf"))
            commit = open_ & (descending_ranks(score) < k[rows].unsqueeze(-1))
            z[rows] = torch.where(commit, tokens, z[rows])
            unresolved[rows] = open_ & ~commit
            nfe[rows] += 1
        return Generation(z, nfe)
