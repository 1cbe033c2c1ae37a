"""Text metrics: PPL/bits conversions, token-weighted accumulation, unigram entropy."""

from __future__ import annotations

import math

import pytest
import torch

from components.metrics.text import (
    GenerativePerplexity,
    NllSum,
    bits_per_byte,
    bits_per_token,
    perplexity,
    unigram_entropy,
)


@pytest.mark.parametrize("vocab", [2, 97, 50259])
def test_uniform_predictor_perplexity_is_vocab_size(vocab: int) -> None:
    nll = torch.full((3, 11), math.log(vocab))
    total = NllSum()
    total.add(nll)
    assert total.tokens == 33
    assert total.perplexity == pytest.approx(vocab, rel=1e-6)
    assert perplexity(33 * math.log(vocab), 33) == pytest.approx(vocab)
    assert total.bits_per_token == pytest.approx(math.log2(vocab), rel=1e-6)


def test_bits_per_byte_hand_example() -> None:
    # 10 tokens for the 26-byte text "hello wörld, hello world!" (ö is two bytes) at
    # 2.0 nats per token: 20 nats = 28.854 bits over 26 bytes.
    text = "hello wörld, hello world!"
    assert len(text.encode("utf-8")) == 26
    assert bits_per_byte(20.0, 26) == pytest.approx(20.0 / math.log(2) / 26)
    assert bits_per_byte(20.0, 26) == pytest.approx(1.10977, abs=1e-5)
    # The same from a per-token NLL and the bytes-per-token ratio 2.6.
    assert bits_per_byte(2.0, 2.6) == pytest.approx(bits_per_byte(20.0, 26))
    total = NllSum(nats=20.0, tokens=10, sequences=1)
    assert total.bits_per_byte(2.6) == pytest.approx(1.10977, abs=1e-5)
    assert bits_per_token(20.0, 10) == pytest.approx(2.0 / math.log(2))


def test_accumulation_is_token_weighted_and_masked() -> None:
    nll = torch.tensor([[1.0, 1.0, 100.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    total = NllSum()
    total.add(nll[:1], mask[:1])
    total.add(nll[1:], mask[1:])
    assert (total.nats, total.tokens, total.sequences) == (6.0, 3, 2)
    assert total.perplexity == pytest.approx(math.exp(2.0))  # not the mean of per-row PPLs
    merged = NllSum(1.0, 1, 1) + NllSum(3.0, 1, 1)
    assert merged.per_token == 2.0


def test_generative_perplexity_states_its_procedure() -> None:
    retokenization = "decoded without specials, re-tokenized with gpt2"
    gen = GenerativePerplexity("gpt2-large", retokenization, 1024, NllSum(30.0, 10, 2))
    assert gen.metrics("mdlm") == {"mdlm/gen_ppl": pytest.approx(math.exp(3.0)), "mdlm/gen_ppl_tokens": 10.0}
    line = gen.statement()
    assert all(part in line for part in ("gpt2-large", retokenization, "1024 judge tokens", "10 tokens"))


def test_unigram_entropy_hand_examples() -> None:
    tokens = torch.tensor([[5, 5, 5, 5], [1, 2, 3, 4], [1, 1, 2, 2], [7, 7, 7, 8]])
    h = unigram_entropy(tokens)
    expected = [0.0, math.log(4), math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))]
    assert h.tolist() == pytest.approx(expected)
    valid = torch.tensor([[True] * 4, [True, True, False, False], [False] * 4, [True, True, True, False]])
    assert unigram_entropy(tokens, valid).tolist() == pytest.approx([0.0, math.log(2), 0.0, 0.0])
