"""External puzzle files: Kaggle ``quizzes,solutions`` and sudoku-extreme ``question,answer,rating``.

CSV (``.csv``, ``.csv.gz``) or parquet; the format is told by the column names. Puzzles are n*n
characters with ``0`` or ``.`` for blanks, solutions n*n digits 1..n. Every used row is checked
(length, characters, solution a valid grid, solution agreeing with the givens); the first bad
row is reported by its 1-based data row number (the header is not counted). Uniqueness of the
solution is trusted, not checked (it is for both public datasets).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from components.tasks.sudoku.grid import geometry, is_solution, texts_to_array
from components.tasks.sudoku.puzzles import PuzzleSet

FORMATS = {"kaggle": ("quizzes", "solutions"), "extreme": ("question", "answer")}


class PuzzleFileError(ValueError):
    """An external puzzle file is unreadable or has a malformed row."""


def _read(path: Path) -> pl.DataFrame:
    """The file as a table of strings (CSV) or typed columns (parquet); unreadable content
    (empty, binary, not CSV or parquet inside) raises :class:`PuzzleFileError`."""
    if not path.exists():
        raise PuzzleFileError(f"{path}: no such file")
    if not path.is_file():
        raise PuzzleFileError(f"{path}: not a file (expected a .csv, .csv.gz or .parquet file)")
    name = path.name.lower()
    try:
        if name.endswith((".csv", ".csv.gz")):
            return pl.read_csv(path, infer_schema=False)
        if name.endswith(".parquet"):
            return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        kind = "parquet" if name.endswith(".parquet") else "CSV"
        raise PuzzleFileError(f"{path}: cannot be read as {kind}: {reason}") from None
    raise PuzzleFileError(f"{path}: unknown file type (expected .csv, .csv.gz or .parquet)")


def detect_format(columns: list[str], path: Path) -> str:
    """``kaggle`` or ``extreme`` from the column names."""
    for name, needed in FORMATS.items():
        if set(needed) <= set(columns):
            return name
    wanted = " or ".join(",".join(c) for c in FORMATS.values())
    raise PuzzleFileError(f"{path}: columns {columns} match no known format (need {wanted})")


def _fail(path: Path, rows: pl.Series, bad: np.ndarray | pl.Series, problem: str) -> None:
    """Raise for the first row flagged in ``bad`` (Bool[N] aligned with ``rows``)."""
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        raise PuzzleFileError(f"{path}: data row {rows[int(bad.argmax())]}: {problem}")


def load_puzzle_file(
    path: Path | str, size: int, *, rating_min: int | None = None, limit: int | None = None
) -> PuzzleSet:
    """Read, filter and check an external file.

    rating_min keeps rows with ``rating >= rating_min`` in files that have a ``rating`` column
    (sudoku-extreme; tdoku backtracks) and leaves files without one unfiltered. limit keeps the
    first ``limit`` rows after filtering."""
    path = Path(path)
    geometry(size)  # rejects unsupported sizes
    frame = _read(path)
    puzzle_col, solution_col = FORMATS[detect_format(frame.columns, path)]
    frame = frame.with_row_index("row", offset=1)
    if frame.height == 0:
        raise PuzzleFileError(f"{path}: no puzzles (only a header or no rows)")
    if rating_min is not None and "rating" in frame.columns:
        rating = frame["rating"].cast(pl.Float64, strict=False)
        _fail(path, frame["row"], rating.is_null(), "rating is not a number")
        frame = frame.filter(rating >= rating_min)
        if frame.height == 0:
            raise PuzzleFileError(f"{path}: no puzzles with rating >= {rating_min}")
    if limit is not None:
        frame = frame.head(limit)
    rows = frame["row"]
    cells = size * size
    texts = {}
    for role, column, blanks in (("puzzle", puzzle_col, "0."), ("solution", solution_col, "")):
        values = frame[column].cast(pl.String)
        _fail(path, rows, values.is_null(), f"{role} is empty")
        _fail(path, rows, values.str.len_chars() != cells, f"{role} does not have {cells} characters")
        allowed = f"^[{blanks}1-{size}]*$"
        _fail(path, rows, ~values.str.contains(allowed), f"{role} has a character outside {blanks}1-{size}")
        texts[role] = values.str.replace_all(".", "0", literal=True).to_list()
    puzzles = texts_to_array(texts["puzzle"], size)
    solutions = texts_to_array(texts["solution"], size)
    _fail(path, rows, ~is_solution(solutions, size), "solution is not a valid grid")
    disagree = ((puzzles != 0) & (puzzles != solutions)).any(axis=1)
    _fail(path, rows, disagree, "solution disagrees with a given of the puzzle")
    return PuzzleSet(size, puzzles, solutions)
