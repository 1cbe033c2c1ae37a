"""The resumable, rank-sharded training stream of Sudoku batches."""

from __future__ import annotations

from typing import Any

import numpy as np

from components.batch import Batch
from components.tasks.base import DataStream
from components.tasks.sudoku.augment import augment
from components.tasks.sudoku.puzzles import PuzzleSet, to_batch


class SudokuStream(DataStream):
    """Endless batches of one rank.

    All ranks read one global sequence: the training set in a fresh seeded permutation per
    epoch, repeated forever. Step s of rank r takes the ``batch_size`` positions starting at
    ``(s * world_size + r) * batch_size``, so ranks never read the same position. With
    ``augment``, each batch gets random symmetry transforms seeded by (seed, its first position).
    The state is the global position of the next step, so a restored stream continues exactly.
    """

    def __init__(
        self, data: PuzzleSet, batch_size: int, *, rank: int, world_size: int, seed: int, augment: bool
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        if batch_size < 1 or len(data) == 0:
            raise ValueError(f"need batch_size >= 1 and training puzzles (got {batch_size}, {len(data)})")
        self.data = data
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.augment = augment
        self.position = 0
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        """Int[N]: the permutation of epoch ``epoch`` (the last two are kept)."""
        if epoch not in self._orders:
            if len(self._orders) >= 2:
                self._orders.pop(min(self._orders))
            self._orders[epoch] = np.random.default_rng([self.seed, 0, epoch]).permutation(len(self.data))
        return self._orders[epoch]

    def indices(self, start: int, count: int) -> np.ndarray:
        """Int[count]: training-set rows at global positions ``start .. start + count - 1``."""
        positions = np.arange(start, start + count)
        epochs, offsets = np.divmod(positions, len(self.data))
        rows = np.empty(count, dtype=np.int64)
        for epoch in np.unique(epochs):
            here = epochs == epoch
            rows[here] = self._order(int(epoch))[offsets[here]]
        return rows

    def __next__(self) -> Batch:
        start = self.position + self.rank * self.batch_size
        rows = self.indices(start, self.batch_size)
        puzzles, solutions = self.data.puzzles[rows], self.data.solutions[rows]
        if self.augment:
            rng = np.random.default_rng([self.seed, 1, start])
            puzzles, solutions = augment(puzzles, solutions, self.data.size, rng)
        self.position += self.batch_size * self.world_size
        return to_batch(puzzles, solutions, self.data.size)

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "puzzles": len(self.data)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["puzzles"]) != len(self.data):
            raise ValueError(
                f"stream state is for {state['puzzles']} training puzzles, this task has {len(self.data)}"
            )
        self.position = int(state["position"])
