"""Unconditional generation for the text task's sample metrics, keeping a self-correction
sampler's base samples and per-sample statistics so the effect of correction can be measured."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from components.batch import Batch
from components.noise.base import NoiseProcess
from components.samplers.base import Sampler
from components.samplers.self_correction import CorrectionStats, SelfCorrectionSampler


@dataclass(frozen=True)
class SampleSet:
    """Generations of one sampler, on the CPU. tokens: Long[N, L]; nfe: Long[N] model
    evaluations per sample; base: Long[N, L] the samples before correction and correction: their
    :class:`CorrectionStats` (both only for a self-correction sampler)."""

    tokens: torch.Tensor
    nfe: torch.Tensor
    base: torch.Tensor | None = None
    correction: CorrectionStats | None = None


def generate_samples(
    sampler: Sampler,
    model: torch.nn.Module,
    noise: NoiseProcess,
    *,
    num_samples: int,
    batch_size: int,
    seq_len: int,
    device: torch.device | str,
) -> SampleSet:
    """``num_samples`` unconditional sequences of ``seq_len`` tokens, ``batch_size`` at a time. A
    self-correction sampler runs as its base sampler followed by :meth:`correct`, exactly as its
    ``generate`` does, so the uncorrected samples are kept too."""
    tokens, nfe, base, stats = [], [], [], []
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        batch = Batch.unconditional(torch.zeros(n, seq_len, dtype=torch.long)).to(device)
        if isinstance(sampler, SelfCorrectionSampler):
            first = sampler.base.generate(model, noise, batch)
            corrected = sampler.correct(model, noise, batch, first.tokens)
            base.append(first.tokens.cpu())
            stats.append(sampler.stats)
            tokens.append(corrected.tokens.cpu())
            nfe.append((first.nfe + corrected.nfe).cpu())
        else:
            generation = sampler.generate(model, noise, batch)
            tokens.append(generation.tokens.cpu())
            nfe.append(generation.nfe.cpu())
    correction = None
    if stats:
        fields = CorrectionStats.__dataclass_fields__
        correction = CorrectionStats(**{f: torch.cat([getattr(s, f).cpu() for s in stats]) for f in fields})
    return SampleSet(torch.cat(tokens), torch.cat(nfe), torch.cat(base) if base else None, correction)


def correction_metrics(stats: CorrectionStats) -> dict[str, float]:
    """Means over samples: ``changes`` (positions that differ from the base sample),
    ``correction_iterations``, ``converged`` and ``early_stopped`` (fractions), ``init_acc`` and
    ``final_acc`` (agreement with the model's argmax before and after; NaN samples skipped)."""
    return {
        "changes": float(stats.changes.double().mean()),
        "correction_iterations": float(stats.iterations.double().mean()),
        "converged": float(stats.converged.double().mean()),
        "early_stopped": float(stats.early_stopped.double().mean()),
        "init_acc": float(stats.init_acc.double().nanmean()),
        "final_acc": float(stats.final_acc.double().nanmean()),
    }
