"""Packing of tokenized documents: pad never crosses documents, wrap loses no tokens."""

from __future__ import annotations

import numpy as np
import pytest

from components.tasks.text.packing import Wrapper, pad, valid_mask

EOS, PAD = 0, 1


def documents(seed: int = 0, count: int = 40) -> list[np.ndarray]:
    """Documents of ids >= 2 (each id unique to its document), each ending in EOS."""
    rng = np.random.default_rng(seed)
    docs, next_id = [], 2
    for _ in range(count):
        n = int(rng.integers(1, 30))
        docs.append(np.append(np.arange(next_id, next_id + n), EOS))
        next_id += n
    return docs


def test_pad_one_document_per_row() -> None:
    docs = documents()
    seq_len = 16
    lengths = np.array([len(d) for d in docs])
    rows, kept = pad(np.concatenate(docs), lengths, seq_len, PAD, np.dtype(np.uint16))
    assert rows.shape == (len(docs), seq_len)
    valid = valid_mask(kept, seq_len)
    for row, ok, doc, n in zip(rows, valid, docs, kept):
        assert n == min(len(doc), seq_len)
        assert (row[ok] == doc[:seq_len]).all()  # a prefix of its own document only
        assert (row[~ok] == PAD).all() and ok.sum() == n
        assert (row[-1] != EOS) if len(doc) > seq_len else row[n - 1] == EOS  # truncated: no eos


@pytest.mark.parametrize("chunk", [1, 3, 40])
def test_wrap_loses_no_tokens(chunk: int) -> None:
    docs = documents(seed=1)
    seq_len = 16
    wrapper = Wrapper(seq_len, np.dtype(np.uint16))
    rows = [wrapper.add(np.concatenate(docs[i : i + chunk])) for i in range(0, len(docs), chunk)]
    packed = np.concatenate(rows)
    stream = np.concatenate(docs)
    assert packed.shape[1] == seq_len
    # The rows are the documents back to back (eos separating them); only a final remainder
    # shorter than one row is dropped.
    assert (packed.reshape(-1) == stream[: packed.size]).all()
    assert 0 <= len(stream) - packed.size < seq_len
    assert (wrapper.carry == stream[packed.size :]).all()
