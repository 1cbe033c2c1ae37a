"""Generator tiers, augmentation and the train/eval split, checked by an independent solver.

The brute-force helpers below share no code with components.tasks.sudoku (sets instead of
bitmasks, no hidden-single sweeps, no canonicalisation tables).
"""

from __future__ import annotations

import functools
import itertools
import math
import random

import numpy as np
import pytest

from components.tasks.sudoku.augment import augment
from components.tasks.sudoku.dataset import SetKey, generate_frame
from components.tasks.sudoku.generator import cordero_pluck, generate
from components.tasks.sudoku.grid import geometry
from components.tasks.sudoku.puzzles import PuzzleSet
from components.tasks.sudoku.split import drop_leaks

# ----------------------------------------------------------------------------- independent helpers


@functools.cache
def _units(n: int) -> list[list[int]]:
    b = math.isqrt(n)
    rows = [[r * n + c for c in range(n)] for r in range(n)]
    cols = [[r * n + c for r in range(n)] for c in range(n)]
    boxes = [
        [(br + i) * n + bc + j for i in range(b) for j in range(b)]
        for br in range(0, n, b)
        for bc in range(0, n, b)
    ]
    return rows + cols + boxes


@functools.cache
def _peers(n: int, cell: int) -> frozenset[int]:
    return frozenset(c for u in _units(n) if cell in u for c in u) - {cell}


def _allowed(grid: list[int], cell: int, n: int) -> set[int]:
    return set(range(1, n + 1)) - {grid[c] for c in _peers(n, cell)}


def brute_count(grid: list[int], n: int, limit: int = 2) -> int:
    """Solutions of ``grid`` (0 = blank) up to ``limit``: backtracking on the most constrained
    blank, candidates recomputed from scratch."""
    blanks = [c for c in range(n * n) if not grid[c]]
    if not blanks:
        return 1
    options = {c: _allowed(grid, c, n) for c in blanks}
    cell = min(blanks, key=lambda c: len(options[c]))
    total = 0
    for d in sorted(options[cell]):
        grid[cell] = d
        total += brute_count(grid, n, limit - total)
        grid[cell] = 0
        if total >= limit:
            break
    return total


def valid_solution(grid: list[int], n: int) -> bool:
    return all(sorted(grid[c] for c in u) == list(range(1, n + 1)) for u in _units(n))


def singles_only(grid: list[int], n: int) -> bool:
    """Fill naked singles (one digit fits a cell) and hidden singles (a digit fits one cell of a
    unit) until stuck; True if the grid fills."""
    g = list(grid)
    progress = True
    while progress:
        progress = False
        for c in range(n * n):
            if not g[c]:
                options = _allowed(g, c, n)
                if len(options) == 1:
                    g[c] = options.pop()
                    progress = True
        for u in _units(n):
            for d in range(1, n + 1):
                if d in (g[c] for c in u):
                    continue
                spots = [c for c in u if not g[c] and d in _allowed(g, c, n)]
                if len(spots) == 1:
                    g[spots[0]] = d
                    progress = True
    return all(g)


def naked_rounds(grid: list[int], n: int) -> int:
    g, rounds = list(grid), 0
    while True:
        fills = {c: _allowed(g, c, n) for c in range(n * n) if not g[c]}
        fills = {c: opts.pop() for c, opts in fills.items() if len(opts) == 1}
        if not fills:
            return rounds
        for c, d in fills.items():
            g[c] = d
        rounds += 1


def canonical(puzzle: list[int], n: int) -> tuple[int, ...]:
    """Smallest transformed puzzle over the whole group (4x4: 128 layouts x relabelling)."""
    b = math.isqrt(n)
    line_orders = [
        [band * b + i for band, inner in zip(bands, inners) for i in inner]
        for bands in itertools.permutations(range(b))
        for inners in itertools.product(itertools.permutations(range(b)), repeat=b)
    ]
    best = None
    for rows in line_orders:
        for cols in line_orders:
            for flip in (False, True):
                cells = [
                    puzzle[(cols[j] * n + rows[i]) if flip else (rows[i] * n + cols[j])]
                    for i in range(n)
                    for j in range(n)
                ]
                labels: dict[int, int] = {}
                for d in cells:
                    if d and d not in labels:
                        labels[d] = len(labels) + 1
                code = tuple(labels.get(d, 0) for d in cells)
                best = code if best is None or code < best else best
    return best


def is_minimal(puzzle: list[int], n: int) -> bool:
    return all(
        brute_count([0 if c == i else d for c, d in enumerate(puzzle)], n) >= 2
        for i, d in enumerate(puzzle)
        if d
    )


# ----------------------------------------------------------------------------- generator


def _sample(tier: str, n: int, count: int, seed: int = 0, **kw: int) -> list[tuple[list[int], list[int], object]]:
    rng = random.Random(seed)
    return [generate(tier, geometry(n), rng, **kw) for _ in range(count)]


def test_easy_9x9_is_kaggle_like():
    puzzles = _sample("easy", 9, 12)
    givens = [f.givens for _, _, f in puzzles]
    assert all(31 <= g <= 36 for g in givens), givens
    for puzzle, solution, feats in puzzles:
        assert valid_solution(solution, 9)
        assert all(p in (0, s) for p, s in zip(puzzle, solution))
        assert singles_only(puzzle, 9) and feats.singles_solvable and feats.guesses == 0
        assert brute_count(list(puzzle), 9) == 1


def test_medium_9x9_singles_solvable_and_sparser():
    for puzzle, solution, feats in _sample("medium", 9, 3, seed=1):
        assert singles_only(puzzle, 9)
        assert brute_count(list(puzzle), 9) == 1
        assert feats.givens <= 30  # far below easy's 31-36
        assert feats.naked_rounds == naked_rounds(puzzle, 9)


def test_hard_9x9_needs_search_and_is_minimal():
    (puzzle, solution, feats), = _sample("hard", 9, 1, seed=2, min_guesses=2)
    assert feats.guesses >= 2
    assert not singles_only(puzzle, 9)
    assert brute_count(list(puzzle), 9) == 1
    assert is_minimal(puzzle, 9)


@pytest.mark.parametrize("tier", ["easy", "medium", "hard"])
def test_4x4_tiers(tier):
    for puzzle, solution, feats in _sample(tier, 4, 25, seed=3):
        assert valid_solution(solution, 4)
        assert all(p in (0, s) for p, s in zip(puzzle, solution))
        assert brute_count(list(puzzle), 4) == 1
        assert singles_only(puzzle, 4)
        assert feats.givens == sum(1 for d in puzzle if d)
        assert feats.naked_rounds == naked_rounds(puzzle, 4)
        if tier != "easy":
            assert feats.givens <= 6
        if tier == "hard":
            assert is_minimal(puzzle, 4) and feats.naked_rounds >= 4


def reference_pluck(solution: list[int], n: int, order: list[int]) -> list[int]:
    """The pluck rule as stated in reference/sudoku.md, cell by cell in ``order``."""
    board = list(solution)
    for cell in order:
        v = board[cell]
        board[cell] = 0
        forced_somewhere = any(
            all(v in {board[p] for p in _peers(n, other)} for other in unit if other != cell and not board[other])
            for unit in _units(n)
            if cell in unit
        )
        if not forced_somewhere:
            board[cell] = v
    return board


@pytest.mark.parametrize("n", [4, 9])
def test_cordero_pluck_follows_the_published_rule(n):
    geo = geometry(n)
    for seed in range(3):
        solution = generate("easy", geo, random.Random(seed))[1]
        order = list(range(n * n))
        random.Random(seed).shuffle(order)  # cordero_pluck's only use of its rng
        assert cordero_pluck(solution, geo, random.Random(seed)) == reference_pluck(solution, n, order)


# ----------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("n", [4, 9])
def test_augmentation_keeps_pairs_valid_and_consistent(n):
    rows = _sample("easy", n, 6, seed=6)
    puzzles = np.array([p for p, _, _ in rows], dtype=np.uint8)
    solutions = np.array([s for _, s, _ in rows], dtype=np.uint8)
    new_p, new_s = augment(puzzles, solutions, n, np.random.default_rng(0))
    assert not np.array_equal(new_s, solutions)
    for p0, p, s in zip(puzzles, new_p, new_s):
        p, s = p.tolist(), s.tolist()
        assert valid_solution(s, n)
        assert all(d in (0, t) for d, t in zip(p, s))
        assert sum(1 for d in p if d) == int((p0 > 0).sum())
        if n == 4:
            assert brute_count(list(p), n) == 1
            assert canonical(p, n) == canonical(p0.tolist(), n)
    # the same generator seed gives the same transforms
    again = augment(puzzles, solutions, n, np.random.default_rng(0))
    assert np.array_equal(again[0], new_p) and np.array_equal(again[1], new_s)


# ----------------------------------------------------------------------------- split


def _set(frame, n: int) -> PuzzleSet:
    return PuzzleSet.from_frame(frame, n)


def test_4x4_train_and_eval_are_inequivalent_even_after_augmentation():
    train = _set(generate_frame(SetKey("train", "easy", 4, 150, 0), workers=1, progress=False), 4)
    held = _set(generate_frame(SetKey("eval", "easy", 4, 60, 0), workers=1, progress=False), 4)
    eval_classes = {canonical(p.tolist(), 4) for p in held.puzzles}
    train_classes = {canonical(p.tolist(), 4) for p in train.puzzles}
    assert not eval_classes & train_classes
    aug, _ = augment(train.puzzles, train.solutions, 4, np.random.default_rng(1))
    assert not {canonical(p.tolist(), 4) for p in aug} & eval_classes
    # transformed eval puzzles slipped into a training file are dropped
    leaked_p, leaked_s = augment(held.puzzles[:5], held.solutions[:5], 4, np.random.default_rng(2))
    mixed = PuzzleSet(4, np.concatenate([train.puzzles, leaked_p]), np.concatenate([train.solutions, leaked_s]))
    assert len(drop_leaks(mixed, [held])) == len(train)


def test_9x9_train_and_eval_share_no_base_grid():
    train = _set(generate_frame(SetKey("train", "easy", 9, 40, 0), workers=1, progress=False), 9)
    held = _set(generate_frame(SetKey("eval", "easy", 9, 20, 0), workers=1, progress=False), 9)
    assert not {s.tobytes() for s in train.solutions} & {s.tobytes() for s in held.solutions}
    mixed = PuzzleSet(9, np.concatenate([train.puzzles, held.puzzles[:3]]), np.concatenate([train.solutions, held.solutions[:3]]))
    assert len(drop_leaks(mixed, [held])) == len(train)
