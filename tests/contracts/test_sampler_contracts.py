"""Checks every sampler kind passes, each with the noise and (untrained, scrambled) backbone the
Spec pairs it with: Long[B, L] output of vocabulary tokens with no mask left, fixed positions
copied from the batch, a model-evaluation count per sequence (0 for a fully fixed one), and the
same output under the same seed."""

from __future__ import annotations

import pytest
import torch
from contract_examples import B, EXAMPLES, L, MASK, V, cases, clean_tokens, partners, scramble

from components import backbones, samplers
from components import noise as noises
from components.batch import Batch


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """The tensors are tiny: intra-op threads only add synchronisation on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def setup(kind: str):
    picked = partners("samplers", kind)
    process = noises.build(EXAMPLES["noise"][picked["noise"]], vocab_size=V, mask_id=MASK)
    torch.manual_seed(0)
    model = scramble(backbones.build(EXAMPLES["backbones"][picked["backbone"]], vocab_size=V, seq_len=L)).eval()
    gen = torch.Generator().manual_seed(1)
    x0 = clean_tokens(gen)
    fixed = torch.rand(B, L, generator=gen) < 0.4
    fixed[1] = False  # nothing given
    fixed[2] = True  # everything given
    x0 = torch.where(fixed, x0, MASK)  # free positions hold the mask: samplers must not read them
    return samplers.build(EXAMPLES["samplers"][kind]), model, process, Batch(x0=x0, fixed=fixed)


@pytest.mark.parametrize("kind", cases("samplers"))
def test_output_is_tokens_keeps_the_givens_and_leaves_no_mask(kind: str) -> None:
    sampler, model, process, batch = setup(kind)
    torch.manual_seed(2)
    out = sampler.generate(model, process, batch)
    assert out.tokens.shape == (B, L) and out.tokens.dtype == torch.long
    assert out.tokens.ge(0).all() and out.tokens.lt(V).all()
    assert not out.tokens.eq(MASK).any()
    assert torch.equal(out.tokens[batch.fixed], batch.x0[batch.fixed])
    assert out.nfe.shape == (B,) and out.nfe[2] == 0 and out.nfe[[0, 1, 3]].gt(0).all()


@pytest.mark.parametrize("kind", cases("samplers"))
def test_same_seed_same_samples(kind: str) -> None:
    sampler, model, process, batch = setup(kind)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(sampler.generate(model, process, batch).tokens)
    assert torch.equal(runs[0], runs[1])
