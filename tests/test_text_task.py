"""The text task end to end on a local corpus with a locally trained tokenizer: prepare, cache
keys, packed contents, streams, eval batches, decoding, bytes per token and sample metrics."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from components.batch import Batch
from components.samplers.base import Generation, Sampler
from components.tasks import TASKS, build
from components.tasks.text import cache as text_cache
from components.tasks.text import task as text_task
from components.tasks.text.task import TextTask
from components.tasks.text.tokenizer import BpeTraining, TextTokenizer, TokenizerError

SYLLABLES = ["ka", "to", "ri", "ne", "su", "mo", "la", "pé", "ü", "日", "本", "😀", ",", "."]
DOCUMENTS = 120
VALIDATION = 20
PAD_LEN = 24  # rows of the pad-packing test: some documents are longer


def make_corpus(path: Path) -> list[str]:
    rng = random.Random(0)
    words = ["".join(rng.choices(SYLLABLES, k=rng.randint(1, 3))) for _ in range(150)]
    docs = [" ".join(rng.choices(words, k=rng.randint(3, 30))) for _ in range(DOCUMENTS)]
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return docs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, make_corpus(folder / "docs.jsonl")


def section(folder: Path, **overrides) -> dict:
    return {
        "kind": "text",
        "source": {"path": str(folder / "docs.jsonl")},
        "validation": {"last_documents": VALIDATION},
        "tokenizer": {"train": {"vocab_size": 320}},
        "seq_len": 16,
        **overrides,
    }


@pytest.fixture(scope="module")
def task(corpus, tmp_path_factory) -> TextTask:
    folder, _ = corpus
    task = build(section(folder), cache_dir=tmp_path_factory.mktemp("cache"))
    task.prepare()
    return task


def encoded(task: TextTask, docs: list[str]) -> np.ndarray:
    return np.concatenate([np.array(ids) for ids in task.tokenizer.encode_documents(docs)])


def test_vocabulary(task: TextTask) -> None:
    assert isinstance(task, TextTask) and task.seq_len == 16
    assert task.vocab_size == 320 and task.mask_id == 2
    assert task.tokenizer.decode([task.mask_id, task.tokenizer.pad_id]) == ""


def test_untrained_tokenizer_needs_prepare(corpus, tmp_path) -> None:
    fresh = build(section(corpus[0]), cache_dir=tmp_path)
    with pytest.raises(TokenizerError, match="prepare"):
        fresh.vocab_size


def test_wrap_rows_are_the_documents_back_to_back(task: TextTask, corpus) -> None:
    _, docs = corpus
    for split, part in (("train", docs[:-VALIDATION]), ("validation", docs[-VALIDATION:])):
        rows = np.asarray(task.split(split).tokens)
        stream = encoded(task, part)
        assert rows.shape[1] == 16 and len(stream) - rows.size < 16
        assert (rows.reshape(-1) == stream[: rows.size]).all()
    assert task.decode(torch.from_numpy(rows[0].astype(np.int64))) in "".join(docs[-VALIDATION:])


def test_bytes_per_token_counts_decoded_bytes(task: TextTask) -> None:
    arrays = task.split("validation")
    text = task.tokenizer.decode(np.asarray(arrays.tokens).reshape(-1).tolist())
    # Exact up to a multi-byte character cut by the dropped remainder (decoded as U+FFFD).
    assert abs(arrays.meta["bytes"] - len(text.encode())) <= 3
    assert task.bytes_per_token() == pytest.approx(arrays.meta["bytes"] / arrays.tokens.size)


def test_pad_rows_hold_one_document(corpus, tmp_path) -> None:
    folder, docs = corpus
    padded = build(section(folder, packing="pad", seq_len=PAD_LEN), cache_dir=tmp_path)
    padded.prepare()
    arrays = padded.split("validation")
    assert len(arrays) == VALIDATION
    for row, length, doc in zip(np.asarray(arrays.tokens), arrays.lengths, docs[-VALIDATION:]):
        ids = padded.tokenizer.encode_documents([doc])[0][:PAD_LEN]
        assert length == len(ids) and row[:length].tolist() == ids
        assert (row[length:] == padded.tokenizer.pad_id).all()
        decoded = padded.decode(torch.from_numpy(row.astype(np.int64)))
        assert decoded == doc if len(ids) < PAD_LEN else doc.startswith(decoded[:-1])
    lengths = arrays.lengths
    ids = padded.tokenizer.encode_documents(docs[-VALIDATION:])
    assert arrays.meta["tokens"] == int(lengths.sum()) == sum(min(len(i), PAD_LEN) for i in ids)
    assert 0 < sum(len(i) > PAD_LEN for i in ids) < VALIDATION  # some truncated, some whole
    table = padded.tokenizer.token_bytes()
    expected = sum(
        len(d.encode()) if len(i) <= PAD_LEN else int(table[i[:PAD_LEN]].sum())
        for d, i in zip(docs[-VALIDATION:], ids)
    )
    assert arrays.meta["bytes"] == expected
    batch = next(padded.eval_batches(8, 1))
    assert torch.equal(batch.valid.sum(1), torch.from_numpy(lengths[:8].astype(np.int64)))
    assert torch.equal(batch.fixed, ~batch.valid)


def test_cache_keys(task: TextTask, corpus, monkeypatch) -> None:
    folder, _ = corpus
    cache = task.cache_dir.parent
    splits = sorted(p.name for p in (task.cache_dir / "splits").iterdir())

    def no_source(*args, **kwargs):
        raise AssertionError("a cache hit must not read the source")

    again = build(section(folder), cache_dir=cache)
    monkeypatch.setattr(again, "_documents", no_source)
    again.prepare()  # hit: tokenizer and both splits exist
    assert sorted(p.name for p in (task.cache_dir / "splits").iterdir()) == splits
    assert again._split_path("train") == task._split_path("train")
    monkeypatch.undo()

    longer = build(section(folder, seq_len=32), cache_dir=cache)
    other_tokenizer = build(section(folder, tokenizer={"train": {"vocab_size": 300}}), cache_dir=cache)
    for other in (longer, other_tokenizer):
        other.prepare()
        assert other._split_path("train") != task._split_path("train")
        assert other._split_path("validation") != task._split_path("validation")
    assert longer.tokenizer.fingerprint == task.tokenizer.fingerprint
    assert other_tokenizer.tokenizer.fingerprint != task.tokenizer.fingerprint
    assert len(list((task.cache_dir / "tokenizers").iterdir())) == 2
    assert len(list((task.cache_dir / "splits").iterdir())) == 6
    assert not [p for p in (task.cache_dir / "splits").iterdir() if p.name.startswith(".")]  # no leftovers


def test_parallel_tokenization_matches_serial(task: TextTask, corpus, tmp_path, monkeypatch) -> None:
    folder, _ = corpus
    monkeypatch.setattr(text_cache, "CHUNK_DOCUMENTS", 16)  # several chunks in flight, reassembled in order
    parallel = build(section(folder, num_proc=2), cache_dir=tmp_path)
    (tmp_path / "text").mkdir()
    # Reuse the trained tokenizer so only the splits are rebuilt (in two processes).
    (tmp_path / "text" / "tokenizers").symlink_to(task.cache_dir / "tokenizers")
    parallel.prepare()
    assert np.array_equal(np.asarray(parallel.split("train").tokens), np.asarray(task.split("train").tokens))


def test_hub_tokenizer_is_fetched_once_by_prepare(corpus, tmp_path, monkeypatch) -> None:
    """Workers read the copy prepare() stored, never the hub (stand-in: a local tokenizer)."""
    folder, _ = corpus
    calls = []
    local = text_task.train_bpe([["ka to ri", "ne su"]], BpeTraining(vocab_size=270))

    def fake_hub(config):
        calls.append(config.hf)
        return TextTokenizer.from_str(local.to_str())

    monkeypatch.setattr(text_task, "load_tokenizer", fake_hub)
    driver = build(section(folder, tokenizer={"hf": "org/name"}), cache_dir=tmp_path)
    driver.prepare()
    worker = build(section(folder, tokenizer={"hf": "org/name"}), cache_dir=tmp_path)
    assert worker.vocab_size == driver.vocab_size and calls == ["org/name"]
    assert worker.tokenizer.fingerprint == local.fingerprint
    (stored,) = (tmp_path / "text" / "tokenizers").iterdir()
    assert stored.name.startswith("hub-org--name-")


def test_streams_and_eval_batches(task: TextTask) -> None:
    train = task.split("train")
    stream = task.train_stream(4, rank=1, world_size=2, seed=0)
    batch = next(stream)
    assert batch.x0.shape == (4, 16) and batch.valid is None and not batch.fixed.any()
    assert stream.state_dict()["position"] == 8
    first = [b.x0 for b in task.eval_batches(5, 3)]
    second = [b.x0 for b in task.eval_batches(5, 3)]
    assert len(first) == 3 and all(torch.equal(a, b) for a, b in zip(first, second))
    everything = list(task.eval_batches(64, 100))
    assert sum(len(b) for b in everything) == len(task.split("validation"))
    assert len(train) > len(task.split("validation"))


class Replay(Sampler):
    """A stand-in sampler returning fixed token rows."""

    def __init__(self, rows: torch.Tensor):
        self.rows = rows
        self.used = 0

    def generate(self, model, noise, batch: Batch, steps=None) -> Generation:
        out = self.rows[self.used : self.used + len(batch)]
        self.used += len(batch)
        return Generation(out.to(batch.x0.device), torch.full((len(batch),), 7))


def test_evaluate_reports_entropies_and_samples(task: TextTask) -> None:
    data = torch.from_numpy(np.asarray(task.split("validation").tokens[:6]).astype(np.int64))
    repeat = torch.full((6, 16), 40)
    samplers = {"replay": Replay(data), "stuck": Replay(repeat)}
    result = task.evaluate(torch.nn.Identity(), None, samplers, num_samples=6, batch_size=4)
    metrics = result.metrics
    assert metrics["replay/unigram_entropy"] == pytest.approx(metrics["data/unigram_entropy"])
    assert metrics["data/unigram_entropy"] > 1.0 and metrics["stuck/unigram_entropy"] == 0.0
    assert metrics["replay/nfe"] == 7.0
    assert result.samples[:6] == [task.decode(row) for row in data]
    assert set(result.artifacts) == {"samples/replay.txt", "samples/stuck.txt"}
    assert result.samples[0] in result.artifacts["samples/replay.txt"]


def test_evaluate_reference_file(task: TextTask, tmp_path) -> None:
    reference = tmp_path / "reference.txt"
    reference.write_text("\n\n".join(["ka ka ka ka ka ka ka ka ka ka ka ka ka ka ka ka ka ka"] * 4))
    result = task.evaluate(torch.nn.Identity(), None, {}, num_samples=2, batch_size=2, data=reference)
    assert 0.0 < result.metrics["data/unigram_entropy"] < 1.0  # "ka", " ka" and eos only


def test_spec_section_validates(corpus) -> None:
    config = TASKS.validate(section(corpus[0]))
    assert config.packing == "wrap" and config.num_proc == 1 and config.max_documents is None
