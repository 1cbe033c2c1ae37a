"""The validity-preserving symmetry group of Sudoku: random transforms and (4x4) canonical forms.

Transforms: digit relabelling, band (stack) permutations, row (column) permutations within each
band (stack), and transpose. A transform is one cell permutation Int[L] (``out[i] =
grid[perm[i]]``) plus one digit map Int[n + 1] (``0 -> 0`` keeps blanks blank), so a puzzle and
its solution transformed with the same pair stay a consistent, uniquely solvable pair.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np


def _line_perms(bands: np.ndarray, within: np.ndarray, box: int) -> np.ndarray:
    """Int[..., n] line order: output line i comes from band ``bands[i // box]``, line
    ``within[i // box, i % box]`` of it. bands: Int[..., box]; within: Int[..., box, box]."""
    return (bands[..., :, None] * box + np.take_along_axis(within, bands[..., :, None], -2)).reshape(
        *bands.shape[:-1], box * box
    )


def _cell_perms(rows: np.ndarray, cols: np.ndarray, transpose: np.ndarray, size: int) -> np.ndarray:
    """Int[B, n*n] from row orders Int[B, n], column orders Int[B, n], transpose Bool[B]."""
    perm = rows[:, :, None] * size + cols[:, None, :]  # [B, n, n]
    perm = np.where(transpose[:, None, None], perm.transpose(0, 2, 1), perm)
    return perm.reshape(len(perm), size * size)


def random_transforms(rng: np.random.Generator, count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` uniformly random group elements: cell permutations Int[B, n*n] and digit maps
    Int[B, n + 1]."""
    box = math.isqrt(size)

    def perms(*shape: int) -> np.ndarray:
        return rng.random(shape).argsort(-1)

    rows = _line_perms(perms(count, box), perms(count, box, box), box)
    cols = _line_perms(perms(count, box), perms(count, box, box), box)
    transpose = rng.random(count) < 0.5
    digits = np.concatenate([np.zeros((count, 1), dtype=np.int64), perms(count, size) + 1], axis=1)
    return _cell_perms(rows, cols, transpose, size), digits


def apply_transforms(grids: np.ndarray, cells: np.ndarray, digits: np.ndarray) -> np.ndarray:
    """Transform each of UInt8[B, L] digit grids (0 = blank) by its own (cells, digits) pair."""
    moved = np.take_along_axis(grids.astype(np.int64), cells, axis=1)
    return np.take_along_axis(digits, moved, axis=1).astype(grids.dtype)


def augment(
    puzzles: np.ndarray, solutions: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Apply one random transform per pair to UInt8[B, L] puzzles and their solutions."""
    cells, digits = random_transforms(rng, len(puzzles), size)
    return apply_transforms(puzzles, cells, digits), apply_transforms(solutions, cells, digits)


@functools.cache
def geometric_transforms(size: int) -> np.ndarray:
    """Int[T, n*n]: every cell permutation of the group (T = 128 on 4x4; cached, do not modify).
    9x9 has 3.4M and is refused (compare 9x9 grids by exact string instead)."""
    if size != 4:
        raise ValueError("the full transform list is only enumerated for 4x4 grids")
    box = math.isqrt(size)
    line_orders = [
        _line_perms(np.array(bands), np.array(within), box)
        for bands in itertools.permutations(range(box))
        for within in itertools.product(itertools.permutations(range(box)), repeat=box)
    ]
    combos = list(itertools.product(line_orders, line_orders, (False, True)))
    rows = np.stack([r for r, _, _ in combos])
    cols = np.stack([c for _, c, _ in combos])
    transpose = np.array([t for _, _, t in combos])
    return _cell_perms(rows, cols, transpose, size)


CANONICAL_CHUNK = 1024  # grids per vectorised block (~50 MB of intermediates)


def canonical_codes(grids: np.ndarray, size: int) -> np.ndarray:
    """Int64[N]: a code equal for two grids (UInt8[N, L], 0 = blank) iff one transforms into the
    other: the lexicographically smallest transformed grid, digits relabelled in order of first
    appearance, read as a base-(n + 1) number. 4x4 only."""
    if len(grids) > CANONICAL_CHUNK:
        starts = range(0, len(grids), CANONICAL_CHUNK)
        return np.concatenate([canonical_codes(grids[i : i + CANONICAL_CHUNK], size) for i in starts])
    perms = geometric_transforms(size)
    moved = grids.astype(np.int64)[:, perms]  # [N, T, L]
    cells = grids.shape[1]
    present = moved[..., None] == np.arange(1, size + 1)  # [N, T, L, n]
    first = np.where(present.any(2), present.argmax(2), cells)  # [N, T, n]
    rank = first.argsort(-1, kind="stable").argsort(-1) + 1
    mapping = np.concatenate([np.zeros((*rank.shape[:-1], 1), dtype=np.int64), rank], axis=-1)
    relabelled = np.take_along_axis(mapping, moved, axis=-1)
    weights = (size + 1) ** np.arange(cells - 1, -1, -1, dtype=np.int64)
    return (relabelled * weights).sum(-1).min(1)
