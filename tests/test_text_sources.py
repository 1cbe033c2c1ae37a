"""Text sources: local txt/jsonl/parquet files, the validation rules, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import huggingface_hub
import polars as pl
import pytest

from components.registry import BuildError
from components.tasks import TASKS
from components.tasks.text.sources import (
    FileSource,
    HfSource,
    LastDocuments,
    SourceError,
    ValidationFile,
    split_documents,
)

HUB = {"hf": "lm1b"}
LAST_ONE, LAST_ALL = LastDocuments(last_documents=1), LastDocuments(last_documents=30)
TEXTS = [f"document {i}: naïve café {'word ' * (i % 7)}".strip() for i in range(30)]


def texts(documents) -> list[str]:
    return sum(documents.batches(7), [])


def write_jsonl(path: Path, rows: list[str], field: str = "text") -> Path:
    path.write_text("".join(json.dumps({field: t, "id": i}) + "\n" for i, t in enumerate(rows)))
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "txt"])
def test_local_formats_load_in_order(tmp_path: Path, fmt: str) -> None:
    if fmt == "jsonl":
        write_jsonl(tmp_path / "a.jsonl", TEXTS[:20])
        write_jsonl(tmp_path / "b.jsonl", TEXTS[20:])
    elif fmt == "parquet":
        pl.DataFrame({"body": TEXTS[:20]}).write_parquet(tmp_path / "a.parquet")
        pl.DataFrame({"body": TEXTS[20:]}).write_parquet(tmp_path / "b.parquet")
    else:
        (tmp_path / "a.txt").write_text("\n\n".join(TEXTS[:20]) + "\n")
        (tmp_path / "b.txt").write_text("\n\n".join(TEXTS[20:]) + "\n")
    source = FileSource(path=str(tmp_path / f"*.{fmt}"), text_field="body" if fmt == "parquet" else "text")
    splits = split_documents(source, LastDocuments(last_documents=4), None, tmp_path / "cache")
    assert [s.strip() for s in texts(splits["train"])] == TEXTS[:26]
    assert [s.strip() for s in texts(splits["validation"])] == TEXTS[26:]
    assert (splits["train"].count, splits["validation"].count) == (26, 4)


def test_cap_and_validation_file(tmp_path: Path) -> None:
    source = FileSource(path=str(write_jsonl(tmp_path / "train.jsonl", TEXTS)))
    capped = split_documents(source, LastDocuments(last_documents=3), 10, tmp_path / "cache")
    assert texts(capped["train"]) == TEXTS[:7] and texts(capped["validation"]) == TEXTS[7:10]
    held = ValidationFile(path=str(write_jsonl(tmp_path / "valid.jsonl", ["held out one", "held out two"])))
    splits = split_documents(source, held, None, tmp_path / "cache")
    assert texts(splits["train"]) == TEXTS and texts(splits["validation"]) == ["held out one", "held out two"]


def test_missing_file_and_wrong_field_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="matches no files"):
        split_documents(FileSource(path=str(tmp_path / "nope.jsonl")), LAST_ONE, None, tmp_path)
    path = write_jsonl(tmp_path / "docs.jsonl", TEXTS, field="content")
    with pytest.raises(SourceError, match=r"no text field 'text'; columns are \['content', 'id'\]"):
        split_documents(FileSource(path=str(path)), LastDocuments(last_documents=1), None, tmp_path / "cache")
    with pytest.raises(SourceError, match="cannot tell the format"):
        FileSource(path=str(tmp_path / "docs.csv")).resolved_format()
    with pytest.raises(SourceError, match="has 30 documents, not more than validation.last_documents 30"):
        split_documents(FileSource(path=str(path), text_field="content"), LAST_ALL, None, tmp_path)


def test_missing_hub_dataset_names_it_and_suggests_a_local_source(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no network
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(SourceError, match=r"'difflab-test/does-not-exist'.*local source such as \{path:"):
        split_documents(HfSource(hf="difflab-test/does-not-exist"), LAST_ONE, None, tmp_path)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"source": {"path": "x.jsonl"}, "validation": {"split": "validation"}}, "needs a hub source"),
        ({"source": HUB, "validation": {"path": "v.txt"}}, "needs a file source"),
        ({"source": {"file": "x.jsonl"}, "validation": {"last_documents": 5}}, "source needs 'hf: <dataset"),
        ({"source": HUB, "validation": {"last": 5}}, "validation needs 'last_documents: N'"),
        ({"source": HUB, "validation": {"last_documents": 5}, "max_documents": 5}, "leaves no training"),
        ({"source": HUB, "validation": {"split": "test"}, "tokenizer": {"train": {"vocab_size": 10}}}, "vocab_size"),
        ({"source": HUB, "validation": {"split": "test"}, "packing": "ragged"}, "packing"),
    ],
)
def test_bad_configs_are_rejected(section: dict, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        TASKS.validate({"kind": "text", "tokenizer": {"hf": "gpt2"}, **section})
