"""GIDD self-correction (diffusion.md 3.3): generate with a base sampler, then repeatedly let the
model replace the tokens it disagrees with most, at a small fixed time t0."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import Field

from components.batch import Batch
from components.noise.base import NoiseProcess, clean_log_probs
from components.registry import SpecModel
from components.samplers.ancestral import AncestralConfig, model_logits, sample_categorical
from components.samplers.base import Generation, Sampler
from components.samplers.confidence import ConfidenceConfig, descending_ranks
from components.samplers.registry import SAMPLERS


class SelfCorrectionConfig(SpecModel):
    kind: Literal["self_correction"] = "self_correction"
    base: Annotated[AncestralConfig | ConfidenceConfig, Field(discriminator="kind")] = Field(
        default_factory=AncestralConfig, description="sampler that produces the finished sample"
    )
    t0: float = Field(0.01, gt=0.0, lt=1.0, description="time passed to the model while correcting")
    temperature: float = Field(0.1, gt=0.0, le=100.0, description="divides the logits of proposals")
    tokens_per_step: int = Field(1, ge=1, le=1_000_000, description="positions replaced per iteration")
    max_iters: int = Field(128, ge=1, le=100_000, description="correction iterations at most")
    patience: int = Field(
        32, ge=0, le=100_000, description="stop after this many iterations in a row without a new best accuracy"
    )

    @property
    def requires_noise(self) -> tuple[str, ...] | None:
        """The base sampler's noise requirement (read by the spec's cross-section check)."""
        return getattr(self.base, "requires_noise", None)


@dataclass(frozen=True)
class CorrectionStats:
    """Per-sequence record of one correction run, tensors of shape [B].

    Attributes:
        changes: Long, positions whose token differs from the base sample at the end.
        iterations: Long, model evaluations spent on correction (the rest of ``nfe`` is the base's).
        converged: Bool, stopped because an iteration changed nothing (also True for a sequence
            with no position to correct).
        early_stopped: Bool, stopped because accuracy did not reach a new best for more than
            ``patience`` iterations; that last iteration's replacements are discarded (as in GIDD).
        init_acc: Float, fraction of non-fixed positions where the base sample equals the model's
            argmax at t0 (NaN without such positions).
        final_acc: Float, the same for the last iteration's proposal against that iteration's
            argmax (GIDD's ``acc``).
    """

    changes: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor
    early_stopped: torch.Tensor
    init_acc: torch.Tensor
    final_acc: torch.Tensor


@SAMPLERS.register(SelfCorrectionConfig)
class SelfCorrectionSampler(Sampler):
    """Base sample, then GIDD correction iterations on each sequence until it stops.

    One iteration on a sequence z (fixed positions excluded throughout):
    1. p = softmax(model(z, t0) / temperature), mask logit at -inf; draw z'_i ~ p_i (float64).
    2. score_i = 1[z'_i != z_i] p_i(z'_i); replace the ``tokens_per_step`` highest-scoring
       positions that have a positive score by z'.
    3. acc = mean_i 1[z_new,i = argmax logits_i]. A new best resets patience, otherwise
       patience grows and the sequence stops once it exceeds ``patience`` (keeping z, not
       z_new). A sequence where nothing was replaced has converged and stops.

    After :meth:`generate` or :meth:`correct`, ``self.stats`` holds a :class:`CorrectionStats`
    for that batch; Generation.nfe counts base evaluations plus correction iterations.
    """

    def __init__(self, config: SelfCorrectionConfig):
        self.config = config
        self.base = SAMPLERS.build(config.base)
        self.stats: CorrectionStats | None = None

    @torch.no_grad()
    def generate(
        self, model: torch.nn.Module, noise: NoiseProcess, batch: Batch, steps: int | None = None
    ) -> Generation:
        """Base sample (``steps`` is passed to the base sampler), then :meth:`correct`."""
        first = self.base.generate(model, noise, batch, steps)
        corrected = self.correct(model, noise, batch, first.tokens)
        return Generation(corrected.tokens, first.nfe + corrected.nfe)

    @torch.no_grad()
    def correct(
        self, model: torch.nn.Module, noise: NoiseProcess, batch: Batch, tokens: torch.Tensor
    ) -> Generation:
        """Correct finished sequences ``tokens`` Long[B, L] (no masks; positions where
        ``batch.fixed`` is True are taken from ``batch.x0``). nfe counts correction iterations."""
        cfg = self.config
        fixed = batch.fixed
        editable = ~fixed
        start = torch.where(fixed, batch.x0, tokens)
        z = start.clone()
        size = len(batch)
        device = z.device
        iterations = torch.zeros(size, dtype=torch.long, device=device)
        converged = ~editable.any(-1)
        early_stopped = torch.zeros(size, dtype=torch.bool, device=device)
        init_acc = torch.full((size,), float("nan"), device=device)
        final_acc = torch.full((size,), float("nan"), device=device)
        best = torch.full((size,), float("-inf"), device=device)
        waited = torch.zeros(size, dtype=torch.long, device=device)
        active = ~converged

        for iteration in range(cfg.max_iters):
            rows = active.nonzero().squeeze(-1)
            if rows.numel() == 0:
                break
            zr, er = z[rows], editable[rows]
            t = torch.full((len(rows),), cfg.t0, device=device)
            valid = None if batch.valid is None else batch.valid[rows]
            logits = model_logits(model, zr, t, fixed[rows], valid)
            probs = clean_log_probs(logits / cfg.temperature, noise.mask_id).exp()
            proposal = sample_categorical(probs)
            chosen = probs.gather(-1, proposal.unsqueeze(-1)).squeeze(-1)
            score = torch.where(er & (proposal != zr), chosen, torch.zeros_like(chosen))
            replace = (score > 0) & (descending_ranks(score) < cfg.tokens_per_step)
            z_new = torch.where(replace, proposal, zr)

            argmax = probs.argmax(-1)
            count = er.sum(-1)
            if iteration == 0:
                init_acc[rows] = ((zr == argmax) & er).sum(-1) / count
            acc = ((z_new == argmax) & er).sum(-1) / count
            final_acc[rows] = acc
            iterations[rows] += 1

            improved = acc > best[rows]
            best[rows] = torch.where(improved, acc, best[rows])
            waited[rows] = torch.where(improved, 0, waited[rows] + 1)
            stop_early = waited[rows] > cfg.patience
            unchanged = ~replace.any(-1) & ~stop_early
            z[rows] = torch.where(stop_early.unsqueeze(-1), zr, z_new)
            early_stopped[rows] = stop_early
            converged[rows] = unchanged
            active[rows] = ~(stop_early | unchanged)

        self.stats = CorrectionStats(
            changes=(z != start).sum(-1),
            iterations=iterations,
            converged=converged,
            early_stopped=early_stopped,
            init_acc=init_acc,
            final_acc=final_acc,
        )
        return Generation(z, iterations.clone())
