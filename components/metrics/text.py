"""Text metrics: likelihood conversions (PPL, bits per token, bits per byte), token-weighted NLL
accumulation, generative perplexity with its procedure stated, and unigram entropy of samples.

Units: NLL in nats. Aggregation is always token-weighted, exp(sum NLL / sum tokens) (see
diffusion.md section 6), accumulated in float64. For a diffusion model the validation NLL is the
NELBO, so the PPL is an upper bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def perplexity(nll: float, tokens: float) -> float:
    """exp(nll / tokens): ``nll`` summed in nats over ``tokens`` tokens (or per token with tokens=1)."""
    return math.exp(nll / tokens)


def bits_per_token(nll: float, tokens: float) -> float:
    """nll / (tokens * ln 2)."""
    return nll / (tokens * math.log(2))


def bits_per_byte(nll: float, num_bytes: float) -> float:
    """nll / (num_bytes * ln 2): ``nll`` summed in nats over text of ``num_bytes`` UTF-8 bytes.

    Equally, an NLL per token with the text's bytes per token: bits_per_byte(nll_per_token,
    bytes_per_token). Comparable across tokenizers, unlike PPL."""
    return nll / (num_bytes * math.log(2))


@dataclass
class NllSum:
    """Token-weighted NLL accumulator: nats summed over ``tokens`` tokens of ``sequences`` rows."""

    nats: float = 0.0
    tokens: int = 0
    sequences: int = 0

    def add(self, nll: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add per-token NLLs Float[B, T] (nats) where Bool[B, T] ``mask`` is True (all if None)."""
        nll = nll.detach().double()
        if mask is not None:
            nll = torch.where(mask, nll, torch.zeros((), dtype=nll.dtype, device=nll.device))
        self.nats += float(nll.sum())
        self.tokens += int(mask.sum()) if mask is not None else nll.numel()
        self.sequences += nll.shape[0]

    def __add__(self, other: "NllSum") -> "NllSum":
        return NllSum(self.nats + other.nats, self.tokens + other.tokens, self.sequences + other.sequences)

    @property
    def per_token(self) -> float:
        return self.nats / self.tokens

    @property
    def perplexity(self) -> float:
        return perplexity(self.nats, self.tokens)

    @property
    def bits_per_token(self) -> float:
        return bits_per_token(self.nats, self.tokens)

    def bits_per_byte(self, bytes_per_token: float) -> float:
        """Bits per UTF-8 byte, given the text's bytes per scored token."""
        return bits_per_byte(self.nats, self.tokens * bytes_per_token)


@dataclass(frozen=True)
class GenerativePerplexity:
    """Generative PPL of samples under a judge model, and how it was obtained.

    judge: the model (e.g. ``gpt2-large`` or ``run:<mlflow run id>``); retokenization: how the
    samples reached the judge (e.g. ``decoded without special tokens, re-tokenized with gpt2``);
    context: judge tokens per window; overflow: ``truncate`` (the first ``context`` judge tokens
    of a sample are scored) or ``chunk`` (every window of ``context`` tokens is, each from a fresh
    start); nll: the judge's NLL over the scored tokens."""

    judge: str
    retokenization: str
    context: int
    nll: NllSum
    overflow: str = "truncate"

    def metrics(self, prefix: str) -> dict[str, float]:
        """``<prefix>/gen_ppl`` (token-weighted) and ``<prefix>/gen_ppl_tokens``."""
        return {f"{prefix}/gen_ppl": self.nll.perplexity, f"{prefix}/gen_ppl_tokens": float(self.nll.tokens)}

    def statement(self) -> str:
        """One line stating the procedure, logged next to the number."""
        return (
            f"gen PPL = exp(sum NLL / sum tokens) = {self.nll.perplexity:.3f} over {self.nll.tokens} tokens "
            f"of {self.nll.sequences} samples; judge {self.judge}; {self.retokenization}; "
            + (
                f"truncated at {self.context} judge tokens"
                if self.overflow == "truncate"
                else f"chunked into windows of {self.context} judge tokens"
            )
        )


def unigram_entropy(tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample unigram entropy in nats: H = -sum_v (n_v / L) ln(n_v / L), where n_v counts id v
    among the L valid tokens of the sample. tokens: Long[B, L]; valid: Bool[B, L] or None (all).
    Returns Float64[B] (0 for a sample without valid tokens). All-same tokens give 0, L distinct
    tokens ln L."""
    out = torch.zeros(tokens.shape[0], dtype=torch.float64)
    for i, row in enumerate(tokens.cpu()):
        if valid is not None:
            row = row[valid[i].cpu()]
        if row.numel() == 0:
            continue
        p = torch.unique(row, return_counts=True)[1].double() / row.numel()
        out[i] = -(p * p.log()).sum()
    return out
