"""The AR baseline: causal backbone, ``ar`` loss (exact NLL), uniform-predictor PPL, and the
``autoregressive`` sampler."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from components import backbones, losses, noise, samplers
from components.backbones.causal import CausalTransformer, shift_right, shift_valid
from components.batch import Batch
from components.metrics.elbo import estimate_nelbo
from components.registry import BuildError
from components.spec.sections import ElboEstimator

V, MASK, L = 11, 10, 12


def causal_model(**overrides) -> CausalTransformer:
    torch.manual_seed(0)
    config = {"kind": "causal", "layers": 2, "heads": 2, "width": 32, **overrides}
    model = backbones.build(config, vocab_size=V, seq_len=L)
    nn.init.normal_(model.head.weight, std=0.5)  # zero-initialised: make the logits depend on the input
    return model.eval()


def masked_noise():
    return noise.build({"kind": "masked"}, vocab_size=V, mask_id=MASK)


def test_causal_pass_ignores_future_tokens() -> None:
    model = causal_model()
    x = torch.randint(0, MASK, (3, L))
    t = torch.rand(3)
    for j in (0, 5, L - 1):
        y = x.clone()
        y[:, j] = (y[:, j] + 1) % MASK
        a, b = model(x, t, causal=True), model(y, t, causal=True)
        assert torch.allclose(a[:, :j], b[:, :j], atol=1e-6), j  # the past does not see token j
        assert not torch.allclose(a[:, j:], b[:, j:], atol=1e-4), j
    # Without the flag the same weights are bidirectional: an early logit sees the last token.
    y = x.clone()
    y[:, -1] = (y[:, -1] + 1) % MASK
    assert not torch.allclose(model(x, t)[:, 0], model(y, t)[:, 0], atol=1e-4)
    # Time is not an input.
    assert torch.equal(model(x, t, causal=True), model(x, torch.zeros(3), causal=True))


def test_causal_pass_with_padding_matches_unpadded_prefix() -> None:
    model = causal_model()
    x = torch.randint(0, MASK, (2, L))
    valid = torch.arange(L) < torch.tensor([[7], [L]])
    padded = model(x, torch.zeros(2), valid=valid, causal=True)
    plain = model(x, torch.zeros(2), causal=True)
    assert torch.allclose(padded[valid], plain[valid], atol=1e-5)
    assert torch.isfinite(padded).all()


def test_shift_helpers() -> None:
    x = torch.tensor([[3, 4, 5]])
    assert shift_right(x, 9).tolist() == [[9, 3, 4]]
    assert shift_valid(torch.tensor([[True, True, False]])).tolist() == [[True, True, True]]
    assert shift_valid(None) is None


def test_flops_per_token_follows_the_dit_convention() -> None:
    model = causal_model()
    d, layers, padded = 32, 2, 128
    n_matmul = layers * 12 * d * d + d * padded
    assert model.flops_per_token(L) == 6 * n_matmul + 12 * layers * d * L
    blocks = sum(p.numel() for n, p in model.named_parameters() if n.startswith("blocks") and p.ndim == 2)
    assert blocks == layers * 12 * d * d


def test_sizes_match_the_dit() -> None:
    cfg = backbones.BACKBONES.validate({"kind": "causal", "size": "small"})
    assert cfg.dims() == (12, 12, 768)
    with pytest.raises(BuildError, match="divisible"):
        backbones.BACKBONES.validate({"kind": "causal", "width": 30, "heads": 4})


def test_ar_loss_is_the_hand_computed_nll() -> None:
    loss = losses.build({"kind": "ar"}, noise=masked_noise())
    logits = torch.zeros(1, 3, V)
    logits[0, 0, 2] = math.log(4.0)  # p(2) = 4 / (V + 3)
    logits[0, 1, 7] = 1.0
    x0 = torch.tensor([[2, 5, 7]])
    mask = torch.tensor([[True, True, False]])
    out = loss(logits, x0, x0, torch.rand(1), mask)
    z1 = V - 1 + 4.0
    z2 = V - 1 + math.e
    expected = [-math.log(4.0 / z1), -math.log(1.0 / z2), 0.0]
    assert out.elbo.dtype == torch.float64
    assert out.elbo[0].tolist() == pytest.approx(expected, rel=1e-6)
    assert float(out.loss) == pytest.approx(sum(expected) / 2, rel=1e-6)
    assert float(out.metrics["accuracy"]) == pytest.approx(0.5)  # argmax hits x0 at position 0 only


class Recorder(nn.Module):
    """Logits that only depend on the input token at the same position; records its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(V, V))
        self.calls: list[dict] = []

    def forward(self, zt, t, fixed=None, valid=None, causal=False):
        self.calls.append({"zt": zt.clone(), "t": t.clone(), "valid": valid, "causal": causal})
        return self.table[zt]


def test_ar_objective_feeds_shifted_clean_tokens_causally() -> None:
    loss = losses.build({"kind": "ar"}, noise=masked_noise())
    model = Recorder()
    x0 = torch.randint(0, MASK, (2, 5))
    batch = Batch(x0=x0, fixed=torch.zeros_like(x0, dtype=torch.bool), valid=torch.ones_like(x0, dtype=torch.bool))
    out = loss.objective(model, batch, torch.rand(2))
    [call] = model.calls
    assert call["causal"] is True and torch.equal(call["t"], torch.zeros(2))
    assert torch.equal(call["zt"], shift_right(x0, MASK))
    log_p = torch.log_softmax(model.table.detach(), -1)
    expected = -log_p[shift_right(x0, MASK), x0].double()
    assert torch.allclose(out.elbo, expected)
    out.loss.backward()
    assert model.table.grad is not None


def test_uniform_predictor_ppl_is_the_vocabulary_size() -> None:
    """Independent check: the untrained causal model (zero-initialised head) predicts the uniform
    distribution, so the exact AR PPL from the validation estimator is V."""
    torch.manual_seed(1)
    model = backbones.build({"kind": "causal", "layers": 1, "heads": 2, "width": 16}, vocab_size=V, seq_len=L)
    loss = losses.build({"kind": "ar"}, noise=masked_noise())
    batches = [Batch.unconditional(torch.randint(0, MASK, (4, L))) for _ in range(3)]
    result = estimate_nelbo(model, loss, batches, ElboEstimator(kind="mc", t_samples=2), 1e-3, torch.Generator().manual_seed(0))
    assert result.ppl == pytest.approx(V, rel=1e-6)  # float32 log-softmax
    assert result.bits_per_token == pytest.approx(math.log2(V), rel=1e-6)
    assert result.tokens == 3 * 4 * L


class Counter(nn.Module):
    """An exact AR model: the first token is 0, then each token is the previous one + 1 (mod 5)."""

    def forward(self, zt, t, fixed=None, valid=None, causal=False):
        assert causal
        nxt = torch.where(zt == MASK, 0, (zt + 1) % 5)
        return torch.nn.functional.one_hot(nxt, V).float() * 100.0


def test_autoregressive_sampler_follows_the_model_and_keeps_the_prompt() -> None:
    sampler = samplers.build({"kind": "autoregressive"})
    x0 = torch.zeros(2, 8, dtype=torch.long)
    fixed = torch.zeros(2, 8, dtype=torch.bool)
    x0[1, 2], fixed[1, 2] = 7, True  # a given token conditions what follows
    out = sampler.generate(Counter(), masked_noise(), Batch(x0=x0, fixed=fixed))
    assert out.tokens[0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert out.tokens[1].tolist() == [0, 1, 7, 3, 4, 0, 1, 2]
    assert out.nfe.tolist() == [8, 7]
    with pytest.raises(ValueError, match="steps"):
        sampler.generate(Counter(), masked_noise(), Batch(x0=x0, fixed=fixed), steps=4)


def test_autoregressive_sampler_draws_from_the_softmax() -> None:
    """First-token frequencies match softmax(logits / T) over the non-mask tokens."""
    logits = torch.linspace(-1.0, 1.0, V)

    class Fixed(nn.Module):
        def forward(self, zt, t, fixed=None, valid=None, causal=False):
            return logits.expand(*zt.shape, V)

    sampler = samplers.build({"kind": "autoregressive", "temperature": 2.0})
    torch.manual_seed(0)
    n = 20000
    out = sampler.generate(Fixed(), masked_noise(), Batch.unconditional(torch.zeros(n, 1, dtype=torch.long)))
    counts = torch.bincount(out.tokens[:, 0], minlength=V).double()
    want = torch.softmax(torch.where(torch.arange(V) == MASK, float("-inf"), logits / 2.0), -1).double()
    assert counts[MASK] == 0
    chi2 = float((((counts - n * want) ** 2) / (n * want).clamp_min(1e-12))[:MASK].sum())
    assert chi2 < 30.0  # 9 degrees of freedom: p ~ 4e-4
