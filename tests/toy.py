"""Toy discrete data with exact answers, for checking noise processes, losses and samplers.

A :class:`ToyData` is a known distribution p(x) over every sequence of ``length`` tokens drawn from
``num_tokens`` clean tokens; the vocabulary adds one mask token (``mask_id = num_tokens``, so
``vocab_size = num_tokens + 1``). Everything is enumerated, so the posterior over clean sequences
given a noisy one, the denoisers built from it and the NLL are exact (float64).

Import it from a test as ``from toy import ...`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from components.noise.base import NoiseProcess


def all_sequences(num_symbols: int, length: int) -> torch.Tensor:
    """Long[num_symbols ** length, length]: every sequence, in lexicographic order."""
    return torch.tensor(list(itertools.product(range(num_symbols), repeat=length)), dtype=torch.long)


@dataclass(frozen=True)
class ToyData:
    """p(x) over all sequences. sequences: Long[S, L]; probs: Float64[S] (sums to 1)."""

    sequences: torch.Tensor
    probs: torch.Tensor
    num_tokens: int

    @property
    def length(self) -> int:
        return self.sequences.shape[1]

    @property
    def vocab_size(self) -> int:
        return self.num_tokens + 1

    @property
    def mask_id(self) -> int:
        return self.num_tokens

    def entropy(self) -> float:
        """The true expected NLL -E_p log p(x), in nats per sequence."""
        return float(-(self.probs * self.probs.log()).sum())

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) for x: Long[B, L] of clean tokens -> Float64[B]."""
        index = (x * self.num_tokens ** torch.arange(self.length - 1, -1, -1)).sum(-1)
        return self.probs.log()[index]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n i.i.d. draws from p: Long[n, L]."""
        return self.sequences[torch.multinomial(self.probs, n, replacement=True, generator=generator)]


def toy_data(num_tokens: int = 3, length: int = 2, seed: int = 0, sharpness: float = 2.0) -> ToyData:
    """A random p(x) = softmax(sharpness * N(0, 1) draws) over all num_tokens ** length sequences:
    every sequence has mass, larger sharpness gives peakier, more strongly correlated data."""
    generator = torch.Generator().manual_seed(seed)
    sequences = all_sequences(num_tokens, length)
    scores = sharpness * torch.randn(len(sequences), generator=generator, dtype=torch.float64)
    return ToyData(sequences=sequences, probs=torch.softmax(scores, 0), num_tokens=num_tokens)


def transition_table(noise: NoiseProcess, t: torch.Tensor) -> torch.Tensor:
    """q_t(z | x) for every clean x (dim 1) and noisy z (dim 2), from ``noise.marginal``:
    Float64[B, V, V] for t: Float[B]."""
    eye = torch.eye(noise.vocab_size, dtype=torch.float64)
    return noise.marginal(eye.expand(len(t), -1, -1).contiguous(), t)


def _log_likelihoods(
    noise: NoiseProcess, data: ToyData, zt: torch.Tensor, t: torch.Tensor, fixed: torch.Tensor | None
) -> torch.Tensor:
    """log q_t(z_i | x_i) per noisy position for every clean sequence: Float64[B, L, S]. Fixed
    positions are exact observations (likelihood 1[z_i = x_i])."""
    table = transition_table(noise, t).log()  # [B, V, V]
    by_clean = table.gather(2, zt[:, None, :].expand(-1, noise.vocab_size, -1)).transpose(1, 2)  # [B, L, V]
    per_position = by_clean.gather(2, data.sequences.T[None].expand(len(zt), -1, -1))  # [B, L, S]
    if fixed is not None:
        exact = torch.where(zt[:, :, None] == data.sequences.T[None], 0.0, float("-inf"))
        per_position = torch.where(fixed[:, :, None], exact, per_position)
    return per_position


def posterior(
    noise: NoiseProcess, data: ToyData, zt: torch.Tensor, t: torch.Tensor, fixed: torch.Tensor | None = None
) -> torch.Tensor:
    """p(x | z_t) over data.sequences: Float64[B, S] for zt: Long[B, L], t: Float[B]. zt must be
    reachable (q_t(z_t) > 0)."""
    joint = data.probs.log()[None] + _log_likelihoods(noise, data, zt, t, fixed).sum(1)
    return torch.softmax(joint, dim=-1)


def one_hot_sequences(data: ToyData) -> torch.Tensor:
    """Float64[S, L, V]: one-hot encoding of every sequence over the full vocabulary."""
    return torch.nn.functional.one_hot(data.sequences, data.vocab_size).double()


def posterior_mean(
    noise: NoiseProcess, data: ToyData, zt: torch.Tensor, t: torch.Tensor, fixed: torch.Tensor | None = None
) -> torch.Tensor:
    """The exact posterior-mean denoiser x_hat_i(v) = P(x_i = v | z_t): Float64[B, L, V]."""
    return torch.einsum("bs,slv->blv", posterior(noise, data, zt, t, fixed), one_hot_sequences(data))


def leave_one_out(
    noise: NoiseProcess, data: ToyData, zt: torch.Tensor, t: torch.Tensor, fixed: torch.Tensor | None = None
) -> torch.Tensor:
    """x_hat_i(v) = P(x_i = v | z_{-i}), the posterior given every other noisy position:
    Float64[B, L, V]. Plugged into q_t(. | x_hat) it reproduces the true reverse-time rates, so the
    GIDD ELBO of this denoiser equals -log p(x) (the posterior mean does so only for masking).
    Fixed positions are exact observations."""
    per_position = _log_likelihoods(noise, data, zt, t, fixed)  # [B, L, S]
    others = torch.stack(
        [torch.cat([per_position[:, :i], per_position[:, i + 1 :]], 1).sum(1) for i in range(data.length)], 1
    )
    weights = torch.softmax(data.probs.log()[None, None] + others, dim=-1)  # [B, L, S]
    return torch.einsum("bis,siv->biv", weights, one_hot_sequences(data))


DENOISERS = {"posterior_mean": posterior_mean, "leave_one_out": leave_one_out}


class ExactDenoiser(nn.Module):
    """A backbone-shaped exact denoiser: ``model(zt, t, fixed=None, valid=None)`` returns
    Float32[B, L, V] logits = log x_hat (floored at -1e4 for impossible tokens).

    target: "posterior_mean" (E[x_i | z_t]) or "leave_one_out" (P(x_i | z_{-i})). They agree at
    masked positions; where z_t shows a token, only leave_one_out gives the true reverse process
    of a process with uniform states (GIDD p_u > 0, uniform), and it is what a model trained on the
    GIDD ELBO converges to. ``fixed`` positions are exact observations (likelihood 1[z_i = x_i])."""

    def __init__(self, noise: NoiseProcess, data: ToyData, *, target: str):
        super().__init__()
        if target not in DENOISERS:
            raise ValueError(f"target must be one of {sorted(DENOISERS)}, got {target!r}")
        self.noise = noise
        self.data = data
        self.target = target

    def forward(
        self, zt: torch.Tensor, t: torch.Tensor, fixed: torch.Tensor | None = None, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        x_hat = DENOISERS[self.target](self.noise, self.data, zt, t, fixed)
        return x_hat.log().clamp_min(-1e4).float()
