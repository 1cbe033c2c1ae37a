"""Tokenizers of the text task: trained byte-level BPE round trip, special tokens, byte counts,
and clear errors for missing tokenizers (no network is used)."""

from __future__ import annotations

import random

import huggingface_hub
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from components.tasks.text.tokenizer import (
    EOS,
    MASK,
    PAD,
    BpeTraining,
    FileTokenizer,
    HubTokenizer,
    TextTokenizer,
    TokenizerError,
    load_tokenizer,
    train_bpe,
)

SYLLABLES = ["ka", "to", "ri", "ne", "su", "mo", "la", "pé", "ü", "日", "本", "😀", "x=", "1;", "\n", "  "]
SAMPLES = [
    "Hello, world! The cat sat on the mat.",
    "naïve café über straße — “quotes” 日本語のテキスト 😀🚀 ok",
    "  leading spaces\n\ttabs and\r\nnewlines  ",
    "literal specials: [MASK] [PAD] <|endoftext|> stay text",
    "",
]


def corpus(n: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["".join(rng.choices(SYLLABLES, k=rng.randint(1, 4))) for _ in range(200)]
    return [" ".join(rng.choices(words, k=rng.randint(5, 40))) for _ in range(n)]


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return train_bpe([corpus()], BpeTraining(vocab_size=400))


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip(tokenizer: TextTokenizer, text: str) -> None:
    ids = tokenizer.encode_documents([text])[0]
    assert ids[-1] == tokenizer.eos_id
    assert tokenizer.decode(ids) == text


def test_special_tokens_once_with_stable_ids(tokenizer: TextTokenizer) -> None:
    vocab = tokenizer.tokenizer.get_vocab(with_added_tokens=True)
    assert (vocab[EOS], vocab[PAD], vocab[MASK]) == (0, 1, 2)
    assert (tokenizer.eos_id, tokenizer.pad_id, tokenizer.mask_id) == (0, 1, 2)
    assert tokenizer.special_ids == [0, 1, 2]
    assert len(set(vocab.values())) == len(vocab) == tokenizer.vocab_size == 400
    again = train_bpe([corpus()], BpeTraining(vocab_size=400))
    assert again.fingerprint == tokenizer.fingerprint
    # Re-wrapping (as a worker process does) adds nothing.
    rewrapped = TextTokenizer.from_str(tokenizer.to_str())
    assert rewrapped.vocab_size == tokenizer.vocab_size and rewrapped.fingerprint == tokenizer.fingerprint


def test_literal_special_strings_are_text(tokenizer: TextTokenizer) -> None:
    ids = tokenizer.encode_documents(["a [MASK] b <|endoftext|> [PAD]"])[0]
    assert set(ids[:-1]).isdisjoint(tokenizer.special_ids)


def test_token_bytes_add_up_to_utf8_length(tokenizer: TextTokenizer) -> None:
    table = tokenizer.token_bytes()
    assert table[[tokenizer.eos_id, tokenizer.pad_id, tokenizer.mask_id]].tolist() == [0, 0, 0]
    for text in SAMPLES:
        ids = tokenizer.encode_documents([text])[0]
        assert int(table[ids].sum()) == len(text.encode("utf-8"))


def test_file_tokenizer_keeps_its_eos_and_appends_pad_and_mask(tmp_path) -> None:
    """Like GPT-2: a tokenizer with its own end-of-text token keeps that id; [PAD] and [MASK] are
    appended after the last id."""
    plain = Tokenizer(models.BPE())
    plain.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    plain.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    plain.train_from_iterator(corpus(50), trainer)
    size = plain.get_vocab_size()
    path = tmp_path / "tokenizer.json"
    plain.save(str(path))
    loaded = load_tokenizer(FileTokenizer(file=path, eos="</s>"))
    assert (loaded.eos_id, loaded.pad_id, loaded.mask_id, loaded.vocab_size) == (0, size, size + 1, size + 2)
    assert loaded.decode(loaded.encode_documents([SAMPLES[1]])[0]) == SAMPLES[1]


def test_missing_tokenizers_fail_clearly(tmp_path, monkeypatch) -> None:
    with pytest.raises(TokenizerError, match="not found"):
        load_tokenizer(FileTokenizer(file=tmp_path / "nope.json"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no network
    with pytest.raises(TokenizerError, match=r"'difflab-test/no-such-tokenizer'.*tokenizer: \{file:"):
        load_tokenizer(HubTokenizer(hf="difflab-test/no-such-tokenizer"))
