"""Snapshot loss: -log p(x0 | z_t) over every scored position (carry_over, low_var), the jumped
tokens' denoising PPL, and the objective's use of the forward jump mask."""

import math

import pytest
import torch

from components import losses, noise as noises
from components.batch import Batch

V = 6
MASK = 5
B, L = 4, 8


def ce(logits: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits with the mask logit removed)[x0], float64, written out by hand."""
    logits = logits.double()
    keep = torch.arange(V) != MASK
    log_z = torch.logsumexp(logits[..., keep], -1)
    return log_z - logits.gather(-1, x0[..., None]).squeeze(-1)


def setup():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, MASK, (B, L), generator=gen)
    zt = torch.randint(0, V, (B, L), generator=gen)
    jumped = torch.rand(B, L, generator=gen) < 0.5
    zt = torch.where(jumped, zt, x0)
    jumped[0, 0] = True
    zt[0, 0] = x0[0, 0]  # a jump back onto the clean token
    scored = torch.rand(B, L, generator=gen) < 0.8
    logits = torch.randn(B, L, V, generator=gen)
    return x0, zt, jumped, scored, logits


@pytest.mark.parametrize("carry_over", [False, True])
@pytest.mark.parametrize("low_var", [False, True])
def test_snapshot_terms(carry_over: bool, low_var: bool) -> None:
    x0, zt, jumped, scored, logits = setup()
    process = noises.build({"kind": "gdds", "kernel": {"kind": "uniform"}}, vocab_size=V, mask_id=MASK)
    loss = losses.build({"kind": "snapshot", "carry_over": carry_over, "low_var": low_var}, noise=process)
    out = loss(logits, x0, zt, torch.full((B,), 0.5), scored, jumped=jumped)
    nll = ce(logits, x0)
    counted = scored & jumped if carry_over else scored
    expected_elbo = torch.where(counted, nll, 0.0)
    assert out.metrics["snapshot_nll"].item() == pytest.approx((expected_elbo.sum() / scored.sum()).item(), rel=1e-5)
    denoising = nll[scored & jumped].mean()
    train = denoising if low_var else expected_elbo.sum() / scored.sum()
    assert out.loss.item() == pytest.approx(train.item(), rel=1e-5)
    assert out.metrics["denoising_ppl"].item() == pytest.approx(math.exp(denoising.item()), rel=1e-5)
    assert out.metrics["jumped_fraction"].item() == pytest.approx((scored & jumped).sum().item() / scored.sum().item())


def test_without_jump_mask_changed_tokens_count_as_jumped() -> None:
    x0, zt, jumped, scored, logits = setup()
    process = noises.build({"kind": "masked"}, vocab_size=V, mask_id=MASK)
    loss = losses.build({"kind": "snapshot", "carry_over": True}, noise=process)
    out = loss(logits, x0, zt, torch.full((B,), 0.5), scored)
    torch.testing.assert_close(out.elbo, torch.where(scored & (zt != x0), ce(logits, x0), 0.0))


class Recorder(torch.nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.inputs: list[torch.Tensor] = []

    def forward(self, zt, t, fixed=None, valid=None):
        self.inputs.append(zt)
        return self.logits


def test_objective_uses_the_forward_jump_mask() -> None:
    x0, _, _, _, logits = setup()
    fixed = torch.zeros(B, L, dtype=torch.bool)
    fixed[:, :2] = True
    process = noises.build({"kind": "gdds", "kernel": {"kind": "uniform"}}, vocab_size=V, mask_id=MASK)
    loss = losses.build({"kind": "snapshot", "carry_over": True}, noise=process)
    t = torch.linspace(0.3, 0.9, B)
    model = Recorder(logits)
    torch.manual_seed(1)
    out = loss.objective(model, Batch(x0=x0, fixed=fixed), t)
    torch.manual_seed(1)
    zt, jumped = process.sample_with_jumps(x0, t, fixed)
    assert torch.equal(model.inputs[0], zt)
    snapshot = torch.where(jumped & ~fixed, ce(logits, x0), 0.0)
    assert out.metrics["snapshot_nll"].item() == pytest.approx((snapshot.sum() / (~fixed).sum()).item(), rel=1e-5)


def test_requirements() -> None:
    assert set(losses.LOSSES.config_model("snapshot").requires_noise) == {"gdds", "masked", "uniform", "gidd"}
