"""GDDS forward noising by uniformization (Zekri et al. 2026; docs/math.md "Forward processes"; ozekri/gdds
``forward_process/base_ctmc.py``) for the rate matrix lambda(t) (F_t - I) of a jump kernel F_t.

With alpha_t from a named schedule, the integrated intensity is Lambda(t) = -log alpha_t. Per
position: N ~ Poisson(Lambda(t)) jumps at times T_k = Lambda^-1(U_k Lambda(t)) (U_k ~ U(0, 1),
sorted), each moving the token to a draw from F_{T_k}(. | current token). P(no jump) = alpha_t.
Lambda^-1 is exact (closed form for both schedules), not interpolated on a grid.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from components.noise.base import SCHEDULE_HELP, NoiseProcess, Schedule, check_vocabulary, scheduled_alpha
from components.noise.kernels import KernelConfig, build_kernel
from components.noise.registry import NOISES
from components.registry import SpecModel


class GddsNoiseConfig(SpecModel):
    """``noise: {kind: gdds, schedule: loglinear, eps: 1.0e-3, kernel: {kind: knn, ...}}``."""

    kind: Literal["gdds"] = "gdds"
    schedule: Schedule = Field("loglinear", description=SCHEDULE_HELP)
    eps: float = Field(
        1e-3, gt=0.0, lt=1.0, description="alpha_1; > 0 keeps Lambda(1) = -log alpha_1 finite"
    )
    kernel: KernelConfig = Field(description="jump kernel: uniform | mask | knn | matrix")


def schedule_time(schedule: str, eps: float, alpha: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`scheduled_alpha`: t with alpha_t = alpha, Float64 of alpha's shape
    (alpha in [alpha_1, 1])."""
    alpha = alpha.double()
    if schedule == "loglinear":
        return (1.0 - alpha) / (1.0 - eps)
    if schedule == "cosine_mdlm":
        return 2.0 / math.pi * torch.arccos(((alpha - eps) / (1.0 - eps)).clamp(-1.0, 1.0))
    angle = torch.arccos((1.0 - alpha).clamp(0.0, 1.0))
    return (1.0 - 2.0 * angle / math.pi) / (1.0 - eps)


@NOISES.register(GddsNoiseConfig)
class GddsNoise(NoiseProcess):
    """Uniformization sampler of the CTMC with jump kernel ``kernel``; see the module docstring.

    Attributes:
        kernel: the :class:`~components.noise.kernels.JumpKernel`.
        horizon: Lambda(1) = -log alpha_1, the expected number of jumps per token by t = 1.
    """

    def __init__(self, config: GddsNoiseConfig, *, vocab_size: int, mask_id: int):
        check_vocabulary(vocab_size, mask_id)
        self.config = config
        self.vocab_size = vocab_size
        self.mask_id = mask_id
        self.horizon = float(self.intensity(torch.ones(1))[0])
        self.kernel = build_kernel(config.kernel, vocab_size, mask_id, self.horizon)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_t = P(no jump by t) = exp(-Lambda(t)), Float64[B]."""
        return scheduled_alpha(self.config.schedule, self.config.eps, t)[0]

    def jump_rate(self, t: torch.Tensor) -> torch.Tensor:
        """lambda(t) = d Lambda / dt = -alpha'_t / alpha_t, the jump intensity, Float64[B]."""
        alpha, alpha_prime = scheduled_alpha(self.config.schedule, self.config.eps, t)
        return -alpha_prime / alpha

    def intensity(self, t: torch.Tensor) -> torch.Tensor:
        """Lambda(t) = -log alpha_t, Float64[B]."""
        return -torch.log(self.alpha(t))

    def time_at(self, intensity: torch.Tensor) -> torch.Tensor:
        """Lambda^-1: the time at which the integrated intensity reaches ``intensity`` (Float64)."""
        return schedule_time(self.config.schedule, self.config.eps, torch.exp(-intensity.double()))

    def sample(self, x0: torch.Tensor, t: torch.Tensor, fixed: torch.Tensor | None = None) -> torch.Tensor:
        return self.sample_with_jumps(x0, t, fixed)[0]

    def sample_with_jumps(
        self, x0: torch.Tensor, t: torch.Tensor, fixed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """z_t and the jump mask N > 0 (a jump may land on the clean token again). Jump times are
        drawn only for time-dependent kernels. x0: Long[B, L]; t: Float[B]; fixed: Bool[B, L]
        positions that never jump."""
        lam = self.intensity(t).to(x0.device)  # [B]
        counts = torch.poisson(lam[:, None].expand(x0.shape).contiguous())
        if fixed is not None:
            counts = counts.masked_fill(fixed, 0.0)
        jumped = counts > 0
        index = jumped.reshape(-1).nonzero().squeeze(-1)
        zt = x0.clone().reshape(-1)
        if index.numel():
            n = counts.reshape(-1)[index].long()
            steps = int(n.max())
            times = None
            if not self.kernel.constant:
                total = lam[:, None].expand(x0.shape).reshape(-1)[index]
                u = torch.rand(len(index), steps, dtype=torch.float64, device=x0.device)
                u = u.masked_fill(torch.arange(steps, device=x0.device) >= n[:, None], 2.0).sort(-1).values
                times = self.time_at(u.clamp_max(1.0) * total[:, None])
            current = zt[index]
            for k in range(steps):
                live = (n > k).nonzero().squeeze(-1)
                current[live] = self.kernel.draw(current[live], None if times is None else times[live, k])
            zt[index] = current
        return zt.view_as(x0), jumped

    def prior(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
        """Draws from the kernel's prior: all mask (mask kernel), uniform over the non-mask tokens
        (uniform, knn), u exp(Lambda(1) (F - I)) (matrix)."""
        probs = self.kernel.prior_probs(device)
        cdf = probs.cumsum(0)
        u = torch.rand(shape, dtype=torch.float64, device=device) * cdf[-1]
        last = len(probs) - 1 - int((probs > 0).flip(0).int().argmax())
        return torch.searchsorted(cdf, u.reshape(-1), right=True).clamp_max(last).view(shape)

    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """KL(q_1(. | x0) || prior) for kernels with a closed-form marginal (uniform, mask,
        matrix); infinite where the prior misses mass of q_1 (the mask kernel: q_1 keeps the clean
        token with probability alpha_1 = eps, the all-mask prior has none)."""
        eye = torch.eye(self.vocab_size, dtype=torch.float64, device=x0.device)
        q1 = self.kernel.propagate(eye[None], torch.tensor([self.horizon], dtype=torch.float64))[0]  # [V, V]
        prior = self.kernel.prior_probs(x0.device)
        kl = (torch.xlogy(q1, q1) - torch.xlogy(q1, prior[None])).sum(-1)  # [V]
        return kl[x0]

    def marginal(self, p0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """p0 exp(Lambda(t) (F - I)) for kernels that do not depend on t (uniform, mask: closed
        form; matrix: matrix exponential). p0: Float[B, ..., V]; returns p0's shape and dtype."""
        return self.kernel.propagate(p0, self.intensity(t).to(p0.device)).to(p0.dtype)
