"""GIDD ELBO loss (diffusion.md section 2.1): for every interpolating process,

    -log p(x) <= E_t E_{z_t} [ w_t(z_t, x) ( KL(q_t(.|x) || q_t(.|x_hat)) + D_IS(q_t(z_t|x) || q_t(z_t|x_hat)) ) ]

with w_t(z, x) = [d/dt(beta_t pi_t) - (alpha'_t / alpha_t) beta_t pi_t]_z / q_t(z | x), computed from
the process's alpha / beta_pi methods. Training may reweight the terms (``weighting``); the
``elbo`` output always carries the true ELBO weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator

from components.losses.base import Loss, LossOutput
from components.losses.registry import LOSSES
from components.noise.base import InterpolatingNoise, NoiseProcess, clean_log_probs
from components.noise.gidd import GiddNoise
from components.noise.masked import MaskedNoise
from components.noise.uniform import UniformNoise
from components.registry import BuildError, SpecModel

LOG_PROB_FLOOR = -1e6
MAX_LOG_RATIO = 700.0  # exp() stays finite in float64; only reachable at t = 0


class GiddLossConfig(SpecModel):
    """``loss: {kind: gidd, weighting: dynamic, min_weight: 0.0, max_weight: 2.0}``."""

    kind: Literal["gidd"] = "gidd"
    weighting: Literal["none", "clip", "dynamic"] = Field(
        "dynamic",
        description="none: ELBO weights; clip: ELBO weights clipped to [min_weight, max_weight]; "
        "dynamic: GIDD+ (2 on mask, 1 on uniform-corrupted, a small clean-token weight), clipped",
    )
    min_weight: float = Field(0.0, ge=0.0, le=1e6, description="lower clip of the training weight")
    max_weight: float = Field(2.0, gt=0.0, le=1e6, description="upper clip of the training weight")

    requires_noise: ClassVar[tuple[str, ...]] = ("masked", "uniform", "gidd")

    @model_validator(mode="after")
    def _ordered(self) -> "GiddLossConfig":
        if self.min_weight > self.max_weight:
            raise ValueError(f"min_weight {self.min_weight} exceeds max_weight {self.max_weight}")
        return self


@dataclass
class ElboTerms:
    """Per-position pieces of the GIDD ELBO, all Float64[B, L] in nats (unmasked by any score mask).

    kl: KL(q_t(.|x) || q_t(.|x_hat)) over the full vocabulary; is_: Itakura-Saito divergence at the
    observed z_t; weight: the ELBO weight w_t(z_t, x) (0 where z_t has no mass under q_t(.|x))."""

    kl: torch.Tensor
    is_: torch.Tensor
    weight: torch.Tensor

    @property
    def elbo(self) -> torch.Tensor:
        """w (KL + IS): the per-position NELBO integrand, Float64[B, L]."""
        return self.weight * (self.kl + self.is_)


def elbo_weights(noise: InterpolatingNoise, x0: torch.Tensor, zt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """w_t(z_t, x0) = [d/dt(beta pi) - (alpha'/alpha) beta pi]_{z_t} / q_t(z_t | x0) in float64.

    x0, zt: Long[B, L]; t: Float[B] in (0, 1). Returns Float64[B, L] (0 where q_t(z_t|x0) = 0)."""
    alpha, alpha_prime = noise.alpha(t).double(), noise.alpha_prime(t).double()
    beta_pi_z = noise.beta_pi(t).double().gather(1, zt)
    rate_z = noise.beta_pi_prime(t).double().gather(1, zt) - (alpha_prime / alpha)[:, None] * beta_pi_z
    q_z = alpha[:, None] * (zt == x0) + beta_pi_z
    return torch.where(q_z > 0, rate_z / torch.where(q_z > 0, q_z, 1.0), 0.0)


def elbo_terms(
    noise: InterpolatingNoise, log_x_hat: torch.Tensor, x0: torch.Tensor, zt: torch.Tensor, t: torch.Tensor
) -> ElboTerms:
    """KL, IS and ELBO weight at every position.

    log_x_hat: Float[B, L, V] log-probabilities of the denoiser (mask entry -inf), clipped at -1e6
    here; x0, zt: Long[B, L]; t: Float[B] in (0, 1). The vocabulary-sized work is done in float32,
    the per-position combination in float64."""
    alpha = noise.alpha(t).double()  # [B]
    beta_pi = noise.beta_pi(t).double()  # [B, V]
    weight = elbo_weights(noise, x0, zt, t)

    log_x_hat = log_x_hat.float().clamp_min(LOG_PROB_FLOOR)
    log_alpha = alpha.log().clamp_min(LOG_PROB_FLOOR).float()[:, None, None]
    log_beta_pi = beta_pi.log().clamp_min(LOG_PROB_FLOOR).float()[:, None, :]
    log_q_hat = torch.logaddexp(log_alpha + log_x_hat, log_beta_pi)  # log q_t(. | x_hat): [B, L, V]

    # q_t(. | x) = beta_pi + alpha onehot(x): sum_v q log q from [B, V] and [B, L] pieces.
    beta_pi_x = beta_pi.gather(1, x0)
    q_x_x = alpha[:, None] + beta_pi_x
    neg_entropy = (
        torch.xlogy(beta_pi, beta_pi).sum(-1, keepdim=True)
        - torch.xlogy(beta_pi_x, beta_pi_x)
        + torch.xlogy(q_x_x, q_x_x)
    )
    cross = alpha[:, None] * log_q_hat.gather(-1, x0[..., None]).squeeze(-1).double() + (
        log_q_hat * beta_pi.float()[:, None, :]
    ).sum(-1).double()
    kl = neg_entropy - cross

    log_q_x_z = (alpha[:, None] * (zt == x0) + beta_pi.gather(1, zt)).log()
    log_ratio = log_q_x_z - log_q_hat.gather(-1, zt[..., None]).squeeze(-1).double()
    log_ratio = torch.where(weight != 0, log_ratio, 0.0).clamp_max(MAX_LOG_RATIO)
    is_ = torch.expm1(log_ratio) - log_ratio
    return ElboTerms(kl=kl, is_=is_, weight=weight)


def dynamic_weights(noise: NoiseProcess, x0: torch.Tensor, zt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """GIDD+ training weights, Float64[B, L] (before clipping): 2 where z_t is the mask, 1 where it
    is another wrong token, and on clean tokens (z_t = x0):

    - gidd noise: (B / V) exp((gamma / 2) sigmoid(-t)), as in GIDD;
    - uniform noise: (1 - alpha_t)/N / (alpha_t + (1 - alpha_t)/N), the ELBO's own ratio of the
      clean-token to the corrupted-token weight (the same ratio that the GIDD clean term
      approximates), so corrupted tokens weigh 1 and clean ones proportionally less;
    - masked noise: 0 (clean tokens carry no ELBO signal under masking; the p_u -> 0 limit of GIDD).
    """
    t64 = t.double()[:, None]
    if isinstance(noise, GiddNoise):
        clean = torch.exp(noise.log_b + 0.5 * noise.gamma * torch.sigmoid(-t64)) / noise.vocab_size
    elif isinstance(noise, UniformNoise):
        alpha = noise.alpha(t)[:, None]
        share = (1.0 - alpha) / (noise.vocab_size - 1)
        clean = share / (alpha + share)
    elif isinstance(noise, MaskedNoise):
        clean = torch.zeros_like(t64)
    else:
        raise TypeError(f"dynamic weighting is defined for gidd, uniform and masked noise, not {type(noise).__name__}")
    weight = torch.where(zt == x0, clean, 1.0)
    return torch.where(zt == noise.mask_id, 2.0, weight)


def corrupted_accuracy(log_x_hat: torch.Tensor, x0: torch.Tensor, corrupted: torch.Tensor) -> torch.Tensor:
    """Fraction of ``corrupted`` positions (Bool[B, L]) where argmax x_hat = x0; a detached scalar."""
    hits = (log_x_hat.argmax(-1) == x0) & corrupted
    return (hits.sum() / corrupted.sum().clamp_min(1)).detach().float()


@LOSSES.register(GiddLossConfig)
class GiddLoss(Loss):
    """GIDD ELBO with optional reweighting; works with any interpolating noise.

    Metrics (per scored token): ``elbo`` = ``kl`` + ``is`` (ELBO-weighted), ``weight_mean`` (mean
    training weight), ``accuracy`` (argmax x_hat = x0 at scored positions with z_t != x0)."""

    def __init__(self, config: GiddLossConfig, *, noise: NoiseProcess):
        if not isinstance(noise, InterpolatingNoise):
            raise BuildError(f"losses (gidd) needs an interpolating noise process, got {type(noise).__name__}")
        if config.weighting == "dynamic" and not isinstance(noise, (GiddNoise, UniformNoise, MaskedNoise)):
            raise BuildError(f"losses (gidd): dynamic weighting is not defined for {type(noise).__name__}")
        self.config = config
        self.noise = noise

    def training_weights(self, terms: ElboTerms, x0: torch.Tensor, zt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Float64[B, L] weights of the training loss for the configured ``weighting``."""
        if self.config.weighting == "none":
            return terms.weight
        raw = terms.weight if self.config.weighting == "clip" else dynamic_weights(self.noise, x0, zt, t)
        return raw.clamp(self.config.min_weight, self.config.max_weight)

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
        terms = elbo_terms(self.noise, log_x_hat, x0, zt, t)
        weight = self.training_weights(terms, x0, zt, t)
        count = mask.sum().clamp_min(1)
        elbo = torch.where(mask, terms.elbo, 0.0)
        loss = torch.where(mask, weight * (terms.kl + terms.is_), 0.0).sum() / count
        metrics = {
            "elbo": elbo.sum() / count,
            "kl": torch.where(mask, terms.weight * terms.kl, 0.0).sum() / count,
            "is": torch.where(mask, terms.weight * terms.is_, 0.0).sum() / count,
            "weight_mean": torch.where(mask, weight, 0.0).sum() / count,
        }
        metrics = {name: value.detach().float() for name, value in metrics.items()}
        metrics["accuracy"] = corrupted_accuracy(log_x_hat, x0, mask & (zt != x0))
        return LossOutput(loss=loss.float(), elbo=elbo, metrics=metrics)
