"""Task interface: a task owns its vocabulary, its data and its own metrics.

The training pipeline only sees :class:`Batch` objects from a resumable :class:`DataStream`
and the metric dict returned by :meth:`Task.evaluate`; it never knows which task it runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from components.batch import Batch
from components.noise.base import NoiseProcess
from components.samplers.base import Sampler
from components.structure import Structure


class DataStream(ABC, Iterator[Batch]):
    """An endless, deterministic iterator of training batches for one rank.

    ``state_dict()`` captures the data position; a stream restored with ``load_state_dict``
    yields exactly the batches an uninterrupted stream would have yielded next.
    """

    @abstractmethod
    def __next__(self) -> Batch: ...

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class EvalResult:
    """metrics: flat ``name -> value`` (names like ``easy/k5/puzzle_accuracy``, without the
    ``eval/`` prefix the pipeline adds); artifacts: ``file name -> text`` (rendered puzzles,
    samples); samples: decoded example generations."""

    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)


class Task(ABC):
    """Builds tokenizer, data and metrics for one kind of problem.

    Attributes:
        vocab_size: V, number of token ids including the mask token and any specials.
        mask_id: id of the mask token.
        seq_len: L, sequence length of every batch.
        stop_ids: token ids that end a generation (text: eos; chat: the end and pad tokens);
            samplers that stop early (``semi_ar``) receive them. Empty: nothing ends early.
    """

    vocab_size: int
    mask_id: int
    seq_len: int
    stop_ids: tuple[int, ...] = ()

    def prepare(self) -> None:
        """Build caches (generated puzzles, tokenized shards, trained tokenizers). Called once in
        the driver before any worker starts; workers then only read. Idempotent."""

    def structure(self) -> Structure:
        """Position ids and allowed attention pairs for backbones with structured options; the
        default is the plain sequence position and full attention. A task that supplies an
        attention structure says so in its config (``supplies_attention``), so specs are checked
        before anything is built."""
        return Structure.sequence(self.seq_len)

    def check_data(self, path: Path) -> None:
        """Raise ValueError naming ``path`` and the problem unless it is an external evaluation
        file in this task's format (see :meth:`evaluate`). The default only asks for a file."""
        if not path.is_file():
            raise ValueError(f"{path}: {'not a file' if path.exists() else 'no such file'}")

    @abstractmethod
    def train_stream(self, batch_size: int, *, rank: int, world_size: int, seed: int) -> DataStream:
        """This rank's share of the training data, ``batch_size`` sequences per batch."""

    @abstractmethod
    def eval_batches(self, batch_size: int, num_batches: int) -> Iterator[Batch]:
        """Fixed held-out batches (the same on every call) for validation ELBO."""

    @abstractmethod
    def decode(self, tokens: torch.Tensor) -> str:
        """Render one sequence Long[L] as text (puzzle grid, detokenized text)."""

    @abstractmethod
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
        """Task metrics from generations with each named sampler. ``data`` is an optional
        external evaluation file in the task's format."""
