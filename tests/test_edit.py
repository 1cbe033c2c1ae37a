"""Edit noise (rates, curriculum, insertions with a deletion token), the edit loss (token switch,
weights, mask-only ELBO against the mdlm loss) and the edit sampler."""

import math

import pytest
import torch

from components import losses, noise as noises, samplers
from components.batch import Batch
from components.noise.edit import EditNoise
from components.registry import BuildError

V = 7
MASK = 6
DELETE = 5
N = 5  # ordinary tokens 0..4 when DELETE is the deletion marker
TIMES = torch.tensor([0.1, 0.4, 0.7, 0.95])
SAMPLES = 40_000


def build(**fields) -> EditNoise:
    return noises.build({"kind": "edit", **fields}, vocab_size=V, mask_id=MASK)


def within(observed: float, p: float, n: int) -> bool:
    """|observed - p| within 5 binomial standard errors."""
    return abs(observed - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-9


@pytest.mark.parametrize("schedule", ["constant", "linear"])
def test_mask_and_substitution_rates(schedule: str) -> None:
    process = build(substitution=0.3, substitution_schedule=schedule, edit_from=0.0)
    torch.manual_seed(0)
    x0 = torch.randint(0, V - 1, (len(TIMES), SAMPLES))
    fixed = torch.zeros_like(x0, dtype=torch.bool)
    fixed[:, :1000] = True
    draw = process.draw(x0, TIMES, fixed)
    assert torch.equal(draw.zt[fixed], x0[fixed]) and not draw.corrupted[fixed].any()
    assert torch.equal(draw.target, x0) and not draw.inserted.any()
    free = SAMPLES - 1000
    for row, t in enumerate(TIMES.tolist()):
        masked = draw.masked[row]
        assert within(masked.sum().item() / free, 1 - (1 - (1 - 1e-3) * t), free)
        visible = ~fixed[row] & ~masked
        rate = 0.3 if schedule == "constant" else 0.3 * t
        n_visible = visible.sum().item()
        assert within((draw.substituted[row] & visible).sum().item() / n_visible, rate, n_visible)
    assert (draw.zt[draw.masked] == MASK).all()
    wrong = draw.zt[draw.substituted]
    assert (wrong != x0[draw.substituted]).all() and (wrong != MASK).all()
    untouched = ~draw.corrupted
    assert torch.equal(draw.zt[untouched], x0[untouched])
    # substitutions are uniform over the V - 2 other ordinary tokens
    from_zero = draw.zt[draw.substituted & (x0 == 0)]
    counts = torch.bincount(from_zero, minlength=V).double() / len(from_zero)
    for token in range(1, V - 1):
        assert within(counts[token].item(), 1 / (V - 2), len(from_zero))


@pytest.mark.parametrize("edit_from, total", [(0.8, 50), (0.25, 7), (0.0, 10), (1.0, 10)])
def test_curriculum_switches_at_the_configured_fraction(edit_from: float, total: int) -> None:
    process = build(substitution=1.0, edit_from=edit_from)
    x0 = torch.zeros(1, 400, dtype=torch.long)
    t = torch.tensor([1e-3])  # almost nothing masked: every visible token is substituted in the edit stage
    stages = []
    for step in range(total):
        process.set_progress(step / total)  # as the training loop does before every step
        stages.append(bool(process.draw(x0, t).substituted.any()))
    first = math.ceil(edit_from * total)
    assert stages == [step >= first for step in range(total)]
    process.set_progress(0.0 if edit_from > 0 else 1.0)
    assert not process.draw(x0, t, edits=False).substituted.any()


def test_insertions_shift_the_free_suffix_and_target_the_deletion_token() -> None:
    process = build(substitution=0.2, edit_from=0.0, deletion={"token": DELETE, "rate": 0.1})
    torch.manual_seed(1)
    x0 = torch.randint(0, N, (400, 30))
    fixed = torch.zeros_like(x0, dtype=torch.bool)
    fixed[:200, 10] = True  # half the rows have a fixed position at 10
    draw = process.draw(x0, torch.full((400,), 0.3), fixed)
    assert torch.equal(draw.zt[fixed], x0[fixed])
    assert not draw.inserted[:200, :11].any()
    assert (draw.target[draw.inserted] == DELETE).all()
    assert ((draw.zt[draw.inserted] != MASK) & (draw.zt[draw.inserted] != DELETE)).all()
    assert (draw.zt[draw.masked] == MASK).all() and not (draw.masked & draw.inserted).any()
    for row in range(400):
        kept = draw.target[row][~draw.inserted[row]]
        assert torch.equal(kept, x0[row, : len(kept)])  # deleting the insertions restores x0's prefix
        noisy = draw.zt[row][~draw.inserted[row]]
        clean = ~(draw.masked[row] | draw.substituted[row])[~draw.inserted[row]]
        assert torch.equal(noisy[clean], kept[clean])
    # P(insertion before a free position): rows without fixed positions, first position
    assert within(draw.inserted[200:, 0].double().mean().item(), 0.1, 200)
    with pytest.raises(BuildError, match="deletion.token"):
        build(deletion={"token": MASK})
    with pytest.raises(BuildError, match="deletion.token"):
        build(deletion={"token": V})


class Fixed(torch.nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.inputs: list[torch.Tensor] = []

    def forward(self, zt, t, fixed=None, valid=None):
        self.inputs.append(zt)
        return self.logits


def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = logits.double()
    keep = torch.arange(V) != MASK
    return torch.logsumexp(logits[..., keep], -1) - logits.gather(-1, target[..., None]).squeeze(-1)


@pytest.mark.parametrize("tokens", ["all", "corrupted"])
@pytest.mark.parametrize("masked_weight", ["elbo", "one"])
def test_edit_loss_terms(tokens: str, masked_weight: str) -> None:
    process = build()
    gen = torch.Generator().manual_seed(2)
    x0 = torch.randint(0, V - 1, (4, 12), generator=gen)
    zt = x0.clone()
    zt[:, :4] = MASK
    zt[:, 4:6] = (x0[:, 4:6] + 1) % (V - 1)  # substituted
    scored = torch.ones_like(x0, dtype=torch.bool)
    scored[:, -1] = False
    logits = torch.randn(4, 12, V, generator=gen)
    t = torch.tensor([0.2, 0.4, 0.6, 0.8])
    loss = losses.build({"kind": "edit", "tokens": tokens, "masked_weight": masked_weight, "visible_weight": 0.5}, noise=process)
    out = loss(logits, x0, zt, t, scored)

    nll = ce(logits, x0)
    weight = (1 - 1e-3) / (1 - (1 - (1 - 1e-3) * t))[:, None]  # -alpha' / (1 - alpha)
    masked_term = (weight if masked_weight == "elbo" else 1.0) * nll[:, :4]
    visible = nll[:, 4:11] if tokens == "all" else nll[:, 4:6]
    expected = (masked_term.sum() + 0.5 * visible.sum()) / scored.sum()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    elbo = torch.zeros(4, 12, dtype=torch.float64)
    elbo[:, :4] = weight * nll[:, :4]
    torch.testing.assert_close(out.elbo, elbo, rtol=1e-5, atol=1e-6)
    assert out.metrics["substituted_fraction"].item() == pytest.approx(8 / 44)


def test_validation_draws_are_mask_only_and_match_the_mdlm_elbo() -> None:
    process = build(substitution=0.5, edit_from=0.0)
    loss = losses.build({"kind": "edit"}, noise=process)
    gen = torch.Generator().manual_seed(3)
    x0 = torch.randint(0, V - 1, (8, 16), generator=gen)
    batch = Batch.unconditional(x0)
    model = Fixed(torch.randn(8, 16, V, generator=gen))
    t = torch.linspace(0.1, 0.9, 8)
    model.train()
    trained = loss.objective(model, batch, t)
    assert trained.metrics["edit_stage"].item() == 1.0 and trained.metrics["substituted_fraction"].item() > 0
    model.eval()
    out = loss.objective(model, batch, t)
    zt = model.inputs[-1]
    assert out.metrics["edit_stage"].item() == 0.0 and ((zt == x0) | (zt == MASK)).all()
    masked = noises.build({"kind": "masked"}, vocab_size=V, mask_id=MASK)
    mdlm = losses.build({"kind": "mdlm"}, noise=masked)(model.logits, x0, zt, t)
    torch.testing.assert_close(out.elbo, mdlm.elbo)


class Scripted(torch.nn.Module):
    """A denoiser that always predicts ``answer`` with probability 0.95, except that it is unsure
    (uniform) at masked positions while more than one position is masked."""

    def __init__(self, answer: torch.Tensor) -> None:
        super().__init__()
        self.answer = answer

    def forward(self, zt, t, fixed=None, valid=None):
        logits = torch.full(zt.shape + (V,), -10.0)
        logits.scatter_(-1, self.answer[: len(zt), :, None].expand(len(zt), -1, 1), 10.0)
        unsure = (zt == MASK) & ((zt == MASK).sum(-1, keepdim=True) > 1)
        return torch.where(unsure[..., None], torch.zeros_like(logits), logits)


def test_edit_sampler_fixes_filled_tokens() -> None:
    answer = torch.tensor([[0, 1, 2, 3, 4, 0]])
    batch = Batch(x0=answer.clone(), fixed=torch.tensor([[True, False, False, False, False, False]]))
    process = build()
    plain = samplers.build({"kind": "edit", "k": 1, "edits_per_pass": 0}).generate(Scripted(answer), process, batch)
    edited = samplers.build({"kind": "edit", "k": 1, "edit_threshold": 0.9}).generate(Scripted(answer), process, batch)
    # uniform guesses (argmax: token 0) fill all but the last position; only edits can fix them
    assert not torch.equal(plain.tokens, answer) and plain.nfe.item() == 5
    assert torch.equal(edited.tokens, answer) and edited.nfe.item() > 5


def test_edit_sampler_removes_deletion_tokens_from_the_free_suffix() -> None:
    process = build(deletion={"token": DELETE})
    answer = torch.tensor([1, 2, DELETE, 3, 4, 0])

    class Deleter(torch.nn.Module):
        """Predicts ``answer``; where it says DELETE, token 4 is its second choice."""

        def forward(self, zt, t, fixed=None, valid=None):
            logits = torch.full(zt.shape + (V,), -10.0)
            logits[..., 4] = 0.0
            return logits.scatter(-1, answer.expand(len(zt), -1)[..., None], 10.0)

    fixed = torch.zeros(2, 6, dtype=torch.bool)
    fixed[1, 3] = True  # row 1: position 2 lies before a fixed position, outside the free suffix
    batch = Batch(x0=answer.expand(2, -1).clone(), fixed=fixed)
    sampler = samplers.build({"kind": "edit", "k": 6, "edits_per_pass": 0})
    out = sampler.generate(Deleter(), process, batch)
    # row 0: the deletion closes the gap, the freed last position is filled in a second pass
    assert out.tokens[0].tolist() == [1, 2, 3, 4, 0, 0] and out.nfe[0].item() == 2
    assert out.tokens[1].tolist() == [1, 2, 4, 3, 4, 0] and out.nfe[1].item() == 1
