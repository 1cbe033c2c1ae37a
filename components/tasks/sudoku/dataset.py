"""Generated puzzle sets: parallel, seeded generation cached as parquet.

A set is named by a :class:`SetKey` (split, tier recipe, size, count, seed). Puzzle ``i`` of a
set is drawn from its own seed (``SeedSequence([seed, split, tier, size], spawn_key=(i,))``), so a
set is identical whatever the number of processes, and train and eval sets use independent
streams. Columns: ``puzzle``, ``solution`` (n*n-char strings, ``0`` blank) and the
:class:`~components.tasks.sudoku.generator.Features` (``givens``, ``naked_rounds``,
``naked_solvable``, ``singles_solvable``, ``guesses``).
"""

from __future__ import annotations

import multiprocessing
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from components.tasks.sudoku.generator import TIERS, Tier, generate
from components.tasks.sudoku.grid import geometry, to_text
from components.tasks.sudoku.puzzles import PuzzleSet
from components.tasks.sudoku.split import base_keys, on_eval_side

Split = Literal["train", "eval"]
SPLITS: tuple[Split, ...] = ("train", "eval")
GENERATOR_VERSION = 1  # bump when generated puzzles change, so stale caches are not reused
CHUNK = 64  # puzzles per process task
MAX_SIDE_ATTEMPTS = 1000

SCHEMA = {
    "puzzle": pl.String,
    "solution": pl.String,
    "givens": pl.UInt8,
    "naked_rounds": pl.UInt8,
    "naked_solvable": pl.Boolean,
    "singles_solvable": pl.Boolean,
    "guesses": pl.UInt32,
}


@dataclass(frozen=True)
class SetKey:
    """Identity of one generated set; ``best_of`` matters for easy, ``min_guesses`` for 9x9 hard."""

    split: Split
    tier: Tier
    size: int
    count: int
    seed: int
    best_of: int = 5
    min_guesses: int = 1

    @property
    def recipe(self) -> str:
        if self.tier == "easy":
            return f"easy-k{self.best_of}"
        if self.tier == "hard" and self.size == 9:
            return f"hard-g{self.min_guesses}"
        return self.tier

    @property
    def filename(self) -> str:
        return (
            f"{self.split}-{self.recipe}-{self.size}x{self.size}-n{self.count}-s{self.seed}"
            f"-v{GENERATOR_VERSION}.parquet"
        )

    def rng(self, index: int) -> random.Random:
        """The private random stream of puzzle ``index`` (SPLITS and TIERS order is part of it)."""
        entropy = [self.seed, SPLITS.index(self.split), TIERS.index(self.tier), self.size]
        state = np.random.SeedSequence(entropy, spawn_key=(index,)).generate_state(2, np.uint64)
        return random.Random(int(state[0]) << 64 | int(state[1]))


def _draw(key: SetKey, index: int) -> dict[str, object]:
    """Puzzle ``index`` of ``key`` as one row. On 4x4 draws repeat until the puzzle's class is on
    the key's side of the train/eval partition (see split.py)."""
    geo = geometry(key.size)
    rng = key.rng(index)
    for _ in range(MAX_SIDE_ATTEMPTS):
        puzzle, solution, feats = generate(
            key.tier, geo, rng, best_of=key.best_of, min_guesses=key.min_guesses
        )
        if key.size == 9:
            break
        grid = np.array([puzzle], dtype=np.uint8)
        if on_eval_side(base_keys(grid, grid, key.size))[0] == (key.split == "eval"):
            break
    else:
        raise RuntimeError(f"no {key.recipe} 4x4 puzzle on the {key.split} side in {MAX_SIDE_ATTEMPTS} draws")
    return {"puzzle": to_text(puzzle), "solution": to_text(solution), **vars(feats)}


def _draw_task(task: tuple[SetKey, int, int]) -> list[dict[str, object]]:
    """Rows ``start:stop`` of a set (one process task)."""
    key, start, stop = task
    return [_draw(key, i) for i in range(start, stop)]


def generate_frame(key: SetKey, *, workers: int, progress: bool = True) -> pl.DataFrame:
    """Generate the set ``key`` with up to ``workers`` processes (in-process when one chunk or one
    worker), showing a rich progress bar when ``progress`` and stdout is a terminal."""
    ranges = [(s, min(s + CHUNK, key.count)) for s in range(0, key.count, CHUNK)]
    processes = min(workers, len(ranges))
    rows: list[dict[str, object]] = []
    columns = (
        TextColumn(f"sudoku {key.filename}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    show = progress and Console().is_terminal
    with Progress(*columns, disable=not show, transient=True) as bar:
        task = bar.add_task("generate", total=key.count)
        if processes <= 1:
            for start, stop in ranges:
                rows += _draw_task((key, start, stop))
                bar.advance(task, stop - start)
        else:
            with multiprocessing.get_context("spawn").Pool(processes) as pool:
                for chunk in pool.imap(_draw_task, [(key, s, e) for s, e in ranges]):
                    rows += chunk
                    bar.advance(task, len(chunk))
    return pl.DataFrame(rows, schema=SCHEMA)


def default_workers() -> int:
    """Processes available to this process (all cores by default)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def prepare_set(key: SetKey, cache_dir: Path, *, workers: int, progress: bool = True) -> Path:
    """Generate ``key`` into ``cache_dir`` unless it is already there (atomic write). Returns the
    parquet path."""
    path = Path(cache_dir) / key.filename
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = generate_frame(key, workers=workers, progress=progress)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        frame.write_parquet(tmp)
        os.replace(tmp, path)
    return path


def load_set(key: SetKey, cache_dir: Path) -> PuzzleSet:
    """Read a prepared set (workers only read; the driver runs :func:`prepare_set`)."""
    path = Path(cache_dir) / key.filename
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the task's prepare() (driver side) first")
    return PuzzleSet.from_frame(pl.read_parquet(path, columns=["puzzle", "solution"]), key.size)
