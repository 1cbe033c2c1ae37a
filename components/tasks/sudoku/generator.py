"""Puzzle generators and difficulty tiers (pure Python, one puzzle per call).

Tiers are defined by the generator, not by the givens count (see reference/sudoku.md):

- ``easy``: Cordero's 2005 pluck (the generator behind the Kaggle 1M set), best of ``best_of``
  plucks of one full grid (5 reproduces Kaggle: 31-36 givens on 9x9; singles-solvable).
- ``medium``: random-order removal while naked + hidden singles still solve the puzzle, as far
  as it goes (about 22-28 givens on 9x9; singles-solvable but with long propagation chains).
- ``hard``: random-order removal while the solution stays unique (a minimal puzzle: blanking
  any given breaks uniqueness), kept only if the DFS needs >= ``min_guesses`` guesses.

On 4x4 no puzzle needs search (all of 5,000 generated minimal puzzles fell to naked singles
alone), so ``easy`` and ``medium`` keep their definitions (4-6 givens) and ``hard`` is the
analogue of "needs search": minimal puzzles whose synchronous naked-single propagation takes
>= ``HARD_4X4_MIN_ROUNDS`` rounds (62% of minimal puzzles).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from components.tasks.sudoku.grid import Geometry
from components.tasks.sudoku.solver import (
    has_other_solution,
    naked_single_rounds,
    singles_solvable,
    solve,
    solve_candidates,
)

Tier = Literal["easy", "medium", "hard"]
TIERS: tuple[Tier, ...] = ("easy", "medium", "hard")


def full_grid(geo: Geometry, rng: random.Random) -> list[int]:
    """A random complete grid: DFS with propagation, MRV cells, digits in random order."""
    grid = solve_candidates([geo.full] * geo.cells, geo, rng=rng).grid
    assert grid is not None  # the empty grid always has solutions
    return grid


def cordero_pluck(solution: list[int], geo: Geometry, rng: random.Random) -> list[int]:
    """One Cordero pluck: try each cell once in random order; blank it if its digit v stays a
    hidden single in at least one of its units, i.e. every other blank of that unit sees v among
    its peers (the tried cell counted as blank). Returns the puzzle (0 = blank)."""
    board = list(solution)
    units, cell_units = geo.units, geo.cell_units
    used = [geo.full] * len(units)  # digits present in each unit
    order = list(range(geo.cells))
    rng.shuffle(order)
    for c in order:
        bit = 1 << (board[c] - 1)
        mine = cell_units[c]
        for u in mine:
            used[u] ^= bit
        pluckable = False
        for u in mine:
            for e in units[u]:
                if e != c and not board[e]:
                    r, k, b = cell_units[e]
                    if not (used[r] | used[k] | used[b]) & bit:
                        break  # e could hold v, so this unit does not force it
            else:
                pluckable = True
                break
        if pluckable:
            board[c] = 0
        else:
            for u in mine:
                used[u] |= bit
    return board


def cordero_best_of(solution: list[int], geo: Geometry, rng: random.Random, k: int) -> list[int]:
    """The pluck with the fewest givens among ``k`` plucks of the same grid (first on ties)."""
    plucks = [cordero_pluck(solution, geo, rng) for _ in range(k)]
    return min(plucks, key=lambda p: sum(1 for d in p if d))


def singles_removal(solution: list[int], geo: Geometry, rng: random.Random) -> list[int]:
    """Blank cells in random order, each only if naked + hidden singles still solve the puzzle."""
    board = list(solution)
    order = list(range(geo.cells))
    rng.shuffle(order)
    for c in order:
        d, board[c] = board[c], 0
        if not singles_solvable(board, geo):
            board[c] = d
    return board


def minimal_removal(solution: list[int], geo: Geometry, rng: random.Random) -> list[int]:
    """Blank cells in random order, each only if the solution stays unique. One pass suffices:
    a given that could not be blanked never can later, so the result is minimal."""
    board = list(solution)
    order = list(range(geo.cells))
    rng.shuffle(order)
    for c in order:
        d, board[c] = board[c], 0
        if has_other_solution(board, geo, c, d):
            board[c] = d
    return board


@dataclass(frozen=True)
class Features:
    """Difficulty features of one puzzle.

    givens: number of clues; naked_rounds: synchronous naked-single rounds before none is
    forced; naked_solvable: naked singles alone fill the grid; singles_solvable: naked + hidden
    singles fill it; guesses: DFS guesses before the first solution (see solver.py)."""

    givens: int
    naked_rounds: int
    naked_solvable: bool
    singles_solvable: bool
    guesses: int


def features(puzzle: list[int], geo: Geometry) -> Features:
    """Compute :class:`Features` of a puzzle (0 = blank)."""
    rounds, naked = naked_single_rounds(puzzle, geo)
    return Features(
        givens=sum(1 for d in puzzle if d),
        naked_rounds=rounds,
        naked_solvable=naked,
        singles_solvable=singles_solvable(puzzle, geo),
        guesses=solve(puzzle, geo).guesses,
    )


MAX_HARD_ATTEMPTS = 10_000
HARD_4X4_MIN_ROUNDS = 4


def is_hard(feats: Features, size: int, min_guesses: int) -> bool:
    """The hard-tier filter on a minimal puzzle: >= ``min_guesses`` DFS guesses on 9x9, >=
    ``HARD_4X4_MIN_ROUNDS`` naked-single rounds on 4x4 (where no puzzle needs a guess)."""
    if size == 4:
        return feats.naked_rounds >= HARD_4X4_MIN_ROUNDS
    return feats.guesses >= min_guesses


def generate(
    tier: Tier, geo: Geometry, rng: random.Random, *, best_of: int = 5, min_guesses: int = 1
) -> tuple[list[int], list[int], Features]:
    """One (puzzle, solution, features) of ``tier``, each from a fresh random full grid.
    ``best_of`` is used by ``easy``, ``min_guesses`` by 9x9 ``hard``."""
    for _ in range(MAX_HARD_ATTEMPTS if tier == "hard" else 1):
        solution = full_grid(geo, rng)
        if tier == "easy":
            puzzle = cordero_best_of(solution, geo, rng, best_of)
        elif tier == "medium":
            puzzle = singles_removal(solution, geo, rng)
        else:
            puzzle = minimal_removal(solution, geo, rng)
        feats = features(puzzle, geo)
        if tier != "hard" or is_hard(feats, geo.size, min_guesses):
            return puzzle, solution, feats
    raise RuntimeError(
        f"no hard {geo.size}x{geo.size} puzzle (min_guesses={min_guesses}) in {MAX_HARD_ATTEMPTS} "
        "attempts; lower min_guesses"
    )

