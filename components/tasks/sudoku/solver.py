"""Exact solver: bitmask candidates, naked + hidden singles propagation, DFS with MRV.

Candidates are a list of n*n ints, bit d - 1 set when digit d is still possible in the cell.
Grids are sequences of n*n ints (0 = blank). "Guesses" are the DFS branch assignments tried
before the first solution is found (cells chosen by fewest candidates, first such cell in
row-major order, digits ascending); 0 guesses <=> solvable by naked and hidden singles alone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from components.tasks.sudoku.grid import Geometry


def candidates(grid: Sequence[int], geo: Geometry) -> list[int]:
    """Unpropagated candidates: the given digit's bit at givens, all digits at blanks."""
    full = geo.full
    return [1 << (d - 1) if d else full for d in grid]


def propagate(cand: list[int], geo: Geometry) -> bool:
    """Apply naked and hidden singles in place until nothing changes.

    Returns False when a contradiction shows (a cell without candidates, a digit without a
    place in a unit, a unit needing two digits in one cell); ``cand`` is then garbage."""
    peers, units, full = geo.peers, geo.units, geo.full
    queue = []
    for c, m in enumerate(cand):
        if not m:
            return False
        if not m & (m - 1):
            queue.append(c)
    while True:
        while queue:
            c = queue.pop()
            bit = cand[c]
            for p in peers[c]:
                m = cand[p]
                if m & bit:
                    m ^= bit
                    if not m:
                        return False
                    cand[p] = m
                    if not m & (m - 1):
                        queue.append(p)
        for unit in units:
            once = twice = solved = 0
            for c in unit:
                m = cand[c]
                twice |= once & m
                once |= m
                if not m & (m - 1):
                    solved |= m
            if once != full:
                return False
            hidden = once & ~twice & ~solved
            if hidden:
                for c in unit:
                    m = cand[c]
                    h = m & hidden
                    if h and h != m:
                        if h & (h - 1):
                            return False
                        cand[c] = h
                        queue.append(c)
        if not queue:
            return True


def is_solved(cand: list[int]) -> bool:
    """Every cell has exactly one candidate."""
    return all(not m & (m - 1) for m in cand)


def to_grid(cand: list[int]) -> list[int]:
    """Digits of fully solved candidates."""
    return [m.bit_length() for m in cand]


def singles_solvable(grid: Sequence[int], geo: Geometry) -> bool:
    """Naked and hidden singles alone fill the whole grid (this implies a unique solution)."""
    cand = candidates(grid, geo)
    return propagate(cand, geo) and is_solved(cand)


def naked_single_rounds(grid: Sequence[int], geo: Geometry) -> tuple[int, bool]:
    """Synchronous naked-single rounds: each round fills, at once, every blank whose row, column
    and box leave one digit. Returns (rounds until no blank is forced, whether the grid is full)."""
    board = list(grid)
    units, cell_units, full = geo.units, geo.cell_units, geo.full
    rounds = 0
    while True:
        used = [0] * len(units)
        for u, unit in enumerate(units):
            for c in unit:
                if board[c]:
                    used[u] |= 1 << (board[c] - 1)
        fills = []
        for c, d in enumerate(board):
            if not d:
                r, k, b = cell_units[c]
                m = full & ~(used[r] | used[k] | used[b])
                if m and not m & (m - 1):
                    fills.append((c, m.bit_length()))
        if not fills:
            return rounds, all(board)
        for c, d in fills:
            board[c] = d
        rounds += 1


@dataclass
class _Search:
    limit: int
    rng: random.Random | None
    found: int = 0
    guesses: int = 0
    first: list[int] | None = None


def _search(cand: list[int], geo: Geometry, state: _Search) -> None:
    if not propagate(cand, geo):
        return
    best, best_count = -1, geo.size + 1
    for c, m in enumerate(cand):
        if m & (m - 1):
            k = m.bit_count()
            if k < best_count:
                best, best_count = c, k
                if k == 2:
                    break
    if best < 0:
        state.found += 1
        if state.first is None:
            state.first = to_grid(cand)
        return
    m = cand[best]
    bits = [1 << i for i in range(geo.size) if m >> i & 1]
    if state.rng is not None:
        state.rng.shuffle(bits)
    for bit in bits:
        if state.first is None:
            state.guesses += 1
        child = cand.copy()
        child[best] = bit
        _search(child, geo, state)
        if state.found >= state.limit:
            return


@dataclass(frozen=True)
class Solution:
    """grid: the first solution found (None if there is none); guesses: DFS assignments tried
    before it; count: solutions found, capped at the search limit."""

    grid: list[int] | None
    guesses: int
    count: int


def solve(
    grid: Sequence[int], geo: Geometry, *, limit: int = 1, rng: random.Random | None = None
) -> Solution:
    """Search for up to ``limit`` solutions of ``grid`` (n*n digits, 0 = blank). ``rng`` shuffles
    the digit order at each branch (used to draw random full grids)."""
    return solve_candidates(candidates(grid, geo), geo, limit=limit, rng=rng)


def solve_candidates(
    cand: list[int], geo: Geometry, *, limit: int = 1, rng: random.Random | None = None
) -> Solution:
    """Like :func:`solve` from candidate masks (consumed)."""
    state = _Search(limit=limit, rng=rng)
    _search(cand, geo, state)
    return Solution(state.first, state.guesses, state.found)


def count_solutions(grid: Sequence[int], geo: Geometry, limit: int = 2) -> int:
    """Number of solutions, counted up to ``limit`` (2 answers "unique or not")."""
    return solve(grid, geo, limit=limit).count


def has_other_solution(grid: Sequence[int], geo: Geometry, cell: int, digit: int) -> bool:
    """Whether ``grid`` has a solution with ``cell`` != ``digit``. If grid + (cell = digit) has a
    unique solution, this is exactly "blanking ``cell`` breaks uniqueness"."""
    cand = candidates(grid, geo)
    cand[cell] &= ~(1 << (digit - 1))
    return solve_candidates(cand, geo).count > 0
