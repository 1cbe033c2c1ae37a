"""Sudoku metrics on hand-made 9x9 grids with hand-counted answers."""

from __future__ import annotations

import pytest
import torch

from components.tasks.sudoku.metrics import (
    givens_kept,
    solved,
    summarize,
    tokens_to_digits,
    unit_violations,
    unknown_cells_correct,
)

SOLVED = (
    "534678912"
    "672195348"
    "198342567"
    "859761423"
    "426853791"
    "713924856"
    "961537284"
    "287419635"
    "345286179"
)


def grid(text: str) -> torch.Tensor:
    return torch.tensor([[int(ch) for ch in text]])


def swap(text: str, a: int, b: int) -> str:
    cells = list(text)
    cells[a], cells[b] = cells[b], cells[a]
    return "".join(cells)


def test_solved_grid_has_no_violations():
    g = grid(SOLVED)
    assert unit_violations(g, 9).tolist() == [0]
    assert solved(g, g, 9).tolist() == [True]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (0, 3, 4),  # same row, different boxes: rows fine, 2 columns + 2 boxes broken
        (0, 1, 2),  # same row and box: only the 2 columns break
        (0, 9, 2),  # same column and box: only the 2 rows break
        (0, 80, 6),  # nothing shared: 2 rows, 2 columns, 2 boxes
    ],
)
def test_single_swap_counts_exact_violations(a, b, expected):
    assert unit_violations(grid(swap(SOLVED, a, b)), 9).tolist() == [expected]


def test_missing_digit_breaks_its_three_units():
    holed = "0" + SOLVED[1:]
    assert unit_violations(grid(holed), 9).tolist() == [3]


def test_valid_grid_that_ignores_the_givens_is_not_solved():
    puzzle = grid("5" + "0" * 80)
    relabelled = grid(SOLVED.translate(str.maketrans("123456789", "234567891")))  # valid, first cell 6
    assert unit_violations(relabelled, 9).tolist() == [0]
    assert givens_kept(relabelled, puzzle).tolist() == [False]
    assert solved(relabelled, puzzle, 9).tolist() == [False]
    assert solved(grid(SOLVED), puzzle, 9).tolist() == [True]


def test_summary_on_a_batch():
    solution = grid(SOLVED).repeat(3, 1)
    puzzle = solution.clone()
    puzzle[:, :10] = 0  # 10 unknown cells each
    pred = solution.clone()
    pred[1] = grid(swap(SOLVED, 0, 3))  # 2 unknown cells wrong, 4 violations
    pred[2, 5] = 0  # one unknown cell left empty: 9 right, 3 violations
    assert unknown_cells_correct(pred, solution, puzzle).tolist() == [10, 8, 9]
    out = summarize(pred, solution, puzzle, 9)
    assert out["puzzle_accuracy"] == pytest.approx(1 / 3)
    assert out["cell_accuracy"] == pytest.approx(27 / 30)
    assert out["violations"] == pytest.approx(7 / 3)
    assert out["violated_fraction"] == pytest.approx(2 / 3)


def test_tokens_to_digits_maps_mask_to_no_digit():
    tokens = torch.tensor([[0, 8, 9, 4]])
    assert tokens_to_digits(tokens, 9).tolist() == [[1, 9, 0, 5]]
