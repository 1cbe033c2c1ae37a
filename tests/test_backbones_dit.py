"""DiT backbone: invariances, masking, conditioning, precision, sizes."""

import pytest
import torch

from components.backbones import BACKBONES, build
from components.backbones.dit import DiT, DiTConfig, padded_vocab
from components.registry import BuildError

VOCAB, LENGTH = 37, 24
SMALL = {"kind": "dit", "layers": 2, "heads": 4, "width": 64, "cond_dim": 32}


def make(seed: int = 0, **overrides) -> DiT:
    """A small DiT whose zero-initialised layers (adaLN, output head) are perturbed, so that
    every block, the time conditioning and the head influence the output."""
    torch.manual_seed(seed)
    model = build({**SMALL, **overrides}, vocab_size=VOCAB, seq_len=LENGTH)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "adaln" in name or name.startswith("final.linear"):
                param.normal_(std=0.1)
    return model.eval()


def inputs(batch: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, LENGTH), generator=gen), torch.rand(batch, generator=gen)


def test_untrained_model_predicts_uniform_logits():
    torch.manual_seed(0)
    model = build(SMALL, vocab_size=VOCAB, seq_len=LENGTH)
    zt, t = inputs()
    assert torch.equal(model(zt, t), torch.zeros(4, LENGTH, VOCAB))


def test_vocab_is_padded_inside_but_logits_have_exactly_vocab_entries():
    assert [padded_vocab(v) for v in (1, 11, 128, 129, 50258)] == [128, 128, 128, 256, 50304]
    model = make()
    assert model.tok_emb.num_embeddings == 128 and model.final.linear.out_features == 128
    zt, t = inputs()
    logits = model(zt, t)
    assert logits.shape == (4, LENGTH, VOCAB) and logits.dtype == torch.float32


def test_output_is_equivariant_to_batch_order():
    model = make()
    zt, t = inputs(batch=6)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        out, out_perm = model(zt, t), model(zt[perm], t[perm])
    torch.testing.assert_close(out_perm, out[perm], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out[0], out[1], atol=1e-3)


def test_same_seed_builds_identical_models_and_other_seed_differs():
    zt, t = inputs()
    with torch.no_grad():
        a, b, c = make(seed=7)(zt, t), make(seed=7)(zt, t), make(seed=8)(zt, t)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-3)


def test_bf16_autocast_agrees_with_fp32_to_bf16_tolerance():
    model = make()
    zt, t = inputs()
    with torch.no_grad():
        ref = model(zt, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(zt, t)
    assert low.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not torch.equal(low, ref)  # the bf16 path really ran
    rel = (low - ref).abs().max() / ref.abs().max()
    assert rel < 3e-2, f"bf16 deviates by {rel:.3g} of the logit range"


def test_padding_is_not_attended():
    model = make()
    zt, t = inputs()
    valid = torch.ones(4, LENGTH, dtype=torch.bool)
    valid[:, 18:] = False
    valid[2, 10:] = False
    changed = torch.where(valid, zt, (zt + 1) % VOCAB)
    with torch.no_grad():
        a, b = model(zt, t, valid=valid), model(changed, t, valid=valid)
        unmasked = model(changed, t)
    torch.testing.assert_close(a[valid], b[valid], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[valid], unmasked[valid], atol=1e-3)  # without the mask it would leak


def test_all_padding_sequence_stays_finite():
    model = make()
    zt, t = inputs()
    valid = torch.ones(4, LENGTH, dtype=torch.bool)
    valid[1] = False
    with torch.no_grad():
        assert torch.isfinite(model(zt, t, valid=valid)).all()


def test_time_conditioning_matters_only_when_on():
    zt, _ = inputs()
    t0, t1 = torch.full((4,), 0.1), torch.full((4,), 0.9)
    with torch.no_grad():
        on = make()
        assert not torch.allclose(on(zt, t0), on(zt, t1), atol=1e-3)
        off = make(time_conditioning=False)
        assert torch.equal(off(zt, t0), off(zt, t1))


def test_fixed_embedding_tells_givens_from_noise():
    zt, t = inputs()
    fixed = torch.rand(4, LENGTH, generator=torch.Generator().manual_seed(3)) < 0.5
    with torch.no_grad():
        on = make(fixed_embedding=True)
        assert not torch.allclose(on(zt, t, fixed=fixed), on(zt, t), atol=1e-3)
        off = make()
        assert torch.equal(off(zt, t, fixed=fixed), off(zt, t))


def test_shorter_sequences_run_and_longer_ones_are_rejected():
    model = make()
    zt, t = inputs()
    assert model(zt[:, :10], t).shape == (4, 10, VOCAB)
    with pytest.raises(ValueError, match="seq_len"):
        model(torch.cat([zt, zt], dim=1), t)


def test_a_few_adamw_steps_fit_a_fixed_batch():
    torch.manual_seed(0)
    model = build(SMALL, vocab_size=VOCAB, seq_len=LENGTH)
    zt, t = inputs()
    target = torch.randint(0, VOCAB, zt.shape, generator=torch.Generator().manual_seed(5))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(zt, t).flatten(0, 1), target.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(
    ("size", "dims", "published"),
    [("tiny", (8, 8, 512), None), ("small", (12, 12, 768), 169.6e6), ("base", (24, 16, 1024), 424.5e6)],
)
def test_presets_have_the_documented_sizes(size, dims, published):
    config = DiTConfig(size=size)
    assert config.dims() == dims and config.cond_dim == 128 and config.mlp_ratio == 4
    vocab = 50258  # GPT-2 + MASK, as in MDLM
    with torch.device("meta"):
        model = build({"kind": "dit", "size": size}, vocab_size=vocab, seq_len=1024)
    assert model.width // model.heads == 64
    if published is not None:
        # diffusion.md section 7 quotes MDLM's count (unpadded vocab, untied embedding + head);
        # padding to 50304 adds (50304 - 50258) rows to the embedding and head (weights + bias).
        padding = (model.padded_vocab - vocab) * (2 * model.width + 1)
        assert round((model.num_parameters(exclude_embeddings=False) - padding) / 1e5) == round(published / 1e5)


def test_flops_per_token_matches_the_worked_example():
    with torch.device("meta"):
        model = build({"kind": "dit", "size": "small"}, vocab_size=50258, seq_len=1024)
    d = 768
    n_matmul = 12 * (12 * d * d + 128 * 6 * d) + 128 * 2 * d + d * 50304
    assert model.flops_per_token(1024) == 6 * n_matmul + 12 * 12 * d * 1024
    assert 0.85e9 < model.flops_per_token(1024) < 0.95e9  # orchestration.md: ~0.9 GFLOP/token


def test_free_dimensions_without_size_and_validation():
    model = build({"kind": "dit", "layers": 4, "heads": 4, "width": 128}, vocab_size=11, seq_len=81)
    assert (model.layers, model.heads, model.width) == (4, 4, 128)
    assert DiTConfig(size="small", layers=2).dims() == (2, 12, 768)
    assert DiTConfig().dims() == (8, 8, 512)
    for bad in ({"width": 100, "heads": 8}, {"width": 24, "heads": 8}, {"layers": 0}, {"dropout": 1.0}, {"size": "huge"}):
        with pytest.raises(BuildError):
            BACKBONES.validate({"kind": "dit", **bad})
