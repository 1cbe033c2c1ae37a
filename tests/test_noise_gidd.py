"""GIDD hybrid noise against the closed forms of diffusion.md section 1.1, recomputed here per
state with plain floats (not through the process's own vectors)."""

import math

import pytest
import torch

from components import noise as noises
from components.registry import BuildError

V = 7
MASK = 3  # deliberately not the last id
N = V - 1
T_GRID = [1e-9, 1e-6, 1e-3, 0.1, 0.25, 0.5, 0.7, 0.999, 1 - 1e-6, 1 - 1e-9]


def gidd(p_uniform: float, gamma: float = 1.0) -> noises.NoiseProcess:
    return noises.build({"kind": "gidd", "p_uniform": p_uniform, "gamma": gamma}, vocab_size=V, mask_id=MASK)


def reference_states(p_uniform: float, gamma: float, t: float) -> tuple[float, float, float]:
    """(q(mask|x), q(x|x), q(y|x) for a real y != x) from the note's formulas."""
    p = max(p_uniform, math.exp(-20.0))
    b = math.exp(max(gamma * math.log(2.0) + math.log(p) - math.log(1.0 - p), -20.0))
    c = b * t ** (gamma / 2) * (1.0 - t) ** (gamma / 2)
    big_c = max(1.0 + c, 1e-4)
    return t / big_c, (1.0 - t) / big_c + c / (N * big_c), c / (N * big_c)


def marginal_rows(process: noises.NoiseProcess, t: list[float]) -> torch.Tensor:
    """q_t(. | x) for every clean x: Float64[T, V(x), V(z)]."""
    eye = torch.eye(V, dtype=torch.float64).expand(len(t), V, V)
    return process.marginal(eye, torch.tensor(t, dtype=torch.float64))


@pytest.mark.parametrize("p_uniform", [0.0, 0.1, 0.5, 0.9])
@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_marginals_are_distributions(p_uniform: float, gamma: float) -> None:
    q = marginal_rows(gidd(p_uniform, gamma), [0.0, *T_GRID, 1.0])
    clean = [x for x in range(V) if x != MASK]
    assert (q[:, clean] >= 0).all()
    torch.testing.assert_close(q[:, clean].sum(-1), torch.ones(len(T_GRID) + 2, N, dtype=torch.float64))


@pytest.mark.parametrize("p_uniform", [0.0, 0.2, 0.7])
@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_per_state_closed_forms(p_uniform: float, gamma: float) -> None:
    q = marginal_rows(gidd(p_uniform, gamma), T_GRID)
    for i, t in enumerate(T_GRID):
        mask, clean, other = reference_states(p_uniform, gamma, t)
        for x in (0, 5):
            for z in range(V):
                expected = mask if z == MASK else clean if z == x else other
                assert q[i, x, z].item() == pytest.approx(expected, rel=1e-12, abs=1e-300), (t, x, z)


@pytest.mark.parametrize("p_uniform", [0.05, 0.2, 0.5, 0.9])
def test_uniform_share_peaks_at_p_uniform_mid_diffusion(p_uniform: float) -> None:
    process = gidd(p_uniform)
    t = torch.tensor([0.5], dtype=torch.float64)
    q = marginal_rows(process, [0.5])[0, 0]
    uniform_share = 1.0 - q[MASK] - process.alpha(t)[0]
    assert uniform_share.item() == pytest.approx(p_uniform, rel=1e-12)
    grid = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    shares = 1.0 - process.alpha(grid) - process.beta_pi(grid)[:, MASK]
    assert shares.max().item() == pytest.approx(p_uniform, rel=1e-3)


def test_zero_p_uniform_is_masking_with_linear_alpha() -> None:
    hybrid = gidd(0.0)
    masked = noises.build({"kind": "masked", "eps": 0.0}, vocab_size=V, mask_id=MASK)
    t = torch.tensor(T_GRID, dtype=torch.float64)
    torch.testing.assert_close(hybrid.alpha(t), 1.0 - t, rtol=0, atol=1e-8)
    torch.testing.assert_close(hybrid.beta_pi(t), masked.beta_pi(t), rtol=0, atol=1e-8)
    inner = t[(t > 1e-3) & (t < 0.999)]  # c'_t ~ e^-20 (t(1-t))^-1/2 only vanishes away from the ends
    for name in ("alpha_prime", "beta_pi_prime"):
        torch.testing.assert_close(getattr(hybrid, name)(inner), getattr(masked, name)(inner), rtol=0, atol=1e-7)


def test_endpoints_clean_and_all_mask() -> None:
    process = gidd(0.3)
    q = marginal_rows(process, [0.0, 1.0])
    torch.testing.assert_close(q[0], torch.eye(V, dtype=torch.float64))
    torch.testing.assert_close(q[1][:, MASK], torch.ones(V, dtype=torch.float64))
    assert (process.prior((4, 5)) == MASK).all()


@pytest.mark.parametrize(
    "section",
    [
        {"kind": "gidd", "p_uniform": 1.0},
        {"kind": "gidd", "p_uniform": -0.1},
        {"kind": "gidd", "gamma": 0.0},
        {"kind": "gidd", "p_unifrom": 0.1},
    ],
)
def test_bad_sections_are_rejected(section: dict) -> None:
    with pytest.raises(BuildError):
        noises.build(section, vocab_size=V, mask_id=MASK)


def uniform_rate(gamma: float, t: float, p_uniform: float = 0.5) -> float:
    """The rate into a uniform token, [d/dt(beta pi) - (alpha'/alpha) beta pi]_u, by hand:
    with c = B (t (1 - t))^(gamma/2) and c' = (gamma/2) (1 - 2t) / (t (1 - t)) c it is
    (c + (1 - t) c') / (N (1 - t) C), whose sign is that of t + (gamma/2) (1 - 2t)."""
    b = 2.0**gamma * p_uniform / (1.0 - p_uniform)
    c = b * (t * (1.0 - t)) ** (gamma / 2)
    c_prime = gamma / 2 * (1.0 - 2.0 * t) / (t * (1.0 - t)) * c
    return (c + (1.0 - t) * c_prime) / ((V - 1) * (1.0 - t) * (1.0 + c))


def test_gamma_is_limited_to_the_valid_range() -> None:
    """Up to gamma = 2 every transition rate is >= 0 on (0, 1); above, the rate into uniform tokens
    turns negative for t > gamma / (2 (gamma - 1)) (0.83 at gamma = 2.5), so the config rejects it."""
    t = torch.linspace(1e-4, 1 - 1e-4, 2001, dtype=torch.float64)
    for gamma in (0.5, 1.0, 2.0):
        process = gidd(0.5, gamma)
        rates = process.beta_pi_prime(t) - (process.alpha_prime(t) / process.alpha(t))[:, None] * process.beta_pi(t)
        assert (rates >= 0).all()
        assert float(rates[1000, 0]) == pytest.approx(uniform_rate(gamma, float(t[1000])), rel=1e-9)
    assert uniform_rate(2.5, 0.8) > 0 > uniform_rate(2.5, 0.86)
    with pytest.raises(BuildError, match="less than or equal to 2"):
        gidd(0.5, 2.5)
