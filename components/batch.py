"""The unit of data every family exchanges: clean tokens plus which positions are fixed."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class Batch:
    """A batch of sequences.

    Attributes:
        x0: LongTensor[B, L], clean token ids.
        fixed: BoolTensor[B, L], positions that are conditioning or padding (Sudoku givens, a
            prompt, pad). The forward process never noises them, samplers never change them,
            and losses and metrics never score them.
        valid: BoolTensor[B, L] or None; False marks padding, which is also excluded from
            attention. None means every position is a real token.
    """

    x0: torch.Tensor
    fixed: torch.Tensor
    valid: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.x0.shape != self.fixed.shape:
            raise ValueError(f"x0 {tuple(self.x0.shape)} and fixed {tuple(self.fixed.shape)} differ")
        if self.valid is not None and self.valid.shape != self.x0.shape:
            raise ValueError(f"valid {tuple(self.valid.shape)} does not match x0 {tuple(self.x0.shape)}")

    @classmethod
    def unconditional(cls, x0: torch.Tensor) -> "Batch":
        """A batch with nothing fixed (plain language modelling)."""
        return cls(x0=x0, fixed=torch.zeros_like(x0, dtype=torch.bool))

    @property
    def scored(self) -> torch.Tensor:
        """BoolTensor[B, L]: positions that losses and metrics count (not fixed, not padding)."""
        return ~self.fixed if self.valid is None else ~self.fixed & self.valid

    def to(self, device: torch.device | str) -> "Batch":
        return replace(
            self,
            x0=self.x0.to(device, non_blocking=True),
            fixed=self.fixed.to(device, non_blocking=True),
            valid=None if self.valid is None else self.valid.to(device, non_blocking=True),
        )

    def __len__(self) -> int:
        return self.x0.shape[0]
