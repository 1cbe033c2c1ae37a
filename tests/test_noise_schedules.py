"""Masked and uniform noise against diffusion.md sections 1.2-1.3, and the time derivatives of every
interpolating process against central finite differences."""

import math

import pytest
import torch

from components import noise as noises

V = 6
MASK = 2
N = V - 1
T = [1e-4, 0.05, 0.3, 0.5, 0.77, 0.999]


def build(section: dict) -> noises.NoiseProcess:
    return noises.build(section, vocab_size=V, mask_id=MASK)


def reference_alpha(schedule: str, eps: float, t: float) -> float:
    if schedule == "loglinear":
        return 1.0 - (1.0 - eps) * t
    return 1.0 - math.cos(math.pi / 2 * (1.0 - (1.0 - eps) * t))


def rows(process: noises.NoiseProcess, t: float) -> torch.Tensor:
    return process.marginal(torch.eye(V, dtype=torch.float64)[None], torch.tensor([t], dtype=torch.float64))[0]


@pytest.mark.parametrize("schedule", ["loglinear", "cosine"])
@pytest.mark.parametrize("eps", [0.0, 1e-3, 0.1])
def test_masked_marginal(schedule: str, eps: float) -> None:
    process = build({"kind": "masked", "schedule": schedule, "eps": eps})
    for t in [0.0, *T, 1.0]:
        alpha = reference_alpha(schedule, eps, t)
        q = rows(process, t)
        for x in (0, 4):
            expected = [alpha if z == x else (1.0 - alpha if z == MASK else 0.0) for z in range(V)]
            assert q[x].tolist() == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("schedule", ["loglinear", "cosine"])
def test_uniform_marginal_never_reaches_mask(schedule: str) -> None:
    process = build({"kind": "uniform", "schedule": schedule, "eps": 1e-3})
    for t in [0.0, *T, 1.0]:
        alpha = reference_alpha(schedule, 1e-3, t)
        q = rows(process, t)
        for x in (0, 5):
            expected = [0.0 if z == MASK else alpha * (z == x) + (1.0 - alpha) / N for z in range(V)]
            assert q[x].tolist() == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_schedule_endpoints() -> None:
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    loglinear = build({"kind": "masked", "eps": 1e-3})
    cosine = build({"kind": "masked", "schedule": "cosine", "eps": 0.0})
    torch.testing.assert_close(loglinear.alpha(t), torch.tensor([1.0, 1e-3], dtype=torch.float64))
    torch.testing.assert_close(cosine.alpha(t), torch.tensor([1.0, 0.0], dtype=torch.float64))


SECTIONS = [
    {"kind": "masked"},
    {"kind": "masked", "schedule": "cosine"},
    {"kind": "masked", "schedule": "cosine_mdlm", "eps": 0.01},
    {"kind": "uniform"},
    {"kind": "uniform", "schedule": "cosine", "eps": 0.05},
    {"kind": "gidd", "p_uniform": 0.0},
    {"kind": "gidd", "p_uniform": 0.3},
    {"kind": "gidd", "p_uniform": 0.6, "gamma": 2.0},
]


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_derivatives_match_finite_differences(section: dict) -> None:
    process = build(section)
    t = torch.tensor(T[1:-1], dtype=torch.float64)
    h = 1e-6
    d_alpha = (process.alpha(t + h) - process.alpha(t - h)) / (2 * h)
    d_beta_pi = (process.beta_pi(t + h) - process.beta_pi(t - h)) / (2 * h)
    torch.testing.assert_close(process.alpha_prime(t), d_alpha, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(process.beta_pi_prime(t), d_beta_pi, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(process.beta_pi(t).sum(-1), 1.0 - process.alpha(t))
