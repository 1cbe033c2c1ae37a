"""Where documents come from, and which of them are held out for validation.

A source is a Hugging Face dataset name read through ``datasets`` (``{hf: openwebtext}``,
optionally streamed) or local files (``{path: data/*.jsonl}``: txt, jsonl with a text field, or
parquet). The validation rule is one of ``{last_documents: N}`` (the last N documents of the
training source, after the ``max_documents`` cap), ``{split: validation}`` (a named split of a
hub dataset) or ``{path: valid.txt}`` (a separate local file in the source's format).
Documents keep the source's order; nothing is shuffled here.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag

from components.registry import SpecModel

if TYPE_CHECKING:  # imported where documents are opened: reading a spec needs no datasets
    import datasets

Split = Literal["train", "validation"]
SPLITS: tuple[Split, ...] = ("train", "validation")
FileFormat = Literal["txt", "jsonl", "parquet"]
SUFFIX_FORMATS: dict[str, FileFormat] = {
    ".txt": "txt",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}
BUILDERS: dict[FileFormat, str] = {"txt": "text", "jsonl": "json", "parquet": "parquet"}
LOCAL_EXAMPLE = "{path: corpus.jsonl, text_field: text}"


class SourceError(ValueError):
    """A source could not be read: missing files, unknown dataset, wrong text field."""


class HfSource(SpecModel):
    """A dataset on the Hugging Face hub (downloaded into the HF cache, or streamed)."""

    hf: str = Field(
        min_length=1,
        description="dataset name, e.g. openwebtext, HuggingFaceFW/fineweb, roneneldan/TinyStories, "
        "Salesforce/wikitext, lm1b",
    )
    config: str | None = Field(None, description="dataset configuration, e.g. wikitext-103-raw-v1")
    split: str = Field("train", min_length=1, description="split holding the training documents")
    streaming: bool = Field(False, description="iterate the dataset without downloading it whole")
    text_field: str = Field("text", min_length=1, description="column holding the document text")


class FileSource(SpecModel):
    """Local files: one file or a glob (files read in sorted order)."""

    path: str = Field(min_length=1, description="file or glob, e.g. data/shard-*.jsonl")
    format: FileFormat | None = Field(None, description="txt | jsonl | parquet; default from the suffix")
    text_field: str = Field("text", min_length=1, description="jsonl/parquet column holding the text")
    sample_by: Literal["line", "paragraph", "document"] = Field(
        "paragraph", description="txt: one document per line, per blank-line paragraph, or per file"
    )

    def files(self, pattern: str | None = None) -> list[str]:
        """The sorted files matching ``pattern`` (default ``path``); SourceError if none."""
        pattern = pattern or self.path
        files = sorted(glob.glob(pattern, recursive=True))
        if not files:
            raise SourceError(f"source path {pattern!r} matches no files")
        return files

    def resolved_format(self) -> FileFormat:
        if self.format is not None:
            return self.format
        suffix = Path(self.path).suffix.lower()
        if suffix not in SUFFIX_FORMATS:
            raise SourceError(
                f"cannot tell the format of {self.path!r} from its suffix; set format: txt | jsonl | parquet"
            )
        return SUFFIX_FORMATS[suffix]

    def column(self) -> str:
        """The column that holds the text (txt files always give ``text``)."""
        return "text" if self.resolved_format() == "txt" else self.text_field


def tag_by_keys(*keys: str) -> Any:
    """A union discriminator: the tag is the first of ``keys`` that the mapping (or model) has."""

    def tag(value: Any) -> str | None:
        present = value if isinstance(value, dict) else type(value).model_fields
        return next((key for key in keys if key in present), None)

    return tag


Source = Annotated[
    Union[Annotated[HfSource, Tag("hf")], Annotated[FileSource, Tag("path")]],  # noqa: UP007
    Discriminator(
        tag_by_keys("hf", "path"),
        custom_error_type="source",
        custom_error_message="source needs 'hf: <dataset name>' or 'path: <file or glob>'",
    ),
]


class LastDocuments(SpecModel):
    """Hold out the last N documents of the (capped) training source."""

    last_documents: int = Field(ge=1, le=100_000_000)


class NamedSplit(SpecModel):
    """A named split of a hub dataset (read with the same config and text field)."""

    split: str = Field(min_length=1)


class ValidationFile(SpecModel):
    """A separate local file or glob, in the training source's format and text field."""

    path: str = Field(min_length=1)


ValidationRule = Annotated[
    Union[  # noqa: UP007
        Annotated[LastDocuments, Tag("last_documents")],
        Annotated[NamedSplit, Tag("split")],
        Annotated[ValidationFile, Tag("path")],
    ],
    Discriminator(
        tag_by_keys("last_documents", "split", "path"),
        custom_error_type="validation_rule",
        custom_error_message=(
            "validation needs 'last_documents: N', 'split: <name>' (hub) or 'path: <file>' (files)"
        ),
    ),
]


@dataclass(frozen=True)
class Documents:
    """An ordered collection of texts.

    data: a one-column Dataset (Arrow, memory-mapped) or IterableDataset (streamed);
    count: number of documents when known (None for a stream of unknown length);
    name: where they come from, for messages and progress bars."""

    data: datasets.Dataset | datasets.IterableDataset
    column: str
    count: int | None
    name: str

    def batches(self, size: int) -> Iterator[list[str]]:
        """The texts in order, ``size`` at a time (the last batch may be shorter)."""
        for batch in self.data.iter(batch_size=size):
            if self.column not in batch:
                raise SourceError(
                    f"{self.name}: no text field {self.column!r}; fields are {sorted(batch)}; set text_field"
                )
            texts = batch[self.column]
            bad = [t for t in texts if not isinstance(t, str)]
            if bad:
                raise SourceError(
                    f"{self.name}: text field {self.column!r} holds a non-text value {bad[0]!r}"
                )
            yield list(texts)

    def take(self, start: int, count: int | None) -> "Documents":
        """Documents ``start .. start + count - 1`` (to the end when count is None)."""
        data = self.data.skip(start) if start else self.data
        if count is not None:
            data = data.take(count)
        known = None if self.count is None else max(0, self.count - start)
        if count is not None:
            known = count if known is None else min(known, count)
        return Documents(data, self.column, known, self.name)


def _select(data: datasets.Dataset | datasets.IterableDataset, column: str, name: str) -> Any:
    names = data.column_names
    if names is not None and column not in names:
        raise SourceError(f"{name}: no text field {column!r}; columns are {sorted(names)}; set text_field")
    return data if names is None or names == [column] else data.select_columns([column])


def _hub(source: HfSource, split: str) -> Documents:
    import datasets

    name = f"hf:{source.hf}" + (f"/{source.config}" if source.config else "") + f"[{split}]"
    try:
        data = datasets.load_dataset(source.hf, source.config, split=split, streaming=source.streaming)
    except (OSError, ValueError) as err:
        raise SourceError(
            f"could not load Hugging Face dataset {source.hf!r} (config {source.config!r}, split {split!r}): "
            f"{err}. Without network access, load it once where there is (HF_DATASETS_OFFLINE=1 then "
            f"reads the HF cache), or use a local source such as {LOCAL_EXAMPLE}"
        ) from err
    count = len(data) if isinstance(data, datasets.Dataset) else _stream_length(data, split)
    return Documents(_select(data, source.text_field, name), source.text_field, count, name)


def _stream_length(data: datasets.IterableDataset, split: str) -> int | None:
    splits = data.info.splits
    info = splits.get(split) if splits else None
    return info.num_examples if info is not None and info.num_examples else None


def file_documents(source: FileSource, pattern: str, datasets_cache: Path) -> Documents:
    """The documents of the files matching ``pattern``, read as ``source`` describes (format,
    text field); their Arrow conversion is cached under ``datasets_cache``."""
    import datasets

    files = source.files(pattern)
    fmt = source.resolved_format()
    options = {"sample_by": source.sample_by} if fmt == "txt" else {}
    try:
        data = datasets.load_dataset(
            BUILDERS[fmt], data_files=files, split="train", cache_dir=str(datasets_cache), **options
        )
    except (OSError, ValueError) as err:
        raise SourceError(f"could not read {fmt} files {pattern!r}: {err}") from err
    name = f"{fmt}:{pattern}"
    column = source.column()
    return Documents(_select(data, column, name), column, len(data), name)


def rule_mismatch(
    source: HfSource | FileSource, validation: LastDocuments | NamedSplit | ValidationFile
) -> str | None:
    """Why ``validation`` does not apply to ``source`` (None when it does)."""
    if isinstance(validation, NamedSplit) and not isinstance(source, HfSource):
        return (
            "validation: {split: ...} needs a hub source; use {path: <file>} or {last_documents: N} "
            "for local files"
        )
    if isinstance(validation, ValidationFile) and not isinstance(source, FileSource):
        return (
            "validation: {path: ...} needs a file source; use {split: <name>} or {last_documents: N} "
            "for hub datasets"
        )
    return None


def split_documents(
    source: HfSource | FileSource,
    validation: LastDocuments | NamedSplit | ValidationFile,
    max_documents: int | None,
    datasets_cache: Path,
) -> dict[Split, Documents]:
    """The train and validation documents of a source under a validation rule.

    ``max_documents`` caps every source read (the training source, and a named validation split
    or file); with ``last_documents`` the validation documents are the last N of the capped
    training source and the training documents are the ones before them. ``datasets_cache`` holds
    the Arrow conversions of local files (hub datasets use the default HF cache)."""
    problem = rule_mismatch(source, validation)
    if problem:
        raise SourceError(problem)
    if isinstance(source, HfSource):
        train = _hub(source, source.split).take(0, max_documents)
    else:
        train = file_documents(source, source.path, datasets_cache).take(0, max_documents)
    if isinstance(validation, LastDocuments):
        total = train.count
        if total is None:
            raise SourceError(
                f"{train.name} is a stream of unknown length, so its last {validation.last_documents} "
                "documents are undefined; set max_documents or use validation: {split: <name>}"
            )
        if total <= validation.last_documents:
            raise SourceError(
                f"{train.name} has {total} documents, not more than validation.last_documents "
                f"{validation.last_documents}"
            )
        cut = total - validation.last_documents
        return {"train": train.take(0, cut), "validation": train.take(cut, validation.last_documents)}
    if isinstance(validation, NamedSplit):
        held_out = _hub(source, validation.split)  # type: ignore[arg-type]  (checked above)
    else:
        held_out = file_documents(source, validation.path, datasets_cache)  # type: ignore[arg-type]
    return {"train": train, "validation": held_out.take(0, max_documents)}
