"""GIDD hybrid mask + uniform noise (von Rütte et al. 2025; docs/math.md "Forward
processes"; dvruette/gidd HybridDiffusion).

With B = 2^gamma p_u / (1 - p_u), c_t = B (t (1 - t))^(gamma/2) and C_t = 1 + c_t:
alpha_t = (1 - t) / C_t and beta_t pi_t = (t e_m + c_t u) / C_t, where u is uniform over the
N = V - 1 non-mask tokens. The uniform share c_t / C_t peaks at mid-diffusion (= p_u at t = 1/2
for gamma = 1); at t = 1 everything is masked.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from components.noise.base import InterpolatingNoise, check_vocabulary, mask_vector, uniform_vector
from components.noise.registry import NOISES
from components.registry import SpecModel

LOG_B_MIN = -20.0


class GiddNoiseConfig(SpecModel):
    """``noise: {kind: gidd, p_uniform: 0.1, gamma: 1.0}``."""

    kind: Literal["gidd"] = "gidd"
    p_uniform: float = Field(0.0, ge=0.0, lt=1.0, description="peak share of uniform noise (at t = 1/2 for gamma = 1)")
    gamma: float = Field(
        1.0,
        gt=0.0,
        le=2.0,
        description="shape of the uniform share c_t = B (t (1 - t))^(gamma/2); above 2 the transition rates "
        "into uniform tokens turn negative for t > gamma / (2 (gamma - 1))",
    )


@NOISES.register(GiddNoiseConfig)
class GiddNoise(InterpolatingNoise):
    """The hybrid process; all schedule values are float64.

    Attributes:
        log_b: ln B = gamma ln 2 + ln p_u - ln(1 - p_u), with p_u floored at e^-20 and ln B
            clipped at >= -20 (so p_uniform = 0 is pure masking up to c_t <= 2 e^-20).
        gamma: the shape exponent.
    """

    def __init__(self, config: GiddNoiseConfig, *, vocab_size: int, mask_id: int):
        check_vocabulary(vocab_size, mask_id)
        self.config = config
        self.vocab_size = vocab_size
        self.mask_id = mask_id
        self.gamma = config.gamma
        p_u = max(config.p_uniform, math.exp(LOG_B_MIN))
        self.log_b = max(config.gamma * math.log(2.0) + math.log(p_u) - math.log1p(-p_u), LOG_B_MIN)

    def mixing_rates(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_t, C_t, c'_t), each Float64[B], for t: Float[B] in (0, 1)."""
        t = t.double()
        b = math.exp(self.log_b)
        s = t * (1.0 - t)
        c = b * s.pow(0.5 * self.gamma)
        c_prime = 0.5 * self.gamma * b * (1.0 - 2.0 * t) * s.pow(0.5 * self.gamma - 1.0)
        return c, 1.0 + c, c_prime

    def mixing_vectors(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """(e_m, u), each Float64[V]: the mask point mass and the uniform over non-mask tokens."""
        return mask_vector(self.vocab_size, self.mask_id, device), uniform_vector(self.vocab_size, self.mask_id, device)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        _, big_c, _ = self.mixing_rates(t)
        return (1.0 - t.double()) / big_c

    def alpha_prime(self, t: torch.Tensor) -> torch.Tensor:
        _, big_c, c_prime = self.mixing_rates(t)
        return -(big_c + (1.0 - t.double()) * c_prime) / big_c**2

    def beta_pi(self, t: torch.Tensor) -> torch.Tensor:
        c, big_c, _ = self.mixing_rates(t)
        e_m, u = self.mixing_vectors(t.device)
        return (t.double()[:, None] * e_m + c[:, None] * u) / big_c[:, None]

    def beta_pi_prime(self, t: torch.Tensor) -> torch.Tensor:
        """d/dt [(t e_m + c_t u) / C_t] = ((C_t - t c'_t) e_m + c'_t u) / C_t^2, using C_t - c_t = 1."""
        _, big_c, c_prime = self.mixing_rates(t)
        e_m, u = self.mixing_vectors(t.device)
        return ((big_c - t.double() * c_prime)[:, None] * e_m + c_prime[:, None] * u) / big_c[:, None] ** 2

    def prior(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.full(shape, self.mask_id, dtype=torch.long, device=device)

    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """0: c_1 = 0 and alpha_1 = 0, so q_1(. | x0) = e_m is the all-mask prior."""
        return torch.zeros(x0.shape, dtype=torch.float64, device=x0.device)
