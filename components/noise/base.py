"""Forward-process interface shared by every noise kind.

Units: ``t`` is diffusion time in [0, 1] (0 clean, 1 prior), a FloatTensor[B] with one time per
sequence. Token tensors are LongTensor[B, L]; distributions are FloatTensor[..., V] over the full
vocabulary (V includes the mask token where the process has one).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


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

    def marginal(self, p0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q_t(. | p0) for a distribution p0: Float[B, ..., V], t: Float[B] -> Float[B, ..., V].

        Only processes with a closed-form marginal implement this."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form marginal")


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
