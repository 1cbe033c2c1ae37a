"""Backbone interface: ``model(zt, t, fixed=None, valid=None) -> logits``."""

from __future__ import annotations

import torch
from torch import nn


class Backbone(nn.Module):
    """A denoiser network.

    forward(zt: Long[B, L], t: Float[B] in [0, 1], fixed: Bool[B, L] | None = None,
            valid: Bool[B, L] | None = None) -> Float[B, L, V]
    logits over the task vocabulary (models with extra heads return a named tuple whose
    ``logits`` field is this tensor). ``fixed`` marks trusted conditioning positions (Sudoku
    givens, prompts); a backbone may embed it so it can tell givens from noisy tokens.
    ``valid`` False marks padding, which must not be attended to.
    """

    def set_progress(self, fraction: float) -> None:
        """Training progress in [0, 1] (step / steps), set by the training loop before every
        step, for curricula (e.g. an edit stage switched on late, an annealed gate). Stateless
        components ignore it; behaviour must depend only on the latest value, so resuming at a
        step reproduces it."""

    def num_parameters(self, exclude_embeddings: bool = True) -> int:
        """Parameter count; by default without token/position embeddings, as papers report."""
        total = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            total -= sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Embedding))
        return total
