"""ShardedOrder: ranks partition every epoch; bad ranks and empty data are refused by name."""

from __future__ import annotations

import numpy as np
import pytest

from components.tasks.sharding import ShardedOrder


def test_ranks_read_disjoint_rows_that_cover_each_epoch() -> None:
    size, batch, world = 12, 2, 3  # one step of all ranks = 6 rows, an epoch = 2 steps
    orders = [ShardedOrder(size, batch, rank=r, world_size=world, seed_key=(7,), unit="rows") for r in range(world)]
    read = [[o.take()[1] for _ in range(4)] for o in orders]  # 4 steps = 2 epochs
    for epoch in range(2):
        rows = np.concatenate([rank_rows[s] for rank_rows in read for s in (2 * epoch, 2 * epoch + 1)])
        assert sorted(rows.tolist()) == list(range(size))  # each row once per epoch
    first, second = np.concatenate([r[0] for r in read] + [r[1] for r in read]), np.concatenate(
        [r[2] for r in read] + [r[3] for r in read]
    )
    assert not np.array_equal(first, second)  # a fresh permutation each epoch
    assert all(o.position == 4 * batch * world for o in orders)


def test_take_reports_the_global_start_and_batches_straddle_epochs() -> None:
    order = ShardedOrder(5, 3, rank=1, world_size=2, seed_key=(0, 0), unit="rows")
    start, rows = order.take()
    assert start == 3 and len(rows) == 3  # positions 3, 4 (epoch 0) and 5 (epoch 1)
    epoch0 = np.random.default_rng([0, 0, 0]).permutation(5)
    epoch1 = np.random.default_rng([0, 0, 1]).permutation(5)
    assert rows.tolist() == [epoch0[3], epoch0[4], epoch1[0]]


@pytest.mark.parametrize(
    "size, batch, rank, world, message",
    [(10, 2, 2, 2, "rank 2 outside world_size 2"), (0, 2, 0, 1, "training puzzles"), (10, 0, 0, 1, "batch_size >= 1")],
)
def test_bad_shards_are_refused(size: int, batch: int, rank: int, world: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShardedOrder(size, batch, rank=rank, world_size=world, seed_key=(0,), unit="training puzzles")
