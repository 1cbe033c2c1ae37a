"""The ``text`` task kind: documents from a hub dataset or local files, a tokenizer, packed rows
cached as memory-mapped arrays, a resumable rank-sharded stream, and sample metrics.

Vocabulary: the tokenizer's ids plus ``<|endoftext|>`` (end of document), ``[PAD]`` and
``[MASK]`` (``mask_id``); see tokenizer.py. Rows: ``seq_len`` tokens packed by ``wrap`` or
``pad``; see packing.py. Likelihoods convert to bits per byte with :meth:`TextTask.bytes_per_token`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from components.batch import Batch
from components.metrics.text import unigram_entropy
from components.noise.base import NoiseProcess
from components.registry import SpecModel
from components.samplers.base import Sampler
from components.tasks.base import EvalResult, Task
from components.tasks.registry import TASKS
from components.tasks.text.cache import CHUNK_DOCUMENTS, TokenArrays, build_split, cache_key, open_split
from components.tasks.text.packing import Packing
from components.tasks.text.sources import (
    SPLITS,
    Documents,
    FileSource,
    LastDocuments,
    Source,
    Split,
    ValidationFile,
    ValidationRule,
    file_documents,
    rule_mismatch,
    split_documents,
)
from components.tasks.text.stream import TextStream, rows_to_batch
from components.tasks.text.tokenizer import (
    EOS,
    HubTokenizer,
    TextTokenizer,
    TokenizerConfig,
    TokenizerError,
    TrainedTokenizer,
    load_tokenizer,
    train_bpe,
)


class TextConfig(SpecModel):
    kind: Literal["text"] = "text"
    source: Source = Field(
        description="{hf: name, config, split, streaming, text_field} | {path, format, text_field, sample_by}"
    )
    validation: ValidationRule = Field(
        description="{last_documents: N} | {split: name} (hub) | {path: file} (local files)"
    )
    max_documents: int | None = Field(
        None, ge=2, le=10_000_000_000, description="read at most this many documents per source (local runs)"
    )
    tokenizer: TokenizerConfig = Field(
        description="{hf: gpt2} | {file: tokenizer.json} | {train: {vocab_size: N}}"
    )
    seq_len: int = Field(512, ge=8, le=131_072, description="tokens per row")
    packing: Packing = Field("wrap", description="wrap: documents back to back, cut; pad: one per row")
    num_proc: int = Field(1, ge=1, le=512, description="processes that tokenize in prepare()")

    @model_validator(mode="after")
    def _rule_fits_source(self) -> "TextConfig":
        problem = rule_mismatch(self.source, self.validation)
        if problem:
            raise ValueError(problem)
        if (
            isinstance(self.validation, LastDocuments)
            and self.max_documents is not None
            and self.max_documents <= self.validation.last_documents
        ):
            raise ValueError(
                f"max_documents {self.max_documents} leaves no training documents after "
                f"validation.last_documents {self.validation.last_documents}"
            )
        return self


@TASKS.register(TextConfig)
class TextTask(Task):
    """Language modelling on text. Caches live under ``<cache_dir>/text``: ``tokenizers/`` (trained
    BPEs and hub tokenizers), ``splits/`` (packed rows, see cache.py) and ``datasets/`` (Arrow
    conversions of local files). ``vocab_size`` and ``mask_id`` need the tokenizer: for ``train``
    tokenizers that is after :meth:`prepare`. Cache keys include the size and mtime of local
    source files, so workers must see those files (like the cache) at the same paths."""

    def __init__(self, config: TextConfig, *, cache_dir: Path):
        self.config = config
        self.cache_dir = Path(cache_dir) / "text"
        self.seq_len = config.seq_len
        self._tokenizer: TextTokenizer | None = None
        self._splits: dict[str, TokenArrays] = {}

    # ------------------------------------------------------------------ vocabulary

    @property
    def tokenizer(self) -> TextTokenizer:
        """The tokenizer with its special tokens: read from the cache when prepare() stored it there
        (trained BPEs, hub tokenizers), otherwise loaded from the hub or the local file."""
        if self._tokenizer is None:
            config = self.config.tokenizer
            path = self._tokenizer_path()
            if path is not None and path.is_file():
                eos = EOS if isinstance(config, TrainedTokenizer) else config.eos
                self._tokenizer = TextTokenizer.from_str(path.read_text(), eos)
            elif isinstance(config, TrainedTokenizer):
                raise TokenizerError(f"the trained tokenizer {path} does not exist yet: run prepare() first")
            else:
                self._tokenizer = load_tokenizer(config)
        return self._tokenizer

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.tokenizer.vocab_size

    @property
    def mask_id(self) -> int:  # type: ignore[override]
        return self.tokenizer.mask_id

    # ------------------------------------------------------------------ caches

    def _document_key(self) -> dict[str, Any]:
        """What the documents depend on; local files enter with their size and mtime."""
        config = self.config
        parts: dict[str, Any] = {
            "source": config.source.model_dump(mode="json"),
            "validation": config.validation.model_dump(mode="json"),
            "max_documents": config.max_documents,
        }
        if isinstance(config.source, FileSource):
            patterns = [config.source.path]
            if isinstance(config.validation, ValidationFile):
                patterns.append(config.validation.path)
            files = [os.path.abspath(f) for p in patterns for f in config.source.files(p)]
            parts["files"] = [[f, os.stat(f).st_size, os.stat(f).st_mtime_ns] for f in files]
        return parts

    def _tokenizer_path(self) -> Path | None:
        """Where prepare() stores the tokenizer: trained BPEs (keyed by their documents and
        settings) and hub tokenizers (so workers never need the hub). None for a local file,
        which is read in place."""
        config = self.config.tokenizer
        folder = self.cache_dir / "tokenizers"
        if isinstance(config, TrainedTokenizer):
            key = cache_key({**self._document_key(), "bpe": config.train.model_dump(mode="json")})
            return folder / f"bpe-{key}.json"
        if isinstance(config, HubTokenizer):
            key = cache_key(config.model_dump(mode="json"))
            return folder / f"hub-{config.hf.replace('/', '--')}-{key}.json"
        return None

    def _split_path(self, split: Split) -> Path:
        key = cache_key(
            {
                **self._document_key(),
                "split": split,
                "tokenizer": self.tokenizer.fingerprint,
                "seq_len": self.config.seq_len,
                "packing": self.config.packing,
            }
        )
        return self.cache_dir / "splits" / f"{split}-{key}"

    def _documents(self) -> dict[Split, Documents]:
        config = self.config
        datasets_cache = self.cache_dir / "datasets"
        return split_documents(config.source, config.validation, config.max_documents, datasets_cache)

    def prepare(self) -> None:
        """Train the tokenizer if asked (or fetch it from the hub) into the cache and build the
        packed train and validation splits, skipping whatever is cached. Source documents are only
        opened when something must be built."""
        documents: dict[Split, Documents] | None = None
        config = self.config.tokenizer
        path = self._tokenizer_path()
        if path is not None and not path.is_file():
            if isinstance(config, TrainedTokenizer):
                documents = self._documents()
                texts = documents["train"].take(0, config.train.max_documents).batches(CHUNK_DOCUMENTS)
                self._tokenizer = train_bpe(texts, config.train)
            self.tokenizer.save(path)
        for split in SPLITS:
            path = self._split_path(split)
            if not (path / "meta.json").is_file():
                documents = documents or self._documents()
                build_split(
                    path,
                    documents[split],
                    self.tokenizer,
                    seq_len=self.config.seq_len,
                    packing=self.config.packing,
                    num_proc=self.config.num_proc,
                )

    def split(self, split: Split) -> TokenArrays:
        """The packed rows of a prepared split (memory-mapped, opened once)."""
        if split not in self._splits:
            self._splits[split] = open_split(self._split_path(split))
        return self._splits[split]

    def bytes_per_token(self) -> float:
        """UTF-8 bytes per real token of the validation rows, to turn a validation NLL per token
        into bits per byte (components.metrics.text.bits_per_byte(nll_per_token, this))."""
        return self.split("validation").bytes_per_token

    # ------------------------------------------------------------------ data

    def train_stream(self, batch_size: int, *, rank: int, world_size: int, seed: int) -> TextStream:
        return TextStream(self.split("train"), batch_size, rank=rank, world_size=world_size, seed=seed)

    def eval_batches(self, batch_size: int, num_batches: int) -> Iterator[Batch]:
        """The first ``batch_size * num_batches`` validation rows in order (fewer when the split is
        shorter; the last batch may then be smaller)."""
        arrays = self.split("validation")
        stop = min(len(arrays), batch_size * num_batches)
        for start in range(0, stop, batch_size):
            yield rows_to_batch(arrays, np.arange(start, min(start + batch_size, stop)))

    def decode(self, tokens: torch.Tensor) -> str:
        """Text of Long[L] ids, special tokens skipped; with ``pad`` packing, up to the first pad."""
        ids = tokens.tolist()
        if self.config.packing == "pad" and self.tokenizer.pad_id in ids:
            ids = ids[: ids.index(self.tokenizer.pad_id)]
        return self.tokenizer.decode(ids)

    # ------------------------------------------------------------------ metrics

    def _sample_valid(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """Bool[B, L] for generated Long[B, L]: ``pad`` packing counts tokens before the first pad."""
        if self.config.packing == "wrap":
            return None
        is_pad = tokens == self.tokenizer.pad_id
        first = torch.where(is_pad.any(1), is_pad.int().argmax(1), tokens.shape[1])
        return torch.arange(tokens.shape[1]) < first[:, None]

    def _reference(self, data: Path | None, count: int) -> Batch:
        """The first ``count`` rows of the validation split, or of the external text file ``data``
        (read like a local source with a ``text`` field, packed and cached like a split)."""
        if data is None:
            arrays = self.split("validation")
        else:
            documents = file_documents(FileSource(path=str(data)), str(data), self.cache_dir / "datasets")
            stat = os.stat(data)
            key = cache_key(
                {
                    "file": [os.path.abspath(data), stat.st_size, stat.st_mtime_ns],
                    "tokenizer": self.tokenizer.fingerprint,
                    "seq_len": self.config.seq_len,
                    "packing": self.config.packing,
                }
            )
            path = self.cache_dir / "splits" / f"reference-{key}"
            build_split(
                path,
                documents,
                self.tokenizer,
                seq_len=self.config.seq_len,
                packing=self.config.packing,
                num_proc=1,
            )
            arrays = open_split(path)
        return rows_to_batch(arrays, np.arange(min(count, len(arrays))))

    def evaluate(
        self,
        model: torch.nn.Module,
        noise: NoiseProcess,
        samplers: dict[str, Sampler],
        *,
        num_samples: int,
        batch_size: int,
        data: Path | None = None,
        device: torch.device | str = "cpu",
    ) -> EvalResult:
        """``num_samples`` unconditional generations of ``seq_len`` tokens per sampler.

        Metrics: ``<sampler>/unigram_entropy`` (mean over samples, nats), ``<sampler>/nfe`` (mean
        model evaluations per sample), and ``data/unigram_entropy`` of as many reference rows
        (validation, or the text file ``data``) for comparison. Artifacts: ``samples/<sampler>.txt``
        with every decoded sample; ``samples``: all decoded samples in sampler order."""
        result = EvalResult()
        if num_samples == 0:
            return result
        reference = self._reference(data, num_samples)
        result.metrics["data/unigram_entropy"] = float(unigram_entropy(reference.x0, reference.valid).mean())
        for name, sampler in samplers.items():
            tokens, nfe = [], []
            for start in range(0, num_samples, batch_size):
                n = min(batch_size, num_samples - start)
                batch = Batch.unconditional(torch.zeros(n, self.seq_len, dtype=torch.long)).to(device)
                generation = sampler.generate(model, noise, batch)
                tokens.append(generation.tokens.cpu())
                nfe.append(generation.nfe.cpu())
            samples = torch.cat(tokens)
            entropy = unigram_entropy(samples, self._sample_valid(samples))
            result.metrics[f"{name}/unigram_entropy"] = float(entropy.mean())
            result.metrics[f"{name}/nfe"] = float(torch.cat(nfe).double().mean())
            texts = [self.decode(row) for row in samples]
            result.artifacts[f"samples/{name}.txt"] = "\n\n".join(
                f"=== {name} sample {i} (unigram entropy {h:.3f}) ===\n{text}"
                for i, (text, h) in enumerate(zip(texts, entropy.tolist()))
            )
            result.samples.extend(texts)
        return result
