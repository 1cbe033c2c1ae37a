"""The sudoku task kind: config, cache, resumable sharded stream, evaluate() plumbing."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from components.batch import Batch
from components.registry import BuildError
from components.samplers.base import Generation, Sampler
from components.tasks import TASKS, build
from components.tasks.sudoku import dataset
from components.tasks.sudoku.grid import array_to_texts


def make(tmp_path, **fields):
    section = {"kind": "sudoku", "size": 4, "train_puzzles": 96, "eval_puzzles": 24, "workers": 1, **fields}
    return build(section, cache_dir=tmp_path)


def rows_of(batch: Batch) -> list[str]:
    """Solutions of a batch as digit strings."""
    return array_to_texts((batch.x0 + 1).numpy().astype(np.uint8))


# ----------------------------------------------------------------------------- config


def test_config_defaults_and_ranges():
    config = TASKS.validate({"kind": "sudoku"})
    assert (config.size, config.tier, config.eval_tiers, config.best_of, config.augment) == (9, "easy", ["easy"], 5, True)
    assert TASKS.validate({"kind": "sudoku", "tier": "hard"}).eval_tiers == ["hard"]
    for bad in ({"size": 16}, {"tier": "extreme"}, {"train_puzzles": 0}, {"eval_tiers": ["easy", "easy"]},
                {"eval_tiers": []}, {"colour": 1}):
        with pytest.raises(BuildError):
            TASKS.validate({"kind": "sudoku", **bad})


def test_vocabulary(tmp_path):
    task = make(tmp_path, size=9)
    assert (task.vocab_size, task.mask_id, task.seq_len) == (10, 9, 81)


# ----------------------------------------------------------------------------- cache


def test_prepare_caches_by_key(tmp_path, monkeypatch):
    task = make(tmp_path)
    task.prepare()
    files = sorted(p.name for p in (tmp_path / "sudoku").iterdir())
    assert files == ["eval-easy-k5-4x4-n24-s0-v1.parquet", "train-easy-k5-4x4-n96-s0-v1.parquet"]
    first = [(b.x0.clone(), b.fixed.clone()) for b in task.eval_batches(8, 3)]

    def no_generation(*args, **kwargs):
        raise AssertionError("cache miss")

    monkeypatch.setattr(dataset, "generate_frame", no_generation)
    again = make(tmp_path)
    start = time.perf_counter()
    again.prepare()
    assert time.perf_counter() - start < 2.0
    second = [(b.x0, b.fixed) for b in again.eval_batches(8, 3)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second))
    np.testing.assert_array_equal(task.train_set().puzzles, again.train_set().puzzles)
    with pytest.raises(AssertionError, match="cache miss"):
        make(tmp_path, seed=1).prepare()


def test_different_keys_give_different_files(tmp_path):
    a = dataset.prepare_set(dataset.SetKey("train", "easy", 4, 30, 0), tmp_path, workers=1, progress=False)
    b = dataset.prepare_set(dataset.SetKey("train", "easy", 4, 30, 1), tmp_path, workers=1, progress=False)
    c = dataset.prepare_set(dataset.SetKey("train", "medium", 4, 30, 0), tmp_path, workers=1, progress=False)
    assert len({a, b, c}) == 3
    texts = [dataset.load_set(dataset.SetKey("train", t, 4, 30, s), tmp_path).puzzles for t, s in (("easy", 0), ("easy", 1))]
    assert not np.array_equal(*texts)


def test_workers_only_read(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare"):
        make(tmp_path).train_stream(4, rank=0, world_size=1, seed=0)


def test_generation_does_not_depend_on_process_count(tmp_path):
    key = dataset.SetKey("train", "easy", 4, 2 * dataset.CHUNK + 5, 7)
    serial = dataset.generate_frame(key, workers=1, progress=False)
    parallel = dataset.generate_frame(key, workers=2, progress=False)
    assert serial.equals(parallel)


# ----------------------------------------------------------------------------- stream


def test_restored_stream_continues_exactly(tmp_path):
    task = make(tmp_path)
    task.prepare()
    stream = task.train_stream(16, rank=0, world_size=1, seed=3)
    for _ in range(4):
        next(stream)
    state = stream.state_dict()
    expected = [next(stream) for _ in range(8)]  # crosses epoch boundaries (96 puzzles)
    restored = task.train_stream(16, rank=0, world_size=1, seed=3)
    restored.load_state_dict(state)
    for want, got in zip(expected, (next(restored) for _ in range(8))):
        assert torch.equal(want.x0, got.x0) and torch.equal(want.fixed, got.fixed)
    fresh = task.train_stream(16, rank=0, world_size=1, seed=4)
    assert not torch.equal(next(fresh).x0, expected[0].x0)


def test_batches_are_consistent_pairs(tmp_path):
    task = make(tmp_path)
    task.prepare()
    batch = next(task.train_stream(32, rank=0, world_size=1, seed=0))
    assert batch.x0.shape == (32, 16) and batch.x0.dtype == torch.long
    assert int(batch.x0.max()) < 4 and batch.fixed.any(1).all() and (~batch.fixed).any(1).all()


def test_ranks_read_disjoint_shards(tmp_path):
    task = make(tmp_path, size=9, train_puzzles=48, eval_puzzles=8, augment=False)
    task.prepare()
    streams = [task.train_stream(4, rank=r, world_size=2, seed=0) for r in range(2)]
    seen = [[row for _ in range(6) for row in rows_of(next(s))] for s in streams]  # one epoch
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(array_to_texts(task.train_set().solutions))


def test_eval_batches_are_fixed_and_held_out(tmp_path):
    task = make(tmp_path)
    task.prepare()
    a = [b.x0 for b in task.eval_batches(10, 3)]
    b = [b.x0 for b in task.eval_batches(10, 3)]
    assert len(a) == 3 and all(torch.equal(x, y) for x, y in zip(a, b))
    assert set(rows_of(task.eval_batches(24, 1).__next__())) <= set(array_to_texts(task.eval_sets()["easy"].solutions))


def test_decode_draws_the_grid(tmp_path):
    task = make(tmp_path)
    text = task.decode(torch.tensor([0, 1, 2, 3, 2, 3, 0, 1, 1, 0, 3, 2, 3, 2, 1, 4]))
    assert text.splitlines() == [" 1  2 | 3  4 ", " 3  4 | 1  2 ", "------+------", " 2  1 | 4  3 ", " 4  3 | 2  . "]


# ----------------------------------------------------------------------------- evaluate


class LookupSampler(Sampler):
    """Test double: answers from a table of known solutions, optionally breaking one unknown
    cell, and checks that it never sees an answer."""

    def __init__(self, answers: dict[str, str], size: int, wrong: bool, passes: int):
        self.answers, self.size, self.wrong, self.passes = answers, size, wrong, passes

    def generate(self, model, noise, batch, steps=None):
        assert (batch.x0[~batch.fixed] == self.size).all(), "unknown cells must arrive masked"
        puzzles = array_to_texts(torch.where(batch.fixed, batch.x0 + 1, 0).numpy().astype(np.uint8))
        tokens = torch.tensor([[int(ch) - 1 for ch in self.answers[p]] for p in puzzles])
        if self.wrong:
            first_unknown = (~batch.fixed).long().argmax(1)
            rows = torch.arange(len(tokens))
            tokens[rows, first_unknown] = (tokens[rows, first_unknown] + 1) % self.size
        return Generation(tokens, torch.full((len(tokens),), self.passes))


def test_evaluate_metric_plumbing(tmp_path):
    task = make(tmp_path, eval_tiers=["easy", "hard"])
    task.prepare()
    answers = {}
    for data in task.eval_sets().values():
        answers |= dict(zip(array_to_texts(data.puzzles), array_to_texts(data.solutions)))
    samplers = {
        "oracle": LookupSampler(answers, 4, wrong=False, passes=1),
        "k1": LookupSampler(answers, 4, wrong=True, passes=7),
    }
    result = task.evaluate(torch.nn.Identity(), None, samplers, num_samples=10, batch_size=4)
    m = result.metrics
    for tier in ("easy", "hard"):
        assert m[f"{tier}/oracle/puzzle_accuracy"] == 1.0 and m[f"{tier}/oracle/cell_accuracy"] == 1.0
        assert m[f"{tier}/oracle/violations"] == 0.0 and m[f"{tier}/oracle/passes"] == 1.0
        assert m[f"{tier}/k1/puzzle_accuracy"] == 0.0
        assert m[f"{tier}/k1/violations"] == 3.0 and m[f"{tier}/k1/violated_fraction"] == 1.0
        assert m[f"{tier}/k1/passes"] == 7.0 and m[f"{tier}/k1/seconds"] >= 0.0
        unknown = (task.eval_sets()[tier].puzzles[:10] == 0).sum()
        assert m[f"{tier}/k1/cell_accuracy"] == pytest.approx(1 - 10 / unknown)
    assert len(m) == 2 * 2 * 6
    assert sorted(m) == sorted(task.config.metric_names(list(samplers), external_data=False))  # what sweep.metric is checked against
    assert "[" in result.artifacts["sudoku_examples.md"] and "failed: 3 unit violations" in result.artifacts["sudoku_examples.md"]
    assert 'class="wrong' in result.artifacts["sudoku_examples.html"]
    assert len(result.samples) == 2 * 2 * 4
    # an external file is evaluated as the set "file"
    path = tmp_path / "extra.csv"
    data = task.eval_sets()["easy"]
    lines = [f"{p},{s}" for p, s in zip(array_to_texts(data.puzzles), array_to_texts(data.solutions))]
    path.write_text("quizzes,solutions\n" + "\n".join(lines) + "\n")
    result = task.evaluate(torch.nn.Identity(), None, {"oracle": samplers["oracle"]}, num_samples=5, batch_size=8, data=path)
    assert result.metrics["file/oracle/puzzle_accuracy"] == 1.0


def test_training_and_evaluating_from_files(tmp_path):
    train = dataset.generate_frame(dataset.SetKey("train", "easy", 4, 40, 0), workers=1, progress=False)
    held = dataset.generate_frame(dataset.SetKey("eval", "easy", 4, 10, 0), workers=1, progress=False)
    leaked = held.tail(3)  # kept held-out puzzles (rating >= 50) that also sit in the training file
    train_path, eval_path = tmp_path / "train.csv", tmp_path / "test.csv"
    train.vstack(leaked).select(quizzes="puzzle", solutions="solution").write_csv(train_path)
    held.select(
        question="puzzle", answer="solution", rating=np.arange(len(held)) * 10
    ).write_csv(eval_path)
    task = make(tmp_path, train_file=train_path, eval_file=eval_path, eval_tiers=[], rating_min=50)
    task.prepare()
    assert not (tmp_path / "sudoku").exists()  # nothing generated
    assert len(task.eval_sets()["file"]) == 5  # ratings 50..90
    assert len(task.train_set()) == len(train)  # 40 + 3 leaked, all leaks dropped
    batch = next(task.train_stream(8, rank=0, world_size=1, seed=0))
    assert batch.x0.shape == (8, 16)
