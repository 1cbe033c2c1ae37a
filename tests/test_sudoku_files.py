"""External puzzle files: Kaggle and sudoku-extreme formats, rating filter, malformed rows."""

from __future__ import annotations

import polars as pl
import pytest

from components.tasks.sudoku.files import PuzzleFileError, load_puzzle_file

SOLUTION = (
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
QUIZ = "".join(d if i % 3 == 0 else "0" for i, d in enumerate(SOLUTION))
SOLUTION_4 = "1234341221434321"
QUIZ_4 = "".join(d if i in (0, 6, 11, 13) else "0" for i, d in enumerate(SOLUTION_4))


def write_csv(path, header: str, rows: list[str]) -> None:
    path.write_text("\n".join([header, *rows]) + "\n")


def test_kaggle_csv_loads(tmp_path):
    path = tmp_path / "kaggle.csv"
    write_csv(path, "quizzes,solutions", [f"{QUIZ},{SOLUTION}"] * 3)
    data = load_puzzle_file(path, 9)
    assert len(data) == 3 and data.size == 9
    assert "".join(map(str, data.puzzles[0])) == QUIZ
    assert "".join(map(str, data.solutions[2])) == SOLUTION


def test_extreme_csv_with_dots_and_rating_filter(tmp_path):
    path = tmp_path / "extreme.csv"
    dotted = QUIZ.replace("0", ".")
    write_csv(
        path,
        "source,question,answer,rating",
        [f"a,{dotted},{SOLUTION},0", f"b,{dotted},{SOLUTION},51", f"c,{dotted},{SOLUTION},50", f"d,{dotted},{SOLUTION},120"],
    )
    assert len(load_puzzle_file(path, 9)) == 4
    hard = load_puzzle_file(path, 9, rating_min=51)
    assert len(hard) == 2
    assert "".join(map(str, hard.puzzles[0])) == QUIZ
    assert len(load_puzzle_file(path, 9, rating_min=51, limit=1)) == 1
    with pytest.raises(PuzzleFileError, match="no puzzles"):
        load_puzzle_file(path, 9, rating_min=1000)


def test_parquet_and_4x4(tmp_path):
    path = tmp_path / "p.parquet"
    pl.DataFrame({"quizzes": [QUIZ_4, QUIZ_4], "solutions": [SOLUTION_4, SOLUTION_4]}).write_parquet(path)
    data = load_puzzle_file(path, 4)
    assert data.puzzles.shape == (2, 16)
    with pytest.raises(PuzzleFileError, match="data row 1: puzzle does not have 81 characters"):
        load_puzzle_file(path, 9)


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        (f"{QUIZ[:-1]},{SOLUTION}", "data row 2: puzzle does not have 81 characters"),
        (f"{QUIZ},{SOLUTION}9", "data row 2: solution does not have 81 characters"),
        (f"x{QUIZ[1:]},{SOLUTION}", "data row 2: puzzle has a character outside"),
        (f"{QUIZ},0{SOLUTION[1:]}", "data row 2: solution has a character outside"),
        (f"{QUIZ},{SOLUTION[1]}{SOLUTION[0]}{SOLUTION[2:]}", "data row 2: solution is not a valid grid"),
        (f"6{QUIZ[1:]},{SOLUTION}", "data row 2: solution disagrees with a given"),
        (f",{SOLUTION}", "data row 2: puzzle is empty"),
    ],
)
def test_malformed_rows_are_rejected_with_their_row_number(tmp_path, bad_row, message):
    path = tmp_path / "bad.csv"
    write_csv(path, "quizzes,solutions", [f"{QUIZ},{SOLUTION}", bad_row, f"{QUIZ},{SOLUTION}"])
    with pytest.raises(PuzzleFileError, match=message):
        load_puzzle_file(path, 9)


def test_unknown_columns_and_bad_rating(tmp_path):
    path = tmp_path / "odd.csv"
    write_csv(path, "puzzle,answer", [f"{QUIZ},{SOLUTION}"])
    with pytest.raises(PuzzleFileError, match="match no known format"):
        load_puzzle_file(path, 9)
    path = tmp_path / "rating.csv"
    write_csv(path, "question,answer,rating", [f"{QUIZ},{SOLUTION},3", f"{QUIZ},{SOLUTION},lots"])
    with pytest.raises(PuzzleFileError, match="data row 2: rating is not a number"):
        load_puzzle_file(path, 9, rating_min=1)
