"""GDDS snapshot objective (Zekri et al. 2026; docs/math.md "Snapshot loss"): per token
-log p_theta(x0_i | z_t, t) over every scored position, unweighted.

The snapshot NLL is not a bound on -log p(x). The ``elbo`` output (validation's eval/elbo) is the
continuous-time path NELBO of the CTMC (Campbell et al. 2022) for gdds noise with a constant
kernel (uniform, mask, matrix) on a vocabulary of at most ``PATH_ELBO_MAX_VOCAB`` tokens: x_hat
is the posterior mean that the snapshot loss trains, and the reverse rates are
R_hat(z -> y) = lambda(t) F(z | y) sum_x x_hat(x) q_t(y | x) / q_t(z | x). For the k-NN kernel
(no closed-form marginal), larger vocabularies and the other noise kinds, ``elbo`` is the snapshot
NLL, which is no bound and compares with no ELBO. With ``carry_over`` the model is credited with
the forward process's true jump mask (unobservable at inference), which lowers the snapshot NLL
further.
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
from components.noise.gdds import GddsNoise
from components.registry import SpecModel

PATH_ELBO_MAX_VOCAB = 1024  # the path NELBO holds Float64[B, V, V] transition matrices


class SnapshotLossConfig(SpecModel):
    """``loss: {kind: snapshot, carry_over: false, low_var: false}``."""

    kind: Literal["snapshot"] = "snapshot"
    carry_over: bool = Field(
        False, description="positions that did not jump copy z_t (loss 0 there), using the true jump mask"
    )
    low_var: bool = Field(
        False, description="train on the mean cross-entropy of jumped tokens only (elbo is unchanged)"
    )

    requires_noise: ClassVar[tuple[str, ...]] = ("gdds", "masked", "uniform", "gidd")


def path_nelbo(
    noise: GddsNoise, log_x_hat: torch.Tensor, x0: torch.Tensor, zt: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """The path NELBO integrand at time t, Float64[B, L] in nats: per position,

        sum_{y != z} lambda F(z | y) [r_hat(y) - r(y) + r(y) log(r(y) / r_hat(y))],

    r(y) = q_t(y | x0) / q_t(z | x0) and r_hat(y) = sum_x x_hat(x) q_t(y | x) / q_t(z | x) over the x
    with q_t(z | x) > 0 (Campbell et al. 2022, the denoising parametrisation of the reverse rate).
    log_x_hat: Float[B, L, V]; x0, zt: Long[B, L] (z_t drawn from q_t(. | x0)); t: Float[B]."""
    size, vocab = x0.shape[0], noise.vocab_size
    eye = torch.eye(vocab, dtype=torch.float64, device=x0.device)
    transition = noise.marginal(eye.expand(size, vocab, vocab), t)  # [B, x, z] = q_t(z | x)
    rows = torch.arange(size, device=x0.device)[:, None]
    q_x = transition[rows, x0]  # [B, L, V]: q_t(. | x0)
    ratio = q_x / q_x.gather(-1, zt[..., None])
    into_z = transition.transpose(1, 2)[rows, zt]  # [B, L, V]: q_t(z | x) over x
    weights = torch.where(into_z > 0, log_x_hat.double().exp() / torch.where(into_z > 0, into_z, 1.0), 0.0)
    ratio_hat = torch.bmm(weights, transition)
    rate = noise.jump_rate(t).to(x0.device)[:, None, None] * noise.kernel.jump_matrix(x0.device).T[zt]
    rate = rate.scatter(-1, zt[..., None], 0.0)  # lambda F(z | y) for y != z
    term = ratio_hat - ratio + torch.xlogy(ratio, ratio) - torch.xlogy(ratio, ratio_hat)
    return torch.where(rate > 0, rate * term, 0.0).sum(-1)


@LOSSES.register(SnapshotLossConfig)
class SnapshotLoss(Loss):
    """Metrics: ``elbo`` (the path NELBO where available, else ``snapshot_nll``, see the module
    docstring), ``snapshot_nll`` (nats per scored token), ``denoising_nll`` and ``denoising_ppl`` (mean -log p(x0) over jumped tokens, and its
    exp), ``accuracy`` (argmax = x0 on jumped tokens), ``jumped_fraction`` (of scored tokens)."""

    def __init__(self, config: SnapshotLossConfig, *, noise: NoiseProcess):
        self.config = config
        self.noise = noise
        self.path = (
            isinstance(noise, GddsNoise) and noise.kernel.constant and noise.vocab_size <= PATH_ELBO_MAX_VOCAB
        )

    def bound_time(self) -> float:
        """The noise's prior time for the path NELBO; 1 for the snapshot NLL (an average over t)."""
        return self.noise.prior_time if self.path else 1.0

    def prior_term(self, x0: torch.Tensor) -> torch.Tensor:
        """KL(q_1(. | x0) || prior) with the path NELBO, 0 with the snapshot NLL."""
        if self.path:
            return self.noise.prior_kl(x0)
        return torch.zeros(x0.shape, dtype=torch.float64, device=x0.device)

    def __call__(
        self,
        logits: torch.Tensor,
        x0: torch.Tensor,
        zt: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor | None = None,
        jumped: torch.Tensor | None = None,
    ) -> LossOutput:
        """mask: Bool[B, L] scored positions; jumped: Bool[B, L] the forward process's jump mask
        (default zt != x0, which misses jumps back onto the clean token). Returns loss (float32
        scalar) and elbo (Float64[B, L], nats, 0 where unscored: the path NELBO integrand, or the
        per-position snapshot NLL, 0 with carry_over where nothing jumped)."""
        mask = torch.ones_like(x0, dtype=torch.bool) if mask is None else mask
        jumped = mask & (zt != x0 if jumped is None else jumped)
        log_x_hat = clean_log_probs(logits, self.noise.mask_id)
        nll = -log_x_hat.clamp_min(LOG_PROB_FLOOR).gather(-1, x0[..., None]).squeeze(-1).double()
        snapshot = torch.where(jumped if self.config.carry_over else mask, nll, 0.0)
        count = mask.sum().clamp_min(1)
        jumped_count = jumped.sum().clamp_min(1)
        denoising = torch.where(jumped, nll, 0.0).sum() / jumped_count
        loss = denoising if self.config.low_var else snapshot.sum() / count
        snapshot_nll = (snapshot.sum() / count).detach().float()
        if self.path:
            elbo = torch.where(mask, path_nelbo(self.noise, log_x_hat.detach(), x0, zt, t), 0.0)
        else:
            elbo = snapshot.detach()
        metrics = {
            "elbo": (elbo.sum() / count).float(),
            "snapshot_nll": snapshot_nll,
            "denoising_nll": denoising.detach().float(),
            "denoising_ppl": denoising.detach().exp().float(),
            "accuracy": corrupted_accuracy(log_x_hat, x0, jumped),
            "jumped_fraction": (jumped.sum() / count).float(),
        }
        return LossOutput(loss=loss.float(), elbo=elbo, metrics=metrics)

    def objective(self, model: nn.Module, batch: Batch, t: torch.Tensor) -> LossOutput:
        """Noise with the jump mask, run the model, score batch.scored."""
        zt, jumped = self.noise.sample_with_jumps(batch.x0, t, batch.fixed)
        logits = model(zt, t, fixed=batch.fixed, valid=batch.valid)
        return self(logits, batch.x0, zt, t, batch.scored, jumped=jumped)
