"""GDDS uniformization against marginals computed independently here: torch.linalg.matrix_exp of
the rate matrix for constant kernels, a time-ordered product of matrix exponentials for the
time-dependent k-NN kernel, and the closed-form masked / uniform processes."""

import math

import numpy as np
import pytest
import torch

from components import noise as noises
from components.noise.gdds import GddsNoise
from components.registry import BuildError

V = 5
MASK = 4
SAMPLES = 30_000
TIMES = torch.tensor([0.05, 0.3, 0.6, 0.9, 0.999])


def build(kernel: dict, **fields) -> GddsNoise:
    return noises.build({"kind": "gdds", "kernel": kernel, **fields}, vocab_size=V, mask_id=MASK)


def frequencies(tokens: torch.Tensor) -> torch.Tensor:
    """Float64[B, V] empirical distribution of each row of Long[B, n]."""
    return torch.nn.functional.one_hot(tokens, V).double().mean(1)


def assert_matches(empirical: torch.Tensor, expected: torch.Tensor, n: int) -> None:
    """Every frequency within 5 binomial standard errors (plus a floor for p ~ 0)."""
    sd = (expected * (1 - expected) / n).sqrt()
    assert ((empirical - expected).abs() <= 5 * sd + 5.0 / n).all(), (empirical, expected)


def loglinear_lambda(t: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return -torch.log(1.0 - (1.0 - eps) * t.double())


def random_stochastic(seed: int) -> torch.Tensor:
    """A row-stochastic V x V matrix with some zeros and an absorbing mask row."""
    gen = torch.Generator().manual_seed(seed)
    m = torch.rand(V, V, generator=gen, dtype=torch.float64) * (torch.rand(V, V, generator=gen) > 0.3)
    m[:, MASK] += 0.2
    m[MASK] = 0.0
    m[MASK, MASK] = 1.0
    return m / m.sum(1, keepdim=True)


@pytest.mark.parametrize("source", ["npy", "text", "rows"])
def test_matrix_kernel_samples_match_matrix_exponential(tmp_path, source: str) -> None:
    matrix = random_stochastic(1)
    if source == "npy":
        np.save(tmp_path / "k.npy", matrix.numpy())
        kernel = {"kind": "matrix", "file": str(tmp_path / "k.npy")}
    elif source == "text":
        np.savetxt(tmp_path / "k.csv", matrix.numpy(), delimiter=",", fmt="%.17g")
        kernel = {"kind": "matrix", "file": str(tmp_path / "k.csv")}
    else:
        kernel = {"kind": "matrix", "rows": (matrix * torch.arange(1, V + 1)[:, None]).tolist()}  # rows normalised
    process = build(kernel)
    torch.manual_seed(0)
    clean = torch.tensor([0, 1, 2, 3, 0])
    zt, jumped = process.sample_with_jumps(clean[:, None].expand(-1, SAMPLES), TIMES)

    lam = loglinear_lambda(TIMES)
    rate = matrix - torch.eye(V, dtype=torch.float64)
    expected = torch.stack([torch.linalg.matrix_exp(l * rate)[c] for l, c in zip(lam, clean)])
    assert_matches(frequencies(zt), expected, SAMPLES)
    assert_matches(jumped.double().mean(1, keepdim=True), (1 - torch.exp(-lam))[:, None], SAMPLES)
    assert (zt[~jumped] == clean[:, None].expand(-1, SAMPLES)[~jumped]).all()
    torch.testing.assert_close(process.marginal(torch.eye(V, dtype=torch.float64)[clean], TIMES), expected)


def test_cosine_schedule_intensity_and_inverse() -> None:
    process = build({"kind": "matrix", "rows": random_stochastic(2).tolist()}, schedule="cosine", eps=1e-2)
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    alpha = 1 - torch.cos(0.5 * math.pi * (1 - 0.99 * t))
    torch.testing.assert_close(process.intensity(t), -alpha.log())
    torch.testing.assert_close(process.time_at(-alpha.log()), t)
    torch.manual_seed(1)
    zt, jumped = process.sample_with_jumps(torch.zeros(len(TIMES), SAMPLES, dtype=torch.long), TIMES)
    alpha_t = 1 - torch.cos(0.5 * math.pi * (1 - 0.99 * TIMES.double()))
    assert_matches(jumped.double().mean(1, keepdim=True), (1 - alpha_t)[:, None], SAMPLES)
    rate = random_stochastic(2) - torch.eye(V, dtype=torch.float64)
    expected = torch.stack([torch.linalg.matrix_exp(-a.log() * rate)[0] for a in alpha_t])
    assert_matches(frequencies(zt), expected, SAMPLES)


@pytest.mark.parametrize("kind", ["mask", "uniform"])
def test_mask_and_uniform_kernels_are_the_closed_form_processes(kind: str) -> None:
    closed = noises.build({"kind": "masked" if kind == "mask" else "uniform"}, vocab_size=V, mask_id=MASK)
    process = build({"kind": kind})
    clean = torch.tensor([0, 3, 1, 2, 0])
    expected = closed.marginal(torch.eye(V, dtype=torch.float64)[clean], TIMES)
    torch.testing.assert_close(process.marginal(torch.eye(V, dtype=torch.float64)[clean], TIMES), expected)
    torch.manual_seed(2)
    zt, jumped = process.sample_with_jumps(clean[:, None].expand(-1, SAMPLES), TIMES)
    assert_matches(frequencies(zt), expected, SAMPLES)
    assert_matches(jumped.double().mean(1, keepdim=True), (1 - closed.alpha(TIMES))[:, None], SAMPLES)
    prior = process.prior((4, SAMPLES))
    expected_prior = closed.prior((4, SAMPLES))
    assert_matches(frequencies(prior), frequencies(expected_prior), SAMPLES)


def sik_matrices(emb: torch.Tensor, top_k: int, rank: int, bandwidth: float) -> torch.Tensor:
    """F_sem of ``scaling: sqrt_distance`` over the non-mask tokens, written out directly (loops,
    no shared code): Float64[N, N]."""
    n = len(emb)
    d = torch.tensor([[float(((emb[i] - emb[j]) ** 2).sum()) for j in range(n)] for i in range(n)], dtype=torch.float64)
    order = [sorted((j for j in range(n) if j != i), key=lambda j: float(d[i, j])) for i in range(n)]
    sigma = [math.sqrt(float(d[i, order[i][rank - 1]])) for i in range(n)]
    sem = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in order[i][:top_k]:
            sem[i, j] = math.exp(-float(d[i, j]) / (bandwidth * sigma[i] * sigma[j]))
        sem[i] /= sem[i].sum()
    return sem


def test_knn_kernel_follows_the_time_ordered_exponential(tmp_path) -> None:
    gen = torch.Generator().manual_seed(3)
    emb = torch.randn(V, 3, generator=gen, dtype=torch.float64)  # row MASK is ignored
    torch.save(emb, tmp_path / "emb.pt")
    cfg = {"top_k": 2, "scale_neighbor": 2, "bandwidth": 1.0, "lambda_min": 0.1, "steepness": 6.0, "midpoint": 0.4}
    process = build({"kind": "knn", "embeddings": str(tmp_path / "emb.pt"), "scaling": "sqrt_distance", **cfg})

    tokens = [v for v in range(V) if v != MASK]
    n = len(tokens)
    sem = sik_matrices(emb[tokens], cfg["top_k"], cfg["scale_neighbor"], cfg["bandwidth"])
    off = (torch.ones(n, n, dtype=torch.float64) - torch.eye(n, dtype=torch.float64)) / (n - 1)

    def share(s: float) -> float:
        g = lambda x: 1 / (1 + math.exp(-cfg["steepness"] * (x - cfg["midpoint"])))  # noqa: E731
        return cfg["lambda_min"] + (1 - cfg["lambda_min"]) * min(1.0, max(0.0, (g(s) - g(0)) / (g(1) - g(0))))

    def transition(t: float, steps: int = 400) -> torch.Tensor:
        grid = torch.linspace(0.0, t, steps + 1, dtype=torch.float64)
        lam = loglinear_lambda(grid)
        out = torch.eye(n, dtype=torch.float64)
        for k in range(steps):
            mid = float(grid[k] + grid[k + 1]) / 2
            kernel = (1 - share(mid)) * sem + share(mid) * off
            out = out @ torch.linalg.matrix_exp(float(lam[k + 1] - lam[k]) * (kernel - torch.eye(n, dtype=torch.float64)))
        return out

    torch.manual_seed(4)
    clean = torch.tensor([0, 1, 2, 3, 0])
    zt, _ = process.sample_with_jumps(clean[:, None].expand(-1, SAMPLES), TIMES)
    assert (zt != MASK).all()
    expected = torch.zeros(len(TIMES), V, dtype=torch.float64)
    for row, (t, c) in enumerate(zip(TIMES.tolist(), clean.tolist())):
        expected[row, tokens] = transition(t)[tokens.index(c)]
    assert_matches(frequencies(zt), expected, SAMPLES)
    with pytest.raises(NotImplementedError):
        process.marginal(torch.eye(V, dtype=torch.float64)[clean], TIMES)


def test_gdds_scaling_on_a_hand_computed_table(tmp_path) -> None:
    """Four tokens on a line at 0, 1, 3, 7 (V = 5 with the mask last), scale_neighbor 1, top_k 2.
    Squared distances D from each token: 0 -> (1, 9, 49), 1 -> (1, 4, 36), 3 -> (9, 4, 16),
    7 -> (49, 36, 16); sigma_i = D to the nearest other token: 1, 1, 4, 16. The normalised
    D_ij / (sigma_i sigma_j) from 0: 1, 9/4, 49/16; from 1: 1, 1, 36/16; from 3: 9/4, 1, 1/4;
    from 7: 49/16, 36/16, 1/4. With bandwidth 1 the neighbours and weights are
    0: {1: e^-1, 3: e^-9/4}; 1: {0: e^-1, 3: e^-1}; 3: {7: e^-1/4, 1: e^-1}; 7: {3: e^-1/4, 1: e^-9/4}.
    (The raw distance would have picked 1 and 3 for token 7.)"""
    emb = torch.tensor([[0.0], [1.0], [3.0], [7.0]], dtype=torch.float64)
    np.save(tmp_path / "line.npy", emb.numpy())
    process = build(
        {"kind": "knn", "embeddings": str(tmp_path / "line.npy"), "top_k": 2, "scale_neighbor": 1, "bandwidth": 1.0}
    )
    e = math.exp
    expected = {
        0: {1: e(-1), 2: e(-9 / 4)},
        1: {0: e(-1), 2: e(-1)},
        2: {3: e(-1 / 4), 1: e(-1)},
        3: {2: e(-1 / 4), 1: e(-9 / 4)},
    }
    kernel = process.kernel
    for token, weights in expected.items():
        total = sum(weights.values())
        got = {int(j): float(p) for j, p in zip(kernel.neighbours[token], torch.diff(kernel.cdf[token], prepend=torch.zeros(1, dtype=torch.float64)))}
        assert set(got) == set(weights)
        for j, w in weights.items():
            assert got[j] == pytest.approx(w / total, rel=1e-12)


def test_knn_from_a_checkpoint_table_equals_the_embeddings_file(tmp_path) -> None:
    emb = torch.randn(V + 3, 4, generator=torch.Generator().manual_seed(5))  # padded table
    torch.save({"model": {"tok_emb.weight": emb}, "step": 3}, tmp_path / "state.pt")
    np.save(tmp_path / "emb.npy", emb.numpy())
    a = build({"kind": "knn", "checkpoint": str(tmp_path / "state.pt"), "top_k": 3, "scale_neighbor": 2})
    b = build({"kind": "knn", "embeddings": str(tmp_path / "emb.npy"), "top_k": 3, "scale_neighbor": 2})
    x0 = torch.randint(0, V - 1, (6, 40), generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0.1, 0.9, 6)
    torch.manual_seed(6)
    za = a.sample(x0, t)
    torch.manual_seed(6)
    assert torch.equal(za, b.sample(x0, t))
    with pytest.raises(BuildError, match="no entry"):
        build({"kind": "knn", "checkpoint": str(tmp_path / "state.pt"), "key": "model.missing"})


def test_fixed_positions_never_jump_and_prior_of_matrix_kernel() -> None:
    matrix = random_stochastic(7)
    process = build({"kind": "matrix", "rows": matrix.tolist()})
    gen = torch.Generator().manual_seed(8)
    x0 = torch.randint(0, V - 1, (4, 500), generator=gen)
    fixed = torch.rand(4, 500, generator=gen) < 0.5
    zt, jumped = process.sample_with_jumps(x0, torch.full((4,), 0.99), fixed)
    assert torch.equal(zt[fixed], x0[fixed]) and not jumped[fixed].any()
    u = torch.tensor([0.25, 0.25, 0.25, 0.25, 0.0], dtype=torch.float64)
    expected = u @ torch.linalg.matrix_exp(-math.log(1e-3) * (matrix - torch.eye(V, dtype=torch.float64)))
    torch.manual_seed(9)
    assert_matches(frequencies(process.prior((1, SAMPLES))), expected[None], SAMPLES)


@pytest.mark.parametrize(
    "kernel, message",
    [
        ({"kind": "matrix", "rows": [[0.0] * 5] + [[0.2] * 5] * 4}, "not all zero"),
        ({"kind": "matrix", "rows": [[1.0, 0.0], [0.0, 1.0]]}, "5 x 5"),
        ({"kind": "matrix", "rows": [[1.0, 0.0, 0.0], [0.0, 1.0]]}, "square"),
        ({"kind": "matrix"}, "exactly one"),
        ({"kind": "knn", "embeddings": "a.npy", "checkpoint": "b.pt"}, "exactly one"),
        ({"kind": "knn", "embeddings": "missing.npy"}, "no file"),
    ],
)
def test_bad_kernels_are_rejected(kernel: dict, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        build(kernel)
