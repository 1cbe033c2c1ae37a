"""Training examples: one row per assistant turn, cached as memory-mapped arrays.

An assistant turn k of a conversation gives the example

    context = the rendered messages before it + ``<|im_start|>assistant\\n``
    answer  = its content ids + ``<|im_end|>`` (the end token)

laid out as ``[context][answer][pad ...]`` in a row of ``seq_len`` tokens. When the example
does not fit, the context keeps its last ``max(seq_len - len(answer), seq_len // 2)`` tokens
(at most all of them) and the answer is cut on the right to the room left, losing its end
token (``ended`` False). Caches are folders holding

- ``tokens.bin``: UInt16/UInt32[rows, seq_len] (the text task's dtype rule);
- ``context.npy``, ``answer.npy``: Int32[rows], kept context and answer lengths;
- ``ended.npy``: Bool[rows], the answer kept its end token;
- ``meta.json``: counts (rows, conversations, skipped bad rows, truncated examples).

Built in a temporary sibling folder and renamed into place, like the text task's splits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from components.tasks.chat.conversations import ChatDataError, Conversations, bad_rows_error, check_row
from components.tasks.chat.template import ChatTokenizer, Message, encode_all, encode_message
from components.tasks.text.cache import build_once, token_dtype

CHUNK_ROWS = 512  # source rows read and encoded at a time
BadRows = Literal["error", "skip"]


@dataclass(frozen=True)
class Example:
    """context: Int[c] ids; answer: Int[a] ids (ending in the end id unless cut)."""

    context: list[int]
    answer: list[int]


def turn_examples(tokenizer: ChatTokenizer, conversation: list[Message], encoded: dict[str, list[int]]) -> list[Example]:
    """One example per assistant turn, in order."""
    out, prefix = [], []
    for message in conversation:
        head, body = encode_message(tokenizer, message, encoded)
        if message.role == "assistant":
            out.append(Example(prefix + head, body[: body.index(tokenizer.end_id) + 1]))
        prefix = prefix + head + body
    return out


def fit(example: Example, seq_len: int) -> tuple[list[int], list[int], bool]:
    """(context, answer, ended) cut to ``seq_len`` tokens as the module docstring says."""
    c, a = len(example.context), len(example.answer)
    if c + a <= seq_len:
        return example.context, example.answer, True
    keep = min(c, max(seq_len - a, seq_len // 2))
    context = example.context[c - keep :]
    return context, example.answer[: seq_len - keep], False


@dataclass(frozen=True)
class ExampleArrays:
    """A built split (see the module docstring); tokens is a read-only memmap."""

    tokens: np.ndarray
    context: np.ndarray
    answer: np.ndarray
    ended: np.ndarray
    meta: dict[str, Any]

    def __len__(self) -> int:
        return self.tokens.shape[0]


def open_examples(path: Path) -> ExampleArrays:
    meta_path = Path(path) / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path} is not built: run the task's prepare() (driver side) first")
    meta = json.loads(meta_path.read_text())
    tokens = np.memmap(Path(path) / "tokens.bin", dtype=meta["dtype"], mode="r", shape=(meta["rows"], meta["seq_len"]))
    context, answer, ended = (np.load(Path(path) / f"{name}.npy") for name in ("context", "answer", "ended"))
    return ExampleArrays(tokens, context, answer, ended, meta)


def build_examples(
    path: Path, conversations: Conversations, tokenizer: ChatTokenizer, *, seq_len: int, bad_rows: BadRows
) -> bool:
    """Build the split folder ``path`` unless it exists (True when built). Bad rows raise
    :class:`ChatDataError` listing their row numbers after the whole source is checked (nothing
    is kept), or are skipped and counted with ``bad_rows: skip``."""
    return build_once(path, lambda tmp: _write(tmp, conversations, tokenizer, seq_len=seq_len, bad_rows=bad_rows))

def _write(folder: Path, conversations: Conversations, tokenizer: ChatTokenizer, *, seq_len: int, bad_rows: BadRows) -> dict[str, Any]:
    dtype = token_dtype(tokenizer.vocab_size)
    contexts: list[int] = []
    answers: list[int] = []
    ended: list[bool] = []
    bad: list[tuple[int, str]] = []
    rows = count = 0
    with open(folder / "tokens.bin", "wb") as out:
        for first, items in conversations.batches(CHUNK_ROWS):
            good = []
            for offset, item in enumerate(items):
                messages, why = check_row(item)
                if why is not None:
                    bad.append((first + offset, why))
                else:
                    good.append(messages)
            count += len(items)
            if bad and bad_rows == "error":
                continue  # keep checking, so the error lists every bad row
            encoded = encode_all(tokenizer, good)
            examples = [fit(e, seq_len) for conversation in good for e in turn_examples(tokenizer, conversation, encoded)]
            chunk = np.full((len(examples), seq_len), tokenizer.pad_id, dtype=dtype)
            for i, (context, answer, done) in enumerate(examples):
                chunk[i, : len(context)] = context
                chunk[i, len(context) : len(context) + len(answer)] = answer
                contexts.append(len(context))
                answers.append(len(answer))
                ended.append(done)
            out.write(chunk.tobytes())
            rows += len(examples)
    if bad and bad_rows == "error":
        raise bad_rows_error(conversations.name, bad)
    if rows == 0:
        raise ChatDataError(f"{conversations.name}: {count} rows give no example")
    np.save(folder / "context.npy", np.asarray(contexts, dtype=np.int32))
    np.save(folder / "answer.npy", np.asarray(answers, dtype=np.int32))
    np.save(folder / "ended.npy", np.asarray(ended, dtype=bool))
    return {
        "source": conversations.name,
        "rows": rows,
        "seq_len": seq_len,
        "dtype": dtype.name,
        "conversations": count - len(bad),
        "skipped_bad_rows": len(bad),
        "truncated": int(len(ended) - sum(ended)),
        "answer_tokens": int(sum(answers)),
    }
