"""Ancestral and confidence samplers, driven by exact denoisers of tiny known distributions.

Toy setting: N = 3 real tokens plus the mask (V = 4, mask id 3), sequences of length 3, so the
whole data space is 27 sequences and the noisy space 64; exact denoisers come from tests/toy.py.
"""

import math

import pytest
import torch
from toy import ExactDenoiser, ToyData, all_sequences

from components import noise as noises
from components import samplers
from components.batch import Batch
from components.registry import BuildError
from components.samplers.confidence import confidence

N, V, MASK, LENGTH = 3, 4, 3, 3
NOISES = {
    "masked": {"kind": "masked"},
    "gidd": {"kind": "gidd", "p_uniform": 0.3},
    "uniform": {"kind": "uniform"},
}
# chi2.ppf(0.999, 26): 27 joint outcomes, a false alarm in 1 of 1000 seeds.
CHI2_999_DF26 = 54.05
CLEAN = all_sequences(N, LENGTH)  # [27, 3]
NOISY = all_sequences(V, LENGTH)  # [64, 3]


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """The tensors here are tiny: intra-op threads only add synchronisation (10x slower on a
    busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_noise(name: str):
    return noises.build(NOISES[name], vocab_size=V, mask_id=MASK)


class Exact(torch.nn.Module):
    """toy.ExactDenoiser for data ``probs`` over ``sequences``, evaluated once per distinct
    (t, z, fixed) row (at most 2 * 8^L of them) and counting its calls.

    The default target is the leave-one-out mean P(x_i | z_{-i}): the ancestral step multiplies in
    the evidence of z_t at position i itself (q(z_t | z_s)), and it is what the GIDD ELBO trains a
    network towards. At masked positions it equals the posterior mean E[x_i | z_t]."""

    def __init__(self, noise, sequences: torch.Tensor, probs: torch.Tensor, target: str = "leave_one_out"):
        super().__init__()
        data = ToyData(sequences=sequences, probs=(probs / probs.sum()).double(), num_tokens=N)
        self.denoiser = ExactDenoiser(noise, data, target=target)
        self.calls = 0

    def forward(self, zt, t, fixed=None, valid=None):
        self.calls += 1
        fixed = torch.zeros_like(zt, dtype=torch.bool) if fixed is None else fixed
        digits = torch.arange(zt.shape[1])
        codes = (zt * V**digits).sum(-1) * 2 ** zt.shape[1] + (fixed.long() * 2**digits).sum(-1)
        t_index = torch.unique(t, return_inverse=True)[1]
        keys, inverse = torch.unique(t_index * (2 * V) ** zt.shape[1] + codes, return_inverse=True)
        first = torch.zeros(len(keys), dtype=torch.long).scatter_(0, inverse, torch.arange(len(zt)))
        return self.denoiser(zt[first], t[first], fixed=fixed[first])[inverse]


def chi_square(tokens: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson statistic of sequences ``tokens`` Long[n, 3] against ``probs`` Float[27] over CLEAN
    (every sequence has mass; a token outside 0..N-1 makes the statistic infinite)."""
    if tokens.ge(N).any():
        return math.inf
    codes = (tokens * N ** torch.arange(LENGTH - 1, -1, -1)).sum(-1)
    counts = torch.bincount(codes, minlength=len(CLEAN)).double()
    expected = probs.double() * len(tokens)
    return float(((counts - expected) ** 2 / expected).sum())


def product_distribution() -> torch.Tensor:
    """p(x) = prod_i p_i(x_i) over CLEAN, with different marginals per position."""
    marginals = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.45, 0.1, 0.45]], dtype=torch.float64)
    return marginals[torch.arange(LENGTH), CLEAN].prod(-1)


def correlated_distribution() -> torch.Tensor:
    """Random weights in [0.5, 2) over CLEAN: full support (every expected count is large enough
    for the chi-square test), strongly correlated positions."""
    gen = torch.Generator().manual_seed(7)
    weights = 0.5 + 1.5 * torch.rand(len(CLEAN), generator=gen, dtype=torch.float64)
    return weights / weights.sum()


def output_law(noise, probs: torch.Tensor, steps: int) -> torch.Tensor:
    """The exact distribution Float64[27] of the ancestral sampler's output over CLEAN, with the
    exact denoiser: the law over the reachable noisy states (all 64, or the 27 clean ones for
    uniform noise), started at the prior pi_1 at every position (all-mask, or uniform over the
    clean tokens), pushed through each step's kernel
    K[a, b] = prod_i posterior_i(b_i | a) (positions move independently given z_t)."""
    sampler = samplers.build({"kind": "ancestral", "steps": steps})
    model = Exact(noise, CLEAN, probs)
    reachable = (torch.arange(V) < N) | (noise.beta_pi(torch.tensor([0.5]))[0] > 0)
    states = NOISY[reachable[NOISY].all(-1)]
    pi_1 = noise.beta_pi(torch.tensor([1.0]))[0]
    law = (pi_1 / pi_1.sum())[states].prod(-1)
    eps = sampler.config.eps
    grid = torch.linspace(1 - eps, eps, steps, dtype=torch.float64).tolist()
    for t, s in zip(grid, grid[1:] + [0.0]):
        logits = model(states, torch.full((len(states),), t))
        posterior = sampler.posterior(noise, logits, states, t, s)  # [S, L, V]
        kernel = posterior[:, torch.arange(LENGTH), states].prod(-1)  # [S from, S to]
        law = law @ kernel
    clean = states.lt(N).all(-1)
    assert law[~clean].sum() < 1e-12  # no mask survives
    return law[clean]  # clean states come in CLEAN's (lexicographic) order


def unconditional(n: int, length: int = 3) -> Batch:
    return Batch.unconditional(torch.zeros(n, length, dtype=torch.long))


# --------------------------------------------------------------------------- ancestral


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


@pytest.mark.parametrize("noise_name", ["masked", "gidd", "uniform"])
def test_ancestral_output_law_is_exact_on_a_product_distribution(noise_name):
    """With independent positions the true reverse step factorises, so with the exact denoiser
    the output law equals p for any number of steps (3 here, the last one to t = 0); the prior
    standing in for z at t = 1 - eps costs O(alpha_{1 - eps}^2) ~ 1e-6 at most."""
    noise, probs = make_noise(noise_name), product_distribution()
    assert total_variation(output_law(noise, probs, steps=3), probs) < 1e-6


@pytest.mark.parametrize("noise_name", ["masked", "gidd", "uniform"])
def test_ancestral_output_law_converges_on_a_correlated_distribution(noise_name):
    """Positions move independently within a step, which is exact only as steps -> inf: the
    output law approaches p (measured TV at 32 / 256 steps: masked 5e-3 / 7e-4, GIDD 2e-2 / 4e-3,
    uniform 8e-3 / 1e-3)."""
    noise, probs = make_noise(noise_name), correlated_distribution()
    coarse = total_variation(output_law(noise, probs, steps=32), probs)
    fine = total_variation(output_law(noise, probs, steps=256), probs)
    assert fine < 5e-3 and fine < coarse / 2


@pytest.mark.parametrize("noise_name", ["gidd", "uniform"])
def test_ancestral_step_expects_x_hat_without_the_own_token(noise_name):
    """The convention the step relies on: fed the posterior mean E[x_i | z_t] (own noisy token
    included) it counts the evidence of z_t twice, and the samples are far from p even where
    positions are independent. Masks carry no evidence, so masked noise is unaffected."""
    noise, probs = make_noise(noise_name), product_distribution()
    sampler = samplers.build({"kind": "ancestral", "steps": 3})
    model = Exact(noise, CLEAN, probs, target="posterior_mean")
    torch.manual_seed(2)
    out = sampler.generate(model, noise, unconditional(6000))
    assert chi_square(out.tokens, probs) > CHI2_999_DF26


@pytest.mark.parametrize("noise_name", ["masked", "gidd", "uniform"])
def test_ancestral_samples_reproduce_a_correlated_distribution(noise_name):
    """6000 samples, 256 steps: the output law is within TV 4e-3 of p (output-law test), which moves
    the chi-square statistic by under 1 at this sample size (null mean 26, sd 7, 0.1% critical
    value 54)."""
    torch.manual_seed(1)
    noise, probs = make_noise(noise_name), correlated_distribution()
    sampler = samplers.build({"kind": "ancestral", "steps": 256})
    out = sampler.generate(Exact(noise, CLEAN, probs), noise, unconditional(6000))
    assert out.tokens.ne(MASK).all()
    assert chi_square(out.tokens, probs) < CHI2_999_DF26


@pytest.mark.parametrize("noise_name", ["masked", "gidd"])
def test_the_chi_square_check_rejects_a_wrong_sampler(noise_name):
    """Power of the check above: temperature 0.7 sharpens x_hat and must be detected."""
    torch.manual_seed(2)
    noise, probs = make_noise(noise_name), correlated_distribution()
    sampler = samplers.build({"kind": "ancestral", "steps": 16, "temperature": 0.7})
    out = sampler.generate(Exact(noise, CLEAN, probs), noise, unconditional(6000))
    assert chi_square(out.tokens, probs) > CHI2_999_DF26


class Recorder(torch.nn.Module):
    """Wraps a model; records each call's batch size, time and inputs."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.rows: list[int] = []
        self.times: list[torch.Tensor] = []
        self.inputs: list[torch.Tensor] = []

    def forward(self, zt, t, fixed=None, valid=None):
        self.rows.append(len(zt))
        self.times.append(t.clone())
        self.inputs.append(zt.clone())
        return self.model(zt, t, fixed=fixed, valid=valid)


class RandomLogits(torch.nn.Module):
    """A stand-in network: logits are a fixed random function of (position, token)."""

    def __init__(self, length: int, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.table = torch.randn(length, V, V, generator=gen) * 2.0

    def forward(self, zt, t, fixed=None, valid=None):
        return self.table[torch.arange(zt.shape[1]), zt]


def conditioned_batch(unknowns: list[int], length: int = 12, seed: int = 0) -> Batch:
    """Rows with the given numbers of unknown positions (scattered), the rest fixed to random
    tokens; the last row also has two padding positions (fixed, not valid)."""
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, N, (len(unknowns), length), generator=gen)
    fixed = torch.ones(len(unknowns), length, dtype=torch.bool)
    for row, count in enumerate(unknowns):
        fixed[row, torch.randperm(length, generator=gen)[:count]] = False
    valid = torch.ones_like(fixed)
    pads = fixed[-1].nonzero().squeeze(-1)[:2]
    valid[-1, pads] = False
    return Batch(x0=x0, fixed=fixed, valid=valid)


def test_ancestral_counts_steps_and_uses_the_time_grid():
    torch.manual_seed(3)
    noise = make_noise("gidd")
    batch = conditioned_batch([5, 0, 12])
    model = Recorder(RandomLogits(12))
    out = samplers.build({"kind": "ancestral", "steps": 5, "eps": 0.1}).generate(model, noise, batch)
    assert out.nfe.tolist() == [5, 0, 5]
    assert model.rows == [2] * 5  # the all-fixed row is never passed to the model
    torch.testing.assert_close(torch.stack(model.times)[:, 0], torch.tensor([0.9, 0.7, 0.5, 0.3, 0.1]))
    assert out.tokens.ne(MASK).all()


def test_ancestral_steps_argument_overrides_the_config():
    noise = make_noise("masked")
    model = Recorder(RandomLogits(3))
    out = samplers.build({"kind": "ancestral", "steps": 50}).generate(model, noise, unconditional(2), steps=7)
    assert out.nfe.tolist() == [7, 7] and len(model.rows) == 7


def test_ancestral_min_p_removes_unlikely_tokens():
    """x_hat puts 0.9 on token 0 and 0.1 spread over the others at every position; with
    min_p = 0.5 and one step from the all-mask prior, the posterior at s = 0 is x_hat itself, so
    only token 0 survives."""
    logits = torch.log(torch.tensor([0.9, 0.05, 0.05, 1e-9]))

    def model(zt, t, fixed=None, valid=None):
        return logits.expand(*zt.shape, V)

    torch.manual_seed(4)
    noise = make_noise("masked")
    plain = samplers.build({"kind": "ancestral", "steps": 1}).generate(model, noise, unconditional(200))
    cut = samplers.build({"kind": "ancestral", "steps": 1, "min_p": 0.5}).generate(model, noise, unconditional(200))
    assert plain.tokens.ne(0).any() and cut.tokens.eq(0).all()


def test_ancestral_needs_an_interpolating_noise():
    class NotInterpolating(noises.NoiseProcess):
        vocab_size, mask_id = V, MASK

        def sample(self, x0, t, fixed=None):
            return x0

        def prior(self, shape, device="cpu"):
            return torch.full(shape, MASK)

        def prior_kl(self, x0):
            return torch.zeros(x0.shape, dtype=torch.float64)

    with pytest.raises(TypeError, match="interpolating"):
        samplers.build({"kind": "ancestral"}).generate(RandomLogits(3), NotInterpolating(), unconditional(1))


def test_ancestral_rejects_an_invalid_forward_process():
    """GIDD with gamma = 3 (the config allows at most 2, so it is built around the config): for
    t > gamma / (2 (gamma - 1)) = 3/4 the mass beta_t pi_t - alpha_{t|s} beta_s pi_s on uniform
    tokens is negative, which the step reports instead of clipping."""
    from components.noise.gidd import GiddNoise, GiddNoiseConfig

    noise = GiddNoise(GiddNoiseConfig.model_construct(p_uniform=0.5, gamma=3.0), vocab_size=V, mask_id=MASK)
    sampler = samplers.build({"kind": "ancestral", "steps": 4})
    logits = torch.zeros(1, LENGTH, V)
    zt = torch.full((1, LENGTH), MASK)
    with pytest.raises(ValueError, match="negative transition mass"):
        sampler.posterior(noise, logits, zt, 0.95, 0.9)
    assert sampler.posterior(noise, logits, zt, 0.5, 0.4).min() >= 0  # valid below t = 3/4


# --------------------------------------------------------------------------- confidence

# Four sequences of length 6; the first two tokens tell them apart.
DETERMINED = torch.tensor(
    [
        [0, 0, 1, 2, 0, 1],
        [0, 1, 2, 2, 1, 0],
        [1, 0, 0, 1, 2, 2],
        [2, 2, 1, 0, 0, 2],
    ]
)


@pytest.mark.parametrize("noise_name", ["masked", "gidd", "uniform"])
@pytest.mark.parametrize("score", ["max_prob", "margin", "neg_entropy"])
@pytest.mark.parametrize("k,temperature", [(1, 0.0), (3, 1.0), (100, 0.0)])
def test_confidence_with_the_exact_denoiser_finds_the_determined_sequences(noise_name, score, k, temperature):
    torch.manual_seed(5)
    noise = make_noise(noise_name)
    model = Exact(noise, DETERMINED, torch.ones(len(DETERMINED)))
    fixed = torch.zeros_like(DETERMINED, dtype=torch.bool)
    fixed[:, :2] = True
    batch = Batch(x0=torch.where(fixed, DETERMINED, 0), fixed=fixed)
    sampler = samplers.build({"kind": "confidence", "k": k, "score": score, "temperature": temperature})
    out = sampler.generate(model, noise, batch)
    assert torch.equal(out.tokens, DETERMINED)
    assert out.nfe.tolist() == [math.ceil(4 / k)] * 4 == [model.calls] * 4


# Three sequences that differ at every position: committing any one token determines the rest.
DISTINCT = torch.tensor([[0, 1, 2, 0, 1, 2], [1, 2, 0, 1, 2, 0], [2, 0, 1, 2, 0, 1]])


def test_confidence_one_at_a_time_stays_in_the_support():
    """Masked noise, unconditional, k = 1: a committed token is known to be clean, so after the
    first commit the rest is determined. Argmax decoding gives the mode, and committing a sampled
    token gives only data sequences (not in proportion to p: the most probable sampled token is
    committed first, which favours the mode). With uniform noise a committed token looks like a
    noisy one to the denoiser (t is still high), so the first commit does not pin the sequence."""
    torch.manual_seed(6)
    noise = make_noise("masked")
    weights = torch.tensor([0.5, 0.3, 0.2])
    model = Exact(noise, DISTINCT, weights)
    batch = unconditional(60, length=6)
    greedy = samplers.build({"kind": "confidence", "k": 1}).generate(model, noise, batch)
    assert (greedy.tokens == DISTINCT[0]).all()
    sampled = samplers.build({"kind": "confidence", "k": 1, "temperature": 1.0}).generate(model, noise, batch)
    matches = (sampled.tokens[:, None, :] == DISTINCT[None]).all(-1)  # [60, 3]
    assert matches.any(-1).all()
    assert (sampled.nfe == 6).all()


def test_confidence_passes_nfe_and_time_per_sequence():
    """Unknowns 5, 0, 12 with k = 4: ceil gives 2, 0, 3 passes. Each pass runs only on the
    sequences still open, with t = fraction of their unknowns still unresolved."""
    noise = make_noise("masked")
    model = Recorder(RandomLogits(12))
    batch = conditioned_batch([5, 0, 12])
    out = samplers.build({"kind": "confidence", "k": 4}).generate(model, noise, batch)
    assert out.nfe.tolist() == [2, 0, 3]
    assert model.rows == [2, 2, 1]
    assert torch.cat(model.times).tolist() == pytest.approx([1.0, 1.0, 1 / 5, 8 / 12, 4 / 12])
    # Masks in each input = the unresolved counts: 5 -> 1 -> done, 12 -> 8 -> 4 -> done.
    assert [(z == MASK).sum(-1).tolist() for z in model.inputs] == [[5, 12], [1, 8], [4]]


def test_confidence_steps_argument_sets_k_per_sequence():
    """steps = 3: k = ceil(5 / 3) = 2 and ceil(12 / 3) = 4, so 3 passes each."""
    noise = make_noise("masked")
    model = Recorder(RandomLogits(12))
    out = samplers.build({"kind": "confidence", "k": 1}).generate(model, noise, conditioned_batch([5, 0, 12]), steps=3)
    assert out.nfe.tolist() == [3, 0, 3] and model.rows == [2, 2, 2]


def test_confidence_uniform_noise_keeps_unresolved_random_tokens():
    """Uniform prior: unknowns start as random real tokens (no mask), and each pass changes only
    the positions it commits; the model sees t = 1 first, like a fully noised input."""
    torch.manual_seed(8)
    noise = make_noise("uniform")
    model = Recorder(RandomLogits(12))
    batch = conditioned_batch([12])
    samplers.build({"kind": "confidence", "k": 5}).generate(model, noise, batch)
    first, second, third = model.inputs
    assert first.ne(MASK).all() and model.times[0].item() == 1.0
    assert (first != second).sum() <= 5 and (second != third).sum() <= 5


def test_confidence_scores_rank_as_documented():
    probs = torch.tensor([[[0.5, 0.5, 0.0, 0.0], [0.6, 0.2, 0.2, 0.0], [0.55, 0.45, 0.0, 0.0]]])
    tokens = probs.argmax(-1)
    assert confidence(probs, tokens, "max_prob").argmax().item() == 1
    assert confidence(probs, tokens, "margin").argmax().item() == 1
    entropy = -confidence(probs, tokens, "neg_entropy")[0]
    assert entropy[0].item() == pytest.approx(math.log(2)) and entropy.argmin().item() == 2


# --------------------------------------------------------------------------- all samplers

ALL_SAMPLERS = [
    {"kind": "ancestral", "steps": 8},
    {"kind": "ancestral", "steps": 8, "min_p": 0.1, "temperature": 0.5},
    {"kind": "confidence", "k": 3},
    {"kind": "confidence", "k": 2, "score": "margin", "temperature": 1.0},
    {"kind": "self_correction", "base": {"kind": "ancestral", "steps": 8}, "max_iters": 5},
    {"kind": "self_correction", "base": {"kind": "confidence", "k": 4}, "tokens_per_step": 3, "max_iters": 5},
]


@pytest.mark.parametrize("noise_name", ["masked", "gidd", "uniform"])
@pytest.mark.parametrize("section", ALL_SAMPLERS, ids=lambda s: f"{s['kind']}-{len(s)}")
def test_fixed_positions_are_never_changed_and_no_mask_remains(noise_name, section):
    torch.manual_seed(9)
    noise = make_noise(noise_name)
    batch = conditioned_batch([4, 12, 0, 7])
    out = samplers.build(section).generate(RandomLogits(12, seed=1), noise, batch)
    assert out.tokens.shape == batch.x0.shape and out.tokens.dtype == torch.long
    assert torch.equal(out.tokens[batch.fixed], batch.x0[batch.fixed])
    assert out.tokens[~batch.fixed].lt(N).all()
    assert out.nfe[2].item() == 0 and out.nfe[[0, 1, 3]].gt(0).all()


def test_configs_validate_ranges():
    for section in (
        {"kind": "ancestral", "steps": 0},
        {"kind": "ancestral", "eps": 0.0},
        {"kind": "ancestral", "min_p": 1.0},
        {"kind": "confidence", "k": 0},
        {"kind": "confidence", "score": "entropy"},
        {"kind": "confidence", "temperature": -1.0},
        {"kind": "self_correction", "t0": 0.0},
        {"kind": "self_correction", "base": {"kind": "self_correction"}},
    ):
        with pytest.raises(BuildError):
            samplers.build(section)
