"""Loss interface: every loss returns a training objective and the per-token ELBO term."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from components.batch import Batch

if TYPE_CHECKING:
    from components.noise.base import NoiseProcess


@dataclass
class LossOutput:
    """Result of a loss.

    Attributes:
        loss: scalar training objective (weighted as the spec asks), mean over scored tokens.
        elbo: Float[B, L], per-position negative-ELBO contribution in nats (0 at unscored
            positions). Summed over scored positions and divided by their count it is the
            NELBO per token, from which validation PPL and bits per token follow.
        metrics: scalar diagnostics (``kl``, ``is``, ``elbo``, ...), detached tensors.
    """

    loss: torch.Tensor
    elbo: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class Loss(ABC):
    """``loss_fn(logits, x0, zt, t, mask) -> LossOutput``, plus the full objective on a batch."""

    noise: "NoiseProcess | None" = None

    @abstractmethod
    def __call__(
        self,
        logits: torch.Tensor,
        x0: torch.Tensor,
        zt: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> LossOutput:
        """logits: Float[B, L, V] (or a backbone's named tuple); x0, zt: Long[B, L]; t: Float[B];
        mask: Bool[B, L] positions to score (default: all)."""

    def set_progress(self, fraction: float) -> None:
        """Training progress in [0, 1] (step / steps), set by the training loop before every
        step, for curricula (e.g. an edit stage switched on late, an annealed gate). Stateless
        components ignore it; behaviour must depend only on the latest value, so resuming at a
        step reproduces it."""

    def bound_time(self) -> float:
        """T: validation integrates ``objective(model, batch, t).elbo`` over t in (0, T), the model
        seeing min(t, 1), and adds :meth:`prior_term` (docs/math.md, "The bound reported as
        eval/elbo"). Default: the noise's ``prior_time``."""
        return self.noise.prior_time

    def prior_term(self, x0: torch.Tensor) -> torch.Tensor:
        """Float64[B, L], nats: the t = T term of the validation bound at every position of
        x0: Long[B, L]. Default: the noise's KL(q_T(. | x0) || prior)."""
        return self.noise.prior_kl(x0)

    def objective(self, model: torch.nn.Module, batch: Batch, t: torch.Tensor) -> LossOutput:
        """Noise the batch at times t, run the model, score. Losses with several passes override."""
        zt = self.noise.sample(batch.x0, t, batch.fixed)
        logits = model(zt, t, fixed=batch.fixed, valid=batch.valid)
        return self(logits, batch.x0, zt, t, batch.scored)
