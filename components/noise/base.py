"""Forward-process interface shared by every noise kind.

Units: ``t`` is diffusion time in [0, 1] (0 clean, 1 prior), a FloatTensor[B] with one time per
sequence. Token tensors are LongTensor[B, L]; distributions are FloatTensor[..., V] over the full
vocabulary (V includes the mask token where the process has one).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Literal

import torch

Schedule = Literal["loglinear", "cosine", "cosine_mdlm"]
SCHEDULE_HELP = (
    "loglinear: alpha_t = 1 - (1 - eps) t (MDLM); cosine: alpha_t = 1 - cos(pi/2 (1 - (1 - eps) t)) "
    "(MD4 / Duo); cosine_mdlm: alpha_t = eps + (1 - eps) cos(pi t / 2) (MDLM's cosine)"
)


def clean_log_probs(logits: torch.Tensor, mask_id: int | None) -> torch.Tensor:
    """log x_hat_theta: log-softmax of Float[..., V] logits in float32 with the mask logit at -inf
    ("SUBS": the denoiser never predicts the mask token)."""
    logits = logits.float()
    if mask_id is not None:
        logits = logits.index_fill(-1, torch.tensor([mask_id], device=logits.device), float("-inf"))
    return torch.log_softmax(logits, dim=-1)


class NoiseProcess(ABC):
    """A factorised forward process q_t(z_t | x_0) over a vocabulary of ``vocab_size`` tokens."""

    vocab_size: int
    mask_id: int | None

    @abstractmethod
    def sample(self, x0: torch.Tensor, t: torch.Tensor, fixed: torch.Tensor | None = None) -> torch.Tensor:
        """Draw z_t ~ q_t(. | x0). x0: Long[B, L]; t: Float[B]; fixed: Bool[B, L] positions copied
        from x0 unchanged. Returns Long[B, L]."""

    def sample_with_jumps(
        self, x0: torch.Tensor, t: torch.Tensor, fixed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`sample`, also returning Bool[B, L] "jumped": positions the process
        resampled (which for uniform noise may land on the clean token again)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its jumps")

    @abstractmethod
    def prior(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
        """Draw z_1 from the prior. Returns Long[shape]."""

    def set_progress(self, fraction: float) -> None:
        """Training progress in [0, 1] (step / steps), set by the training loop before every
        step, for curricula (e.g. an edit stage switched on late, an annealed gate). Stateless
        components ignore it; behaviour must depend only on the latest value, so resuming at a
        step reproduces it."""

    def marginal(self, p0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q_t(. | p0) for a distribution p0: Float[B, ..., V], t: Float[B] -> Float[B, ..., V].

        Only processes with a closed-form marginal implement this."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form marginal")

    @property
    def prior_time(self) -> float:
        """T, the end of the time integral of the validation bound (docs/math.md, "The bound
        reported as eval/elbo"): 1, or the time past 1 at which a schedule with alpha_1 = eps > 0,
        continued, reaches alpha_T = 0 (the model is then given min(t, 1))."""
        return 1.0

    @abstractmethod
    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """KL(q_T(. | x0) || prior) per position, the prior term of the validation bound:
        Float64[B, L] in nats for x0: Long[B, L] (0 where the process reaches its prior exactly)."""


class InterpolatingNoise(NoiseProcess):
    """Processes of the form q_t(. | x) = alpha_t * onehot(x) + beta_t * pi_t (GIDD's family).

    Subclasses give alpha_t, its time derivative and the vector beta_t * pi_t with its derivative;
    marginals, sampling and the GIDD ELBO weights follow generically from these.
    """

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_t, Float[B]."""

    @abstractmethod
    def alpha_prime(self, t: torch.Tensor) -> torch.Tensor:
        """d alpha_t / dt, Float[B]."""

    @abstractmethod
    def beta_pi(self, t: torch.Tensor) -> torch.Tensor:
        """beta_t * pi_t, Float[B, V] (non-negative, sums to 1 - alpha_t)."""

    @abstractmethod
    def beta_pi_prime(self, t: torch.Tensor) -> torch.Tensor:
        """d (beta_t * pi_t) / dt, Float[B, V]."""

    def marginal(self, p0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q_t(. | p0) = alpha_t * p0 + beta_t * pi_t, linear in p0: Float[B, ..., V] -> same shape,
        in p0's dtype."""
        shape = (p0.shape[0],) + (1,) * (p0.dim() - 1)
        alpha = self.alpha(t).to(p0.dtype).view(shape)
        beta_pi = self.beta_pi(t).to(p0.dtype).view(*shape[:-1], p0.shape[-1])
        return alpha * p0 + beta_pi

    def sample(self, x0: torch.Tensor, t: torch.Tensor, fixed: torch.Tensor | None = None) -> torch.Tensor:
        return self.sample_with_jumps(x0, t, fixed)[0]

    def sample_with_jumps(
        self, x0: torch.Tensor, t: torch.Tensor, fixed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact draw from the categorical q_t(. | x0) at every position, by inverse CDF in float64
        over [alpha_t, beta_t * pi_t]: one uniform u per position keeps x0 when u < alpha_t
        ("no jump"), otherwise picks the token of beta_t * pi_t it falls in ("jumped"). Fixed
        positions are copied from x0 and never jump. x0: Long[B, L]; t: Float[B]."""
        alpha = self.alpha(t).double()[:, None]  # [B, 1]
        beta_pi = self.beta_pi(t).double()  # [B, V]
        cdf = beta_pi.cumsum(-1)
        u = torch.rand(x0.shape, dtype=torch.float64, device=x0.device) * (alpha + cdf[:, -1:])
        jumped = u >= alpha
        token = torch.searchsorted(cdf, (u - alpha).contiguous(), right=True)
        # u can round onto the total mass; never return a token beyond the last one with mass.
        last = beta_pi.shape[-1] - 1 - (beta_pi > 0).flip(-1).int().argmax(-1, keepdim=True)
        zt = torch.where(jumped, torch.minimum(token, last), x0)
        if fixed is not None:
            zt = torch.where(fixed, x0, zt)
            jumped = jumped & ~fixed
        return zt, jumped


def check_vocabulary(vocab_size: int, mask_id: int) -> None:
    """Raise ValueError unless the vocabulary has a mask token and at least one other token."""
    if vocab_size < 2 or not 0 <= mask_id < vocab_size:
        raise ValueError(f"need vocab_size >= 2 and 0 <= mask_id < vocab_size, got {vocab_size} and {mask_id}")


def mask_vector(vocab_size: int, mask_id: int, device: torch.device | str) -> torch.Tensor:
    """e_m: Float64[V], all mass on the mask token."""
    e_m = torch.zeros(vocab_size, dtype=torch.float64, device=device)
    e_m[mask_id] = 1.0
    return e_m


def uniform_vector(vocab_size: int, mask_id: int, device: torch.device | str) -> torch.Tensor:
    """u: Float64[V], 1/N on each of the N = V - 1 non-mask tokens, 0 on the mask."""
    u = torch.full((vocab_size,), 1.0 / (vocab_size - 1), dtype=torch.float64, device=device)
    u[mask_id] = 0.0
    return u


def scheduled_alpha(schedule: str, eps: float, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_t, d alpha_t / dt) in float64 for t: Float[B] (docs/math.md, "Schedules").

    loglinear: alpha_t = 1 - (1 - eps) t (MDLM, Sahoo et al. 2024).
    cosine: alpha_t = 1 - cos(pi/2 (1 - (1 - eps) t)), the cosine schedule of MD4 (Shi et al.
    2024) and Duo (Sahoo et al. 2025), not MDLM's (see ``cosine_mdlm``).
    cosine_mdlm: alpha_t = eps + (1 - eps) cos(pi t / 2), MDLM's cosine noise.
    Both ends are alpha_0 = 1 and alpha_1 = eps; the formulas continue past t = 1 down to
    alpha = 0 at :func:`schedule_end`."""
    t = t.double()
    if schedule == "loglinear":
        return 1.0 - (1.0 - eps) * t, torch.full_like(t, -(1.0 - eps))
    if schedule == "cosine":
        angle = 0.5 * math.pi * (1.0 - (1.0 - eps) * t)
        # 1 - cos(angle) as 2 sin^2(angle / 2): exact near alpha = 0, where 1 - cos rounds to 0.
        return 2.0 * torch.sin(0.5 * angle) ** 2, -0.5 * math.pi * (1.0 - eps) * torch.sin(angle)
    if schedule == "cosine_mdlm":
        angle = 0.5 * math.pi * t
        return eps + (1.0 - eps) * torch.cos(angle), -0.5 * math.pi * (1.0 - eps) * torch.sin(angle)
    raise ValueError(f"unknown alpha schedule {schedule!r}; allowed: loglinear, cosine, cosine_mdlm")


def schedule_end(schedule: str, eps: float) -> float:
    """The time T >= 1 at which :func:`scheduled_alpha` continued past t = 1 reaches alpha_T = 0."""
    if schedule == "cosine_mdlm":
        return 2.0 / math.pi * math.acos(-eps / (1.0 - eps))
    return 1.0 / (1.0 - eps)


class ScheduledMixtureNoise(InterpolatingNoise):
    """alpha_t from a named schedule and a time-constant mixing distribution pi:
    beta_t pi_t = (1 - alpha_t) pi (masked: pi = e_m; uniform: pi = u). Values are float64."""

    def __init__(self, schedule: str, eps: float, vocab_size: int, mask_id: int):
        check_vocabulary(vocab_size, mask_id)
        self.schedule = schedule
        self.eps = eps
        self.vocab_size = vocab_size
        self.mask_id = mask_id

    @abstractmethod
    def pi(self, device: torch.device | str) -> torch.Tensor:
        """The mixing distribution pi: Float64[V]."""

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return scheduled_alpha(self.schedule, self.eps, t)[0]

    def alpha_prime(self, t: torch.Tensor) -> torch.Tensor:
        return scheduled_alpha(self.schedule, self.eps, t)[1]

    def beta_pi(self, t: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.alpha(t))[:, None] * self.pi(t.device)

    def beta_pi_prime(self, t: torch.Tensor) -> torch.Tensor:
        return -self.alpha_prime(t)[:, None] * self.pi(t.device)

    @property
    def prior_time(self) -> float:
        return schedule_end(self.schedule, self.eps)

    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """0: at T, alpha_T = 0 and q_T(. | x0) = pi is the prior."""
        return torch.zeros(x0.shape, dtype=torch.float64, device=x0.device)
