"""Turning tokenized documents into rows of ``seq_len`` tokens.

Documents arrive as ids each ending with the eos token (see tokenizer.py), in order, a chunk at a
time. Two packings:

- ``wrap``: the documents are concatenated (their eos tokens separate them) and cut into
  consecutive rows of ``seq_len`` tokens; a document may span rows. Only the tokens after the last
  full row of the whole split (fewer than ``seq_len``) are dropped. Every position is real.
- ``pad``: one document per row: its first ``seq_len`` tokens, then the pad id. A document longer
  than ``seq_len`` is truncated (and so loses its eos: it did not end there). ``lengths`` counts
  the real tokens of each row; positions from there on are padding (``valid`` False).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Packing = Literal["wrap", "pad"]


class Wrapper:
    """Streaming ``wrap`` packer: feed concatenated documents in order, get full rows back; the
    partial last row is kept as ``carry`` for the next chunk (and dropped at the end of the split)."""

    def __init__(self, seq_len: int, dtype: np.dtype):
        self.seq_len = seq_len
        self.carry = np.zeros(0, dtype=dtype)

    def add(self, tokens: np.ndarray) -> np.ndarray:
        """Rows completed by ``tokens`` (Int[T], documents back to back): Int[n, seq_len]."""
        flat = np.concatenate([self.carry, tokens.astype(self.carry.dtype, copy=False)])
        n = len(flat) // self.seq_len
        self.carry = flat[n * self.seq_len :]
        return flat[: n * self.seq_len].reshape(n, self.seq_len)


def pad(
    tokens: np.ndarray, lengths: np.ndarray, seq_len: int, pad_id: int, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """One row per document. tokens: Int[T], documents back to back; lengths: Int[D], their
    lengths (summing to T). Returns rows Int[D, seq_len] and kept lengths Int32[D]."""
    lengths = np.asarray(lengths, dtype=np.int64)
    kept = np.minimum(lengths, seq_len)
    starts = np.cumsum(lengths) - lengths
    row = np.repeat(np.arange(len(lengths)), kept)
    column = np.arange(kept.sum()) - np.repeat(np.cumsum(kept) - kept, kept)
    rows = np.full((len(lengths), seq_len), pad_id, dtype=dtype)
    rows[row, column] = tokens[np.repeat(starts, kept) + column]
    return rows, kept.astype(np.int32)


def valid_mask(lengths: np.ndarray, seq_len: int) -> np.ndarray:
    """Bool[N, seq_len]: True on the first ``lengths[i]`` positions of row i."""
    return np.arange(seq_len)[None, :] < np.asarray(lengths)[:, None]
