"""Backbone options that read the task's :class:`~components.structure.Structure`:
``positions: structured`` (a learned embedding per position axis, summed) and
``attention: structured`` (attention restricted to the pairs the task allows)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from components.registry import SpecModel
from components.structure import Structure


class StructureOptions(SpecModel):
    """Fields shared by the backbones that can consume a task's structure."""

    positions: Literal["sequence", "structured"] = Field(
        "sequence",
        description="sequence: the backbone's own positions along the sequence; structured: add a "
        "learned embedding per axis of the task's position ids (Sudoku: row + column + box)",
    )
    attention: Literal["full", "structured"] = Field(
        "full",
        description="full: every position attends to every other; structured: only to the pairs the task "
        "allows (Sudoku: a cell's 20 peers and itself); needs a task that supplies them",
    )


def checked_structure(options: StructureOptions, structure: Structure | None, seq_len: int) -> Structure | None:
    """``structure`` when ``options`` use it, else None; raises ValueError naming what is missing
    when a structured option has no structure to read, or when it does not cover ``seq_len``."""
    if options.positions == "sequence" and options.attention == "full":
        return None
    if structure is None:
        raise ValueError("backbone positions/attention 'structured' need the task's structure (build context 'structure')")
    if structure.length < seq_len:
        raise ValueError(f"the task's structure covers {structure.length} positions, the model needs {seq_len}")
    if options.attention == "structured" and structure.attention is None:
        raise ValueError("backbone attention 'structured' needs a task that supplies an attention structure; this one supplies none (allowed: full)")
    return structure


class AxisEmbedding(nn.Module):
    """positions: Long[L, A] -> Float[L, width], the sum over axes a of a learned
    Embedding(axis_sizes[a], width) at each position's id on that axis."""

    def __init__(self, axis_sizes: tuple[int, ...], width: int):
        super().__init__()
        self.axes = nn.ModuleList(nn.Embedding(size, width) for size in axis_sizes)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return sum(emb(positions[:, a]) for a, emb in enumerate(self.axes))
