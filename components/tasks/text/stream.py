"""Batches of packed text rows: the resumable, rank-sharded training stream and fixed eval batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from components.batch import Batch
from components.tasks.base import DataStream
from components.tasks.sharding import ShardedOrder
from components.tasks.text.cache import TokenArrays
from components.tasks.text.packing import valid_mask


def rows_to_batch(arrays: TokenArrays, rows: np.ndarray) -> Batch:
    """The rows ``rows`` (Int[B]) of a packed split as a Batch: x0 Long[B, L]; for ``pad`` packing
    ``valid`` marks the real tokens and padding is also ``fixed`` (never noised or scored)."""
    x0 = torch.from_numpy(arrays.tokens[rows].astype(np.int64))
    if arrays.lengths is None:
        return Batch.unconditional(x0)
    valid = torch.from_numpy(valid_mask(arrays.lengths[rows], x0.shape[1]))
    return Batch(x0=x0, fixed=~valid, valid=valid)


class TextStream(DataStream):
    """Endless training batches of one rank.

    The rows come from a :class:`ShardedOrder` over the split (one global epoch-permuted sequence,
    seeded by ``(seed, epoch)``, sharded over ranks by position). The state is the global position
    of the next step as (epoch, position in epoch); it does not depend on the world size, so a run
    may resume on a different number of ranks.
    """

    def __init__(self, arrays: TokenArrays, batch_size: int, *, rank: int, world_size: int, seed: int):
        self.arrays = arrays
        self.seed = seed
        self.order = ShardedOrder(
            len(arrays), batch_size, rank=rank, world_size=world_size, seed_key=(seed,), unit="training rows"
        )

    def __next__(self) -> Batch:
        _, rows = self.order.take()
        return rows_to_batch(self.arrays, rows)

    def state_dict(self) -> dict[str, Any]:
        epoch, offset = divmod(self.order.position, len(self.arrays))
        return {"epoch": epoch, "position": offset, "rows": len(self.arrays), "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["rows"]) != len(self.arrays) or int(state["seed"]) != self.seed:
            raise ValueError(
                f"stream state is for {state['rows']} rows with seed {state['seed']}; this stream has "
                f"{len(self.arrays)} rows with seed {self.seed}"
            )
        self.order.position = int(state["epoch"]) * len(self.arrays) + int(state["position"])
