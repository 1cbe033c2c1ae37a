"""The resumable, rank-sharded training stream of Sudoku batches."""

from __future__ import annotations

from typing import Any

import numpy as np

from components.batch import Batch
from components.tasks.base import DataStream
from components.tasks.sharding import ShardedOrder
from components.tasks.sudoku.augment import augment
from components.tasks.sudoku.puzzles import PuzzleSet, to_batch


class SudokuStream(DataStream):
    """Endless batches of one rank.

    The rows come from a :class:`ShardedOrder` over the training set (one global epoch-permuted
    sequence, sharded over ranks by position). With ``augment``, each batch gets random symmetry
    transforms seeded by (seed, its first position). The state is the global position of the next
    step, so a restored stream continues exactly.
    """

    def __init__(
        self, data: PuzzleSet, batch_size: int, *, rank: int, world_size: int, seed: int, augment: bool
    ):
        self.data = data
        self.seed = seed
        self.augment = augment
        self.order = ShardedOrder(
            len(data), batch_size, rank=rank, world_size=world_size, seed_key=(seed, 0), unit="training puzzles"
        )

    def __next__(self) -> Batch:
        start, rows = self.order.take()
        puzzles, solutions = self.data.puzzles[rows], self.data.solutions[rows]
        if self.augment:
            rng = np.random.default_rng([self.seed, 1, start])
            puzzles, solutions = augment(puzzles, solutions, self.data.size, rng)
        return to_batch(puzzles, solutions, self.data.size)

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.order.position, "puzzles": len(self.data)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["puzzles"]) != len(self.data):
            raise ValueError(
                f"stream state is for {state['puzzles']} training puzzles, this task has {len(self.data)}"
            )
        self.order.position = int(state["position"])
