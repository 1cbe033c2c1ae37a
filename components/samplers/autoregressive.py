"""Left-to-right sampling from an autoregressive model (the ``ar`` loss's causal backbone)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field

from components.backbones.causal import shift_right, shift_valid
from components.batch import Batch
from components.noise.base import NoiseProcess, clean_log_probs
from components.registry import SpecModel
from components.samplers.ancestral import sample_categorical
from components.samplers.base import Generation, Sampler
from components.samplers.registry import SAMPLERS


class AutoregressiveConfig(SpecModel):
    kind: Literal["autoregressive"] = "autoregressive"
    requires_backbone: ClassVar[tuple[str, ...]] = ("causal",)
    temperature: float = Field(1.0, gt=0.0, le=100.0, description="divides the logits")


@SAMPLERS.register(AutoregressiveConfig)
class AutoregressiveSampler(Sampler):
    """Position i (left to right) is drawn in float64 from softmax(logits_i / temperature), mask
    logit at -inf, of a causal pass ``model(shift_right(tokens[:, :i + 1]), 0, causal=True)``;
    the start token is ``noise.mask_id``, as in the ``ar`` loss. Fixed positions (a prompt) are
    copied from ``batch.x0`` and condition what follows. No KV cache: a pass costs O(i)."""

    def __init__(self, config: AutoregressiveConfig):
        self.config = config

    @torch.no_grad()
    def generate(
        self, model: torch.nn.Module, noise: NoiseProcess, batch: Batch, steps: int | None = None
    ) -> Generation:
        """tokens: Long[B, L]; nfe: Long[B], the number of non-fixed positions of each sequence
        (one model pass each). ``steps`` must be None: the number of passes is not a choice."""
        if steps is not None:
            raise ValueError("autoregressive sampling takes one pass per generated position; steps must be None")
        if noise.mask_id is None:
            raise TypeError(f"autoregressive sampling uses the mask id as start token; {type(noise).__name__} has none")
        tokens = batch.x0.clone()
        free = ~batch.fixed
        valid = shift_valid(batch.valid)
        for i in range(tokens.shape[1]):
            rows = free[:, i].nonzero().squeeze(-1)
            if rows.numel() == 0:
                continue
            inputs = shift_right(tokens[rows, : i + 1], noise.mask_id)
            t = torch.zeros(len(rows), device=tokens.device)
            window = None if valid is None else valid[rows, : i + 1]
            logits = model(inputs, t, fixed=None, valid=window, causal=True)[:, -1]
            probs = clean_log_probs(logits / self.config.temperature, noise.mask_id).exp()
            tokens[rows, i] = sample_categorical(probs)
        return Generation(tokens, free.sum(-1))
