"""The ``sudoku`` task kind: generated or external puzzles, resumable stream, solve metrics.

Tokens: digit d -> id d - 1, mask id n, vocab n + 1, sequence n*n (row-major); givens are the
``fixed`` positions of every batch. Training data is either a generated tier or
``train_file``; held-out sets are the generated ``eval_tiers`` (independent seeds, split by base
before augmentation, see split.py) and an optional external file named ``file``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from components.batch import Batch
from components.noise.base import NoiseProcess
from components.registry import SpecModel
from components.samplers.base import Sampler
from components.structure import Structure
from components.tasks.base import DataStream, EvalResult, Task
from components.tasks.registry import TASKS
from components.tasks.sudoku.dataset import SetKey, default_workers, load_set, prepare_set
from components.tasks.sudoku.files import load_puzzle_file
from components.tasks.sudoku.generator import Tier
from components.tasks.sudoku.grid import geometry
from components.tasks.sudoku.metrics import (
    solved,
    summarize,
    tokens_to_digits,
    unit_violations,
    unknown_cells_correct,
)
from components.tasks.sudoku.puzzles import PuzzleSet, to_batch
from components.tasks.sudoku.render import Example, example_text, examples_html, examples_markdown, grid_text
from components.tasks.sudoku.split import drop_leaks
from components.tasks.sudoku.stream import SudokuStream

FILE_SET = "file"
SET_METRICS = ("puzzle_accuracy", "cell_accuracy", "violations", "violated_fraction", "passes", "seconds")


class SudokuConfig(SpecModel):
    """The ``task:`` section of a Sudoku spec (see each field's description)."""

    kind: Literal["sudoku"] = "sudoku"
    size: Literal[4, 9] = Field(9, description="grid side: 4 (2x2 boxes) or 9 (3x3 boxes)")
    tier: Tier = Field("easy", description="generated training tier: easy | medium | hard")
    train_puzzles: int = Field(
        100_000, ge=1, le=50_000_000,
        description="generated training puzzles; with train_file, the first this many rows",
    )
    eval_puzzles: int = Field(
        1000, ge=1, le=1_000_000,
        description="held-out puzzles per eval tier; with eval_file, the first this many rows",
    )
    eval_tiers: list[Tier] = Field(
        default_factory=list, max_length=3, description="generated held-out tiers; default [tier]"
    )
    best_of: int = Field(5, ge=1, le=100, description="easy: Cordero plucks per grid, fewest givens kept")
    min_guesses: int = Field(
        1, ge=1, le=100, description="9x9 hard: minimal puzzles needing >= this many DFS guesses"
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="generation seed of the train and eval sets")
    augment: bool = Field(True, description="random symmetry transforms of training pairs, on the fly")
    train_file: Path | None = Field(
        None, description="external training puzzles (Kaggle or sudoku-extreme CSV/parquet)"
    )
    eval_file: Path | None = Field(
        None, description=f"external held-out puzzles, evaluated as set '{FILE_SET}'"
    )
    rating_min: int | None = Field(
        None, ge=0, le=1_000_000, description="keep rows with rating >= this in files with a rating column"
    )
    workers: int | None = Field(None, ge=1, le=1024, description="generation processes; default all cores")
    examples: int = Field(4, ge=0, le=100, description="rendered examples per eval set and sampler")

    # structure() supplies peer attention, so backbones may set ``attention: structured``.
    supplies_attention: ClassVar[bool] = True

    def metric_names(self, samplers: list[str], external_data: bool) -> list[str]:
        """Names of the metrics :meth:`SudokuTask.evaluate` reports (without ``eval/``) for these
        sampler names; ``external_data``: an ``eval.data`` file adds the ``file`` set."""
        sets = [*self.eval_tiers, *([FILE_SET] if self.eval_file is not None or external_data else [])]
        return [f"{s}/{k}/{m}" for s in sets for k in samplers for m in SET_METRICS]

    @model_validator(mode="before")
    @classmethod
    def _default_eval_tiers(cls, data: Any) -> Any:
        if isinstance(data, dict) and "eval_tiers" not in data:
            data = {**data, "eval_tiers": [data.get("tier", "easy")]}
        return data

    @model_validator(mode="after")
    def _has_eval_set(self) -> "SudokuConfig":
        if len(set(self.eval_tiers)) != len(self.eval_tiers):
            raise ValueError(f"eval_tiers has duplicates: {self.eval_tiers}")
        if not self.eval_tiers and self.eval_file is None:
            raise ValueError("give at least one eval tier or an eval_file")
        return self


@TASKS.register(SudokuConfig)
class SudokuTask(Task):
    """See the module docstring. ``cache_dir``: generated sets go to ``cache_dir / "sudoku"``."""

    def __init__(self, config: SudokuConfig, *, cache_dir: Path):
        self.config = config
        self.size = config.size
        self.vocab_size = config.size + 1
        self.mask_id = config.size
        self.seq_len = config.size * config.size
        self.cache_dir = Path(cache_dir) / "sudoku"
        self._train: PuzzleSet | None = None
        self._evals: dict[str, PuzzleSet] | None = None

    # ------------------------------------------------------------------ data

    def _key(self, split: Literal["train", "eval"], tier: Tier, count: int) -> SetKey:
        c = self.config
        return SetKey(split, tier, c.size, count, c.seed, c.best_of, c.min_guesses)

    def _keys(self) -> list[SetKey]:
        keys = [self._key("eval", t, self.config.eval_puzzles) for t in self.config.eval_tiers]
        if self.config.train_file is None:
            keys.append(self._key("train", self.config.tier, self.config.train_puzzles))
        return keys

    def _file(self, path: Path, limit: int) -> PuzzleSet:
        return load_puzzle_file(path, self.size, rating_min=self.config.rating_min, limit=limit)

    def prepare(self) -> None:
        """Generate missing sets into the cache (all cores unless ``workers``), then load and
        check every set, so malformed files and an empty training split fail in the driver."""
        workers = self.config.workers or default_workers()
        for key in self._keys():
            prepare_set(key, self.cache_dir, workers=workers)
        self.train_set()

    def eval_sets(self, data: Path | None = None) -> dict[str, PuzzleSet]:
        """Held-out sets by name: each eval tier, then ``file`` (``data`` overrides eval_file)."""
        if self._evals is None:
            c = self.config
            self._evals = {
                t: load_set(self._key("eval", t, c.eval_puzzles), self.cache_dir) for t in c.eval_tiers
            }
            if c.eval_file is not None:
                self._evals[FILE_SET] = self._file(c.eval_file, c.eval_puzzles)
        if data is None:
            return self._evals
        return {**self._evals, FILE_SET: self._file(Path(data), self.config.eval_puzzles)}

    def structure(self) -> Structure:
        """Each cell's (row, column, box) ids (three axes of n ids) and peer attention: a cell
        attends to the cells sharing a row, column or box with it (20 on 9x9, 7 on 4x4) and to
        itself."""
        geo = geometry(self.size)
        units = torch.tensor(geo.cell_units)
        positions = units - torch.tensor([0, self.size, 2 * self.size])
        attention = torch.eye(geo.cells, dtype=torch.bool)
        for cell, peers in enumerate(geo.peers):
            attention[cell, list(peers)] = True
        return Structure(positions, (self.size,) * 3, attention)

    def check_data(self, path: Path) -> None:
        """Load and check every used row of the puzzle file (see files.py); raises PuzzleFileError."""
        self._file(path, self.config.eval_puzzles)

    def train_set(self) -> PuzzleSet:
        """Training puzzles minus any whose base occurs in a held-out set (before augmentation)."""
        if self._train is None:
            c = self.config
            if c.train_file is not None:
                raw = self._file(c.train_file, c.train_puzzles)
            else:
                raw = load_set(self._key("train", c.tier, c.train_puzzles), self.cache_dir)
            self._train = drop_leaks(raw, list(self.eval_sets().values()))
            if len(self._train) == 0:
                raise ValueError("no training puzzles left after removing those shared with the eval sets")
        return self._train

    def train_stream(self, batch_size: int, *, rank: int, world_size: int, seed: int) -> DataStream:
        return SudokuStream(
            self.train_set(),
            batch_size,
            rank=rank,
            world_size=world_size,
            seed=seed,
            augment=self.config.augment,
        )

    def eval_batches(self, batch_size: int, num_batches: int) -> Iterator[Batch]:
        """The first held-out set (first eval tier, else the file), first rows, repeated if short."""
        data = next(iter(self.eval_sets().values()))
        rows = np.arange(batch_size * num_batches) % len(data)
        for chunk in np.split(rows, num_batches):
            yield to_batch(data.puzzles[chunk], data.solutions[chunk], self.size)

    def decode(self, tokens: torch.Tensor) -> str:
        """Long[L] tokens as n grid lines; mask (or any non-digit) shows as ``.``."""
        return grid_text(tokens_to_digits(tokens.reshape(1, -1), self.size)[0].tolist(), self.size)

    # ------------------------------------------------------------------ evaluation

    def _generate(
        self,
        model: torch.nn.Module,
        noise: NoiseProcess,
        sampler: Sampler,
        puzzles: np.ndarray,
        batch_size: int,
        device: torch.device | str,
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Digits Long[N, L] and passes Long[N] for UInt8[N, L] puzzles, and the wall-clock
        seconds. Unknown cells reach the sampler as mask tokens, never as answers."""
        digits, passes = [], []
        start = time.perf_counter()
        with torch.no_grad():
            for lo in range(0, len(puzzles), batch_size):
                chunk = puzzles[lo : lo + batch_size]
                out = sampler.generate(model, noise, to_batch(chunk, chunk, self.size).to(device))
                digits.append(tokens_to_digits(out.tokens.cpu(), self.size))
                passes.append(out.nfe.cpu())
        return torch.cat(digits), torch.cat(passes), time.perf_counter() - start

    def evaluate(
        self,
        model: torch.nn.Module,
        noise: NoiseProcess,
        samplers: dict[str, Sampler],
        *,
        num_samples: int,
        batch_size: int,
        data: Path | None = None,
        device: torch.device | str = "cpu",
    ) -> EvalResult:
        """Per held-out set and sampler, on the first ``num_samples`` puzzles:
        ``<set>/<sampler>/{puzzle_accuracy, cell_accuracy, violations, violated_fraction,
        passes, seconds}`` (passes: mean Generation.nfe; seconds: wall-clock of all batches of
        ``batch_size``). Artifacts ``sudoku_examples.md`` / ``.html`` render up to ``examples``
        puzzles per set and sampler, failures first; ``samples`` holds the same as text."""
        result = EvalResult()
        if num_samples == 0:
            return result
        examples: list[Example] = []
        for set_name, puzzle_set in self.eval_sets(data).items():
            subset = puzzle_set.take(slice(0, num_samples))
            puzzle = torch.from_numpy(subset.puzzles.astype(np.int64))
            solution = torch.from_numpy(subset.solutions.astype(np.int64))
            for sampler_name, sampler in samplers.items():
                pred, passes, seconds = self._generate(
                    model, noise, sampler, subset.puzzles, batch_size, device
                )
                prefix = f"{set_name}/{sampler_name}"
                metrics = summarize(pred, solution, puzzle, self.size)
                metrics |= {"passes": passes.float().mean().item(), "seconds": seconds}
                result.metrics |= {f"{prefix}/{name}": value for name, value in metrics.items()}
                examples += self._examples(prefix, pred, solution, puzzle)
        result.samples = [example_text(ex, self.size) for ex in examples]
        if examples:
            result.artifacts = {
                "sudoku_examples.md": examples_markdown(examples, self.size),
                "sudoku_examples.html": examples_html(examples, self.size),
            }
        return result

    def _examples(
        self, prefix: str, pred: torch.Tensor, solution: torch.Tensor, puzzle: torch.Tensor
    ) -> list[Example]:
        """Up to ``config.examples`` rendered puzzles, unsolved ones first (then by index)."""
        ok = solved(pred, puzzle, self.size)
        violations = unit_violations(pred, self.size)
        correct = unknown_cells_correct(pred, solution, puzzle)
        unknown = (puzzle == 0).sum(-1)
        order = sorted(range(len(pred)), key=lambda i: (bool(ok[i]), i))[: self.config.examples]
        out = []
        for i in order:
            status = "solved" if ok[i] else (
                f"failed: {int(violations[i])} unit violations, "
                f"{int(correct[i])}/{int(unknown[i])} unknown cells right"
            )
            title = f"{prefix} #{i} ({status})"
            out.append(Example(title, puzzle[i].tolist(), pred[i].tolist(), solution[i].tolist()))
        return out
