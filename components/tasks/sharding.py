"""The global, epoch-permuted read order that every task's training stream shards over ranks."""

from __future__ import annotations

import numpy as np


class ShardedOrder:
    """Which training rows one rank reads next.

    All ranks read one global sequence: the N rows in a fresh permutation per epoch (seeded by
    ``(*seed_key, epoch)``), epochs back to back, so a batch may straddle two epochs and each row
    is read once per epoch. Step s of rank r takes the ``batch_size`` positions starting at
    ``(s * world_size + r) * batch_size``: ranks never read the same position and together read
    every one. ``position`` (the global position of the next step's first row) is the whole state.
    """

    def __init__(self, size: int, batch_size: int, *, rank: int, world_size: int, seed_key: tuple[int, ...], unit: str):
        """size: N rows; unit: what a row is, for errors (e.g. "training puzzles")."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        if batch_size < 1 or size == 0:
            raise ValueError(f"need batch_size >= 1 and {unit} (got {batch_size}, {size})")
        self.size = size
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed_key = seed_key
        self.position = 0
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        """Int[N]: the permutation of epoch ``epoch`` (the last two are kept)."""
        if epoch not in self._orders:
            if len(self._orders) >= 2:
                self._orders.pop(min(self._orders))
            self._orders[epoch] = np.random.default_rng([*self.seed_key, epoch]).permutation(self.size)
        return self._orders[epoch]

    def indices(self, start: int, count: int) -> np.ndarray:
        """Int[count]: rows at global positions ``start .. start + count - 1``."""
        epochs, offsets = np.divmod(np.arange(start, start + count), self.size)
        rows = np.empty(count, dtype=np.int64)
        for epoch in np.unique(epochs):
            here = epochs == epoch
            rows[here] = self._order(int(epoch))[offsets[here]]
        return rows

    def take(self) -> tuple[int, np.ndarray]:
        """This rank's next step: (global position of its first row, Int[batch_size] rows);
        advances ``position`` by one step of all ranks."""
        start = self.position + self.rank * self.batch_size
        rows = self.indices(start, self.batch_size)
        self.position += self.batch_size * self.world_size
        return start, rows
