"""Grid-level Sudoku metrics, vectorised over a batch (torch; CPU or GPU).

Inputs are Long[B, n*n] digit grids: predictions with 1..n per cell (0 where the model left no
digit, e.g. a mask token), puzzles with 0 for blanks, solutions with 1..n.
"""

from __future__ import annotations

import torch

from components.tasks.sudoku.grid import units_array


def tokens_to_digits(tokens: torch.Tensor, size: int) -> torch.Tensor:
    """Long[B, L] token ids -> digits: id t in [0, n) -> t + 1, anything else (mask) -> 0."""
    return torch.where((tokens >= 0) & (tokens < size), tokens + 1, 0)


def unit_violations(grid: torch.Tensor, size: int) -> torch.Tensor:
    """Long[B]: units (n rows, n columns, n boxes) whose digits are not exactly {1..n}, givens
    included; 0..3n (0..27 on 9x9). A cell without a digit violates its three units."""
    units = torch.as_tensor(units_array(size), device=grid.device)
    values = grid[:, units]  # [B, 3n, n]
    counts = torch.nn.functional.one_hot(values.clamp(0, size), size + 1)[..., 1:].sum(-2)
    return (counts != 1).any(-1).sum(-1)


def givens_kept(grid: torch.Tensor, puzzle: torch.Tensor) -> torch.Tensor:
    """Bool[B]: every given of the puzzle is unchanged in the grid."""
    return ((puzzle == 0) | (grid == puzzle)).all(-1)


def solved(grid: torch.Tensor, puzzle: torch.Tensor, size: int) -> torch.Tensor:
    """Bool[B]: the grid is a valid complete Sudoku and keeps the givens (for a uniquely
    solvable puzzle: it is the solution)."""
    return (unit_violations(grid, size) == 0) & givens_kept(grid, puzzle)


def unknown_cells_correct(grid: torch.Tensor, solution: torch.Tensor, puzzle: torch.Tensor) -> torch.Tensor:
    """Long[B]: cells blank in the puzzle that the grid fills with the solution digit."""
    return ((grid == solution) & (puzzle == 0)).sum(-1)


def summarize(
    grid: torch.Tensor, solution: torch.Tensor, puzzle: torch.Tensor, size: int
) -> dict[str, float]:
    """Batch means: puzzle_accuracy (fraction :func:`solved`), cell_accuracy (correct unknown
    cells / all unknown cells, pooled over the batch), violations (mean
    :func:`unit_violations`), violated_fraction (puzzles with >= 1 violation)."""
    violations = unit_violations(grid, size)
    unknown = (puzzle == 0).sum()
    return {
        "puzzle_accuracy": solved(grid, puzzle, size).float().mean().item(),
        "cell_accuracy": (unknown_cells_correct(grid, solution, puzzle).sum() / unknown.clamp(min=1)).item(),
        "violations": violations.float().mean().item(),
        "violated_fraction": (violations > 0).float().mean().item(),
    }
