"""Tokenized, packed splits on disk as memory-mapped arrays.

One folder per split, named by :func:`cache_key` of everything its contents depend on (source,
validation rule, document cap, split, tokenizer fingerprint, seq_len, packing), holding

- ``tokens.bin``: UInt16 (V <= 65536) or UInt32 [rows, seq_len], raw C order;
- ``lengths.npy``: Int32[rows], real tokens per row (``pad`` packing only);
- ``meta.json``: shape, dtype and counts (documents, real tokens, the UTF-8 bytes they decode to).

A folder is built in a temporary sibling and renamed into place, so readers never see a partial
one; an existing folder is a cache hit. Documents are tokenized by ``num_proc`` processes a chunk
at a time, in order, so the result does not depend on ``num_proc``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import shutil
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from components.tasks.text.packing import Packing, Wrapper, pad
from components.tasks.text.sources import Documents, ValidationFile, ValidationRule
from components.tasks.text.tokenizer import HubTokenizer, TextTokenizer, TokenizerConfig, TrainedTokenizer

CACHE_VERSION = 1  # bump when the layout or the packing rules change
CHUNK_DOCUMENTS = 256  # documents per process task


def cache_key(parts: dict[str, Any]) -> str:
    """20 hex digits of the sha256 of ``parts`` as canonical JSON."""
    canonical = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def file_stamp(path: str | Path) -> list[Any]:
    """``[absolute path, size in bytes, mtime in ns]``: a local file as it enters a cache key."""
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def source_key(source: Any, validation: ValidationRule, limit: dict[str, int | None], *, local: bool) -> dict[str, Any]:
    """What the documents (or conversations) of ``source`` depend on, for :func:`cache_key`: the
    source and validation settings, ``limit`` (e.g. ``{"max_documents": N}``) and, for ``local``
    files (``source.files(pattern)``), the :func:`file_stamp` of every file read."""
    parts: dict[str, Any] = {
        "source": source.model_dump(mode="json"),
        "validation": validation.model_dump(mode="json"),
        **limit,
    }
    if local:
        patterns = [source.path]
        if isinstance(validation, ValidationFile):
            patterns.append(validation.path)
        parts["files"] = [file_stamp(f) for p in patterns for f in source.files(p)]
    return parts


def tokenizer_cache_path(config: TokenizerConfig, folder: Path, source: dict[str, Any]) -> Path | None:
    """Where a task keeps its tokenizer in ``folder``: a trained BPE keyed by its documents'
    :func:`source_key` and settings, a hub tokenizer by its name and settings (so workers never
    need the hub). None for a local file, which is read in place."""
    if isinstance(config, TrainedTokenizer):
        return folder / f"bpe-{cache_key({**source, 'bpe': config.train.model_dump(mode='json')})}.json"
    if isinstance(config, HubTokenizer):
        return folder / f"hub-{config.hf.replace('/', '--')}-{cache_key(config.model_dump(mode='json'))}.json"
    return None


def build_once(path: Path, write: Callable[[Path], dict[str, Any]]) -> bool:
    """Build the cache folder ``path`` unless its ``meta.json`` exists: ``write(tmp)`` fills a
    private temporary folder and returns the metadata, then the folder is renamed into place, so
    concurrent builders never see a partial folder (the first rename wins, the others' copies go).
    Returns True when this call built it, False on a cache hit."""
    path = Path(path)
    if (path / "meta.json").is_file():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        meta = write(tmp)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, path)
        except OSError:  # another process finished the same folder first: keep theirs
            if not (path / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


@dataclass(frozen=True)
class TokenArrays:
    """A packed split. tokens: UInt[N, L] (read-only memmap); lengths: Int32[N] real tokens per
    row, or None when every position is real (``wrap``); meta: the counts in meta.json."""

    tokens: np.ndarray
    lengths: np.ndarray | None
    meta: dict[str, Any]

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes of decoded text per real token (eos and padding decode to no bytes)."""
        return self.meta["bytes"] / self.meta["tokens"]


def open_split(path: Path) -> TokenArrays:
    """Open a built split read-only (workers only read; the driver builds)."""
    meta_path = Path(path) / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path} is not built: run the task's prepare() (driver side) first")
    meta = json.loads(meta_path.read_text())
    tokens = np.memmap(
        Path(path) / "tokens.bin", dtype=meta["dtype"], mode="r", shape=(meta["rows"], meta["seq_len"])
    )
    lengths = np.load(Path(path) / "lengths.npy") if meta["packing"] == "pad" else None
    return TokenArrays(tokens, lengths, meta)


_WORKER_TOKENIZER: TextTokenizer | None = None


def _start_worker(serialized: str, eos: str) -> None:
    global _WORKER_TOKENIZER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per process
    _WORKER_TOKENIZER = TextTokenizer.from_str(serialized, eos)


def _encode(tokenizer: TextTokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Documents back to back (UInt32[T], each ending in eos) and their lengths (Int64[D])."""
    documents = tokenizer.encode_documents(texts)
    lengths = np.fromiter((len(d) for d in documents), dtype=np.int64, count=len(documents))
    flat = np.fromiter(itertools.chain.from_iterable(documents), dtype=np.uint32, count=int(lengths.sum()))
    return flat, lengths


def _encode_in_worker(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    assert _WORKER_TOKENIZER is not None
    return _encode(_WORKER_TOKENIZER, texts)


def encoded_chunks(
    documents: Documents, tokenizer: TextTokenizer, num_proc: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(tokens, lengths) of each chunk of documents, in order; ``num_proc`` > 1 encodes in that many
    spawned processes with at most two chunks per process in flight."""
    batches = documents.batches(CHUNK_DOCUMENTS)
    if num_proc == 1:
        for texts in batches:
            yield _encode(tokenizer, texts)
        return
    context = multiprocessing.get_context("spawn")
    worker_args = (tokenizer.to_str(), tokenizer.eos)
    with context.Pool(num_proc, initializer=_start_worker, initargs=worker_args) as pool:
        pending: deque[Any] = deque()
        for texts in batches:
            pending.append(pool.apply_async(_encode_in_worker, (texts,)))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def build_split(
    path: Path,
    documents: Documents,
    tokenizer: TextTokenizer,
    *,
    seq_len: int,
    packing: Packing,
    num_proc: int,
    progress: bool = True,
) -> bool:
    """Tokenize and pack ``documents`` into the folder ``path`` unless it exists. Returns True when
    it was built, False on a cache hit. Shows a rich progress bar when ``progress`` and stdout is
    a terminal."""
    return build_once(
        path, lambda tmp: _write(tmp, documents, tokenizer, seq_len=seq_len, packing=packing, num_proc=num_proc, progress=progress)
    )

def _write(
    folder: Path,
    documents: Documents,
    tokenizer: TextTokenizer,
    *,
    seq_len: int,
    packing: Packing,
    num_proc: int,
    progress: bool,
) -> dict[str, Any]:
    """Write tokens.bin (and lengths.npy) into ``folder``; returns the meta.json contents."""
    dtype = token_dtype(tokenizer.vocab_size)
    token_bytes = tokenizer.token_bytes()
    wrapper = Wrapper(seq_len, dtype)
    lengths: list[np.ndarray] = []
    rows = real = total = num_bytes = count = 0
    columns = (
        TextColumn(f"tokenize {documents.name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("docs  {task.fields[tokens]:,} tokens"),
        TimeElapsedColumn(),
    )
    show = progress and Console().is_terminal
    bar = Progress(*columns, disable=not show, transient=True)
    with open(folder / "tokens.bin", "wb") as out, bar:
        task = bar.add_task("tokenize", total=documents.count, tokens=0)
        for flat, doc_lengths in encoded_chunks(documents, tokenizer, num_proc):
            if packing == "wrap":
                chunk = wrapper.add(flat)
                real += chunk.size
            else:
                chunk, kept = pad(flat, doc_lengths, seq_len, tokenizer.pad_id, dtype)
                lengths.append(kept)
                real += int(kept.sum())
            out.write(chunk.tobytes())
            rows += len(chunk)
            num_bytes += int(token_bytes[chunk].sum())  # padding is special: 0 bytes
            count += len(doc_lengths)
            total += len(flat)
            bar.update(task, advance=len(doc_lengths), tokens=total)
    if rows == 0:
        raise ValueError(
            f"{documents.name}: {count} documents give no row of {seq_len} tokens; use more documents "
            "or a shorter seq_len"
        )
    if packing == "pad":
        np.save(folder / "lengths.npy", np.concatenate(lengths))
    return {
        "version": CACHE_VERSION,
        "source": documents.name,
        "rows": rows,
        "seq_len": seq_len,
        "packing": packing,
        "dtype": dtype.name,
        "documents": count,
        "tokens": real,
        "bytes": num_bytes,
        "dropped_tokens": total - real,
    }
