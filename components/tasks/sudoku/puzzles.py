"""The in-memory puzzle collection every data source produces (generated sets, external files)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from components.batch import Batch
from components.tasks.sudoku.grid import texts_to_array


@dataclass(frozen=True)
class PuzzleSet:
    """N puzzles of one size with their unique solutions.

    Attributes:
        size: n (4 or 9).
        puzzles: UInt8[N, n*n] digits, 0 = blank.
        solutions: UInt8[N, n*n] digits 1..n, equal to ``puzzles`` wherever that is non-zero.
    """

    size: int
    puzzles: np.ndarray
    solutions: np.ndarray

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, size: int) -> "PuzzleSet":
        """From a frame with string columns ``puzzle`` and ``solution`` (n*n chars, ``0`` blank)."""
        return cls(
            size,
            texts_to_array(frame["puzzle"].to_list(), size),
            texts_to_array(frame["solution"].to_list(), size),
        )

    def __len__(self) -> int:
        return len(self.puzzles)

    def take(self, index: np.ndarray | slice) -> "PuzzleSet":
        """Rows selected by an index array, boolean mask or slice."""
        return PuzzleSet(self.size, self.puzzles[index], self.solutions[index])


def to_batch(puzzles: np.ndarray, solutions: np.ndarray, size: int) -> Batch:
    """Batch with x0 = solution tokens (digit d -> d - 1), Long[B, n*n], and fixed = givens.
    Where ``solutions`` holds 0 (an unknown cell of a puzzle given without its answer) the token
    is the mask id n."""
    digits = torch.from_numpy(solutions.astype(np.int64))
    x0 = torch.where(digits > 0, digits - 1, size)
    return Batch(x0=x0, fixed=torch.from_numpy(puzzles > 0))
