"""Where conversations come from and which rows are well formed.

A source is a Hugging Face dataset (``{hf: HuggingFaceTB/smol-smoltalk}``, read through
``datasets``, optionally streamed) or local jsonl/parquet files (``{path: chats.jsonl}``); each
row holds a ``messages`` list of ``{role, content}`` (the column is ``messages_field``). The
validation rule is the text task's: ``{last_documents: N}`` (the last N conversations),
``{split: test}`` (hub) or ``{path: valid.jsonl}`` (files).

A row is bad when its messages are not a list of mappings, a message has no role or an unknown
one, a content is missing, not text or empty (whitespace only), or no message is the
assistant's. Bad rows are reported by row number (1-based, within the source as read).
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag

from components.registry import SpecModel
from components.tasks.chat.template import ROLES, Message
from components.tasks.text.sources import LastDocuments, NamedSplit, Split, ValidationFile, tag_by_keys

if TYPE_CHECKING:  # imported where conversations are opened: reading a spec needs no datasets
    import datasets

BUILDERS = {"jsonl": "json", "parquet": "parquet"}
SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
SHOWN_BAD_ROWS = 10  # bad rows listed in the error; the total is always given


class ChatDataError(ValueError):
    """Conversations could not be read, or some rows are malformed (the message lists them)."""


class ChatHubSource(SpecModel):
    hf: str = Field(min_length=1, description="dataset name, e.g. HuggingFaceTB/smol-smoltalk")
    config: str | None = Field(None, description="dataset configuration")
    split: str = Field("train", min_length=1, description="split holding the training conversations")
    streaming: bool = Field(False, description="iterate the dataset without downloading it whole")
    messages_field: str = Field("messages", min_length=1, description="column holding the message list")


class ChatFileSource(SpecModel):
    path: str = Field(min_length=1, description="file or glob of jsonl or parquet files")
    format: Literal["jsonl", "parquet"] | None = Field(None, description="default from the suffix")
    messages_field: str = Field("messages", min_length=1, description="column holding the message list")

    def files(self, pattern: str) -> list[str]:
        files = sorted(glob.glob(pattern, recursive=True))
        if not files:
            raise ChatDataError(f"source path {pattern!r} matches no files")
        return files

    def resolved_format(self) -> str:
        if self.format is not None:
            return self.format
        suffix = Path(self.path).suffix.lower()
        if suffix not in SUFFIXES:
            raise ChatDataError(f"cannot tell the format of {self.path!r} from its suffix; set format: jsonl | parquet")
        return SUFFIXES[suffix]


ChatSource = Annotated[
    Union[Annotated[ChatHubSource, Tag("hf")], Annotated[ChatFileSource, Tag("path")]],  # noqa: UP007
    Discriminator(
        tag_by_keys("hf", "path"),
        custom_error_type="source",
        custom_error_message="source needs 'hf: <dataset name>' or 'path: <jsonl or parquet file or glob>'",
    ),
]


def rule_mismatch(source: ChatHubSource | ChatFileSource, validation: Any) -> str | None:
    """Why ``validation`` does not apply to ``source`` (None when it does)."""
    if isinstance(validation, NamedSplit) and not isinstance(source, ChatHubSource):
        return "validation: {split: ...} needs a hub source; use {path: <file>} or {last_documents: N}"
    if isinstance(validation, ValidationFile) and not isinstance(source, ChatFileSource):
        return "validation: {path: ...} needs a file source; use {split: <name>} or {last_documents: N}"
    return None


def check_row(messages: Any) -> tuple[list[Message] | None, str | None]:
    """(messages, None) for a well-formed row, (None, why) for a bad one."""
    if not isinstance(messages, list) or not messages:
        return None, "messages is not a non-empty list"
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return None, f"message {i} is not a mapping"
        role, content = message.get("role"), message.get("content")
        if role is None:
            return None, f"message {i} has no role"
        if role not in ROLES:
            return None, f"message {i} has unknown role {role!r} (allowed: {', '.join(ROLES)})"
        if not isinstance(content, str):
            return None, f"message {i} ({role}) has no text content"
        if not content.strip():
            return None, f"message {i} ({role}) has empty content"
        out.append(Message(role, content))
    if not any(m.role == "assistant" for m in out):
        return None, "no assistant turn"
    return out, None


@dataclass(frozen=True)
class Conversations:
    """An ordered collection of rows. data: a Dataset or IterableDataset with the messages
    column; count: rows when known; first_row: 1-based number of the first row within the
    source (for error messages); name: where they come from."""

    data: datasets.Dataset | datasets.IterableDataset
    column: str
    count: int | None
    name: str
    first_row: int = 1

    def batches(self, size: int) -> Iterator[tuple[int, list[Any]]]:
        """(row number of the first, raw message lists) ``size`` rows at a time."""
        row = self.first_row
        for batch in self.data.iter(batch_size=size):
            if self.column not in batch:
                raise ChatDataError(f"{self.name}: no messages field {self.column!r}; fields are {sorted(batch)}; set messages_field")
            items = list(batch[self.column])
            yield row, items
            row += len(items)

    def take(self, start: int, count: int | None) -> "Conversations":
        data = self.data.skip(start) if start else self.data
        if count is not None:
            data = data.take(count)
        known = None if self.count is None else max(0, self.count - start)
        if count is not None:
            known = count if known is None else min(known, count)
        return Conversations(data, self.column, known, self.name, self.first_row + start)


def bad_rows_error(name: str, bad: list[tuple[int, str]]) -> ChatDataError:
    shown = "; ".join(f"row {row}: {why}" for row, why in bad[:SHOWN_BAD_ROWS])
    more = f" (and {len(bad) - SHOWN_BAD_ROWS} more)" if len(bad) > SHOWN_BAD_ROWS else ""
    return ChatDataError(
        f"{name}: {len(bad)} bad row(s): {shown}{more}. Each row needs a non-empty list of "
        f"{{role, content}} with role one of {', '.join(ROLES)}, non-empty content and at least one "
        "assistant turn; or set task.bad_rows: skip"
    )


def bad_rows(conversations: Conversations) -> list[tuple[int, str]]:
    """(row number, why) of every bad row."""
    return [
        (first + offset, why)
        for first, items in conversations.batches(512)
        for offset, item in enumerate(items)
        if (why := check_row(item)[1]) is not None
    ]


def _select(data: Any, column: str, name: str) -> Any:
    names = data.column_names
    if names is not None and column not in names:
        raise ChatDataError(f"{name}: no messages field {column!r}; columns are {sorted(names)}; set messages_field")
    return data if names is None or names == [column] else data.select_columns([column])


def _hub(source: ChatHubSource, split: str) -> Conversations:
    import datasets

    name = f"hf:{source.hf}" + (f"/{source.config}" if source.config else "") + f"[{split}]"
    try:
        data = datasets.load_dataset(source.hf, source.config, split=split, streaming=source.streaming)
    except (OSError, ValueError) as err:
        raise ChatDataError(
            f"could not load Hugging Face dataset {source.hf!r} (config {source.config!r}, split {split!r}): {err}. "
            "Without network access use a local source such as {path: chats.jsonl}"
        ) from err
    count = len(data) if isinstance(data, datasets.Dataset) else None
    return Conversations(_select(data, source.messages_field, name), source.messages_field, count, name)


def file_conversations(source: ChatFileSource, pattern: str, cache: Path) -> Conversations:
    """The rows of the files matching ``pattern``, read as ``source`` says; their Arrow conversion
    is cached under ``cache``."""
    import datasets

    files = source.files(pattern)
    fmt = source.resolved_format()
    try:
        data = datasets.load_dataset(BUILDERS[fmt], data_files=files, split="train", cache_dir=str(cache))
    except (OSError, ValueError) as err:  # includes datasets' DatasetGenerationError on broken json
        raise ChatDataError(f"could not read {fmt} files {pattern!r}: {err}") from err
    except Exception as err:  # pyarrow and the json builder raise their own types on malformed files
        raise ChatDataError(f"could not read {fmt} files {pattern!r}: {type(err).__name__}: {err}") from err
    name = f"{fmt}:{pattern}"
    return Conversations(_select(data, source.messages_field, name), source.messages_field, len(data), name)


def split_conversations(
    source: ChatHubSource | ChatFileSource, validation: Any, max_conversations: int | None, cache: Path
) -> dict[Split, Conversations]:
    """Train and validation rows under a validation rule; ``max_conversations`` caps every source
    read, and ``last_documents`` holds out the last N rows of the capped training source."""
    problem = rule_mismatch(source, validation)
    if problem:
        raise ChatDataError(problem)
    if isinstance(source, ChatHubSource):
        train = _hub(source, source.split).take(0, max_conversations)
    else:
        train = file_conversations(source, source.path, cache).take(0, max_conversations)
    if isinstance(validation, LastDocuments):
        total = train.count
        if total is None:
            raise ChatDataError(
                f"{train.name} is a stream of unknown length; set max_conversations or use validation: {{split: <name>}}"
            )
        if total <= validation.last_documents:
            raise ChatDataError(f"{train.name} has {total} rows, not more than validation.last_documents {validation.last_documents}")
        cut = total - validation.last_documents
        return {"train": train.take(0, cut), "validation": train.take(cut, validation.last_documents)}
    if isinstance(validation, NamedSplit):
        held_out = _hub(source, validation.split)  # type: ignore[arg-type]  (checked above)
    else:
        held_out = file_conversations(source, validation.path, cache)  # type: ignore[arg-type]
    return {"train": train, "validation": held_out.take(0, max_conversations)}

