"""Sudoku geometry and the grid encodings shared by the generator, files, metrics and task.

A grid of size n (4 or 9; boxes of sqrt(n) x sqrt(n)) is n*n cells in row-major order.
Digit grids hold 0 for a blank and 1..n for a digit; as text, blanks are ``0`` (``.`` is also
read). Token ids: digit d -> d - 1, blank -> the mask id n, so the vocabulary is n + 1.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

SIZES = (4, 9)


@dataclass(frozen=True)
class Geometry:
    """Index tables of one grid size.

    Attributes:
        size: n, digits per unit.
        box: sqrt(n), box side in cells.
        cells: n*n.
        units: 3n tuples of n cell indices: n rows, then n columns, then n boxes.
        cell_units: per cell, its (row, column, box) unit indices.
        peers: per cell, the other cells sharing a unit with it (20 on 9x9, 7 on 4x4).
        full: candidate bitmask with all n digits (bit d - 1 stands for digit d).
    """

    size: int
    box: int
    cells: int
    units: tuple[tuple[int, ...], ...]
    cell_units: tuple[tuple[int, int, int], ...]
    peers: tuple[tuple[int, ...], ...]
    full: int


@functools.cache
def geometry(size: int) -> Geometry:
    """The (cached) index tables of an n x n grid; n must be 4 or 9."""
    if size not in SIZES:
        raise ValueError(f"sudoku size must be one of {SIZES}, got {size}")
    box = math.isqrt(size)
    rows = [tuple(r * size + c for c in range(size)) for r in range(size)]
    cols = [tuple(r * size + c for r in range(size)) for c in range(size)]
    boxes = [
        tuple((br * box + i) * size + bc * box + j for i in range(box) for j in range(box))
        for br in range(box)
        for bc in range(box)
    ]
    units = tuple(rows + cols + boxes)
    cell_units = tuple(
        (c // size, size + c % size, 2 * size + (c // size // box) * box + (c % size) // box)
        for c in range(size * size)
    )
    peers = tuple(
        tuple(sorted({p for u in cell_units[c] for p in units[u]} - {c})) for c in range(size * size)
    )
    return Geometry(size, box, size * size, units, cell_units, peers, (1 << size) - 1)


def units_array(size: int) -> np.ndarray:
    """Int64[3n, n]: cell indices of every row, column and box."""
    return np.asarray(geometry(size).units, dtype=np.int64)


def to_text(grid: np.ndarray | list[int]) -> str:
    """One digit grid (0..n per cell) as its n*n-character string, ``0`` for blanks."""
    return "".join(str(int(d)) for d in grid)


def texts_to_array(texts: list[str], size: int) -> np.ndarray:
    """UInt8[N, n*n] digit grids from N strings of n*n characters ``0``-``n`` (already checked)."""
    cells = size * size
    if not texts:
        return np.zeros((0, cells), dtype=np.uint8)
    flat = np.frombuffer("".join(texts).encode("ascii"), dtype=np.uint8) - ord("0")
    return flat.reshape(len(texts), cells)


def array_to_texts(grids: np.ndarray) -> list[str]:
    """Inverse of :func:`texts_to_array` for UInt8[N, n*n] grids with digits 0..9."""
    data = (np.ascontiguousarray(grids, dtype=np.uint8) + ord("0")).tobytes().decode("ascii")
    width = grids.shape[1]
    return [data[i : i + width] for i in range(0, len(data), width)]


def is_solution(grid: np.ndarray, size: int) -> np.ndarray:
    """Bool[N]: each row of Int[N, n*n] is a complete valid grid (every unit holds 1..n once)."""
    values = np.asarray(grid, dtype=np.int64)[:, units_array(size)]  # [N, 3n, n]
    return (np.sort(values, axis=-1) == np.arange(1, size + 1)).all(axis=(1, 2))
