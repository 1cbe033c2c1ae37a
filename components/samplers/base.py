"""Sampler interface: ``generate(model, noise, batch, steps) -> Generation``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch

from components.batch import Batch
from components.noise.base import NoiseProcess


class Generation(NamedTuple):
    """tokens: Long[B, L] final sequences (fixed positions equal batch.x0 there);
    nfe: Long[B], model evaluations spent on each sequence (a sequence that is finished early,
    e.g. all cells committed, stops counting; Sudoku "passes")."""

    tokens: torch.Tensor
    nfe: torch.Tensor


class Sampler(ABC):
    @abstractmethod
    def generate(
        self, model: torch.nn.Module, noise: NoiseProcess, batch: Batch, steps: int | None = None
    ) -> Generation:
        """Generate (under ``torch.no_grad``) the non-fixed positions of ``batch``; ``batch.x0`` is read only where
        ``batch.fixed`` is True. ``steps`` overrides the configured number of steps."""
