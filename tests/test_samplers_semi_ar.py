"""The semi-autoregressive sampler with a tiny deterministic model: blocks left to right over the
open positions, earlier blocks fixed, later blocks masked or hidden, stopping at a stop token so
the output length is the model's choice; any inner sampler."""

from __future__ import annotations

import pytest
import torch

from components import noise, samplers
from components.batch import Batch
from components.registry import BuildError

V, END, MASK = 6, 4, 5  # tokens 0..3 are text, 4 ends an answer, 5 is the mask
L, PROMPT = 16, 2


class Scripted(torch.nn.Module):
    """Logits that put (almost) all mass on token ``p % 4`` at position p, or on END from
    position ``7 + 4 * x[0]`` on, where x[0] is the row's first (fixed) token: row x[0] = 0 ends
    at position 7, x[0] = 3 never does (19 > L). Records every call's inputs."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []

    def forward(self, zt, t, fixed=None, valid=None):
        self.calls.append((zt.clone(), fixed.clone(), None if valid is None else valid.clone()))
        position = torch.arange(zt.shape[1])[None, :].expand_as(zt)
        target = torch.where(position >= 7 + 4 * zt[:, :1], END, position % 4)
        return torch.nn.functional.one_hot(target, V).float() * 60.0


def prompt(first_tokens: list[int]) -> Batch:
    x0 = torch.zeros(len(first_tokens), L, dtype=torch.long)
    x0[:, 0] = torch.tensor(first_tokens)
    fixed = torch.zeros_like(x0, dtype=torch.bool)
    fixed[:, :PROMPT] = True
    return Batch(x0=x0, fixed=fixed, valid=torch.ones_like(fixed))


@pytest.fixture
def process():
    return noise.build({"kind": "masked"}, vocab_size=V, mask_id=MASK)


@pytest.mark.parametrize("inner", [{"kind": "confidence"}, {"kind": "ancestral"}])
def test_stops_at_the_end_token(process, inner) -> None:
    sampler = samplers.build({"kind": "semi_ar", "block_length": 4, "steps_per_block": 2, "inner": inner}, stop_ids=(END,))
    model = Scripted()
    out = sampler.generate(model, process, prompt([0, 3]))
    position = torch.arange(L)
    # Row 0: text up to position 6, END at 7, and END repeated after it; it went through two
    # blocks (positions 2-5, 6-9) of 2 passes each.
    expected0 = torch.where(position >= 7, END, position % 4)
    expected0[:PROMPT] = torch.tensor([0, 0])
    assert torch.equal(out.tokens[0], expected0)
    # Row 1 never meets END: all four blocks (2-5, 6-9, 10-13, 14-15).
    expected1 = position % 4
    expected1[:PROMPT] = torch.tensor([3, 0])
    assert torch.equal(out.tokens[1], expected1)
    assert out.nfe.tolist() == [4, 8]
    # After row 0 stopped, the model only saw row 1.
    assert [len(zt) for zt, _, _ in model.calls] == [2, 2, 2, 2, 1, 1, 1, 1]


def test_without_stop_ids_it_fills_every_block(process) -> None:
    sampler = samplers.build({"kind": "semi_ar", "block_length": 4, "steps_per_block": 2})
    out = sampler.generate(Scripted(), process, prompt([0]))
    assert out.nfe.tolist() == [8]
    assert torch.equal(out.tokens[0, 7:], torch.full((L - 7,), END))  # the model's own END tokens


@pytest.mark.parametrize("future", ["masked", "hidden"])
def test_earlier_blocks_fixed_later_blocks_masked_or_hidden(process, future) -> None:
    sampler = samplers.build(
        {"kind": "semi_ar", "block_length": 4, "steps_per_block": 4, "inner": {"kind": "confidence"}, "future": future},
        stop_ids=(END,),
    )
    model = Scripted()
    sampler.generate(model, process, prompt([3]))
    position = torch.arange(L)
    starts = [PROMPT + 4 * b for b in range(4)]
    # One pass per position with steps_per_block = block length: call i works on block i // 4.
    for i, (zt, fixed, valid) in enumerate(model.calls):
        start = starts[i // 4]
        stop = min(start + 4, L)
        assert torch.equal(fixed[0], (position < start) | (position >= stop))
        assert torch.equal(zt[0, PROMPT:start], (position % 4)[PROMPT:start])  # earlier blocks as generated
        later = position >= stop
        if future == "masked":
            assert torch.all(zt[0, later] == MASK) and bool(valid[0].all())
        else:
            assert torch.equal(valid[0], ~later)


def test_block_longer_than_the_answer_is_one_diffusion_pass(process) -> None:
    """One block covering every open position is the inner sampler itself."""
    model = Scripted()
    one_block = samplers.build({"kind": "semi_ar", "block_length": 64, "stop": False}).generate(model, process, prompt([0, 3]))
    plain = samplers.build({"kind": "confidence"}).generate(Scripted(), process, prompt([0, 3]))
    assert torch.equal(one_block.tokens, plain.tokens) and torch.equal(one_block.nfe, plain.nfe)


def test_spec_checks_reach_the_inner_sampler() -> None:
    config = samplers.SAMPLERS.validate({"kind": "semi_ar", "inner": {"kind": "ancestral"}})
    assert config.requires_noise == ("masked", "uniform", "gidd")
    with pytest.raises(BuildError, match="inner"):
        samplers.SAMPLERS.validate({"kind": "semi_ar", "inner": {"kind": "nope"}})


def test_text_documents_stop_at_eos(tmp_path) -> None:
    """For the text task a generated document ends at its eos (with pad packing, also at pad)."""
    from components.tasks import build

    (tmp_path / "docs.txt").write_text("\n\n".join(f"doc {i} has words" for i in range(30)))
    section = {"kind": "text", "source": {"path": str(tmp_path / "docs.txt")}, "validation": {"last_documents": 5},
               "tokenizer": {"train": {"vocab_size": 280}}, "seq_len": 8}
    wrap = build(section, cache_dir=tmp_path / "cache")
    wrap.prepare_tokenizer()
    assert wrap.stop_ids == (wrap.tokenizer.eos_id,)
    padded = build({**section, "packing": "pad"}, cache_dir=tmp_path / "cache")
    assert padded.stop_ids == (padded.tokenizer.eos_id, padded.tokenizer.pad_id)
