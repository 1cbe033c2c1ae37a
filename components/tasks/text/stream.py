"""Batches of packed text rows: the resumable, rank-sharded training stream and fixed eval batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from components.batch import Batch
from components.tasks.base import DataStream
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

    All ranks read one global sequence of rows: the split in a fresh permutation per epoch
    (seeded by ``(seed, epoch)``), epochs back to back, so a batch may straddle two epochs and each
    row is read once per epoch. Step s of rank r takes the ``batch_size`` positions starting at
    ``(s * world_size + r) * batch_size``: ranks never read the same position and together read
    every one. The state is the global position of the next step as (epoch, position in epoch);
    it does not depend on the world size, so a run may resume on a different number of ranks.
    """

    def __init__(self, arrays: TokenArrays, batch_size: int, *, rank: int, world_size: int, seed: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        if batch_size < 1 or len(arrays) == 0:
            raise ValueError(f"need batch_size >= 1 and training rows (got {batch_size}, {len(arrays)})")
        self.arrays = arrays
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.position = 0  # global position of the next step's first row
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        """Int[N]: the permutation of epoch ``epoch`` (the last two are kept)."""
        if epoch not in self._orders:
            if len(self._orders) >= 2:
                self._orders.pop(min(self._orders))
            self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.arrays))
        return self._orders[epoch]

    def indices(self, start: int, count: int) -> np.ndarray:
        """Int[count]: rows at global positions ``start .. start + count - 1``."""
        epochs, offsets = np.divmod(np.arange(start, start + count), len(self.arrays))
        rows = np.empty(count, dtype=np.int64)
        for epoch in np.unique(epochs):
            here = epochs == epoch
            rows[here] = self._order(int(epoch))[offsets[here]]
        return rows

    def __next__(self) -> Batch:
        rows = self.indices(self.position + self.rank * self.batch_size, self.batch_size)
        self.position += self.batch_size * self.world_size
        return rows_to_batch(self.arrays, rows)

    def state_dict(self) -> dict[str, Any]:
        epoch, offset = divmod(self.position, len(self.arrays))
        return {"epoch": epoch, "position": offset, "rows": len(self.arrays), "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["rows"]) != len(self.arrays) or int(state["seed"]) != self.seed:
            raise ValueError(
                f"stream state is for {state['rows']} rows with seed {state['seed']}; this stream has "
                f"{len(self.arrays)} rows with seed {self.seed}"
            )
        self.position = int(state["epoch"]) * len(self.arrays) + int(state["position"])
