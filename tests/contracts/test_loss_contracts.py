"""Checks every loss kind passes, each on the noise and backbone the Spec pairs it with: a finite
scalar loss whose gradient reaches the backbone, a per-position elbo that is finite, >= 0 and 0 at
unscored (fixed or padding) positions, the same value under the same seed, and, for a denoiser
that puts all mass on the clean tokens, an elbo near 0 and a loss below an untrained model's."""

from __future__ import annotations

import pytest
import torch
from contract_examples import B, EXAMPLES, L, MASK, V, cases, clean_tokens, logits_of, partners, scramble

from components import backbones, losses
from components import noise as noises
from components.batch import Batch

# Kinds whose objective needs a backbone-specific output (the two-head tuple), so a plain
# clean-token oracle does not apply.
NO_ORACLE = {"two_head": "scores the holding and jump heads of the two-head backbone"}


def setup(kind: str) -> tuple[losses.Loss, torch.nn.Module, Batch]:
    picked = partners("losses", kind)
    process = noises.build(EXAMPLES["noise"][picked["noise"]], vocab_size=V, mask_id=MASK)
    loss = losses.build(EXAMPLES["losses"][kind], noise=process)
    torch.manual_seed(0)
    model = scramble(backbones.build(EXAMPLES["backbones"][picked["backbone"]], vocab_size=V, seq_len=L))
    gen = torch.Generator().manual_seed(1)
    x0 = clean_tokens(gen)
    fixed = torch.zeros(B, L, dtype=torch.bool)
    fixed[0, :3] = True
    valid = torch.ones(B, L, dtype=torch.bool)
    valid[1, -2:] = False
    fixed[1, -2:] = True  # padding is fixed as well as invalid, as the tasks make it
    return loss, model, Batch(x0=x0, fixed=fixed, valid=valid)


def times() -> torch.Tensor:
    return torch.tensor([0.1, 0.4, 0.7, 0.9])


@pytest.mark.parametrize("kind", cases("losses"))
def test_loss_is_finite_and_its_gradient_reaches_the_backbone(kind: str) -> None:
    loss, model, batch = setup(kind)
    torch.manual_seed(2)
    out = loss.objective(model, batch, times())
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("kind", cases("losses"))
def test_elbo_is_nonnegative_and_zero_where_unscored(kind: str) -> None:
    loss, model, batch = setup(kind)
    torch.manual_seed(3)
    with torch.no_grad():
        elbo = loss.objective(model, batch, times()).elbo
    assert elbo.shape == (B, L) and torch.isfinite(elbo).all()
    assert elbo.ge(-1e-6).all()
    assert elbo[~batch.scored].eq(0).all()
    assert elbo[batch.scored].gt(0).any()


@pytest.mark.parametrize("kind", cases("losses"))
def test_same_seed_same_loss(kind: str) -> None:
    loss, model, batch = setup(kind)
    values = []
    for _ in range(2):
        torch.manual_seed(4)
        with torch.no_grad():
            values.append(loss.objective(model, batch, times()).elbo)
    assert torch.equal(values[0], values[1])


class CleanOracle(torch.nn.Module):
    """Logits 30 * onehot(x0) whatever the input: the perfect denoiser (and next-token predictor,
    since the ar loss's logits[:, i] predict x0[:, i])."""

    def __init__(self, x0: torch.Tensor):
        super().__init__()
        self.x0 = x0
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def forward(self, zt, t, fixed=None, valid=None, causal=False):
        logits = 30.0 * torch.nn.functional.one_hot(self.x0, V).float() + self.bias
        return logits[: len(zt), : zt.shape[1]]


@pytest.mark.parametrize("kind", [k for k in cases("losses") if k not in NO_ORACLE])
def test_the_perfect_denoiser_scores_near_zero(kind: str) -> None:
    loss, model, batch = setup(kind)
    torch.manual_seed(5)
    with torch.no_grad():
        perfect = loss.objective(CleanOracle(batch.x0), batch, times())
        torch.manual_seed(5)
        untrained = loss.objective(model, batch, times())
    assert perfect.elbo.abs().max() < 1e-3
    assert perfect.loss < untrained.loss
