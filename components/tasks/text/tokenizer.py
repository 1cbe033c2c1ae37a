"""Tokenizers (``tokenizers`` library) and the task's special tokens.

Three ways to get one: a hub name (``{hf: gpt2}``, ``Tokenizer.from_pretrained``), a local
``tokenizer.json`` (``{file: ...}``), or ``{train: {vocab_size: N}}``, a byte-level BPE trained on
the training documents and cached as JSON. Every tokenizer then carries three special tokens:

- ``eos`` (default ``<|endoftext|>``, GPT-2's): ends every document; in ``wrap`` packing it is
  also the separator that starts the next one (GPT-2 uses the same token for BOS and EOS);
- ``[PAD]``: fills ``pad`` rows after the document;
- ``[MASK]``: the absorbing state of masked diffusion (``mask_id``).

Those already present keep their ids; the others are appended (GPT-2: 50256 eos, 50257 pad,
50258 mask, V = 50259). A trained tokenizer has them at ids 0, 1, 2. Special-token strings that
occur literally in a document are encoded as ordinary text, so clean data never holds a special id
except the eos each document ends with.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Union

import numpy as np
from pydantic import Discriminator, Field, Tag
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from components.registry import SpecModel
from components.tasks.text.sources import tag_by_keys

EOS = "<|endoftext|>"
PAD = "[PAD]"
MASK = "[MASK]"
BYTE_ALPHABET = frozenset(pre_tokenizers.ByteLevel.alphabet())


class TokenizerError(ValueError):
    """A tokenizer could not be loaded (missing file, hub name unavailable, not trained yet)."""


class HubTokenizer(SpecModel):
    hf: str = Field(min_length=1, description="hub repo with a tokenizer.json, e.g. gpt2")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    eos: str = Field(EOS, min_length=1, description="end-of-document token; added when missing")


class FileTokenizer(SpecModel):
    file: Path = Field(description="a tokenizer.json written by the tokenizers library")
    eos: str = Field(EOS, min_length=1, description="end-of-document token; added when missing")


class BpeTraining(SpecModel):
    vocab_size: int = Field(ge=260, le=1_048_576, description="final size, 256 bytes + 3 specials + merges")
    min_frequency: int = Field(2, ge=1, le=1_000_000, description="pairs seen fewer times are not merged")
    max_documents: int | None = Field(
        None, ge=1, le=100_000_000, description="training documents read for BPE (default all)"
    )


class TrainedTokenizer(SpecModel):
    train: BpeTraining


TokenizerConfig = Annotated[
    Union[  # noqa: UP007
        Annotated[HubTokenizer, Tag("hf")],
        Annotated[FileTokenizer, Tag("file")],
        Annotated[TrainedTokenizer, Tag("train")],
    ],
    Discriminator(
        tag_by_keys("hf", "file", "train"),
        custom_error_type="tokenizer",
        custom_error_message=(
            "tokenizer needs 'hf: <name>', 'file: <tokenizer.json>' or 'train: {vocab_size: N}'"
        ),
    ),
]


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` with the task's special tokens.

    Attributes:
        eos_id, pad_id, mask_id: ids of the special tokens.
        vocab_size: V, one more than the largest id (specials included).
        fingerprint: sha256 of the serialized tokenizer; caches of tokenized data are keyed by it.
    """

    def __init__(self, tokenizer: Tokenizer, eos: str = EOS):
        tokenizer.add_special_tokens([eos, PAD, MASK])
        tokenizer.encode_special_tokens = True
        self.tokenizer = tokenizer
        self.eos = eos
        self.eos_id, self.pad_id, self.mask_id = (tokenizer.token_to_id(t) for t in (eos, PAD, MASK))
        self.vocab_size = max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1
        self.fingerprint = hashlib.sha256(tokenizer.to_str().encode()).hexdigest()

    @classmethod
    def from_str(cls, serialized: str, eos: str = EOS) -> "TextTokenizer":
        return cls(Tokenizer.from_str(serialized), eos)

    def to_str(self) -> str:
        return self.tokenizer.to_str()

    def save(self, path: Path) -> None:
        """Write the tokenizer JSON to ``path`` atomically (temporary file, then rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(self.to_str())
        os.replace(tmp, path)

    @property
    def special_ids(self) -> list[int]:
        """Ids of the tokenizer's special tokens (ours and any it came with)."""
        return sorted(i for i, t in self.tokenizer.get_added_tokens_decoder().items() if t.special)

    def encode_documents(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each document followed by ``eos_id``."""
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [e.ids + [self.eos_id] for e in encodings]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens skipped."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def token_bytes(self) -> np.ndarray:
        """Int64[V]: UTF-8 bytes of text each id stands for; 0 for special tokens and unused ids.

        Exact and additive for byte-level BPE (GPT-2, trained): every character of such a token is
        one byte, so a sequence's decoded byte count is the sum over its tokens. For other
        decoders it is the byte length of the token decoded alone (approximate where a token is
        not a whole character or the decoder adds spaces)."""
        special = set(self.special_ids)
        out = np.zeros(self.vocab_size, dtype=np.int64)
        for token, index in self.tokenizer.get_vocab(with_added_tokens=True).items():
            if index in special:
                continue
            if isinstance(self.tokenizer.decoder, decoders.ByteLevel) and BYTE_ALPHABET.issuperset(token):
                out[index] = len(token)
            else:
                out[index] = len(self.tokenizer.decode([index]).encode("utf-8"))
        return out


def load_tokenizer(config: HubTokenizer | FileTokenizer) -> TextTokenizer:
    """The tokenizer named by a hub or file config, with the special tokens added.

    Raises TokenizerError naming what was requested and a local alternative."""
    if isinstance(config, FileTokenizer):
        if not config.file.is_file():
            raise TokenizerError(f"tokenizer file {str(config.file)!r} not found")
        try:
            return TextTokenizer(Tokenizer.from_file(str(config.file)), config.eos)
        except Exception as err:  # the Rust parser raises a bare Exception
            raise TokenizerError(f"could not read tokenizer file {str(config.file)!r}: {err}") from err
    try:
        tokenizer = Tokenizer.from_pretrained(config.hf, revision=config.revision or "main")
    except Exception as err:  # hub errors (OSError) and the Rust parser's bare Exception
        raise TokenizerError(
            f"could not load tokenizer {config.hf!r} (revision {config.revision or 'main'}) from the "
            f"Hugging Face hub: {err}. Without network access, save its tokenizer.json locally and use "
            "tokenizer: {file: path/to/tokenizer.json}, or train one with tokenizer: {train: {vocab_size: N}}"
        ) from err
    return TextTokenizer(tokenizer, config.eos)


def train_bpe(texts: Iterable[list[str]], settings: BpeTraining) -> TextTokenizer:
    """A byte-level BPE (GPT-2 pre-tokenization, no prefix space) trained on batches of texts,
    with ``eos``, ``[PAD]`` and ``[MASK]`` at ids 0, 1, 2. Deterministic for the same texts."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=settings.vocab_size,
        min_frequency=settings.min_frequency,
        special_tokens=[EOS, PAD, MASK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return TextTokenizer(tokenizer, EOS)
