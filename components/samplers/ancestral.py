"""Ancestral sampling for any interpolating process (GIDD's reverse step; MDLM is p_u = 0).

Also holds the two primitives every sampler here shares: reading a backbone's logits and
drawing categoricals in float64 (float32 Gumbel sampling lowers the entropy of samples;
docs/math.md, "Samplers").
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field

from components.batch import Batch
from components.noise.base import InterpolatingNoise, NoiseProcess, clean_log_probs
from components.registry import SpecModel
from components.samplers.base import Generation, Sampler
from components.samplers.registry import SAMPLERS


def model_logits(
    model: torch.nn.Module,
    zt: torch.Tensor,
    t: torch.Tensor,
    fixed: torch.Tensor,
    valid: torch.Tensor | None,
) -> torch.Tensor:
    """Float[n, L, V] logits of ``model(zt, t, fixed=, valid=)``; a backbone with extra heads
    returns a named tuple whose ``logits`` field is used."""
    out = model(zt, t, fixed=fixed, valid=valid)
    return out if isinstance(out, torch.Tensor) else out.logits


def sample_categorical(probs: torch.Tensor) -> torch.Tensor:
    """One draw per row of non-negative (not necessarily normalised) weights Float[..., V] ->
    Long[...]. Exponential race in float64: argmax_v p_v / E_v with E_v ~ Exp(1) returns v with
    probability p_v / sum(p); zero-weight entries are never drawn."""
    probs = probs.double()
    race = torch.empty_like(probs).exponential_()
    return torch.div(probs, race, out=race).argmax(-1)


class AncestralConfig(SpecModel):
    kind: Literal["ancestral"] = "ancestral"
    steps: int = Field(128, ge=1, le=100_000, description="model evaluations per sequence")
    temperature: float = Field(1.0, gt=0.0, le=100.0, description="divides the logits")
    min_p: float = Field(
        0.0, ge=0.0, lt=1.0, description="zero posterior entries below min_p, then renormalise"
    )
    eps: float = Field(1e-4, gt=0.0, lt=0.5, description="time grid runs from 1 - eps down to eps")

    # The reverse step needs alpha_t and beta_t * pi_t (InterpolatingNoise).
    requires_noise: ClassVar[tuple[str, ...]] = ("masked", "uniform", "gidd")


@SAMPLERS.register(AncestralConfig)
class AncestralSampler(Sampler):
    """Start from the prior and take ``steps`` reverse steps t -> s.

    The model is called at t on ``linspace(1 - eps, eps, steps)``; each step goes to the next grid
    time, and the last one goes from eps to s = 0. At s = 0 the step samples x_0 from its
    posterior under x_hat (alpha_0 = 1, beta_0 pi_0 = 0), so a mask can never remain and no
    separate argmax "noise removal" is needed; keeping it a sample (not an argmax) keeps the
    sampler exact for an exact denoiser. The prior draw stands in for z at 1 - eps.

    Time: the model is called at the grid time t itself (the diffusion time of the forward
    process, 0 clean, 1 prior). One step (von Rütte et al. 2025; docs/math.md "Ancestral
    sampling"), per position with current token z_t:
        q(z_s = v | z_t, x_hat) ∝ [alpha_{t|s} 1[v = z_t] + (beta_{t|s} pi_{t|s})(z_t)] q_s(v | x_hat)
    with alpha_{t|s} = alpha_t / alpha_s, beta_{t|s} pi_{t|s} = beta_t pi_t - alpha_{t|s} beta_s pi_s,
    q_s(. | x_hat) = alpha_s x_hat + beta_s pi_s and x_hat = softmax(logits / temperature) with the
    mask logit at -inf. For a GIDD-trained model x_hat estimates E[x_i | z_t at the other
    positions], which is what makes this the exact reverse step.
    """

    def __init__(self, config: AncestralConfig):
        self.config = config

    @torch.no_grad()
    def generate(
        self, model: torch.nn.Module, noise: NoiseProcess, batch: Batch, steps: int | None = None
    ) -> Generation:
        """tokens: Long[B, L]; nfe: Long[B], ``steps`` for every sequence with a non-fixed
        position, 0 for the others (they are not passed to the model)."""
        if not isinstance(noise, InterpolatingNoise):
            raise TypeError(f"ancestral sampling needs an interpolating noise process, got {type(noise).__name__}")
        steps = self.config.steps if steps is None else steps
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        tokens = batch.x0.clone()
        nfe = torch.zeros(len(batch), dtype=torch.long, device=tokens.device)
        rows = (~batch.fixed).any(-1).nonzero().squeeze(-1)
        if rows.numel() == 0:
            return Generation(tokens, nfe)

        x0, fixed = batch.x0[rows], batch.fixed[rows]
        valid = None if batch.valid is None else batch.valid[rows]
        z = torch.where(fixed, x0, noise.prior(tuple(x0.shape), device=x0.device))
        grid = torch.linspace(1.0 - self.config.eps, self.config.eps, steps, dtype=torch.float64).tolist()
        for t, s in zip(grid, grid[1:] + [0.0]):
            t_model = torch.full((len(rows),), t, dtype=torch.float32, device=z.device)
            logits = model_logits(model, z, t_model, fixed, valid)
            z = torch.where(fixed, x0, sample_categorical(self.posterior(noise, logits, z, t, s)))
        tokens[rows] = z
        nfe[rows] = steps
        return Generation(tokens, nfe)

    def posterior(
        self, noise: InterpolatingNoise, logits: torch.Tensor, zt: torch.Tensor, t: float, s: float
    ) -> torch.Tensor:
        """q(z_s | z_t, x_hat): Float64[n, L, V], per position, given logits Float[n, L, V] at
        time t, z_t: Long[n, L] and 0 <= s < t; entries below min_p are zeroed (the largest is
        always kept) and the rest renormalised. A position whose posterior has no mass
        (x_hat(z_t) = 0 where only staying is possible) keeps z_t."""
        times = torch.tensor([t, s], dtype=torch.float64, device=zt.device)
        alpha = noise.alpha(times).double()  # [2]
        beta_pi = noise.beta_pi(times).double()  # [2, V]
        alpha_ts = alpha[0] / alpha[1]
        beta_pi_ts = beta_pi[0] - alpha_ts * beta_pi[1]  # [V]
        # Non-negative for every valid process (GIDD's config limits gamma to 2); a negative entry
        # beyond rounding is an invalid forward process, not something to clip.
        if float(beta_pi_ts.min()) < -1e-9 * float(beta_pi[0].max()):
            worst = float(beta_pi_ts.min())
            raise ValueError(f"invalid forward process: negative transition mass {worst:.3g} from t = {t} to s = {s}")
        beta_pi_ts = beta_pi_ts.clamp_min(0.0)  # rounding only, checked above

        # Built in place on one float64 [n, L, V] buffer (V can be a 50k-token vocabulary):
        # posterior(v) = beta_pi_ts(z_t) q_s(v) + alpha_ts q_s(z_t) 1[v = z_t].
        x_hat = clean_log_probs(logits / self.config.temperature, noise.mask_id).exp().double()
        q_s = x_hat.mul_(alpha[1]).add_(beta_pi[1])
        index = zt.unsqueeze(-1)
        stay = alpha_ts * q_s.gather(-1, index)
        posterior = q_s.mul_(beta_pi_ts[index]).scatter_add_(-1, index, stay)
        norm = posterior.sum(-1, keepdim=True)
        stuck = norm == 0
        posterior = posterior.div_(norm.masked_fill(stuck, 1.0)).scatter_add_(-1, index, stuck.double())
        if self.config.min_p > 0.0:
            keep = (posterior >= self.config.min_p) | (posterior == posterior.amax(-1, keepdim=True))
            posterior = posterior.mul_(keep)
            posterior = posterior.div_(posterior.sum(-1, keepdim=True))
        return posterior
