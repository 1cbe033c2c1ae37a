"""Train/eval separation by base, decided before any augmentation.

A puzzle's base is what augmentation cannot change:

- 9x9: its solution grid. Train and eval sets are drawn from independent seed streams, so they
  share no grid (random grids collide with probability ~1e-21); :func:`drop_leaks` removes any
  exact repeat (external files).
- 4x4: its symmetry class (:func:`~components.tasks.sudoku.augment.canonical_codes`). There are
  only 288 full grids and few puzzle classes (measured eval/train classes: easy 41/37, medium
  15/21, hard 5/13), so every 4x4 base belongs to a fixed side by a hash of its class
  (:func:`on_eval_side`, half of the classes to eval) and each split is generated from its own
  side only; an eval puzzle is then never a transform of a training puzzle.
"""

from __future__ import annotations

import zlib

import numpy as np

from components.tasks.sudoku.augment import canonical_codes
from components.tasks.sudoku.puzzles import PuzzleSet

EVAL_SHARE_PERCENT = 50


def base_keys(puzzles: np.ndarray, solutions: np.ndarray, size: int) -> np.ndarray:
    """One key per row of UInt8[N, L] puzzles/solutions: Int64 class codes of the puzzles on
    4x4, the solution bytes (``S81``) on 9x9."""
    if size == 4:
        return canonical_codes(puzzles, size)
    return np.ascontiguousarray(solutions, dtype=np.uint8).view(f"S{solutions.shape[1]}")[:, 0]


def on_eval_side(keys: np.ndarray) -> np.ndarray:
    """Bool[N]: the base belongs to the eval side of the fixed partition (crc32 of the key)."""
    return np.array(
        [zlib.crc32(np.asarray(k).tobytes()) % 100 < EVAL_SHARE_PERCENT for k in keys], dtype=bool
    )


def drop_leaks(train: PuzzleSet, evals: list[PuzzleSet]) -> PuzzleSet:
    """``train`` without rows whose base occurs in any eval set."""
    if not evals:
        return train
    held = np.concatenate([base_keys(e.puzzles, e.solutions, e.size) for e in evals])
    keys = base_keys(train.puzzles, train.solutions, train.size)
    return train.take(~np.isin(keys, held))
