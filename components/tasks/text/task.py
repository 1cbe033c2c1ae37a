"""The ``text`` task kind: documents from a hub dataset or local files, a tokenizer, packed rows
cached as memory-mapped arrays, a resumable rank-sharded stream, and sample metrics.

Vocabulary: the tokenizer's ids plus ``<|endoftext|>`` (end of document), ``[PAD]`` and
``[MASK]`` (``mask_id``); see tokenizer.py. Rows: ``seq_len`` tokens packed by ``wrap`` or
``pad``; see packing.py. Likelihoods convert to bits per byte with :meth:`TextTask.bytes_per_token`.
Samples are scored by a judge (an AR run of ours, see judge.py) when the section names one.
"""

from __future__ import annotations

import warnings
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
from components.tasks.text.cache import (
    CHUNK_DOCUMENTS,
    TokenArrays,
    build_split,
    cache_key,
    file_stamp,
    open_split,
    source_key,
    tokenizer_cache_path,
)
from components.tasks.text.evaluation import correction_metrics, generate_samples
from components.tasks.text.judge import Judge, JudgeConfig, JudgeError, check_judge, load_judge
from components.tasks.text.packing import Packing
from components.tasks.text.sources import (
    SPLITS,
    Documents,
    FileSource,
    LastDocuments,
    Source,
    Split,
    ValidationRule,
    file_documents,
    rule_mismatch,
    split_documents,
)
from components.tasks.text.stream import TextStream, rows_to_batch
from components.tasks.text.tokenizer import (
    EOS,
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
    judge: JudgeConfig | None = Field(
        None, description="generative PPL of samples under an AR run of ours: {spec: ar.yaml, checkpoint, context, overflow}"
    )

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
        self.cache_root = Path(cache_dir)
        self.cache_dir = self.cache_root / "text"
        self.seq_len = config.seq_len
        self._tokenizer: TextTokenizer | None = None
        self._splits: dict[str, TokenArrays] = {}
        self._judge: Judge | None = None

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

    @property
    def stop_ids(self) -> tuple[int, ...]:  # type: ignore[override]
        """A generated document ends at eos (and, with ``pad`` packing, at padding)."""
        tokenizer = self.tokenizer
        return (tokenizer.eos_id,) if self.config.packing == "wrap" else (tokenizer.eos_id, tokenizer.pad_id)

    # ------------------------------------------------------------------ caches

    def _document_key(self) -> dict[str, Any]:
        """What the documents depend on; local files enter with their size and mtime."""
        config = self.config
        limit = {"max_documents": config.max_documents}
        return source_key(config.source, config.validation, limit, local=isinstance(config.source, FileSource))

    def _tokenizer_path(self) -> Path | None:
        """Where prepare() stores the tokenizer (see :func:`tokenizer_cache_path`)."""
        return tokenizer_cache_path(self.config.tokenizer, self.cache_dir / "tokenizers", self._document_key())

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

    def prepare_tokenizer(self) -> dict[Split, Documents] | None:
        """Train the tokenizer if asked (or fetch it from the hub) into the cache unless it is
        there. Returns the source documents when it had to open them, else None."""
        documents: dict[Split, Documents] | None = None
        config = self.config.tokenizer
        path = self._tokenizer_path()
        if path is not None and not path.is_file():
            if isinstance(config, TrainedTokenizer):
                documents = self._documents()
                texts = documents["train"].take(0, config.train.max_documents).batches(CHUNK_DOCUMENTS)
                self._tokenizer = train_bpe(texts, config.train)
            self.tokenizer.save(path)
        return documents

    def prepare(self) -> None:
        """Prepare the tokenizer (:meth:`prepare_tokenizer`) and build the packed train and
        validation splits, skipping whatever is cached; source documents are only opened when
        something must be built. With a judge, check its spec and prepare its tokenizer
        (SpecError, JudgeError); its checkpoint is only needed by :meth:`evaluate`."""
        documents = self.prepare_tokenizer()
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
        if self.config.judge is not None:
            check_judge(self.config.judge, self.cache_root)

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
            key = cache_key(
                {
                    "file": file_stamp(data),
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

    def judge(self, device: torch.device | str = "cpu") -> Judge | None:
        """The configured judge on ``device`` (loaded once), or None without one; JudgeError when
        it cannot be loaded (e.g. no checkpoint yet)."""
        if self.config.judge is None:
            return None
        if self._judge is None:
            self._judge = load_judge(self.config.judge, self.cache_root)
        return self._judge.to(device)

    def _unpadded(self, tokens: torch.Tensor) -> list[list[int]]:
        """Rows of Long[N, L] as id lists without padding (``pad`` packing: before the first pad)."""
        valid = self._sample_valid(tokens)
        rows = tokens.tolist()
        return rows if valid is None else [row[: int(n)] for row, n in zip(rows, valid.sum(1))]

    def _score(
        self, result: EvalResult, prefix: str, tokens: torch.Tensor, judge: Judge | None, statements: list[str]
    ) -> torch.Tensor:
        """Add ``<prefix>/unigram_entropy`` and, with a judge, ``<prefix>/gen_ppl`` and
        ``<prefix>/gen_ppl_tokens`` (and the procedure to ``statements``) for Long[N, L] samples;
        returns the per-sample entropies Float64[N]."""
        entropy = unigram_entropy(tokens, self._sample_valid(tokens))
        result.metrics[f"{prefix}/unigram_entropy"] = float(entropy.mean())
        if judge is not None:
            generative = judge.perplexity(self._unpadded(tokens), self.tokenizer)
            result.metrics.update(generative.metrics(prefix))
            statements.append(f"{prefix}: {generative.statement()}")
        return entropy

    def _render(self, title: str, tokens: torch.Tensor, entropy: torch.Tensor) -> tuple[list[str], str]:
        """Decoded samples and the text artifact listing them with their unigram entropies."""
        texts = [self.decode(row) for row in tokens]
        listing = "\n\n".join(
            f"=== {title} sample {i} (unigram entropy {h:.3f}) ===\n{text}"
            for i, (text, h) in enumerate(zip(texts, entropy.tolist()))
        )
        return texts, listing

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
        """``bytes_per_token`` of the validation rows (bits per byte = eval bits_per_token /
        bytes_per_token), then ``num_samples`` unconditional generations of ``seq_len`` tokens per
        sampler.

        Metrics per sampler ``<s>``: ``<s>/unigram_entropy`` (mean over samples, nats), ``<s>/nfe``
        (mean model evaluations per sample) and, with a judge, ``<s>/gen_ppl`` (token-weighted,
        see judge.py) and ``<s>/gen_ppl_tokens``; the same entropy and gen PPL for ``data``, as
        many reference rows (validation, or the text file ``data``). A self-correction sampler
        also reports its base samples under ``<s>/base/`` and the correction statistics
        (``<s>/changes``, ``correction_iterations``, ``converged``, ``early_stopped``,
        ``init_acc``, ``final_acc``; see evaluation.py). Artifacts: ``samples/<s>.txt`` (and
        ``samples/<s>.base.txt``) with every decoded sample; ``gen_ppl.txt`` stating the judge
        procedure of every gen PPL, or why there is none (a judge without a checkpoint yet gives
        no gen PPL metrics and a warning; ``difflab eval`` can add them later); ``samples``: all
        final decoded samples in sampler order."""
        result = EvalResult(metrics={"bytes_per_token": self.bytes_per_token()})
        if num_samples == 0:
            return result
        statements: list[str] = []
        try:
            judge = self.judge(device)
        except JudgeError as err:
            judge = None
            statements.append(f"no generative PPL: {err}")
            warnings.warn(f"text task: no generative PPL: {err}", stacklevel=2)
        reference = self._reference(data, num_samples)
        self._score(result, "data", reference.x0, judge, statements)
        for name, sampler in samplers.items():
            generated = generate_samples(
                sampler, model, noise, num_samples=num_samples, batch_size=batch_size, seq_len=self.seq_len, device=device
            )
            entropy = self._score(result, name, generated.tokens, judge, statements)
            result.metrics[f"{name}/nfe"] = float(generated.nfe.double().mean())
            texts, result.artifacts[f"samples/{name}.txt"] = self._render(name, generated.tokens, entropy)
            result.samples.extend(texts)
            if generated.base is not None and generated.correction is not None:
                base_entropy = self._score(result, f"{name}/base", generated.base, judge, statements)
                stats = correction_metrics(generated.correction)
                result.metrics.update({f"{name}/{key}": value for key, value in stats.items()})
                _, result.artifacts[f"samples/{name}.base.txt"] = self._render(f"{name} base", generated.base, base_entropy)
        if statements:
            result.artifacts["gen_ppl.txt"] = "\n".join(statements) + "\n"
        return result
