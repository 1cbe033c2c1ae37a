"""The geometry a task supplies to backbones: position ids along named axes and which pairs
of positions may attend to each other.

A text task has one axis (the position itself) and full attention; a Sudoku grid has three
axes (row, column, box) and lets each cell attend to its peers (the cells sharing a row,
column or box) and to itself. Backbones read it through their ``positions: structured`` and
``attention: structured`` options and never know which task it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Structure:
    """Attributes:
        positions: Long[L, A], the id of each of the L positions along each of A axes; ids on
            axis a lie in [0, axis_sizes[a]).
        axis_sizes: A ints, the number of distinct ids per axis.
        attention: Bool[L, L] or None; entry (i, j) True lets query i attend to key j. Its
            diagonal is all True (a position always sees itself). None: every pair may attend.
    """

    positions: torch.Tensor
    axis_sizes: tuple[int, ...]
    attention: torch.Tensor | None = None

    def __post_init__(self) -> None:
        length, axes = self.positions.shape
        if axes != len(self.axis_sizes):
            raise ValueError(f"positions have {axes} axes but axis_sizes names {len(self.axis_sizes)}")
        limits = torch.tensor(self.axis_sizes)
        if ((self.positions < 0) | (self.positions >= limits)).any():
            raise ValueError(f"position ids must lie in [0, axis size) per axis, sizes {self.axis_sizes}")
        if self.attention is not None:
            if self.attention.shape != (length, length) or self.attention.dtype != torch.bool:
                raise ValueError(f"attention must be Bool[{length}, {length}], got {self.attention.dtype}{list(self.attention.shape)}")
            if not self.attention.diagonal().all():
                raise ValueError("attention must let every position attend to itself")

    @classmethod
    def sequence(cls, length: int) -> "Structure":
        """One axis holding the position 0 .. length-1, full attention."""
        return cls(torch.arange(length)[:, None], (length,))

    @property
    def length(self) -> int:
        return self.positions.shape[0]


def allowed_pairs(attention: torch.Tensor, keys: torch.Tensor | None, length: int) -> torch.Tensor:
    """Bool[B or 1, 1, L, L] (query, key) pairs attention may use (True = allowed), for the
    first ``length`` positions of a :class:`Structure` ``attention`` Bool[L0, L0] (L0 >= L),
    restricted to the non-padding ``keys`` Bool[B, L] when given. Each position always sees
    itself, so no query row is empty."""
    mask = attention[None, None, :length, :length]
    if keys is not None:
        mask = mask & keys[:, None, None, :]
    return mask | torch.eye(length, dtype=torch.bool, device=attention.device)
