"""x0 cross-entropy: unweighted CE on the positions the forward process jumped, with the true
GIDD NELBO over every scored position as its elbo output."""

import pytest
import torch

from components import losses, noise as noises
from components.batch import Batch
from components.registry import BuildError

V = 6
MASK = V - 1
B, L = 8, 10


class Recorder(torch.nn.Module):
    """Fixed random logits; remembers the inputs it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = torch.randn(B, L, V, generator=torch.Generator().manual_seed(7))
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, zt, t, fixed=None, valid=None):
        self.calls.append((zt, t))
        return self.logits


def cross_entropy(logits: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    log_p = torch.log_softmax(logits.double().index_fill(-1, torch.tensor([MASK]), float("-inf")), -1)
    return -log_p.gather(-1, x0[..., None]).squeeze(-1)


@pytest.mark.parametrize("section", [{"kind": "uniform"}, {"kind": "gidd", "p_uniform": 0.4}, {"kind": "masked"}])
def test_objective_scores_jumped_positions(section: dict) -> None:
    process = noises.build(section, vocab_size=V, mask_id=MASK)
    loss = losses.build({"kind": "x0_ce"}, noise=process)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, V - 1, (B, L), generator=gen)
    fixed = torch.rand(B, L, generator=gen) < 0.3
    batch = Batch(x0=x0, fixed=fixed)
    t = torch.linspace(0.1, 0.9, B)
    model = Recorder()

    torch.manual_seed(3)
    out = loss.objective(model, batch, t)
    torch.manual_seed(3)
    zt, jumped = process.sample_with_jumps(x0, t, fixed)
    assert torch.equal(model.calls[0][0], zt)

    corrupted = jumped & ~fixed
    ce = cross_entropy(model.logits, x0)
    assert out.loss.item() == pytest.approx(ce[corrupted].mean().item(), rel=1e-5)
    gidd = losses.build({"kind": "gidd", "weighting": "none"}, noise=process)(model.logits, x0, zt, t, ~fixed)
    torch.testing.assert_close(out.elbo, gidd.elbo.detach())
    assert out.metrics["corrupted_fraction"].item() == pytest.approx(corrupted.sum().item() / (~fixed).sum().item())


def test_jumps_back_onto_the_clean_token_are_scored() -> None:
    process = noises.build({"kind": "uniform"}, vocab_size=V, mask_id=MASK)
    loss = losses.build({"kind": "x0_ce"}, noise=process)
    x0 = torch.zeros(1, 4, dtype=torch.long)
    zt = torch.tensor([[0, 0, 2, 3]])
    jumped = torch.tensor([[False, True, True, False]])
    logits = torch.randn(1, 4, V, generator=torch.Generator().manual_seed(1))
    ce = cross_entropy(logits, x0)[0]
    with_jumps = loss(logits, x0, zt, torch.tensor([0.5]), jumped=jumped)
    observable = loss(logits, x0, zt, torch.tensor([0.5]))
    assert with_jumps.loss.item() == pytest.approx(ce[1:3].mean().item(), rel=1e-5)
    assert observable.loss.item() == pytest.approx(ce[2:4].mean().item(), rel=1e-5)


def test_requirements() -> None:
    assert losses.LOSSES.config_model("x0_ce").requires_noise == ("masked", "uniform", "gidd")
    process = noises.build({"kind": "masked"}, vocab_size=V, mask_id=MASK)
    with pytest.raises(BuildError):
        losses.build({"kind": "x0_ce", "label_smoothing": 0.1}, noise=process)
