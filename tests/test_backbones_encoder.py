"""Encoder backbone (the published Sudoku reference architecture)."""

import pytest
import torch

from components.backbones import BACKBONES, build
from components.registry import BuildError

VOCAB, LENGTH = 11, 81  # Sudoku: digits 0-9 plus MASK, 81 cells


def make(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build({"kind": "encoder", **overrides}, vocab_size=VOCAB, seq_len=LENGTH).eval()


def inputs(batch: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, LENGTH), generator=gen), torch.rand(batch, generator=gen)


def test_parameter_count_matches_the_published_sudoku_model():
    """sudoku.md section 5: 806,154 parameters with an 11-token input vocabulary and a
    Linear(128, 10) head. Our head outputs all V = 11 logits: Linear(128, 11) has one more
    output row, i.e. 128 weights + 1 bias = 129 parameters more. Nothing else differs."""
    model = make()
    assert model.num_parameters(exclude_embeddings=False) == 806_154 + 129
    # Without token (11 x 128) and position (81 x 128) embeddings.
    assert model.num_parameters() == 806_154 + 129 - 11 * 128 - 81 * 128


def test_published_defaults():
    model = make()
    layer = model.encoder.layers[0]
    assert len(model.encoder.layers) == 4 and layer.self_attn.num_heads == 4
    assert layer.linear1.out_features == 512 and not layer.norm_first and layer.dropout.p == 0.1
    assert model.encoder.norm is None


def test_output_shape_and_batch_order():
    model = make()
    zt, t = inputs()
    with torch.no_grad():
        out = model(zt, t)
        out_perm = model(zt[[2, 0, 1]], t[[2, 0, 1]])
    assert out.shape == (3, LENGTH, VOCAB) and out.dtype == torch.float32
    torch.testing.assert_close(out_perm, out[[2, 0, 1]], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_padding_is_not_attended(norm_first):
    model = make(norm_first=norm_first)
    zt, t = inputs()
    valid = torch.ones(3, LENGTH, dtype=torch.bool)
    valid[:, 60:] = False
    changed = torch.where(valid, zt, (zt + 1) % VOCAB)
    with torch.no_grad():
        a, b, unmasked = model(zt, t, valid=valid), model(changed, t, valid=valid), model(changed, t)
    torch.testing.assert_close(a[valid], b[valid], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[valid], unmasked[valid], atol=1e-4)


def test_time_conditioning_only_when_on():
    zt, _ = inputs()
    t0, t1 = torch.full((3,), 0.1), torch.full((3,), 0.9)
    with torch.no_grad():
        off = make()
        assert torch.equal(off(zt, t0), off(zt, t1))
        on = make(time_conditioning=True)
        assert not torch.allclose(on(zt, t0), on(zt, t1), atol=1e-4)


def test_fixed_embedding_only_when_on():
    zt, t = inputs()
    fixed = torch.rand(3, LENGTH, generator=torch.Generator().manual_seed(2)) < 0.4
    with torch.no_grad():
        assert torch.equal(make()(zt, t, fixed=fixed), make()(zt, t))
        on = make(fixed_embedding=True)
        assert not torch.allclose(on(zt, t, fixed=fixed), on(zt, t), atol=1e-4)


def test_bf16_autocast_agrees_with_fp32():
    model = make()
    zt, t = inputs()
    with torch.no_grad():
        ref = model(zt, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(zt, t)
    assert not torch.equal(low, ref)
    assert (low - ref).abs().max() / ref.abs().max() < 3e-2


def test_flops_per_token():
    model = make()
    d, ffn, layers = 128, 512, 4
    assert model.flops_per_token(81) == 6 * (layers * (4 * d * d + 2 * d * ffn) + d * VOCAB) + 12 * layers * d * 81


def test_validation():
    for bad in ({"width": 130, "heads": 4}, {"layers": 0}, {"dropout": -0.1}, {"bogus": 1}):
        with pytest.raises(BuildError):
            BACKBONES.validate({"kind": "encoder", **bad})
