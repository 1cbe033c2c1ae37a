"""Text data throughput: tokenization (building a packed split) and the training loader, tokens/s.

    python benchmarks/data_loading.py --documents 4000 --num-proc 1 2 \
        --out benchmarks/results/data-loading-cpu.md
    python benchmarks/data_loading.py --corpus owt-sample.jsonl --tokenizer-file gpt2/tokenizer.json \
        --seq-len 1024 --batch 32 --num-proc 1 8 16 --trainer-tokens-per-s 150000

Corpus: ``--corpus`` (a local txt / jsonl / parquet source, as in a spec's ``task.source.path``)
or, by default, a generated one: ``--documents`` documents of 50 to 500 words drawn from a Zipf
law over 20,000 made-up words with some accented and CJK characters (about 1.3 bytes of UTF-8
per character), written as jsonl to a temporary folder.

Tokenizer: ``--tokenizer-file`` (a tokenizer.json, e.g. GPT-2's saved locally) or a byte-level BPE
of ``--vocab-size`` trained on the corpus first (timed separately).

Tokenization: :func:`components.tasks.text.cache.build_split` on all documents with each
``--num-proc``; tokens/s = tokens written / wall time, which includes reading the source (Arrow),
encoding, packing and writing the memory-mapped file. Loader: ``TextStream.__next__`` (epoch
permutation, gather of ``--batch`` random rows from the memory-mapped split, int64 tensor), one
process; the file is in the page cache after the build. ``--trainer-tokens-per-s`` (training
tokens/s of one worker, from throughput.py on the target GPU) adds the loader's headroom: loader
tokens/s / trainer tokens/s, which must stay well above 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.tasks.text.cache import build_split, open_split  # noqa: E402
from components.tasks.text.sources import FileSource, file_documents  # noqa: E402
from components.tasks.text.stream import TextStream  # noqa: E402
from components.tasks.text.tokenizer import (  # noqa: E402
    BpeTraining,
    FileTokenizer,
    load_tokenizer,
    train_bpe,
)

LETTERS = "abcdefghijklmnopqrstuvwxyzéèüöñç日本語"


def generate_corpus(path: Path, documents: int, seed: int) -> None:
    """``documents`` jsonl lines of Zipf-distributed made-up words."""
    rng = np.random.default_rng(seed)
    letters = np.array(list(LETTERS))
    weights = np.r_[np.full(26, 1.0), np.full(len(LETTERS) - 26, 0.05)]
    p = weights / weights.sum()
    words = ["".join(rng.choice(letters, size=rng.integers(1, 10), p=p)) for _ in range(20_000)]
    ranks = np.arange(1, len(words) + 1)
    zipf = 1.0 / ranks / (1.0 / ranks).sum()
    with open(path, "w") as out:
        for _ in range(documents):
            picks = rng.choice(len(words), size=rng.integers(50, 500), p=zipf)
            out.write(json.dumps({"text": " ".join(words[i] for i in picks) + "."}) + "\n")


def git_commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "components/tasks/text", "benchmarks/data_loading.py")
    return commit + (" (with local changes)" if dirty else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=None, help="local txt/jsonl/parquet file or glob (default: generated)")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--documents", type=int, default=4000, help="generated documents (without --corpus)")
    parser.add_argument("--tokenizer-file", type=Path, default=None, help="tokenizer.json (default: train a BPE)")
    parser.add_argument("--vocab-size", type=int, default=8192, help="trained BPE size (without --tokenizer-file)")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--packing", choices=["wrap", "pad"], default="wrap")
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1], help="tokenization processes to time")
    parser.add_argument("--batch", type=int, default=64, help="loader rows per batch (one worker's micro-batch)")
    parser.add_argument("--batches", type=int, default=200, help="timed loader batches")
    parser.add_argument("--trainer-tokens-per-s", type=float, default=None, help="one worker's training tokens/s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="", help="free text added to the report")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        corpus = args.corpus
        if corpus is None:
            corpus = str(folder / "corpus.jsonl")
            generate_corpus(Path(corpus), args.documents, args.seed)
        source = FileSource(path=corpus, text_field=args.text_field)
        documents = file_documents(source, source.path, folder / "datasets")
        text_bytes = sum(len(t.encode()) for batch in documents.batches(1024) for t in batch)

        start = time.perf_counter()
        if args.tokenizer_file is not None:
            tokenizer = load_tokenizer(FileTokenizer(file=args.tokenizer_file))
            tokenizer_line = f"{args.tokenizer_file} (V = {tokenizer.vocab_size})"
        else:
            tokenizer = train_bpe(documents.batches(1024), BpeTraining(vocab_size=args.vocab_size))
            tokenizer_line = (
                f"byte-level BPE trained on the corpus, V = {tokenizer.vocab_size} "
                f"({time.perf_counter() - start:.1f} s to train)"
            )

        rows = []
        for num_proc in args.num_proc:
            path = folder / f"split-{num_proc}"
            start = time.perf_counter()
            build_split(
                path,
                documents,
                tokenizer,
                seq_len=args.seq_len,
                packing=args.packing,
                num_proc=num_proc,
                progress=False,
            )
            seconds = time.perf_counter() - start
            meta = open_split(path).meta
            total = meta["tokens"] + meta["dropped_tokens"]
            rows.append((num_proc, seconds, total / seconds, text_bytes / seconds / 2**20))

        arrays = open_split(folder / f"split-{args.num_proc[0]}")
        stream = TextStream(arrays, args.batch, rank=0, world_size=1, seed=args.seed)
        for _ in range(5):
            next(stream)
        start = time.perf_counter()
        for _ in range(args.batches):
            next(stream)
        loader_seconds = (time.perf_counter() - start) / args.batches
        loader_tokens = args.batch * args.seq_len / loader_seconds

    command = shlex.join(sys.argv[1:] if argv is None else argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"# Text data loading: {args.packing}, seq_len {args.seq_len}",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.processor() or platform.machine()}, {cores} logical cores; "
        f"load average (1 min) {os.getloadavg()[0]:.2f} at the end",
        f"- torch {torch.__version__}, Python {platform.python_version()}",
        f"- git commit: {git_commit()}",
        f"- command: `python benchmarks/data_loading.py {command}`",
        f"- corpus: {args.corpus or 'generated'}: {meta['documents']:,} documents, "
        f"{text_bytes / 2**20:.1f} MiB of UTF-8, {total:,} tokens ({text_bytes / total:.2f} bytes/token)",
        f"- tokenizer: {tokenizer_line}",
        f"- split: {meta['rows']:,} rows of {args.seq_len}; {meta['dropped_tokens']:,} tokens dropped",
        "",
        "| stage | processes | tokens/s | notes |",
        "|---|---|---|---|",
    ]
    for num_proc, seconds, tokens_per_s, mib_per_s in rows:
        notes = f"{seconds:.2f} s, {mib_per_s:.2f} MiB/s of text"
        lines.append(f"| tokenize + pack + write | {num_proc} | {tokens_per_s:,.0f} | {notes} |")
    lines.append(
        f"| loader (TextStream) | 1 | {loader_tokens:,.0f} | batch {args.batch} x {args.seq_len}, "
        f"{loader_seconds * 1e3:.3f} ms/batch |"
    )
    if args.trainer_tokens_per_s:
        headroom = loader_tokens / args.trainer_tokens_per_s
        trainer = f"{args.trainer_tokens_per_s:,.0f}"
        lines += ["", f"Loader headroom over a trainer at {trainer} tokens/s: {headroom:,.0f}x."]
    if args.note:
        lines += ["", f"Note: {args.note}"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
