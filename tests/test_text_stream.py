"""The text training stream: exact resume (across epoch boundaries), disjoint covering ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.tasks.text.cache import TokenArrays
from components.tasks.text.stream import TextStream, rows_to_batch

ROWS, SEQ_LEN = 24, 4


def arrays(lengths: np.ndarray | None = None) -> TokenArrays:
    """Row i holds the id i in every position, so a batch's rows can be read off x0[:, 0]."""
    tokens = np.repeat(np.arange(ROWS, dtype=np.uint16)[:, None], SEQ_LEN, axis=1)
    return TokenArrays(tokens, lengths, {"bytes": 0, "tokens": ROWS * SEQ_LEN})


def rows_of(stream: TextStream, steps: int) -> list[list[int]]:
    return [next(stream).x0[:, 0].tolist() for _ in range(steps)]


@pytest.mark.parametrize("stop", [1, 3, 4, 7])  # 24 rows / 5 per batch: epochs end mid-batch
def test_resume_yields_the_same_batches(stop: int) -> None:
    reference = rows_of(TextStream(arrays(), 5, rank=0, world_size=1, seed=3), 12)
    first = TextStream(arrays(), 5, rank=0, world_size=1, seed=3)
    head = rows_of(first, stop)
    state = first.state_dict()
    resumed = TextStream(arrays(), 5, rank=0, world_size=1, seed=3)
    resumed.load_state_dict(state)
    assert head + rows_of(resumed, 12 - stop) == reference
    assert state["epoch"] == stop * 5 // ROWS and state["position"] == stop * 5 % ROWS


def test_epochs_are_permutations_with_fresh_order() -> None:
    seen = sum(rows_of(TextStream(arrays(), 6, rank=0, world_size=1, seed=0), 8), [])
    epochs = [seen[i : i + ROWS] for i in range(0, len(seen), ROWS)]
    assert all(sorted(e) == list(range(ROWS)) for e in epochs)
    assert epochs[0] != epochs[1]
    other_seed = sum(rows_of(TextStream(arrays(), 6, rank=0, world_size=1, seed=1), 4), [])
    assert other_seed != epochs[0]


def test_ranks_are_disjoint_and_cover_the_data() -> None:
    world = 3
    streams = [TextStream(arrays(), 2, rank=r, world_size=world, seed=5) for r in range(world)]
    steps = ROWS // (2 * world)  # one epoch
    per_rank = [sum(rows_of(s, steps), []) for s in streams]
    union = sum(per_rank, [])
    assert sorted(union) == list(range(ROWS))  # disjoint (no repeats) and covering
    # The global order is the one a single rank with the global batch reads.
    single = rows_of(TextStream(arrays(), 2 * world, rank=0, world_size=1, seed=5), steps)
    assert [sum((p[2 * s : 2 * s + 2] for p in per_rank), []) for s in range(steps)] == single


def test_resume_on_another_world_size_continues_the_global_order() -> None:
    single = TextStream(arrays(), 4, rank=0, world_size=1, seed=2)
    rows_of(single, 3)
    state = single.state_dict()
    expected = rows_of(single, 1)[0]
    halves = []
    for rank in range(2):
        stream = TextStream(arrays(), 2, rank=rank, world_size=2, seed=2)
        stream.load_state_dict(state)
        halves += rows_of(stream, 1)[0]
    assert halves == expected


def test_state_from_other_data_is_rejected() -> None:
    stream = TextStream(arrays(), 4, rank=0, world_size=1, seed=0)
    with pytest.raises(ValueError, match="rows"):
        stream.load_state_dict({"epoch": 0, "position": 0, "rows": ROWS + 1, "seed": 0})


def test_pad_batches_mark_padding_fixed_and_invalid() -> None:
    lengths = np.arange(ROWS, dtype=np.int32) % (SEQ_LEN + 1)
    batch = rows_to_batch(arrays(lengths), np.array([0, 2, 4]))
    assert batch.valid is not None and batch.x0.dtype == torch.long
    assert batch.valid.sum(1).tolist() == [0, 2, 4]
    assert torch.equal(batch.fixed, ~batch.valid)
    assert torch.equal(batch.scored, batch.valid)
