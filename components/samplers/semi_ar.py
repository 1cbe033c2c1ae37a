"""Semi-autoregressive block decoding (Arriola et al. 2025, "Block Diffusion"; LLaDA's
semi-autoregressive remasking, Nie et al. 2025): generate the open positions block by block,
left to right, with any diffusion sampler inside each block, and stop at an end token.

The open (non-fixed) positions of a row are cut into consecutive blocks of ``block_length``
open positions. For block b the inner sampler sees a batch in which the context and the earlier
blocks (as generated) are fixed, block b is open, and the later blocks are either prior tokens
(``future: masked``, attended to, the mask for masked noise, as in LLaDA) or hidden
(``future: hidden``: marked padding, so the model sees only what precedes the block and the
block itself, as in block diffusion). A row stops after the first block that holds a stop
token (the task's end or pad token: ``stop_ids``); its positions after that token repeat it, so
the output length is chosen by the model, not fixed in advance.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from components.batch import Batch
from components.noise.base import NoiseProcess
from components.registry import SpecModel
from components.samplers.base import Generation, Sampler
from components.samplers.registry import SAMPLERS

INNER = SAMPLERS.union()  # every sampler registered before this module (see __init__.py)


class SemiArConfig(SpecModel):
    kind: Literal["semi_ar"] = "semi_ar"
    block_length: int = Field(32, ge=1, le=131_072, description="open positions per block")
    steps_per_block: int | None = Field(
        None, ge=1, le=100_000, description="passes the inner sampler takes per block (its steps); default its own"
    )
    inner: INNER = Field(  # type: ignore[valid-type]
        default_factory=lambda: SAMPLERS.validate({"kind": "confidence"}),
        description="the diffusion sampler run inside each block",
    )
    future: Literal["masked", "hidden"] = Field(
        "masked", description="later blocks: prior tokens the model attends to, or hidden as padding"
    )
    stop: bool = Field(True, description="end a row after the block holding its first stop token")

    @property
    def requires_noise(self) -> tuple[str, ...] | None:
        return getattr(self.inner, "requires_noise", None)

    @property
    def requires_backbone(self) -> tuple[str, ...] | None:
        return getattr(self.inner, "requires_backbone", None)


@SAMPLERS.register(SemiArConfig)
class SemiArSampler(Sampler):
    """Block-by-block generation; ``stop_ids`` (build context, from the task) are the tokens
    that end a row. ``steps`` given to :meth:`generate` overrides ``steps_per_block``."""

    def __init__(self, config: SemiArConfig, *, stop_ids: tuple[int, ...] = ()):
        self.config = config
        self.inner = SAMPLERS.build(config.inner)
        self.stop_ids = tuple(stop_ids)

    @torch.no_grad()
    def generate(
        self, model: torch.nn.Module, noise: NoiseProcess, batch: Batch, steps: int | None = None
    ) -> Generation:
        """tokens: Long[B, L]; nfe: Long[B], the inner sampler's evaluations summed over the blocks
        each row went through (0 for a row without open positions)."""
        steps = self.config.steps_per_block if steps is None else steps
        size = self.config.block_length
        opened = ~batch.fixed
        rank = opened.long().cumsum(-1) - 1  # index of each open position among its row's open ones
        blocks = torch.where(opened, torch.div(rank, size, rounding_mode="floor"), -1)
        valid = torch.ones_like(opened) if batch.valid is None else batch.valid
        z = batch.x0.clone()
        nfe = torch.zeros(len(batch), dtype=torch.long, device=z.device)
        running = opened.any(-1)
        stops = torch.tensor(self.stop_ids, dtype=z.dtype, device=z.device)
        block = 0
        while (rows := (running & (blocks == block).any(-1)).nonzero().squeeze(-1)).numel():
            current = blocks[rows] == block
            later = blocks[rows] > block
            sub_x0 = z[rows]
            if self.config.future == "masked":
                prior = noise.prior(tuple(sub_x0.shape), device=z.device)
                sub_x0 = torch.where(later, prior, sub_x0)
                sub_valid = valid[rows]
            else:
                sub_valid = valid[rows] & ~later
            sub = Batch(x0=sub_x0, fixed=~current, valid=sub_valid)
            out = self.inner.generate(model, noise, sub, steps)
            z[rows] = torch.where(current, out.tokens, z[rows])
            nfe[rows] += out.nfe
            if self.config.stop and stops.numel():
                hit = current & torch.isin(z[rows], stops)
                ended = hit.any(-1)
                if ended.any():
                    self._fill_after_stop(z, rows[ended], hit[ended], opened)
                    running[rows[ended]] = False
            block += 1
        return Generation(z, nfe)

    @staticmethod
    def _fill_after_stop(z: torch.Tensor, rows: torch.Tensor, hit: torch.Tensor, opened: torch.Tensor) -> None:
        """Set the open positions after each row's first stop token (Bool[n, L] ``hit``) to it."""
        first = hit.int().argmax(-1)
        token = z[rows, first]
        after = opened[rows] & (torch.arange(z.shape[1], device=z.device)[None, :] > first[:, None])
        z[rows] = torch.where(after, token[:, None], z[rows])
