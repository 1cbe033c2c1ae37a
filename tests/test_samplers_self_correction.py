"""GIDD self-correction: oracle, agreeing and contrarian models on tiny sequences."""

import pytest
import torch
import torch.nn.functional as F
from toy import ExactDenoiser, ToyData

from components import noise as noises
from components import samplers
from components.batch import Batch

N, V, MASK = 3, 4, 3
# Four sequences of length 6 told apart by their first two tokens, which are given (fixed).
DATA = torch.tensor(
    [
        [0, 0, 1, 2, 0, 1],
        [0, 1, 2, 2, 1, 0],
        [1, 0, 0, 1, 2, 2],
        [2, 2, 1, 0, 0, 2],
    ]
)
FIXED = torch.zeros_like(DATA, dtype=torch.bool)
FIXED[:, :2] = True


def make_noise():
    return noises.build({"kind": "gidd", "p_uniform": 0.2}, vocab_size=V, mask_id=MASK)


def oracle(noise) -> ExactDenoiser:
    """The exact denoiser of DATA: given the fixed prefix it puts all mass on the right sequence."""
    data = ToyData(sequences=DATA, probs=torch.full((len(DATA),), 0.25, dtype=torch.float64), num_tokens=N)
    return ExactDenoiser(noise, data, target="leave_one_out")


class Echo(torch.nn.Module):
    """Agrees with whatever it is shown: logits peak on the input token (shifted by ``shift``)."""

    def __init__(self, shift: int = 0):
        super().__init__()
        self.shift = shift

    def forward(self, zt, t, fixed=None, valid=None):
        return 10.0 * F.one_hot((zt + self.shift) % N, V).float()


def corrupt(rows: list[int], counts: list[int]) -> torch.Tensor:
    """DATA[rows] with the first counts[i] non-fixed positions of row i shifted to a wrong token."""
    tokens = DATA[rows].clone()
    for i, count in enumerate(counts):
        cols = torch.arange(2, 2 + count)
        tokens[i, cols] = (tokens[i, cols] + 1) % N
    return tokens


def sampler(**overrides):
    return samplers.build({"kind": "self_correction", **overrides})


@pytest.mark.parametrize("tokens_per_step,iterations", [(1, [1, 2, 4]), (2, [1, 2, 3])])
def test_an_oracle_corrects_a_corrupted_sample(tokens_per_step, iterations):
    """0, 1 and 3 wrong tokens: each iteration fixes up to tokens_per_step of them and one more
    iteration changes nothing (converged)."""
    torch.manual_seed(0)
    noise = make_noise()
    batch = Batch(x0=DATA[:3], fixed=FIXED[:3])
    corrector = sampler(tokens_per_step=tokens_per_step)
    out = corrector.correct(oracle(noise), noise, batch, corrupt([0, 1, 2], [0, 1, 3]))
    stats = corrector.stats
    assert torch.equal(out.tokens, DATA[:3])
    assert out.nfe.tolist() == iterations == stats.iterations.tolist()
    assert stats.changes.tolist() == [0, 1, 3]
    assert stats.converged.all() and not stats.early_stopped.any()
    assert stats.init_acc.tolist() == pytest.approx([1.0, 0.75, 0.25]) and stats.final_acc.eq(1.0).all()


def test_a_model_that_agrees_changes_nothing_and_converges():
    torch.manual_seed(1)
    batch = Batch(x0=DATA, fixed=FIXED)
    start = corrupt([0, 1, 2, 3], [1, 0, 2, 4])
    corrector = sampler()
    out = corrector.correct(Echo(), make_noise(), batch, start)
    assert torch.equal(out.tokens, start) and out.nfe.tolist() == [1, 1, 1, 1]
    assert corrector.stats.converged.all() and corrector.stats.changes.eq(0).all()


def test_patience_stops_a_model_that_never_agrees():
    """Echo(shift=1) always wants the next token: every iteration rewrites the first free position,
    accuracy stays at 1/4, so after the first iteration patience grows by one per iteration and
    the sequence stops on iteration patience + 2; that iteration's change is discarded."""
    torch.manual_seed(2)
    batch = Batch(x0=DATA[:1], fixed=FIXED[:1])
    corrector = sampler(patience=3)
    out = corrector.correct(Echo(shift=1), make_noise(), batch, DATA[:1])
    stats = corrector.stats
    assert out.nfe.item() == 5 and stats.early_stopped.item() and not stats.converged.item()
    # Position 2 was rewritten 4 times: 4 = 1 (mod 3) steps away from the start.
    assert out.tokens[0, 2].item() == (DATA[0, 2].item() + 4) % N
    assert torch.equal(out.tokens[0, 3:], DATA[0, 3:]) and stats.changes.item() == 1


def test_max_iters_bounds_the_work():
    batch = Batch(x0=DATA[:2], fixed=FIXED[:2])
    corrector = sampler(max_iters=7, patience=100)
    out = corrector.correct(Echo(shift=1), make_noise(), batch, DATA[:2])
    assert out.nfe.tolist() == [7, 7]
    assert not corrector.stats.converged.any() and not corrector.stats.early_stopped.any()


def test_fixed_positions_are_never_changed_even_when_the_model_wants_to():
    """Echo(shift=1) prefers another token everywhere, fixed positions included; with
    tokens_per_step = 6 every free position changes, the fixed ones never. A row without free
    positions costs nothing and counts as converged."""
    fixed = FIXED.clone()
    fixed[3] = True
    batch = Batch(x0=DATA, fixed=fixed)
    corrector = sampler(tokens_per_step=6, max_iters=3)
    wrong_givens = (DATA + 1) % N  # the sample disagrees with the givens too: they are restored
    out = corrector.correct(Echo(shift=1), make_noise(), batch, wrong_givens)
    assert torch.equal(out.tokens[fixed], DATA[fixed])
    assert out.nfe.tolist() == [3, 3, 3, 0] and corrector.stats.converged.tolist() == [False] * 3 + [True]


@pytest.mark.parametrize(
    "base,base_nfe", [({"kind": "confidence", "k": 3}, 2), ({"kind": "ancestral", "steps": 16}, 16)]
)
def test_generate_counts_base_and_correction_evaluations(base, base_nfe):
    """The exact denoiser's base sample is already right: one correction iteration confirms it."""
    torch.manual_seed(3)
    noise = make_noise()
    batch = Batch(x0=torch.where(FIXED, DATA, 0), fixed=FIXED)
    corrector = sampler(base=base)
    out = corrector.generate(oracle(noise), noise, batch)
    assert torch.equal(out.tokens, DATA)
    assert out.nfe.tolist() == [base_nfe + 1] * len(DATA) and corrector.stats.iterations.eq(1).all()


def test_steps_are_passed_to_the_base_sampler():
    noise = make_noise()
    batch = Batch(x0=torch.where(FIXED, DATA, 0), fixed=FIXED)
    out = sampler(base={"kind": "ancestral", "steps": 16}).generate(oracle(noise), noise, batch, steps=4)
    assert out.nfe.tolist() == [5] * len(DATA)


def test_noise_requirement_follows_the_base():
    assert sampler().config.requires_noise == ("masked", "uniform", "gidd")
    assert sampler(base={"kind": "confidence"}).config.requires_noise is None
