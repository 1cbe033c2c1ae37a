"""The ``chat`` task kind: conversations -> one example per assistant turn (context fixed,
answer scored), a resumable rank-sharded stream, the end-of-answer remedies and answer metrics.

Vocabulary: the tokenizer's ids plus ``<|endoftext|>``, pad, mask (``mask_id``),
``<|im_start|>`` and ``<|im_end|>`` (the end token); see template.py. Rows: see examples.py
(layout) and layout.py (fixed, valid and scored positions, ``end_remedy``). Generation: each
evaluation prompt is a validation context with every later position open; the answer is read up
to the first end or pad token, so a sampler that stops early (``semi_ar``) and one that fills
the whole window are measured the same way (docs/chat.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from tokenizers import Tokenizer

from components.batch import Batch
from components.noise.base import NoiseProcess
from components.registry import SpecModel
from components.samplers.base import Sampler
from components.tasks.base import DataStream, EvalResult, Task
from components.tasks.chat.conversations import (
    ChatDataError,
    ChatFileSource,
    ChatSource,
    Conversations,
    bad_rows,
    bad_rows_error,
    check_row,
    file_conversations,
    rule_mismatch,
    split_conversations,
)
from components.tasks.chat.examples import BadRows, ExampleArrays, build_examples, open_examples
from components.tasks.chat.layout import EndRemedy, LossOn, prompt_batch, rows_to_batch
from components.tasks.chat.metrics import answers, distinct_n, quantile, repeated_ngram_rate
from components.tasks.chat.template import ChatTokenizer
from components.tasks.registry import TASKS
from components.tasks.sharding import ShardedOrder
from components.tasks.text.cache import cache_key, file_stamp, source_key, tokenizer_cache_path
from components.tasks.text.sources import LastDocuments, Split, ValidationRule
from components.tasks.text.tokenizer import (
    FileTokenizer,
    HubTokenizer,
    TokenizerConfig,
    TokenizerError,
    TrainedTokenizer,
    train_bpe,
)

SPLITS: tuple[Split, ...] = ("train", "validation")
EVAL_SEED = 0  # random cuts of the validation rows
ANSWER_METRICS = (
    "answer_length",
    "answer_length_p50",
    "answer_length_p90",
    "terminated",
    "at_window_end",
    "role_marker_rate",
    "distinct_1",
    "distinct_2",
    "distinct_3",
    "repeated_2gram_rate",
    "repeated_3gram_rate",
    "exact_match",
)


class ChatConfig(SpecModel):
    kind: Literal["chat"] = "chat"
    source: ChatSource = Field(description="{hf: name, config, split, streaming, messages_field} | {path, format, messages_field}")
    validation: ValidationRule = Field(description="{last_documents: N} (last N conversations) | {split: name} | {path: file}")
    max_conversations: int | None = Field(None, ge=2, le=10_000_000_000, description="read at most this many rows per source")
    tokenizer: TokenizerConfig = Field(description="{hf: answerdotai/ModernBERT-base} | {file: tokenizer.json} | {train: {vocab_size: N}}")
    pad_token: str = Field("[PAD]", min_length=1, description="padding token (kept if the tokenizer has it)")
    mask_token: str = Field("[MASK]", min_length=1, description="diffusion mask token; use the encoder's own (BERT [MASK], RoBERTa <mask>)")
    seq_len: int = Field(512, ge=8, le=131_072, description="tokens per row: context + answer + padding")
    loss_on: LossOn = Field("assistant", description="assistant: the context is fixed; all: every token is noised and scored")
    end_remedy: EndRemedy = Field(
        "none", description="none | scored_padding (pad after the answer is scored) | random_cut (windows end inside answers)"
    )
    cut_probability: float = Field(0.5, gt=0.0, le=1.0, description="random_cut: share of windows cut inside the answer")
    bad_rows: BadRows = Field("error", description="error: list bad rows and stop; skip: leave them out (counted)")

    def metric_names(self, samplers: list[str], external_data: bool) -> list[str]:
        """Names of the metrics :meth:`ChatTask.evaluate` reports (without ``eval/``)."""
        return [f"{p}/{m}" for p in ["data", *samplers] for m in ANSWER_METRICS] + [f"{s}/nfe" for s in samplers]

    @model_validator(mode="after")
    def _rule_fits_source(self) -> "ChatConfig":
        problem = rule_mismatch(self.source, self.validation)
        if problem:
            raise ValueError(problem)
        if (
            isinstance(self.validation, LastDocuments)
            and self.max_conversations is not None
            and self.max_conversations <= self.validation.last_documents
        ):
            raise ValueError(
                f"max_conversations {self.max_conversations} leaves no training rows after validation.last_documents "
                f"{self.validation.last_documents}"
            )
        return self


class ChatStream(DataStream):
    """Endless training batches of one rank over a :class:`ShardedOrder` of the examples (as the
    text task's stream); the random cuts of a step are drawn from ``(seed, position)``, so a
    resumed stream reproduces them."""

    def __init__(self, task: "ChatTask", batch_size: int, *, rank: int, world_size: int, seed: int):
        self.task = task
        self.arrays = task.split("train")
        self.seed = seed
        self.order = ShardedOrder(len(self.arrays), batch_size, rank=rank, world_size=world_size, seed_key=(seed,), unit="chat examples")

    def __next__(self) -> Batch:
        start, rows = self.order.take()
        return self.task.batch(self.arrays, rows, np.random.default_rng([self.seed, start]))

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.order.position, "rows": len(self.arrays), "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["rows"]) != len(self.arrays) or int(state["seed"]) != self.seed:
            raise ValueError(
                f"stream state is for {state['rows']} rows with seed {state['seed']}; this stream has "
                f"{len(self.arrays)} rows with seed {self.seed}"
            )
        self.order.position = int(state["position"])


@TASKS.register(ChatConfig)
class ChatTask(Task):
    """Chat fine-tuning. Caches live under ``<cache_dir>/chat``: ``tokenizers/`` and
    ``examples/`` (see examples.py), ``datasets/`` (Arrow conversions of local files)."""

    def __init__(self, config: ChatConfig, *, cache_dir: Path):
        self.config = config
        self.cache_dir = Path(cache_dir) / "chat"
        self.seq_len = config.seq_len
        self._tokenizer: ChatTokenizer | None = None
        self._splits: dict[str, ExampleArrays] = {}

    # ------------------------------------------------------------------ vocabulary

    def _wrap(self, tokenizer: Tokenizer, eos: str) -> ChatTokenizer:
        return ChatTokenizer(tokenizer, eos, pad=self.config.pad_token, mask=self.config.mask_token)

    @property
    def tokenizer(self) -> ChatTokenizer:
        if self._tokenizer is None:
            config = self.config.tokenizer
            path = self._tokenizer_path()
            if path is not None and path.is_file():
                self._tokenizer = self._wrap(Tokenizer.from_str(path.read_text()), getattr(config, "eos", "<|endoftext|>"))
            elif isinstance(config, TrainedTokenizer):
                raise TokenizerError(f"the trained tokenizer {path} does not exist yet: run prepare() first")
            else:
                self._tokenizer = self._wrap(_load_raw(config), config.eos)
        return self._tokenizer

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.tokenizer.vocab_size

    @property
    def mask_id(self) -> int:  # type: ignore[override]
        return self.tokenizer.mask_id

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Generation ends at the end token or at padding."""
        return (self.tokenizer.end_id, self.tokenizer.pad_id)

    # ------------------------------------------------------------------ caches

    def _source_key(self) -> dict[str, Any]:
        """What the conversations depend on; local files enter with their size and mtime."""
        config = self.config
        limit = {"max_conversations": config.max_conversations}
        return source_key(config.source, config.validation, limit, local=isinstance(config.source, ChatFileSource))

    def _tokenizer_path(self) -> Path | None:
        return tokenizer_cache_path(self.config.tokenizer, self.cache_dir / "tokenizers", self._source_key())

    def _split_path(self, split: str, source: dict[str, Any] | None = None) -> Path:
        key = cache_key(
            {
                **(source or self._source_key()),
                "split": split,
                "tokenizer": self.tokenizer.fingerprint,
                "seq_len": self.config.seq_len,
                "bad_rows": self.config.bad_rows,
            }
        )
        return self.cache_dir / "examples" / f"{split}-{key}"

    def _conversations(self) -> dict[Split, Conversations]:
        config = self.config
        return split_conversations(config.source, config.validation, config.max_conversations, self.cache_dir / "datasets")

    def prepare(self) -> None:
        """Train (or fetch) the tokenizer into the cache and build the train and validation
        examples, skipping what is cached. Raises ChatDataError (a ValueError) listing bad rows."""
        conversations: dict[Split, Conversations] | None = None
        config = self.config.tokenizer
        path = self._tokenizer_path()
        if path is not None and not path.is_file():
            if isinstance(config, TrainedTokenizer):
                conversations = self._conversations()
                texts = _contents(conversations["train"].take(0, config.train.max_documents))
                self._tokenizer = ChatTokenizer.wrap(train_bpe(texts, config.train), pad=self.config.pad_token, mask=self.config.mask_token)
            self.tokenizer.save(path)
        for split in SPLITS:
            target = self._split_path(split)
            if not (target / "meta.json").is_file():
                conversations = conversations or self._conversations()
                build_examples(target, conversations[split], self.tokenizer, seq_len=self.seq_len, bad_rows=self.config.bad_rows)

    def split(self, split: str) -> ExampleArrays:
        if split not in self._splits:
            self._splits[split] = open_examples(self._split_path(split))
        return self._splits[split]

    # ------------------------------------------------------------------ data

    def batch(self, arrays: ExampleArrays, rows: np.ndarray, rng: np.random.Generator) -> Batch:
        """Rows of ``arrays`` laid out for training (layout.py)."""
        config = self.config
        return rows_to_batch(
            arrays,
            rows,
            pad_id=self.tokenizer.pad_id,
            loss_on=config.loss_on,
            end_remedy=config.end_remedy,
            cut_probability=config.cut_probability,
            rng=rng,
        )

    def train_stream(self, batch_size: int, *, rank: int, world_size: int, seed: int) -> ChatStream:
        return ChatStream(self, batch_size, rank=rank, world_size=world_size, seed=seed)

    def eval_batches(self, batch_size: int, num_batches: int) -> Iterator[Batch]:
        """The first ``batch_size * num_batches`` validation examples in order, laid out as in
        training (random cuts drawn from a fixed seed)."""
        arrays = self.split("validation")
        stop = min(len(arrays), batch_size * num_batches)
        for start in range(0, stop, batch_size):
            yield self.batch(arrays, np.arange(start, min(start + batch_size, stop)), np.random.default_rng([EVAL_SEED, start]))

    def decode(self, tokens: torch.Tensor) -> str:
        """The row as template text (markers kept, pad and mask dropped)."""
        return self.tokenizer.render_ids(tokens.tolist())

    # ------------------------------------------------------------------ metrics

    def _file_rows(self, data: Path) -> Conversations:
        source = ChatFileSource(path=str(data), messages_field=self.config.source.messages_field)
        return file_conversations(source, str(data), self.cache_dir / "datasets")

    def check_data(self, path: Path) -> None:
        """``path`` must be a jsonl or parquet chat file whose rows are well formed (bad rows are
        listed unless ``bad_rows: skip``)."""
        super().check_data(path)
        rows = self._file_rows(path)
        bad = bad_rows(rows)
        if bad and self.config.bad_rows == "error":
            raise bad_rows_error(rows.name, bad)
        if len(bad) == rows.count:
            raise ChatDataError(f"{rows.name}: no well-formed row")

    def _reference(self, data: Path | None) -> ExampleArrays:
        """The validation examples, or those of the chat file ``data`` (built and cached once)."""
        if data is None:
            return self.split("validation")
        path = self._split_path("reference", {"file": file_stamp(data)})
        build_examples(path, self._file_rows(data), self.tokenizer, seq_len=self.seq_len, bad_rows=self.config.bad_rows)
        return open_examples(path)

    def _answer_metrics(
        self, result: EvalResult, prefix: str, ids: list[list[int]], terminated: torch.Tensor, room: torch.Tensor, reference: list[list[int]]
    ) -> None:
        lengths = [len(a) for a in ids]
        metrics = {
            "answer_length": float(np.mean(lengths)),
            "answer_length_p50": quantile(lengths, 0.5),
            "answer_length_p90": quantile(lengths, 0.9),
            "terminated": float(terminated.double().mean()),
            "at_window_end": float(((torch.tensor(lengths) >= room - 1) | ~terminated).double().mean()),
            "role_marker_rate": float(np.mean([self.tokenizer.start_id in a for a in ids])),
            **{f"distinct_{n}": distinct_n(ids, n) for n in (1, 2, 3)},
            **{f"repeated_{n}gram_rate": repeated_ngram_rate(ids, n) for n in (2, 3)},
            "exact_match": float(np.mean([a == b for a, b in zip(ids, reference)])),
        }
        result.metrics.update({f"{prefix}/{k}": v for k, v in metrics.items()})

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
        """Answers to the first ``num_samples`` validation prompts (or those of the chat file
        ``data``) from each sampler, next to the reference answers (prefix ``data``).

        Metrics per sampler ``<s>`` (answers read up to the first end or pad token):
        ``answer_length`` (mean tokens), ``answer_length_p50``/``p90``, ``terminated`` (share
        that produced an end or pad token), ``at_window_end`` (share whose answer runs to the
        last position or one before it: the failure the end-token remedies address),
        ``role_marker_rate`` (share containing ``<|im_start|>``: the model writing the next
        turn itself), ``distinct_1/2/3``, ``repeated_2gram_rate``/``3gram``, ``exact_match``
        (share of answers identical to the reference answer), ``nfe``.
        Artifacts: ``samples/<s>.txt`` (prompt and answer), ``answer_lengths.json``."""
        result = EvalResult()
        if num_samples == 0:
            return result
        arrays = self._reference(data)
        rows = np.arange(min(num_samples, len(arrays)))
        start = torch.from_numpy(arrays.context[rows].astype(np.int64))
        room = self.seq_len - start
        full = torch.from_numpy(arrays.tokens[rows].astype(np.int64))
        reference, ended = answers(full, start, self.stop_ids)
        self._answer_metrics(result, "data", reference, ended, room, reference)
        lengths = {"data": [len(a) for a in reference]}
        for name, sampler in samplers.items():
            tokens, nfe = [], []
            for first in range(0, len(rows), batch_size):
                batch = prompt_batch(arrays, rows[first : first + batch_size], self.tokenizer.pad_id).to(device)
                generation = sampler.generate(model, noise, batch)
                tokens.append(generation.tokens.cpu())
                nfe.append(generation.nfe.cpu())
            generated = torch.cat(tokens)
            replies, terminated = answers(generated, start, self.stop_ids)
            self._answer_metrics(result, name, replies, terminated, room, reference)
            result.metrics[f"{name}/nfe"] = float(torch.cat(nfe).double().mean())
            lengths[name] = [len(a) for a in replies]
            listing = []
            for i, (row, begin, reply) in enumerate(zip(generated, start.tolist(), replies)):
                prompt = self.tokenizer.render_ids(row[:begin].tolist())
                text = self.tokenizer.render_ids(reply)
                listing.append(f"=== {name} sample {i} ({len(reply)} tokens) ===\n{prompt}{text}")
                result.samples.append(text)
            result.artifacts[f"samples/{name}.txt"] = "\n\n".join(listing)
        result.artifacts["answer_lengths.json"] = json.dumps(lengths)
        return result


def _load_raw(config: HubTokenizer | FileTokenizer) -> Tokenizer:
    """The plain ``tokenizers.Tokenizer`` of a hub or file config (TokenizerError if missing)."""
    if isinstance(config, FileTokenizer):
        if not config.file.is_file():
            raise TokenizerError(f"tokenizer file {str(config.file)!r} not found")
        try:
            return Tokenizer.from_file(str(config.file))
        except Exception as err:  # the Rust parser raises a bare Exception
            raise TokenizerError(f"could not read tokenizer file {str(config.file)!r}: {err}") from err
    try:
        return Tokenizer.from_pretrained(config.hf, revision=config.revision or "main")
    except Exception as err:  # hub errors (OSError) and the Rust parser's bare Exception
        raise TokenizerError(
            f"could not load tokenizer {config.hf!r} from the Hugging Face hub: {err}. Without network access, "
            "save its tokenizer.json locally and use tokenizer: {file: path/to/tokenizer.json}"
        ) from err


def _contents(conversations: Conversations) -> Iterator[list[str]]:
    """Message contents of the well-formed rows, a chunk at a time (BPE training texts)."""
    for _, items in conversations.batches(512):
        yield [m.content for item in items for m in (check_row(item)[0] or [])]


