"""Validation NELBO, perplexity and bits per token (docs/math.md, "The bound reported as eval/elbo").

Per sequence the bound is

    NELBO(x) = int_0^T sum_i elbo_i(x, z_t, t) dt + sum_i prior_i(x),   z_t ~ q_t(. | x),

with T = ``loss.bound_time()`` (1, or the time past 1 where a schedule with alpha_1 = eps > 0
reaches alpha_T = 0; the model is given min(t, 1)), elbo the loss's per-position integrand and
prior = ``loss.prior_term`` (KL(q_T(. | x) || prior)). The per-token NELBO is the sum over scored
positions divided by their count, accumulated token-weighted in float64 over every batch. It is
an upper bound on the NLL, so the PPL bounds the model's likelihood ("PPL <= X" in papers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
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


def quadrature_rule(points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes u and weights w, Float64[points], of int_0^1 f(u) du ~ sum_k w_k f(u_k): the
    Gauss-Legendre rule in v, mapped twice through s -> sin^2(pi s / 2) (docs/math.md, "The bound
    reported as eval/elbo"). Near both ends u ~ 15 v^4, which makes integrands with t^(-1/2) and
    t^(-1/2) log t endpoint behaviour (GIDD's ELBO for gamma < 2) smooth in v; no node is an
    endpoint. For 8 <= points <= 64 (the range :class:`ElboEstimator` accepts) the weights sum to
    1 within 2e-5 and the outer nodes lie at least 2e-13 from 0 and 1, so they stay distinct from
    the ends in float64."""
    v, w = np.polynomial.legendre.leggauss(points)
    u, w = torch.from_numpy((v + 1.0) / 2.0), torch.from_numpy(w / 2.0)
    for _ in range(2):
        w = w * (0.5 * math.pi) * torch.sin(math.pi * u)
        u = torch.sin(0.5 * math.pi * u) ** 2
    return u, w


def estimation_times(
    batch_size: int, estimator: ElboEstimator, eps: float, generator: torch.Generator, horizon: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Diffusion times Float64[K, B] and their weights Float64[K] for K = estimator.t_samples passes
    over a batch of B sequences; sum_k weight_k f(t_k) estimates int_0^horizon f(t) dt.

    mc: low-discrepancy over all K * B draws (one shared offset from ``generator``) in
    [eps, 1 - eps], scaled by ``horizon``, weights horizon / K; unbiased for the integral over
    [horizon eps, horizon (1 - eps)] rescaled by 1 / (1 - 2 eps). quadrature: the nodes of
    :func:`quadrature_rule` scaled by ``horizon``, the same for every sequence (the generator is
    not used). Times stay in float64: in float32 the outer nodes of large rules round onto the
    singular endpoints."""
    k = estimator.t_samples
    if estimator.kind == "quadrature":
        nodes, weights = quadrature_rule(k)
        return (horizon * nodes)[:, None].expand(k, batch_size), horizon * weights
    sampler = LowDiscrepancyTime(LowDiscrepancyTimeConfig(eps=eps))
    times = horizon * sampler.sample(k * batch_size, generator).view(k, batch_size).double()
    return times, torch.full((k,), horizon / k, dtype=torch.float64)


class ClampedTime(nn.Module):
    """``model`` called with min(t, 1): past t = 1 the model sees the most noised time it knows."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, zt: torch.Tensor, t: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return self.model(zt, t.clamp_max(1.0), *args, **kwargs)


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
    """Estimate the NELBO per token of ``model`` on ``batches`` (see the module docstring).

    Every batch is scored estimator.t_samples times by ``loss.objective`` (see
    :func:`estimation_times`, horizon = ``loss.bound_time()``) and once by ``loss.prior_term``;
    z_t is drawn from the global RNG re-seeded from ``generator`` inside a forked RNG state, so the
    result is reproducible for a seeded generator and training RNG streams are left untouched. The
    model runs in eval mode (restored afterwards) on its own device. ``eps``, the range margin of
    the mc times, must lie in (0, 1/2): the ELBO weights are singular at t = 0 and t = T."""
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    device = _device(model)
    was_training = model.training
    scorer = ClampedTime(model).eval()
    horizon = loss.bound_time()
    total = torch.zeros((), dtype=torch.float64)
    tokens = 0
    seed = int(torch.randint(2**62, (), generator=generator))
    forked = list(range(torch.cuda.device_count())) if device is not None and device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=forked):
            torch.manual_seed(seed)
            for batch in batches:
                batch = batch.to(device) if device is not None else batch
                scored = int(batch.scored.sum())
                times, weights = estimation_times(len(batch), estimator, eps, generator, horizon)
                for t, w in zip(times, weights.tolist()):
                    out = loss.objective(scorer, batch, t.to(batch.x0.device))
                    total += w * out.elbo.double().sum().cpu()
                prior = loss.prior_term(batch.x0)
                total += torch.where(batch.scored, prior, 0.0).sum().cpu()
                tokens += scored
    finally:
        model.train(was_training)
    nll = float(total) / max(tokens, 1)
    return NelboResult(nll_per_token=nll, ppl=math.exp(nll), bits_per_token=nll / math.log(2.0), tokens=tokens)
