"""Validation NELBO, perplexity and bits per token (diffusion.md section 6).

The per-token NELBO is sum(LossOutput.elbo) / (scored tokens), accumulated token-weighted in
float64 over every batch and every time draw. It is an upper bound on the NLL, so the PPL is a
lower bound on the model's likelihood ("PPL <= X" in papers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from components.batch import Batch
from components.losses.base import Loss
from components.schedules.time import LowDiscrepancyTime, LowDiscrepancyTimeConfig
from components.spec.sections import ElboEstimator


@dataclass(frozen=True)
class NelboResult:
    """nll_per_token: NELBO in nats per scored token; ppl = exp(nll_per_token);
    bits_per_token = nll_per_token / ln 2; tokens: scored tokens evaluated (each counted once)."""

    nll_per_token: float
    ppl: float
    bits_per_token: float
    tokens: int


def estimation_times(
    batch_size: int, estimator: ElboEstimator, eps: float, generator: torch.Generator
) -> torch.Tensor:
    """Float[K, B] diffusion times for K = estimator.t_samples passes over a batch of B sequences.

    mc: low-discrepancy over all K * B draws (one shared offset from ``generator``), so each
    sequence's K times are spread over [eps, 1 - eps]. quadrature: the K points of
    linspace(eps, 1 - eps, K), the same for every sequence (the generator is not used)."""
    k = estimator.t_samples
    if estimator.kind == "quadrature":
        return torch.linspace(eps, 1.0 - eps, k, dtype=torch.float64)[:, None].expand(k, batch_size).float()
    sampler = LowDiscrepancyTime(LowDiscrepancyTimeConfig(eps=eps))
    return sampler.sample(k * batch_size, generator).view(k, batch_size)


def _device(model: nn.Module) -> torch.device | None:
    tensor = next(iter(model.parameters()), None)
    return None if tensor is None else tensor.device


@torch.no_grad()
def estimate_nelbo(
    model: nn.Module,
    loss: Loss,
    batches: Iterable[Batch],
    estimator: ElboEstimator,
    eps: float,
    generator: torch.Generator,
) -> NelboResult:
    """Estimate the NELBO per token of ``model`` on ``batches`` with ``loss.objective``.

    Every batch is scored estimator.t_samples times (see :func:`estimation_times`); z_t is drawn
    from the global RNG re-seeded from ``generator`` inside a forked RNG state, so the result is
    reproducible for a seeded generator and training RNG streams are left untouched. The model
    runs in eval mode (restored afterwards) on its own device. ``eps`` must lie in (0, 1/2): the
    ELBO weights are singular at t = 0 and t = 1."""
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    device = _device(model)
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64)
    weight = 0
    tokens = 0
    seed = int(torch.randint(2**62, (), generator=generator))
    forked = list(range(torch.cuda.device_count())) if device is not None and device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=forked):
            torch.manual_seed(seed)
            for batch in batches:
                batch = batch.to(device) if device is not None else batch
                scored = int(batch.scored.sum())
                for t in estimation_times(len(batch), estimator, eps, generator):
                    out = loss.objective(model, batch, t.to(batch.x0.device))
                    total += out.elbo.double().sum().cpu()
                    weight += scored
                tokens += scored
    finally:
        model.train(was_training)
    nll = float(total) / max(weight, 1)
    return NelboResult(nll_per_token=nll, ppl=math.exp(nll), bits_per_token=nll / math.log(2.0), tokens=tokens)
