"""Jump kernels for GDDS uniformization (Zekri et al. 2026; docs/math.md "Forward processes"):
F_t(. | i), the distribution of the state a jump from token i lands on, with column access (one
draw per current token; the V x V matrix is never needed except for the explicit ``matrix``
kernel).

Units: ``t`` is diffusion time in [0, 1]; ``lam`` is the integrated jump intensity
Lambda(t) = -log alpha_t (expected number of jumps up to t). Distributions are Float64[..., V]
over the full task vocabulary (mask token included; only the ``mask`` kernel and explicit
matrices that put mass on it ever produce it).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from components.registry import BuildError, SpecModel

MAX_MATRIX_VOCAB = 4096
DISTANCE_CHUNK = 1024


class UniformKernelConfig(SpecModel):
    """``kernel: {kind: uniform}``: a jump lands uniformly on one of the N = V - 1 non-mask tokens
    (possibly the current one), which makes GDDS the uniform-state process of ``noise: uniform``."""

    kind: Literal["uniform"] = "uniform"


class MaskKernelConfig(SpecModel):
    """``kernel: {kind: mask}``: every jump lands on the mask token (absorbing), which makes GDDS
    the masked process of ``noise: masked``."""

    kind: Literal["mask"] = "mask"


class KnnKernelConfig(SpecModel):
    """``kernel: {kind: knn, embeddings: emb.npy}``: the semantic-informed kernel (SIK) of GDDS
    (Zekri et al. 2026, docs/math.md "GDDS")
    F_t(. | i) = (1 - lambda(t)) F_sem(. | i) + lambda(t) Unif(non-mask tokens except i), with
    F_sem(j | i) proportional to exp(-D_ij / (bandwidth s_ij)) over ``top_k`` neighbours j != i of
    token i's embedding (D: squared euclidean distance, or 1 - cos), and
    lambda(t) = lambda_min + (1 - lambda_min) clip((g(t) - g(0)) / (g(1) - g(0)), 0, 1),
    g(t) = sigmoid(steepness (t - midpoint)). ``scaling`` picks s_ij and the neighbours:

    - ``gdds`` (the reference implementation's variable bandwidth): sigma_i = D from i to its
      ``scale_neighbor``-th nearest token, s_ij = sigma_i sigma_j, and the neighbours are the
      ``top_k`` smallest normalised distances D_ij / s_ij;
    - ``sqrt_distance``: sigma_i = sqrt of that D, s_ij = sigma_i sigma_j, and the neighbours are
      the ``top_k`` smallest raw D_ij.

    GDDS's configured values are the defaults; its exponents beta and gamma_deg are fixed at
    their defaults 0 (F_sem proportional to K)."""

    kind: Literal["knn"] = "knn"
    embeddings: Path | None = Field(None, description="Float[V or V - 1, d] token embeddings (.npy or .pt)")
    checkpoint: Path | None = Field(None, description="a torch checkpoint (e.g. a run's state.pt) holding the table")
    key: str = Field(
        "model.tok_emb.weight", min_length=1, description="dotted path of the table inside `checkpoint`"
    )
    top_k: int = Field(64, ge=1, le=4096, description="neighbours per token in the k-NN graph")
    metric: Literal["euclidean", "cosine"] = Field("euclidean", description="D = squared distance or 1 - cos")
    bandwidth: float = Field(0.01, gt=0.0, le=100.0, description="epsilon of the Gaussian kernel")
    scale_neighbor: int = Field(7, ge=1, le=4096, description="sigma_i is the distance to this neighbour")
    scaling: Literal["gdds", "sqrt_distance"] = Field(
        "gdds",
        description="gdds: sigma_i = D to the scale_neighbor-th token, neighbours by D_ij / (sigma_i sigma_j); "
        "sqrt_distance: sigma_i = sqrt of that D, neighbours by raw D_ij",
    )
    lambda_min: float = Field(0.01, ge=0.0, le=1.0, description="uniform share lambda(t) at t = 0")
    steepness: float = Field(10.0, gt=0.0, le=1000.0, description="s of g(t) = sigmoid(s (t - t0))")
    midpoint: float = Field(0.6, ge=0.0, le=1.0, description="t0 of g(t) = sigmoid(s (t - t0))")

    @model_validator(mode="after")
    def _one_source(self) -> "KnnKernelConfig":
        if (self.embeddings is None) == (self.checkpoint is None):
            raise ValueError("give exactly one of embeddings (a .npy/.pt table) or checkpoint (+ key)")
        return self


class MatrixKernelConfig(SpecModel):
    """``kernel: {kind: matrix, rows: [[...], ...]}`` or ``{kind: matrix, file: k.npy}``: an
    explicit V x V matrix of non-negative weights, row i normalised to F(. | i) (the mask row
    included; make it [0, ..., 1 at the mask] for an absorbing mask). Small vocabularies only
    (V <= 4096)."""

    kind: Literal["matrix"] = "matrix"
    file: Path | None = Field(None, description="the matrix as .npy, .pt, or whitespace/comma-separated text")
    rows: list[list[Annotated[float, Field(ge=0.0, le=1e6)]]] | None = Field(
        None, min_length=2, max_length=MAX_MATRIX_VOCAB, description="the matrix inline (its content is part of the spec hash)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> "MatrixKernelConfig":
        if (self.file is None) == (self.rows is None):
            raise ValueError("give exactly one of file or rows")
        if self.rows is not None and any(len(row) != len(self.rows) for row in self.rows):
            raise ValueError(f"rows must form a square matrix ({len(self.rows)} rows)")
        return self


KernelConfig = Annotated[
    UniformKernelConfig | MaskKernelConfig | KnnKernelConfig | MatrixKernelConfig, Field(discriminator="kind")
]


class JumpKernel(ABC):
    """F_t(. | i) over a vocabulary of ``vocab_size`` tokens with mask token ``mask_id``.

    ``constant`` kernels do not depend on t, so the marginal of the process is
    p0 exp(Lambda(t) (F - I)) (see :meth:`propagate`)."""

    vocab_size: int
    mask_id: int
    constant: bool = True

    @abstractmethod
    def draw(self, current: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        """One jump from each token of ``current`` Long[n] at times ``t`` Float64[n] (None for
        constant kernels). Returns Long[n]."""

    @abstractmethod
    def prior_probs(self, device: torch.device | str) -> torch.Tensor:
        """Float64[V]: the distribution of z_1 (GDDS starts sampling from it)."""

    def propagate(self, p0: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """p0 exp(Lambda (F - I)) for p0: Float[B, ..., V] and Lambda: Float64[B]; constant kernels
        only. Returns Float64 of p0's shape."""
        raise NotImplementedError(f"{type(self).__name__} is time-dependent: no closed-form marginal")

    def jump_matrix(self, device: torch.device | str) -> torch.Tensor:
        """F: Float64[V, V], row i = F(. | i); constant kernels only."""
        raise NotImplementedError(f"{type(self).__name__} is time-dependent: no constant jump matrix")


def non_mask_uniform(vocab_size: int, mask_id: int, device: torch.device | str) -> torch.Tensor:
    """Float64[V]: 1 / (V - 1) on every non-mask token, 0 on the mask."""
    u = torch.full((vocab_size,), 1.0 / (vocab_size - 1), dtype=torch.float64, device=device)
    u[mask_id] = 0.0
    return u


def draw_excluding(n: int, vocab_size: int, excluded: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Long[n]: uniform draws over the V tokens minus the ids in ``excluded`` (each a Long[n],
    pairwise different in every row): draw r < V - len(excluded), then shift r past every
    excluded id in increasing order."""
    r = torch.randint(vocab_size - len(excluded), (n,), device=device)
    for low in sorted_columns(excluded):
        r = r + (r >= low).long()
    return r


def sorted_columns(columns: list[torch.Tensor]) -> list[torch.Tensor]:
    """The per-row sorted values of Long[n] columns, as a list of Long[n] (ascending)."""
    if len(columns) == 1:
        return columns
    return list(torch.stack(columns, -1).sort(-1).values.unbind(-1))


class MixtureKernel(JumpKernel):
    """F(. | i) = pi for every i (a rank-one, idempotent kernel): exp(Lambda (F - I)) p =
    e^-Lambda p + (1 - e^-Lambda) pi in closed form."""

    def __init__(self, pi: torch.Tensor, vocab_size: int, mask_id: int):
        self.pi = pi
        self.vocab_size = vocab_size
        self.mask_id = mask_id

    def prior_probs(self, device: torch.device | str) -> torch.Tensor:
        return self.pi.to(device)

    def propagate(self, p0: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        stay = torch.exp(-lam.double().to(p0.device)).view((-1,) + (1,) * (p0.dim() - 1))
        return stay * p0.double() + (1.0 - stay) * self.pi.to(p0.device)

    def jump_matrix(self, device: torch.device | str) -> torch.Tensor:
        return self.pi.to(device)[None].expand(self.vocab_size, -1)


class UniformKernel(MixtureKernel):
    def __init__(self, vocab_size: int, mask_id: int):
        super().__init__(non_mask_uniform(vocab_size, mask_id, "cpu"), vocab_size, mask_id)

    def draw(self, current: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        mask = torch.full_like(current, self.mask_id)
        return draw_excluding(current.numel(), self.vocab_size, [mask], current.device)


class MaskKernel(MixtureKernel):
    def __init__(self, vocab_size: int, mask_id: int):
        pi = torch.zeros(vocab_size, dtype=torch.float64)
        pi[mask_id] = 1.0
        super().__init__(pi, vocab_size, mask_id)

    def draw(self, current: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        return torch.full_like(current, self.mask_id)


def load_table(path: Path, key: str | None = None) -> torch.Tensor:
    """A 2-d Float64 tensor from a .npy / .pt file (``key``: dotted path into a checkpoint's nested
    dicts, where a level's key may itself contain dots, e.g. ``model.tok_emb.weight``) or from a
    text file of whitespace- or comma-separated rows."""
    path = Path(path)
    if not path.is_file():
        raise BuildError(f"noise (gdds): no file {path}")
    if path.suffix == ".npy":
        table: Any = torch.from_numpy(np.load(path, allow_pickle=False))
    elif path.suffix in (".pt", ".pth"):
        table = torch.load(path, map_location="cpu", weights_only=True)
    else:
        table = torch.from_numpy(np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=2))
    if key is not None:
        table = lookup(table, key, path)
    if not isinstance(table, torch.Tensor) or table.dim() != 2:
        raise BuildError(f"noise (gdds): {path}{f' [{key}]' if key else ''} is not a 2-d table")
    return table.detach().double()


def lookup(tree: Any, key: str, path: Path) -> Any:
    """tree[key] for nested dicts, splitting ``key`` on the first dot that names an existing entry."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        parts = key.split(".")
        for cut in range(1, len(parts)):
            head = ".".join(parts[:cut])
            if head in tree:
                return lookup(tree[head], ".".join(parts[cut:]), path)
    raise BuildError(f"noise (gdds): no entry {key!r} in {path}")


class MatrixKernel(JumpKernel):
    """Explicit F: Float64[V, V] from non-negative weights, each row normalised to F(. | i); draws
    by inverse CDF. The prior
    is u exp(Lambda(1) (F - I)), the marginal at t = 1 of a clean token drawn uniformly from the
    non-mask tokens (``horizon`` = Lambda(1))."""

    def __init__(self, matrix: torch.Tensor, vocab_size: int, mask_id: int, horizon: float):
        if vocab_size > MAX_MATRIX_VOCAB:
            raise BuildError(f"noise (gdds): the matrix kernel is for V <= {MAX_MATRIX_VOCAB}, got V = {vocab_size}")
        if matrix.shape != (vocab_size, vocab_size):
            raise BuildError(f"noise (gdds): kernel matrix must be {vocab_size} x {vocab_size}, got {tuple(matrix.shape)}")
        if not torch.isfinite(matrix).all() or (matrix < 0).any() or (matrix.sum(1) <= 0).any():
            raise BuildError("noise (gdds): kernel matrix rows must be finite, non-negative and not all zero")
        self.matrix = matrix / matrix.sum(1, keepdim=True)
        self.cdf = self.matrix.cumsum(1)
        self.last = (vocab_size - 1 - (self.matrix > 0).flip(1).int().argmax(1)).long()
        self.vocab_size = vocab_size
        self.mask_id = mask_id
        u = non_mask_uniform(vocab_size, mask_id, "cpu")[None]
        self.prior = self.propagate(u, torch.tensor([horizon], dtype=torch.float64))[0]

    def draw(self, current: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        cdf = self.cdf.to(current.device)[current]
        u = torch.rand(current.shape + (1,), dtype=torch.float64, device=current.device) * cdf[:, -1:]
        token = torch.searchsorted(cdf, u, right=True).squeeze(-1)
        return torch.minimum(token, self.last.to(current.device)[current])

    def propagate(self, p0: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        generator = self.matrix.to(p0.device) - torch.eye(self.vocab_size, dtype=torch.float64, device=p0.device)
        transition = torch.linalg.matrix_exp(lam.double().to(p0.device).view(-1, 1, 1) * generator)  # [B, V, V]
        flat = p0.double().reshape(p0.shape[0], -1, self.vocab_size)
        return torch.bmm(flat, transition).reshape(p0.shape)

    def prior_probs(self, device: torch.device | str) -> torch.Tensor:
        return self.prior.to(device)

    def jump_matrix(self, device: torch.device | str) -> torch.Tensor:
        return self.matrix.to(device)


class KnnKernel(JumpKernel):
    """SIK over a Gaussian k-NN graph (see :class:`KnnKernelConfig`). Stores per non-mask token its
    neighbour ids Long[V, k] and their CDF Float64[V, k]; the mask row is unused (never reached)."""

    constant = False

    def __init__(self, config: KnnKernelConfig, embeddings: torch.Tensor, vocab_size: int, mask_id: int):
        self.config = config
        self.vocab_size = vocab_size
        self.mask_id = mask_id
        tokens = torch.tensor([v for v in range(vocab_size) if v != mask_id])
        if embeddings.shape[0] >= vocab_size:
            table = embeddings[:vocab_size][tokens]
        elif embeddings.shape[0] == vocab_size - 1:
            table = embeddings
        else:
            raise BuildError(
                f"noise (gdds): need embeddings for {vocab_size} (or {vocab_size - 1} non-mask) tokens, got {embeddings.shape[0]}"
            )
        if len(tokens) < 3:
            raise BuildError("noise (gdds): the knn kernel needs at least 3 non-mask tokens")
        neighbours, log_weights = gaussian_knn(table, config)
        self.neighbours = torch.zeros(vocab_size, neighbours.shape[1], dtype=torch.long)
        self.cdf = torch.ones(vocab_size, neighbours.shape[1], dtype=torch.float64)
        self.neighbours[tokens] = tokens[neighbours]
        self.cdf[tokens] = torch.softmax(log_weights, -1).cumsum(-1)
        self.g0, self.g1 = (self.g(torch.tensor(x, dtype=torch.float64)) for x in (0.0, 1.0))

    def g(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.config.steepness * (t - self.config.midpoint))

    def uniform_share(self, t: torch.Tensor) -> torch.Tensor:
        """lambda(t), Float64 of t's shape."""
        ramp = ((self.g(t.double()) - self.g0) / (self.g1 - self.g0)).clamp(0.0, 1.0)
        return self.config.lambda_min + (1.0 - self.config.lambda_min) * ramp

    def draw(self, current: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        device = current.device
        n = current.numel()
        uniform = torch.rand(n, dtype=torch.float64, device=device) < self.uniform_share(t)
        mask = torch.full_like(current, self.mask_id)
        off_graph = draw_excluding(n, self.vocab_size, [current, mask], device)
        cdf = self.cdf.to(device)[current]
        u = torch.rand(n, 1, dtype=torch.float64, device=device) * cdf[:, -1:]
        pick = torch.searchsorted(cdf, u, right=True).clamp_max(cdf.shape[1] - 1)
        on_graph = self.neighbours.to(device)[current].gather(1, pick).squeeze(1)
        return torch.where(uniform, off_graph, on_graph)

    def prior_probs(self, device: torch.device | str) -> torch.Tensor:
        return non_mask_uniform(self.vocab_size, self.mask_id, device)


def gaussian_knn(table: torch.Tensor, config: KnnKernelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """k-NN graph of the rows of ``table`` Float64[N, d] (self excluded): neighbour indices
    Long[N, k] and log Gaussian weights -D_ij / (bandwidth sigma_i sigma_j) Float64[N, k], with
    k = min(top_k, N - 1), for ``config.scaling`` (see :class:`KnnKernelConfig`). Distances are
    computed in row chunks (N may be a 50k vocabulary)."""
    n = table.shape[0]
    k = min(config.top_k, n - 1)
    rank = min(config.scale_neighbor, n - 1)
    if config.metric == "cosine":
        table = torch.nn.functional.normalize(table, dim=1)
    sq = (table * table).sum(1)

    def distances(lo: int) -> torch.Tensor:
        """D for rows lo.. of the chunk against every row, the diagonal at +inf."""
        rows = table[lo : lo + DISTANCE_CHUNK]
        if config.metric == "cosine":
            d = 1.0 - rows @ table.T
        else:
            d = (sq[lo : lo + DISTANCE_CHUNK, None] + sq[None] - 2.0 * rows @ table.T).clamp_min(0.0)
        d[torch.arange(len(rows)), torch.arange(lo, lo + len(rows))] = math.inf
        return d

    starts = range(0, n, DISTANCE_CHUNK)
    scale = torch.cat([distances(lo).topk(rank, dim=1, largest=False).values[:, -1] for lo in starts])
    sigma = scale.clamp_min(1e-12) if config.scaling == "gdds" else scale.clamp_min(1e-12).sqrt()
    values, index = [], []
    for lo in starts:
        d = distances(lo)
        normalised = d / (sigma[lo : lo + DISTANCE_CHUNK, None] * sigma[None])
        top = (normalised if config.scaling == "gdds" else d).topk(k, dim=1, largest=False)
        values.append(normalised.gather(1, top.indices))
        index.append(top.indices)
    return torch.cat(index), -torch.cat(values) / config.bandwidth


def build_kernel(config: KernelConfig, vocab_size: int, mask_id: int, horizon: float) -> JumpKernel:
    """The kernel declared by ``config`` for the task vocabulary; ``horizon`` = Lambda(1)."""
    if isinstance(config, UniformKernelConfig):
        return UniformKernel(vocab_size, mask_id)
    if isinstance(config, MaskKernelConfig):
        return MaskKernel(vocab_size, mask_id)
    if isinstance(config, MatrixKernelConfig):
        if config.rows is not None:
            matrix = torch.tensor(config.rows, dtype=torch.float64)
        else:
            matrix = load_table(config.file)
        return MatrixKernel(matrix, vocab_size, mask_id, horizon)
    if config.embeddings is not None:
        table = load_table(config.embeddings)
    else:
        table = load_table(config.checkpoint, config.key)
    return KnnKernel(config, table, vocab_size, mask_id)
