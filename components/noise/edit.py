"""Seed-Diffusion-style edit noise (after Song et al. 2025; docs/math.md "Forward processes"):
masking plus edits of the visible ("gold") tokens, with a two-stage curriculum.

Per non-fixed position: masked with probability 1 - alpha_t (as ``noise: masked``). In the edit
stage, every visible non-fixed token is also substituted, with probability r_t, by a uniformly
drawn *different* non-mask token (so each substitution is a real corruption; r_t = substitution,
or substitution * t with ``substitution_schedule: linear``, Seed Diffusion's edits growing with
the noise level). With ``deletion``, the edit stage also inserts spurious random tokens into the
free suffix of a sequence, which the model must learn to mark with the vocabulary's deletion
token (fixed-length version of an insertion edit, see :meth:`EditNoise.draw`).

Curriculum: the edit stage is on once training progress (``set_progress``) reaches ``edit_from``
(0.8: Seed Diffusion's mask-only first 80%; 0: mask + edit from the start). The curriculum lives
on the noise section because it schedules this process's edits and nothing else; it travels with
the noise in ``extends`` and is swept as ``noise.edit_from``.

Not an ELBO-bearing process: its losses report the ELBO of the mask-only process (the same draw
with edits off) separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field

from components.noise.base import SCHEDULE_HELP, NoiseProcess, Schedule, check_vocabulary, schedule_end, scheduled_alpha
from components.noise.kernels import draw_excluding
from components.noise.registry import NOISES
from components.registry import BuildError, SpecModel


class DeletionConfig(SpecModel):
    """``deletion: {token: 50257, rate: 0.02}``; only for a vocabulary that has a dedicated
    deletion-marker token (Sudoku has none)."""

    token: int = Field(ge=0, le=100_000_000, description="id of the deletion-marker token in the task vocabulary")
    rate: float = Field(
        0.02, gt=0.0, le=0.5, description="per-position probability of an inserted spurious token (edit stage)"
    )


class EditNoiseConfig(SpecModel):
    """``noise: {kind: edit, substitution: 0.1, edit_from: 0.8}``."""

    kind: Literal["edit"] = "edit"
    schedule: Schedule = Field("loglinear", description=SCHEDULE_HELP)
    eps: float = Field(1e-3, ge=0.0, lt=1.0, description="mask schedule offset: alpha_1 = eps")
    substitution: float = Field(
        0.1, ge=0.0, le=1.0, description="edit stage: probability that a visible token is replaced by another token"
    )
    substitution_schedule: Literal["constant", "linear"] = Field(
        "constant", description="constant: rate = substitution; linear: rate = substitution * t"
    )
    edit_from: float = Field(
        0.8, ge=0.0, le=1.0, description="training fraction at which edits start (0: from the start; 1: never)"
    )
    deletion: DeletionConfig | None = Field(None, description="insertions marked by a deletion token (edit stage)")


@dataclass(frozen=True)
class EditDraw:
    """One draw of the edit process, all Long/Bool[B, L].

    Attributes:
        zt: the noisy tokens.
        target: what each position of zt should become: x0, shifted right past insertions, with
            the deletion token at inserted positions (equal to x0 without insertions).
        masked: positions holding the mask token.
        substituted: visible positions holding a wrong token (a substitution).
        inserted: positions holding an inserted spurious token (target: the deletion token).
    """

    zt: torch.Tensor
    target: torch.Tensor
    masked: torch.Tensor
    substituted: torch.Tensor
    inserted: torch.Tensor

    @property
    def corrupted(self) -> torch.Tensor:
        """Bool[B, L]: zt differs from target (masked, substituted or inserted)."""
        return self.masked | self.substituted | self.inserted


@NOISES.register(EditNoiseConfig)
class EditNoise(NoiseProcess):
    """See the module docstring. ``progress`` is the latest training fraction (0 until set)."""

    def __init__(self, config: EditNoiseConfig, *, vocab_size: int, mask_id: int):
        check_vocabulary(vocab_size, mask_id)
        special = [mask_id] if config.deletion is None else [mask_id, config.deletion.token]
        if config.deletion is not None and not (0 <= config.deletion.token < vocab_size and config.deletion.token != mask_id):
            raise BuildError(
                f"noise (edit): deletion.token {config.deletion.token} is not a non-mask token id of this "
                f"vocabulary (V = {vocab_size}, mask {mask_id})"
            )
        if vocab_size - len(special) < 2 and config.substitution > 0:
            raise BuildError("noise (edit): substitutions need at least 2 ordinary tokens")
        self.config = config
        self.vocab_size = vocab_size
        self.mask_id = mask_id
        self.delete_id = None if config.deletion is None else config.deletion.token
        self.progress = 0.0

    def set_progress(self, fraction: float) -> None:
        self.progress = fraction

    @property
    def edits_active(self) -> bool:
        """Whether the curriculum is in its edit stage at the latest progress."""
        return self.progress >= self.config.edit_from

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_t = P(not masked), Float64[B]."""
        return scheduled_alpha(self.config.schedule, self.config.eps, t)[0]

    def alpha_prime(self, t: torch.Tensor) -> torch.Tensor:
        """d alpha_t / dt, Float64[B]."""
        return scheduled_alpha(self.config.schedule, self.config.eps, t)[1]

    @property
    def prior_time(self) -> float:
        return schedule_end(self.config.schedule, self.config.eps)

    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """0: the mask-only process is all mask at T (alpha_T = 0), which is the prior."""
        return torch.zeros(x0.shape, dtype=torch.float64, device=x0.device)

    def substitution_rate(self, t: torch.Tensor) -> torch.Tensor:
        """r_t, the edit-stage probability that a visible token is substituted, Float64[B]."""
        rate = torch.full_like(t, self.config.substitution, dtype=torch.float64)
        return rate * t.double() if self.config.substitution_schedule == "linear" else rate

    def draw(
        self, x0: torch.Tensor, t: torch.Tensor, fixed: torch.Tensor | None = None, edits: bool | None = None
    ) -> EditDraw:
        """x0: Long[B, L]; t: Float[B]; fixed: Bool[B, L] positions copied unchanged (and never
        shifted); edits: force the edit stage on/off (None: the curriculum decides).

        Insertions (with ``deletion``) happen only in a row's free suffix, after its last fixed
        position: each such position i gets, with probability deletion.rate, a random ordinary
        token inserted before it; the rest of the row shifts right by one and its last token
        falls off. The target shifts the same way and holds the deletion token at insertions."""
        fixed = torch.zeros_like(x0, dtype=torch.bool) if fixed is None else fixed
        edits = self.edits_active if edits is None else edits
        device = x0.device
        free = ~fixed
        masked = free & (torch.rand(x0.shape, dtype=torch.float64, device=device) >= self.alpha(t).to(device)[:, None])
        zt = x0.masked_fill(masked, self.mask_id)
        substituted = torch.zeros_like(masked)
        inserted = torch.zeros_like(masked)
        target = x0
        if edits and self.config.substitution > 0:
            rate = self.substitution_rate(t).to(device)[:, None]
            substituted = free & ~masked & (torch.rand(x0.shape, dtype=torch.float64, device=device) < rate)
            zt = torch.where(substituted, self.random_tokens(x0.shape, x0, device), zt)
        if edits and self.config.deletion is not None:
            zt, target, masked, substituted, inserted = self.insert(x0, zt, masked, substituted, fixed)
        return EditDraw(zt=zt, target=target, masked=masked, substituted=substituted, inserted=inserted)

    def random_tokens(self, shape: torch.Size, avoid: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """Long[shape]: uniform over the ordinary tokens (neither the mask nor the deletion token),
        other than ``avoid`` (Long[shape] of ordinary tokens) at each position when given."""
        count = int(torch.Size(shape).numel())
        specials = [self.mask_id] if self.delete_id is None else [self.mask_id, self.delete_id]
        excluded = [torch.full((count,), s, device=device) for s in specials]
        if avoid is not None:
            excluded.append(avoid.reshape(-1))
        return draw_excluding(count, self.vocab_size, excluded, device).view(shape)

    def insert(
        self, x0: torch.Tensor, zt: torch.Tensor, masked: torch.Tensor, substituted: torch.Tensor, fixed: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Apply insertions (see :meth:`draw`); returns the shifted (zt, target, masked,
        substituted, inserted). Source position i moves to i + c_i and an insertion before it
        sits at i + c_i - 1, where c_i counts the insertions at positions <= i; everything is
        scattered into a [B, 2L] buffer (column 2L - 1 collects the unused writes) and cut to L."""
        batch, length = x0.shape
        positions = torch.arange(length, device=x0.device)
        last_fixed = torch.where(fixed, positions, -1).amax(-1, keepdim=True)
        before = (positions > last_fixed) & (torch.rand(x0.shape, device=x0.device) < self.config.deletion.rate)
        shift = before.long().cumsum(-1)
        source_at = positions + shift
        insert_at = torch.where(before, positions + shift - 1, 2 * length - 1)
        spurious = self.random_tokens(x0.shape, None, x0.device)

        def place(source: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(batch, 2 * length, dtype=source.dtype, device=x0.device)
            out.scatter_(1, insert_at, extra)
            out.scatter_(1, source_at, source)
            return out[:, :length]

        none = torch.zeros_like(before)
        return (
            place(zt, spurious),
            place(x0, torch.full_like(x0, self.delete_id)),
            place(masked, none),
            place(substituted, none),
            place(none, before),
        )

    def sample(self, x0: torch.Tensor, t: torch.Tensor, fixed: torch.Tensor | None = None) -> torch.Tensor:
        """z_t of :meth:`draw` (with ``deletion`` in the edit stage it is aligned with the draw's
        target, not with x0)."""
        return self.draw(x0, t, fixed).zt

    def prior(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
        """All mask (alpha_1 = eps: the edit-stage substitutions act only on visible tokens)."""
        return torch.full(shape, self.mask_id, dtype=torch.long, device=device)
