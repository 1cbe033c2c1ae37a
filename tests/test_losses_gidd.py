"""GIDD loss: generic ELBO weights against the closed-form tables of diffusion.md section 2.1, KL and
IS against a brute-force float64 computation, the p_u = 0 reduction to masking, weightings,
score masks and finite gradients."""

import math

import pytest
import torch

from components import losses, noise as noises
from components.losses.gidd import dynamic_weights, elbo_terms, elbo_weights
from components.registry import BuildError

V = 7
MASK = V - 1
N = V - 1
B, L = 6, 9


def build_noise(section: dict) -> noises.NoiseProcess:
    return noises.build(section, vocab_size=V, mask_id=MASK)


def random_case(process: noises.NoiseProcess, seed: int = 0, scale: float = 2.0):
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, N, (B, L), generator=gen)
    t = torch.rand(B, generator=gen, dtype=torch.float64) * 0.98 + 0.01
    torch.manual_seed(seed)
    zt = process.sample(x0, t)
    logits = scale * torch.randn(B, L, V, generator=gen)
    return logits, x0, zt, t


def hybrid_table(p_uniform: float, gamma: float, t: float) -> dict[str, float]:
    """The note's weight table (mask, clean, uniform-corrupted) in plain floats."""
    b = 2.0**gamma * p_uniform / (1.0 - p_uniform)
    c = b * (t * (1.0 - t)) ** (gamma / 2)
    c_prime = gamma / 2 * (1.0 - 2.0 * t) / (t * (1.0 - t)) * c
    return {
        "mask": 1.0 / (t * (1.0 - t)),
        "clean": (c + (1.0 - t) * c_prime) / (N * (1.0 - t) * (1.0 - t + c / N)),
        "uniform": (c + (1.0 - t) * c_prime) / ((1.0 - t) * c),
    }


@pytest.mark.parametrize("p_uniform", [0.1, 0.5])
@pytest.mark.parametrize("gamma", [1.0, 1.7])
def test_hybrid_weights_match_the_table(p_uniform: float, gamma: float) -> None:
    process = build_noise({"kind": "gidd", "p_uniform": p_uniform, "gamma": gamma})
    times = [1e-3, 0.1, 0.4, 0.5, 0.8, 0.999]
    t = torch.tensor(times, dtype=torch.float64)
    x0 = torch.full((len(times), 3), 2)
    zt = torch.tensor([[MASK, 2, 4]] * len(times))
    w = elbo_weights(process, x0, zt, t)
    for i, ti in enumerate(times):
        table = hybrid_table(p_uniform, gamma, ti)
        assert w[i].tolist() == pytest.approx([table["mask"], table["clean"], table["uniform"]], rel=1e-9)


@pytest.mark.parametrize("schedule", ["loglinear", "cosine"])
def test_uniform_state_weights(schedule: str) -> None:
    process = build_noise({"kind": "uniform", "schedule": schedule, "eps": 1e-3})
    times = [1e-3, 0.2, 0.5, 0.9, 0.999]
    t = torch.tensor(times, dtype=torch.float64)
    x0 = torch.full((len(times), 2), 1)
    zt = torch.tensor([[1, 3]] * len(times))
    w = elbo_weights(process, x0, zt, t)
    for i, ti in enumerate(times):
        angle = math.pi / 2 * (1 - (1 - 1e-3) * ti)
        if schedule == "loglinear":
            alpha, alpha_prime = 1 - (1 - 1e-3) * ti, -(1 - 1e-3)
        else:
            alpha, alpha_prime = 1 - math.cos(angle), -math.pi / 2 * (1 - 1e-3) * math.sin(angle)
        q_clean, q_other = alpha + (1 - alpha) / N, (1 - alpha) / N
        expected = [-alpha_prime / (N * alpha * q) for q in (q_clean, q_other)]
        assert w[i].tolist() == pytest.approx(expected, rel=1e-9)


def brute_force_terms(process, logits, x0, zt, t):
    """KL over the full vocabulary and IS at z_t, from explicit float64 distributions."""
    x_hat = torch.softmax(logits.double().index_fill(-1, torch.tensor([MASK]), float("-inf")), -1)
    onehot = torch.nn.functional.one_hot(x0, V).double()
    q_x = process.marginal(onehot, t)
    q_hat = process.marginal(x_hat, t)
    kl = torch.where(q_x > 0, q_x * (q_x.log() - q_hat.log()), 0.0).sum(-1)
    r = q_x.gather(-1, zt[..., None]).squeeze(-1) / q_hat.gather(-1, zt[..., None]).squeeze(-1)
    return kl, r - r.log() - 1


@pytest.mark.parametrize(
    "section",
    [{"kind": "gidd", "p_uniform": 0.3}, {"kind": "uniform"}, {"kind": "masked"}],
    ids=["gidd", "uniform", "masked"],
)
def test_kl_and_is_match_brute_force(section: dict) -> None:
    process = build_noise(section)
    logits, x0, zt, t = random_case(process)
    log_x_hat = torch.log_softmax(logits.index_fill(-1, torch.tensor([MASK]), float("-inf")), -1)
    terms = elbo_terms(process, log_x_hat, x0, zt, t)
    kl, is_ = brute_force_terms(process, logits, x0, zt, t)
    torch.testing.assert_close(terms.kl, kl, rtol=1e-5, atol=1e-6)
    scored = terms.weight != 0  # IS is only needed (and only defined as computed) where w > 0
    torch.testing.assert_close(terms.is_[scored], is_[scored], rtol=1e-5, atol=1e-6)
    assert (terms.is_[~scored] == 0).all()


def test_masking_reduces_to_mdlm_terms() -> None:
    process = build_noise({"kind": "gidd", "p_uniform": 0.0})
    logits, x0, zt, t = random_case(process, seed=1)
    log_x_hat = torch.log_softmax(logits.index_fill(-1, torch.tensor([MASK]), float("-inf")), -1)
    terms = elbo_terms(process, log_x_hat, x0, zt, t)
    masked = zt == MASK
    nll = -log_x_hat.gather(-1, x0[..., None]).squeeze(-1).double()
    torch.testing.assert_close(terms.kl[masked], ((1 - t[:, None]) * nll).expand(B, L)[masked], rtol=1e-5, atol=1e-6)
    assert terms.is_[masked].abs().max() < 1e-6
    torch.testing.assert_close(terms.elbo[masked], (nll / t[:, None]).expand(B, L)[masked], rtol=1e-5, atol=1e-6)


def test_zero_p_uniform_elbo_equals_masked_elbo() -> None:
    hybrid = build_noise({"kind": "gidd", "p_uniform": 0.0})
    masked = build_noise({"kind": "masked", "eps": 0.0})
    loss = {"kind": "gidd", "weighting": "none"}
    for seed in range(3):
        logits, x0, zt, t = random_case(masked, seed=seed)
        a = losses.build(loss, noise=hybrid)(logits, x0, zt, t).elbo
        b = losses.build(loss, noise=masked)(logits, x0, zt, t).elbo
        per_token_a, per_token_b = a.sum() / a.numel(), b.sum() / b.numel()
        assert abs(per_token_a - per_token_b) < 1e-5
        # Clean tokens keep a ~e^-20 weight under the p_u floor: tiny unless x_hat(x) is tiny too.
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("section", [{"kind": "gidd", "p_uniform": 0.2}, {"kind": "uniform"}], ids=["gidd", "uniform"])
def test_weightings(section: dict) -> None:
    process = build_noise(section)
    logits, x0, zt, t = random_case(process, seed=4)
    log_x_hat = torch.log_softmax(logits.index_fill(-1, torch.tensor([MASK]), float("-inf")), -1)
    terms = elbo_terms(process, log_x_hat, x0, zt, t)
    divergence = terms.kl + terms.is_

    none = losses.build({"kind": "gidd", "weighting": "none"}, noise=process)(logits, x0, zt, t)
    assert none.loss.item() == pytest.approx(none.elbo.sum().item() / (B * L), rel=1e-6)
    assert none.metrics["elbo"].item() == pytest.approx(none.metrics["kl"].item() + none.metrics["is"].item(), rel=1e-5)

    clip = losses.build({"kind": "gidd", "weighting": "clip", "min_weight": 0.5, "max_weight": 3.0}, noise=process)
    expected = (terms.weight.clamp(0.5, 3.0) * divergence).mean()
    assert clip(logits, x0, zt, t).loss.item() == pytest.approx(expected.item(), rel=1e-5)

    dynamic = losses.build({"kind": "gidd", "weighting": "dynamic"}, noise=process)
    out = dynamic(logits, x0, zt, t)
    torch.testing.assert_close(out.elbo, none.elbo)  # the elbo output ignores the weighting
    if section["kind"] == "gidd":
        b = 2.0 * 0.2 / 0.8
        clean = (b / V) * torch.exp(0.5 * torch.sigmoid(-t))
    else:
        alpha = 1 - (1 - 1e-3) * t
        clean = ((1 - alpha) / N) / (alpha + (1 - alpha) / N)
    w = torch.where(zt == MASK, 2.0, torch.where(zt == x0, clean[:, None], 1.0)).clamp(0.0, 2.0)
    assert out.loss.item() == pytest.approx((w * divergence).mean().item(), rel=1e-5)
    assert out.metrics["weight_mean"].item() == pytest.approx(w.mean().item(), rel=1e-5)


def test_dynamic_weights_on_masked_noise() -> None:
    process = build_noise({"kind": "masked"})
    x0 = torch.tensor([[1, 2, 3]])
    zt = torch.tensor([[1, MASK, MASK]])
    assert dynamic_weights(process, x0, zt, torch.tensor([0.5])).tolist() == [[0.0, 2.0, 2.0]]


def test_only_scored_positions_count() -> None:
    process = build_noise({"kind": "gidd", "p_uniform": 0.3})
    logits, x0, zt, t = random_case(process, seed=5)
    mask = torch.rand(B, L, generator=torch.Generator().manual_seed(0)) < 0.6
    loss = losses.build({"kind": "gidd", "weighting": "none"}, noise=process)
    out = loss(logits, x0, zt, t, mask)
    full = loss(logits, x0, zt, t)
    assert (out.elbo[~mask] == 0).all()
    torch.testing.assert_close(out.elbo[mask], full.elbo[mask])
    assert out.loss.item() == pytest.approx(full.elbo[mask].sum().item() / mask.sum().item(), rel=1e-6)
    changed = logits.clone()
    changed[~mask] = 100 * torch.randn_like(changed[~mask])
    assert loss(changed, x0, zt, t, mask).loss.item() == pytest.approx(out.loss.item(), rel=1e-6)


@pytest.mark.parametrize(
    "section", [{"kind": "gidd", "p_uniform": 0.3}, {"kind": "uniform"}, {"kind": "masked", "schedule": "cosine"}]
)
@pytest.mark.parametrize("weighting", ["none", "dynamic"])
def test_gradients_are_finite_for_extreme_logits(section: dict, weighting: str) -> None:
    process = build_noise(section)
    logits, x0, zt, _ = random_case(process, seed=6, scale=80.0)
    t = torch.tensor([1e-4, 1e-3, 0.3, 0.6, 0.999, 1 - 1e-4])
    zt = process.sample(x0, t)
    logits.requires_grad_(True)
    out = losses.build({"kind": "gidd", "weighting": weighting}, noise=process)(logits, x0, zt, t)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(out.elbo).all() and torch.isfinite(logits.grad).all()
    assert out.elbo.min() >= -1e-4  # every term of the bound is non-negative


def test_build_and_requirements() -> None:
    process = build_noise({"kind": "gidd", "p_uniform": 0.1})
    loss = losses.build({"kind": "gidd", "weighting": "none"}, noise=process)
    assert loss.noise is process
    assert losses.LOSSES.config_model("gidd").requires_noise == ("masked", "uniform", "gidd")
    with pytest.raises(BuildError):
        losses.build({"kind": "gidd", "min_weight": 3.0, "max_weight": 2.0}, noise=process)
    with pytest.raises(BuildError):
        losses.build({"kind": "gidd", "weighting": "snr"}, noise=process)
