"""Two-head holding/jump models: the backbone's combined prediction, the two_head loss for every
gate (against hand-written BCE + CE), its metrics on a hand example, and the gated sampler."""

import math

import pytest
import torch
import torch.nn.functional as F

from components import backbones, losses, noise as noises, samplers
from components.backbones.two_head import TwoHeadOutput, combine
from components.batch import Batch

V = 5
MASK = 4  # ordinary tokens 0..3, as 4x4 Sudoku
INF = float("inf")


def edit_noise(**fields):
    return noises.build({"kind": "edit", "substitution": 0.3, "edit_from": 0.0, **fields}, vocab_size=V, mask_id=MASK)


class Heads(torch.nn.Module):
    """Input-independent holding logits H: Float[B, L] and jump logits J: Float[B, L, V] (z_t's
    logit set to -inf, as the backbone does); records every input."""

    def __init__(self, holding: torch.Tensor, raw: torch.Tensor) -> None:
        super().__init__()
        self.holding, self.raw = holding, raw
        self.inputs: list[torch.Tensor] = []

    def forward(self, zt, t, fixed=None, valid=None):
        self.inputs.append(zt.clone())
        jump = self.raw.scatter(-1, zt[..., None], -INF)
        return TwoHeadOutput(logits=self.raw, holding=self.holding, jump=jump)


def hand_bce(holding: torch.Tensor, corrupted: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(holding.double())
    c = corrupted.double()
    bce = -(c * torch.log(p) + (1 - c) * torch.log(1 - p))
    return bce[scored].mean()


def hand_ce(raw: torch.Tensor, jump_input: torch.Tensor, x0: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """Mean -log softmax(J)[x0] over the tokens other than the jump input and the mask, at scored
    positions whose jump input differs from x0."""
    logits = raw.double().clone()
    logits.scatter_(-1, jump_input[..., None], -INF)
    logits[..., MASK] = -INF
    nll = torch.logsumexp(logits, -1) - raw.double().gather(-1, x0[..., None]).squeeze(-1)
    return nll[scored & (jump_input != x0)].mean()


def test_backbone_combines_holding_and_jump() -> None:
    torch.manual_seed(0)
    config = {"kind": "two_head", "trunk": {"kind": "encoder", "layers": 1, "heads": 2, "width": 16, "ffn": 32}}
    model = backbones.build(config, vocab_size=V, seq_len=6).eval()
    zt = torch.tensor([[0, 1, MASK, 3, 2, MASK], [MASK, MASK, 0, 0, 1, 2]])
    t = torch.tensor([0.3, 0.7])
    out = model(zt, t)
    raw = model.trunk(zt, t).double()
    assert raw.shape == (2, 6, V + 1)
    torch.testing.assert_close(out.holding.double(), raw[..., V])
    h = torch.sigmoid(raw[..., V])
    jump_logits = raw[..., :V].clone()
    jump_logits.scatter_(-1, zt[..., None], -INF)
    j = torch.softmax(jump_logits, -1)
    x_hat = h[..., None] * j + (1 - h[..., None]) * F.one_hot(zt, V).double()
    torch.testing.assert_close(out.logits.double().exp(), x_hat, rtol=1e-5, atol=1e-6)
    assert (out.jump.gather(-1, zt[..., None]) == -INF).all()
    torch.testing.assert_close(out.logits.double().exp().sum(-1), torch.ones(2, 6, dtype=torch.float64))


@pytest.mark.parametrize("gate", ["none", "oracle", "predicted"])
def test_loss_is_weighted_bce_plus_jump_ce(gate: str) -> None:
    process = edit_noise()
    gen = torch.Generator().manual_seed(1)
    B, L = 16, 12
    x0 = torch.randint(0, 4, (B, L), generator=gen)
    fixed = torch.zeros(B, L, dtype=torch.bool)
    fixed[:, :3] = True
    batch = Batch(x0=x0, fixed=fixed)
    model = Heads(torch.randn(B, L, generator=gen), torch.randn(B, L, V, generator=gen))
    config = {"kind": "two_head", "gate": gate, "threshold": 0.3, "holding_weight": 0.7, "jump_weight": 1.3}
    loss = losses.build(config, noise=process)
    torch.manual_seed(2)
    out = loss.objective(model, batch, torch.linspace(0.1, 0.9, B))

    zt = model.inputs[0]
    scored = ~fixed
    corrupted = zt != x0
    assert torch.equal(zt[fixed], x0[fixed])
    assert (zt[corrupted] == MASK).any() and ((zt != MASK) & corrupted).any()  # masks and substitutions
    if gate == "none":
        assert len(model.inputs) == 1
        jump_input = zt
    else:
        assert len(model.inputs) == 2
        gated = corrupted if gate == "oracle" else torch.sigmoid(model.holding) > 0.3
        jump_input = zt.masked_fill(gated & scored, MASK)
        assert torch.equal(model.inputs[1], jump_input)
    expected = 0.7 * hand_bce(model.holding, corrupted, scored) + 1.3 * hand_ce(model.raw, jump_input, x0, scored)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_oracle_gate_masks_exactly_the_corrupted_positions() -> None:
    """Holding logits that flag everything must not leak into the oracle gate."""
    process = edit_noise(substitution=0.5)
    x0 = torch.randint(0, 4, (64, 16), generator=torch.Generator().manual_seed(3))
    fixed = torch.zeros_like(x0, dtype=torch.bool)
    fixed[:, ::4] = True
    model = Heads(torch.full((64, 16), 10.0), torch.zeros(64, 16, V))
    loss = losses.build({"kind": "two_head", "gate": "oracle"}, noise=process)
    out = loss.objective(model, Batch(x0=x0, fixed=fixed), torch.full((64,), 0.4))
    zt, jump_input = model.inputs
    assert torch.equal(jump_input == MASK, (zt != x0) & ~fixed)
    assert torch.equal(jump_input[~(zt != x0)], x0[~(zt != x0)])
    visible_wrong = (zt != x0) & (zt != MASK)
    assert out.metrics["gated_fraction"].item() == pytest.approx(visible_wrong.sum().item() / (~fixed).sum().item())


@pytest.mark.parametrize("progress, share", [(0.0, 1.0), (0.2, 1.0), (0.3, 0.75), (0.5, 0.25), (0.6, 0.0), (0.9, 0.0)])
def test_scheduled_gate_anneals_from_oracle_to_predicted(progress: float, share: float) -> None:
    """Per sequence, the jump input is the oracle's gate with probability s(progress) (1 until
    anneal_start 0.2, linear to 0 at anneal_end 0.6), else the predicted gate."""
    process = edit_noise()
    B, L = 3000, 16
    torch.manual_seed(4)
    x0 = torch.randint(0, 4, (B, L))
    fixed = torch.zeros_like(x0, dtype=torch.bool)
    fixed[:, :2] = True
    model = Heads(torch.full((B, L), 10.0), torch.zeros(B, L, V))  # predicted gate: every scored position
    loss = losses.build({"kind": "two_head", "gate": "scheduled", "anneal_start": 0.2, "anneal_end": 0.6}, noise=process)
    loss.set_progress(progress)
    out = loss.objective(model, Batch(x0=x0, fixed=fixed), torch.full((B,), 0.05))
    zt, jump_input = model.inputs
    oracle = (jump_input == zt.masked_fill((zt != x0) & ~fixed, MASK)).all(-1)
    predicted = (jump_input == zt.masked_fill(~fixed, MASK)).all(-1)
    assert (oracle | predicted).all()
    decided = oracle ^ predicted  # rows where the two gates differ
    assert decided.sum() > 0.99 * B
    observed = oracle[decided].double().mean().item()
    n = decided.sum().item()
    assert abs(observed - share) <= 5 * math.sqrt(share * (1 - share) / n) + 1e-9
    assert out.metrics["oracle_share"].item() == pytest.approx(share)


def hand_example() -> tuple[torch.Tensor, ...]:
    """One sequence of 8 cells; cell 0 is fixed. Cells 1, 2 masked; 3, 5 substituted; 4, 6, 7 clean."""
    x0 = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]])
    zt = torch.tensor([[0, MASK, MASK, 0, 0, 2, 2, 3]])
    fixed = torch.tensor([[True, False, False, False, False, False, False, False]])
    holding = torch.tensor([[5.0, 3.0, -3.0, 2.0, 1.0, -0.3, -2.0, 0.5]])
    raw = torch.zeros(1, 8, V)
    raw[0, 1, 1] = 4.0  # masked, argmax = x0: right
    raw[0, 2, MASK], raw[0, 2, 2] = 9.0, 4.0  # masked, the mask logit is ignored: right
    raw[0, 3, 0], raw[0, 3, 3] = 9.0, 4.0  # substituted, z_t's own logit is ignored: right
    raw[0, 5, 0] = 4.0  # substituted, argmax 0 but x0 = 1: wrong
    return x0, zt, fixed, holding, raw


def test_metrics_on_a_hand_example() -> None:
    x0, zt, fixed, holding, raw = hand_example()
    loss = losses.build({"kind": "two_head"}, noise=edit_noise())
    out = loss(Heads(holding, raw)(zt, None), x0, zt, torch.tensor([0.5]), ~fixed)
    m = {k: v.item() for k, v in out.metrics.items()}
    # visible scored cells 3..7; flagged (P > 0.5): 3, 4, 7 (cell 5 has P = 0.43); corrupted: 3, 5
    assert m["holding_precision"] == pytest.approx(1 / 3)
    assert m["holding_recall"] == pytest.approx(1 / 2)
    s = torch.sigmoid
    on_wrong = (s(torch.tensor(2.0)) + s(torch.tensor(-0.3))) / 2
    on_right = (s(torch.tensor(1.0)) + s(torch.tensor(-2.0)) + s(torch.tensor(0.5))) / 3
    assert m["score_corrupted"] == pytest.approx(on_wrong.item(), rel=1e-6)
    assert m["score_clean"] == pytest.approx(on_right.item(), rel=1e-6)
    assert m["separation"] == pytest.approx((on_wrong - on_right).item(), rel=1e-6)
    assert m["jump_accuracy"] == pytest.approx(3 / 4)  # cells 1, 2, 3 right, 5 wrong
    expected = hand_bce(holding, zt != x0, ~fixed) + hand_ce(raw, zt, x0, ~fixed)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_fixed_positions_are_never_scored_or_gated() -> None:
    x0, zt, fixed, holding, raw = hand_example()
    loss = losses.build({"kind": "two_head"}, noise=edit_noise())
    base = loss(Heads(holding, raw)(zt, None), x0, zt, torch.tensor([0.5]), ~fixed)
    holding2, raw2 = holding.clone(), raw.clone()
    holding2[0, 0] = -7.0
    raw2[0, 0] = torch.tensor([-5.0, 8.0, 3.0, 1.0, 2.0])
    other = loss(Heads(holding2, raw2)(zt, None), x0, zt, torch.tensor([0.5]), ~fixed)
    assert other.loss.item() == base.loss.item()
    assert {k: v.item() for k, v in other.metrics.items()} == {k: v.item() for k, v in base.metrics.items()}

    # gates never mask a fixed position, even where the holding head flags it
    x0 = torch.randint(0, 4, (32, 16), generator=torch.Generator().manual_seed(5))
    fixed = torch.rand(32, 16, generator=torch.Generator().manual_seed(6)) < 0.4
    for gate in ("oracle", "predicted", "scheduled"):
        model = Heads(torch.full((32, 16), 10.0), torch.zeros(32, 16, V))
        loss = losses.build({"kind": "two_head", "gate": gate}, noise=edit_noise(substitution=1.0))
        loss.set_progress(0.3)
        loss.objective(model, Batch(x0=x0, fixed=fixed), torch.full((32,), 0.5))
        for seen in model.inputs:
            assert torch.equal(seen[fixed], x0[fixed])


class Oracle(torch.nn.Module):
    """A two-head model that knows ``answer`` Long[1, L]: holding says "corrupted" exactly where
    z_t differs from it, the jump head predicts it, except at cell ``unsure`` while another cell
    is masked, where the jump head is uniform (so a one-shot fill puts token 0 there)."""

    def __init__(self, answer: torch.Tensor, unsure: int) -> None:
        super().__init__()
        self.answer, self.unsure = answer, unsure

    def forward(self, zt, t, fixed=None, valid=None):
        answer = self.answer.expand(len(zt), -1)
        holding = torch.where(zt == answer, -10.0, 10.0)
        masked = zt == MASK
        others_masked = (masked.sum(-1, keepdim=True) - masked.long()) > 0
        unsure = (torch.arange(zt.shape[1]) == self.unsure) & others_masked
        raw = torch.where(unsure[..., None], 0.0, 10.0 * F.one_hot(answer, V).float())
        jump = raw.scatter(-1, zt[..., None], -INF)
        return TwoHeadOutput(logits=combine(zt, holding, jump), holding=holding, jump=jump)


def test_gated_sampler_fixes_a_planted_error_and_keeps_fixed_cells() -> None:
    answer = torch.tensor([[1, 2, 3, 0, 2, 1, 3, 0]])
    model = Oracle(answer, unsure=2)
    x0 = answer.expand(2, -1).clone()
    x0[:, 0] = 3  # a given that disagrees with the model: flagged by the holding head, never changed
    fixed = torch.zeros(2, 8, dtype=torch.bool)
    fixed[:, 0] = True
    fixed[1, 2] = True  # row 1: the unsure cell is given, so the fill is right at once
    batch = Batch(x0=x0, fixed=fixed)
    base = {"kind": "confidence", "k": 8}

    plain = samplers.build({"kind": "gated", "base": base, "passes": 0}).generate(model, edit_noise(), batch)
    assert plain.tokens[0, 2].item() == 0 and torch.equal(plain.tokens[1], x0[1])  # the planted error

    sampler = samplers.build({"kind": "gated", "base": base, "passes": 5})
    out = sampler.generate(model, edit_noise(), batch)
    assert torch.equal(out.tokens[fixed], x0[fixed])
    assert torch.equal(out.tokens[~fixed], x0[~fixed])  # = answer off the fixed cells
    # row 0: fill (1) + a pass that flags cell 2 and re-predicts it (2) + a pass that flags nothing (1)
    assert out.nfe.tolist() == [4, 2]
    assert sampler.stats.passes.tolist() == [2, 1]
    assert sampler.stats.changes.tolist() == [1, 0]
    assert sampler.stats.converged.all()
