"""Validation NELBO estimation (components/metrics/elbo.py): closed-form expectations, estimator
agreement, reproducibility and side effects."""

import math

import pytest
import torch
from toy import ExactDenoiser, toy_data

from components import losses, noise as noises
from components.batch import Batch
from components.losses.base import Loss, LossOutput
from components.metrics.elbo import estimate_nelbo, estimation_times
from components.spec.sections import ElboEstimator

N = 7
V = N + 1
MASK = N


class UniformPredictor(torch.nn.Module):
    """x_hat = uniform over the N non-mask tokens, whatever the input."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(V))

    def forward(self, zt, t, fixed=None, valid=None):
        return self.bias.expand(*zt.shape, V)


def random_batches(count: int, size: int, length: int, seed: int = 0) -> list[Batch]:
    gen = torch.Generator().manual_seed(seed)
    return [Batch.unconditional(torch.randint(0, N, (size, length), generator=gen)) for _ in range(count)]


MC, QUADRATURE = ElboEstimator(kind="mc", t_samples=2), ElboEstimator(kind="quadrature", t_samples=16)


@pytest.mark.parametrize("loss_kind", ["mdlm", "gidd"])
@pytest.mark.parametrize("estimator", [MC, QUADRATURE], ids=["mc", "quadrature"])
def test_uniform_predictor_costs_log_n_per_token(loss_kind: str, estimator: ElboEstimator) -> None:
    """With alpha_t = 1 - t: per token, E[1[masked] log N / t] = log N at every t."""
    process = noises.build({"kind": "masked", "eps": 0.0}, vocab_size=V, mask_id=MASK)
    section = {"kind": "gidd", "weighting": "none"} if loss_kind == "gidd" else {"kind": "mdlm"}
    loss = losses.build(section, noise=process)
    batches = random_batches(4, 64, 64)
    result = estimate_nelbo(UniformPredictor(), loss, batches, estimator, 1e-3, torch.Generator().manual_seed(0))
    assert result.tokens == 4 * 64 * 64
    assert result.nll_per_token == pytest.approx(math.log(N), rel=0.03)
    assert result.ppl == pytest.approx(math.exp(result.nll_per_token))
    assert result.bits_per_token == pytest.approx(result.nll_per_token / math.log(2))


def test_quadrature_and_monte_carlo_agree_on_a_tight_bound() -> None:
    """Exact denoiser under masking: the NELBO per token equals H(p) / L (tests/test_elbo_toy.py),
    here the empirical -log p(x) / L of the evaluated sequences. Measured on this setup: MC relative
    standard deviation ~0.5%; the quadrature's error is that of the z_t draws only."""
    data = toy_data(3, 2, seed=5)
    process = noises.build({"kind": "masked", "eps": 0.0}, vocab_size=data.vocab_size, mask_id=data.mask_id)
    loss = losses.build({"kind": "mdlm"}, noise=process)
    model = ExactDenoiser(process, data, target="posterior_mean")
    gen = torch.Generator().manual_seed(1)
    batches = [Batch.unconditional(data.sample(2048, gen)) for _ in range(2)]
    mc_estimator = ElboEstimator(kind="mc", t_samples=32)
    mc = estimate_nelbo(model, loss, batches, mc_estimator, 1e-4, torch.Generator().manual_seed(2))
    quad_estimator = ElboEstimator(kind="quadrature", t_samples=64)
    quad = estimate_nelbo(model, loss, batches, quad_estimator, 1e-4, torch.Generator())
    empirical_entropy = -float(torch.cat([data.log_prob(b.x0) for b in batches]).mean()) / data.length
    assert mc.nll_per_token == pytest.approx(empirical_entropy, rel=0.02)
    assert quad.nll_per_token == pytest.approx(empirical_entropy, rel=0.03)
    assert mc.nll_per_token == pytest.approx(quad.nll_per_token, rel=0.03)


def test_fixed_positions_are_not_counted() -> None:
    process = noises.build({"kind": "masked", "eps": 0.0}, vocab_size=V, mask_id=MASK)
    loss = losses.build({"kind": "mdlm"}, noise=process)
    x0 = torch.randint(0, N, (128, 32), generator=torch.Generator().manual_seed(3))
    fixed = torch.zeros_like(x0, dtype=torch.bool)
    fixed[:, :16] = True
    batches = [Batch(x0=x0, fixed=fixed)]
    estimator = ElboEstimator(kind="quadrature", t_samples=8)
    result = estimate_nelbo(UniformPredictor(), loss, batches, estimator, 1e-3, torch.Generator())
    assert result.tokens == 128 * 16
    assert result.nll_per_token == pytest.approx(math.log(N), rel=0.03)


class ConstantLoss(Loss):
    """elbo = the sequence's first token id at every scored position (no model call)."""

    def __call__(self, logits, x0, zt, t, mask=None):
        raise NotImplementedError

    def objective(self, model, batch, t):
        elbo = torch.where(batch.scored, batch.x0[:, :1].double(), 0.0)
        return LossOutput(loss=elbo.mean(), elbo=elbo)

    def bound_time(self):
        return 1.0

    def prior_term(self, x0):
        return torch.zeros(x0.shape, dtype=torch.float64)


def test_accumulation_is_token_weighted() -> None:
    small = Batch(x0=torch.full((2, 5), 1), fixed=torch.zeros(2, 5, dtype=torch.bool))
    large = Batch(x0=torch.full((3, 10), 3), fixed=torch.zeros(3, 10, dtype=torch.bool))
    large.fixed[:, :2] = True
    estimator = ElboEstimator(kind="mc", t_samples=3)
    result = estimate_nelbo(UniformPredictor(), ConstantLoss(), [small, large], estimator, 1e-3, torch.Generator())
    assert result.tokens == 10 + 24
    assert result.nll_per_token == pytest.approx((10 * 1 + 24 * 3) / 34, rel=1e-12)


def test_reproducible_eval_mode_and_untouched_global_rng() -> None:
    process = noises.build({"kind": "gidd", "p_uniform": 0.2}, vocab_size=V, mask_id=MASK)
    loss = losses.build({"kind": "gidd"}, noise=process)
    model = UniformPredictor().train()
    modes = []
    model.register_forward_hook(lambda module, args, out: modes.append(module.training))
    batches = random_batches(2, 8, 16)
    estimator = ElboEstimator(kind="mc", t_samples=3)
    state = torch.random.get_rng_state()
    first = estimate_nelbo(model, loss, batches, estimator, 1e-4, torch.Generator().manual_seed(9))
    assert torch.equal(torch.random.get_rng_state(), state)
    second = estimate_nelbo(model, loss, batches, estimator, 1e-4, torch.Generator().manual_seed(9))
    other = estimate_nelbo(model, loss, batches, estimator, 1e-4, torch.Generator().manual_seed(10))
    assert first == second and first != other
    assert model.training and modes and not any(modes)
    with pytest.raises(ValueError):
        estimate_nelbo(model, loss, batches, ElboEstimator(kind="quadrature", t_samples=8), 0.0, torch.Generator())


# int_0^1 f(t) dt in closed form: polynomials, and the endpoint singularities of ELBO integrands.
INTEGRALS = [
    (lambda t: torch.ones_like(t), 1.0),
    (lambda t: t**3, 0.25),
    (lambda t: (t * (1 - t)) ** -0.5, math.pi),
    (lambda t: t**-0.5 * torch.log(t), -4.0),
    (lambda t: torch.log(1 - t), -1.0),
]


@pytest.mark.parametrize("points, tolerance", [(8, 1e-3), (16, 1e-4), (64, 1e-6)])
def test_quadrature_integrates_closed_forms(points: int, tolerance: float) -> None:
    """The quadrature times and weights on (0, T) against closed-form integrals scaled to T."""
    horizon = 1.25
    estimator = ElboEstimator(kind="quadrature", t_samples=points)
    times, weights = estimation_times(3, estimator, 0.01, torch.Generator(), horizon)
    assert times.dtype == weights.dtype == torch.float64 and times.shape == (points, 3)
    assert torch.equal(times, times[:, :1].expand(points, 3))  # the same nodes for every sequence
    assert 0.0 < float(times.min()) and float(times.max()) < horizon
    for f, exact in INTEGRALS:
        value = float((weights * f(times[:, 0] / horizon)).sum()) / horizon
        assert value == pytest.approx(exact, rel=tolerance, abs=tolerance)


@pytest.mark.parametrize("points", [1, 4, 7, 65])
def test_quadrature_rejects_node_counts_outside_8_to_64(points: int) -> None:
    with pytest.raises(ValueError, match="8 <= t_samples <= 64"):
        ElboEstimator(kind="quadrature", t_samples=points)
    assert ElboEstimator(kind="mc", t_samples=points).t_samples == points


def test_mc_times() -> None:
    eps = 0.01
    mc, weights = estimation_times(4, ElboEstimator(kind="mc", t_samples=5), eps, torch.Generator().manual_seed(0))
    torch.testing.assert_close(weights, torch.full((5,), 0.2, dtype=torch.float64))
    unit = (mc - eps) / (1 - 2 * eps)  # back to [0, 1)
    strata = torch.sort((unit.flatten() * 20).floor()).values
    assert torch.equal(strata, torch.arange(20.0, dtype=torch.float64))  # one draw in each of the K * B strata
    spread = torch.sort((unit * 5).floor(), dim=0).values
    assert torch.equal(spread, torch.arange(5.0, dtype=torch.float64)[:, None].expand(5, 4))  # each sequence covers [0, 1)
    scaled, scaled_weights = estimation_times(4, ElboEstimator(kind="mc", t_samples=5), eps, torch.Generator().manual_seed(0), 2.0)
    torch.testing.assert_close(scaled, 2.0 * mc)
    torch.testing.assert_close(scaled_weights, 2.0 * weights)
