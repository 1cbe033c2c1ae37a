"""Checks every backbone kind passes (tiny sizes, zero-initialised weights scrambled first):
Float32[B, L, V] finite logits, a gradient on every parameter, rows independent of the rest of
the batch (batch-order equivariance), the same model from the same seed, and a state-dict round
trip into a differently seeded model."""

from __future__ import annotations

import pytest
import torch
from contract_examples import B, EXAMPLES, L, MASK, V, cases, clean_tokens, logits_of, scramble

from components import backbones


def build(kind: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return scramble(backbones.build(EXAMPLES["backbones"][kind], vocab_size=V, seq_len=L), seed).eval()


def inputs(batch: int = B) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(zt, t, fixed, valid): some masks, some fixed positions, a padded tail in row 0."""
    gen = torch.Generator().manual_seed(1)
    zt = clean_tokens(gen, batch)
    zt = torch.where(torch.rand(batch, L, generator=gen) < 0.4, MASK, zt)
    fixed = torch.rand(batch, L, generator=gen) < 0.3
    valid = torch.ones(batch, L, dtype=torch.bool)
    valid[0, -2:] = False
    return zt, torch.rand(batch, generator=gen), fixed, valid


@pytest.mark.parametrize("kind", cases("backbones"))
def test_logits_shape_and_finite(kind: str) -> None:
    zt, t, fixed, valid = inputs()
    with torch.no_grad():
        logits = logits_of(build(kind)(zt, t, fixed=fixed, valid=valid))
    assert logits.shape == (B, L, V) and logits.dtype == torch.float32
    assert torch.isfinite(logits[valid]).all()


@pytest.mark.parametrize("kind", cases("backbones"))
def test_every_parameter_gets_a_gradient(kind: str) -> None:
    model = build(kind).train()
    zt, t, fixed, valid = inputs()
    weights = torch.randn(B, L, V, generator=torch.Generator().manual_seed(2))
    logits = logits_of(model(zt, t, fixed=fixed, valid=valid))
    (torch.where(torch.isfinite(logits), logits, 0.0) * weights).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.parametrize("kind", cases("backbones"))
def test_rows_do_not_see_each_other(kind: str) -> None:
    model = build(kind)
    zt, t, fixed, valid = inputs(6)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        out = logits_of(model(zt, t, fixed=fixed, valid=valid))
        permuted = logits_of(model(zt[perm], t[perm], fixed=fixed[perm], valid=valid[perm]))
        alone = logits_of(model(zt[:1], t[:1], fixed=fixed[:1], valid=valid[:1]))
    torch.testing.assert_close(permuted[valid[perm]], out[perm][valid[perm]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone[valid[:1]], out[:1][valid[:1]], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", cases("backbones"))
def test_seed_fixes_the_model_and_the_state_dict_round_trips(kind: str) -> None:
    zt, t, fixed, valid = inputs()
    a, b, other = build(kind, seed=7), build(kind, seed=7), build(kind, seed=8)
    with torch.no_grad():
        out = logits_of(a(zt, t, fixed=fixed, valid=valid))
        assert torch.equal(out, logits_of(b(zt, t, fixed=fixed, valid=valid)))
        assert not torch.allclose(out, logits_of(other(zt, t, fixed=fixed, valid=valid)))
        other.load_state_dict(a.state_dict())
        assert torch.equal(out, logits_of(other(zt, t, fixed=fixed, valid=valid)))
