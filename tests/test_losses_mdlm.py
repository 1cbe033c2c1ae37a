"""MDLM loss: -log x_hat(x) (-alpha')/(1 - alpha) on masked tokens, against its own closed form
and against the independently derived GIDD ELBO (KL + IS) under the same masked noise."""

import pytest
import torch

from components import losses, noise as noises
from components.registry import BuildError

V = 9
MASK = 0  # not the last id on purpose
B, L = 8, 12


def setup(section: dict, seed: int = 0):
    process = noises.build(section, vocab_size=V, mask_id=MASK)
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randint(1, V, (B, L), generator=gen)
    t = torch.rand(B, generator=gen) * 0.998 + 1e-3
    torch.manual_seed(seed)
    zt = process.sample(x0, t)
    logits = 2.0 * torch.randn(B, L, V, generator=gen)
    return process, logits, x0, zt, t


def masked_nll(logits: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    log_p = torch.log_softmax(logits.double().index_fill(-1, torch.tensor([MASK]), float("-inf")), -1)
    return -log_p.gather(-1, x0[..., None]).squeeze(-1)


@pytest.mark.parametrize("eps", [0.0, 1e-3, 0.2])
def test_loglinear_weight_is_one_over_t(eps: float) -> None:
    process, logits, x0, zt, t = setup({"kind": "masked", "eps": eps})
    out = losses.build({"kind": "mdlm"}, noise=process)(logits, x0, zt, t)
    expected = torch.where(zt == MASK, masked_nll(logits, x0) / t.double()[:, None], 0.0)
    torch.testing.assert_close(out.elbo, expected, rtol=1e-5, atol=1e-6)
    assert out.loss.item() == pytest.approx(expected.mean().item(), rel=1e-5)


@pytest.mark.parametrize("section", [{"kind": "masked"}, {"kind": "masked", "schedule": "cosine", "eps": 1e-3}])
def test_mdlm_equals_gidd_elbo_under_masking(section: dict) -> None:
    for seed in range(3):
        process, logits, x0, zt, t = setup(section, seed)
        mdlm = losses.build({"kind": "mdlm"}, noise=process)(logits, x0, zt, t)
        gidd = losses.build({"kind": "gidd", "weighting": "none"}, noise=process)(logits, x0, zt, t)
        torch.testing.assert_close(mdlm.elbo, gidd.elbo, rtol=1e-5, atol=1e-5)
        assert mdlm.metrics["elbo"].item() == pytest.approx(gidd.metrics["elbo"].item(), rel=1e-5)


def test_low_var_trains_on_plain_cross_entropy_and_keeps_the_elbo() -> None:
    process, logits, x0, zt, t = setup({"kind": "masked"})
    exact = losses.build({"kind": "mdlm"}, noise=process)(logits, x0, zt, t)
    low_var = losses.build({"kind": "mdlm", "low_var": True}, noise=process)(logits, x0, zt, t)
    expected = torch.where(zt == MASK, masked_nll(logits, x0), 0.0).mean()
    assert low_var.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(low_var.elbo, exact.elbo)
    assert low_var.loss.item() != pytest.approx(exact.loss.item(), rel=1e-2)


def test_scored_positions_and_gradients() -> None:
    process, logits, x0, zt, t = setup({"kind": "masked"})
    mask = torch.rand(B, L, generator=torch.Generator().manual_seed(1)) < 0.5
    logits.requires_grad_(True)
    out = losses.build({"kind": "mdlm"}, noise=process)(logits, x0, zt, t, mask)
    out.loss.backward()
    assert (out.elbo[~mask] == 0).all() and (out.elbo[zt != MASK] == 0).all()
    assert out.loss.item() == pytest.approx(out.elbo.sum().item() / mask.sum().item(), rel=1e-6)
    assert (logits.grad[~mask | (zt != MASK)] == 0).all()
    assert torch.isfinite(logits.grad).all()


def test_needs_masked_noise() -> None:
    uniform = noises.build({"kind": "uniform"}, vocab_size=V, mask_id=MASK)
    with pytest.raises(BuildError):
        losses.build({"kind": "mdlm"}, noise=uniform)
    assert losses.LOSSES.config_model("mdlm").requires_noise == ("masked",)
