"""Forward sampling of every noise kind against its closed-form marginal (fixed seeds), jump
masks, fixed positions and priors."""

import pytest
import torch

from components import noise as noises

V = 6
MASK = 2
N = V - 1
SECTIONS = [
    {"kind": "masked"},
    {"kind": "masked", "schedule": "cosine", "eps": 0.0},
    {"kind": "uniform"},
    {"kind": "uniform", "schedule": "cosine"},
    {"kind": "gidd", "p_uniform": 0.3},
    {"kind": "gidd", "p_uniform": 0.8, "gamma": 2.0},
]
IDS = ["masked", "masked-cosine", "uniform", "uniform-cosine", "gidd-0.3", "gidd-0.8-g2"]
TIMES = torch.tensor([0.02, 0.3, 0.5, 0.71, 0.97])
SAMPLES = 40_000


def build(section: dict) -> noises.NoiseProcess:
    return noises.build(section, vocab_size=V, mask_id=MASK)


def frequencies(tokens: torch.Tensor) -> torch.Tensor:
    """Float64[B, V] empirical distribution of each row of Long[B, L]."""
    ones = torch.ones_like(tokens, dtype=torch.float64)
    counts = torch.zeros(tokens.shape[0], V, dtype=torch.float64).scatter_add_(1, tokens, ones)
    return counts / tokens.shape[1]


def assert_matches(empirical: torch.Tensor, expected: torch.Tensor, n: int) -> None:
    """Each frequency within 5 binomial standard errors; impossible tokens never drawn."""
    sd = (expected * (1 - expected) / n).sqrt()
    assert ((empirical - expected).abs() <= 5 * sd + 1e-12).all(), (empirical, expected)


@pytest.mark.parametrize("section", SECTIONS, ids=IDS)
def test_samples_follow_marginal_and_jumps_follow_beta_pi(section: dict) -> None:
    torch.manual_seed(0)
    process = build(section)
    clean = torch.arange(len(TIMES)) % 2 * 4  # tokens 0 and 4
    x0 = clean[:, None].expand(-1, SAMPLES)
    zt, jumped = process.sample_with_jumps(x0, TIMES)
    expected = process.marginal(torch.nn.functional.one_hot(clean, V).double(), TIMES)
    assert_matches(frequencies(zt), expected, SAMPLES)
    assert (zt[~jumped] == x0[~jumped]).all()
    assert_matches(jumped.double().mean(1)[:, None], (1 - process.alpha(TIMES))[:, None], SAMPLES)
    beta_pi = process.beta_pi(TIMES)
    for row in range(len(TIMES)):
        drawn = zt[row][jumped[row]]
        assert_matches(frequencies(drawn[None]), (beta_pi[row] / beta_pi[row].sum())[None], len(drawn))


@pytest.mark.parametrize("section", SECTIONS, ids=IDS)
def test_fixed_positions_never_change_and_t0_is_clean(section: dict) -> None:
    process = build(section)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, V, (8, 50), generator=gen)
    fixed = torch.rand(8, 50, generator=gen) < 0.4
    zt, jumped = process.sample_with_jumps(x0, torch.full((8,), 0.999), fixed)
    assert (zt[fixed] == x0[fixed]).all() and not jumped[fixed].any()
    assert jumped[~fixed].float().mean() > 0.9
    assert torch.equal(process.sample(x0, torch.zeros(8)), x0)


@pytest.mark.parametrize("section", SECTIONS, ids=IDS)
def test_prior(section: dict) -> None:
    torch.manual_seed(2)
    z1 = build(section).prior((4, 30_000))
    assert z1.shape == (4, 30_000) and z1.dtype == torch.long
    if section["kind"] == "uniform":
        expected = torch.full((1, V), 1.0 / N, dtype=torch.float64)
        expected[0, MASK] = 0.0
        assert_matches(frequencies(z1.view(1, -1)), expected, z1.numel())
    else:
        assert (z1 == MASK).all()


def test_uniform_noise_never_draws_mask() -> None:
    torch.manual_seed(3)
    process = build({"kind": "uniform", "eps": 0.0})
    zt = process.sample(torch.randint(0, V, (16, 1000)), torch.ones(16))
    assert not (zt == MASK).any()
