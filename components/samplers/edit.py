"""Confidence decoding that may also edit already-filled tokens (for models trained on edit noise
with the loss over all tokens, diffusion.md section 5).

Each pass commits the k most confident unresolved positions (as ``confidence``) and, in the same
pass, replaces filled non-fixed tokens the model disagrees with: where the argmax differs from
the current token and has probability >= ``edit_threshold``, the ``edits_per_pass`` most
confident such positions take the argmax. Passes continue after the last commit until a pass
edits nothing, for at most ``max_passes`` in all.

With edit noise that has a deletion token, a filled token equal to it is removed: the row's free
suffix (after its last fixed position) closes the gap by shifting left and the freed last
positions become unresolved masks again. The deletion token is never placed outside that suffix.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from components.batch import Batch
from components.noise.base import NoiseProcess, clean_log_probs
from components.registry import SpecModel
from components.samplers.ancestral import model_logits
from components.samplers.base import Generation, Sampler
from components.samplers.confidence import Score, confidence, descending_ranks, per_pass
from components.samplers.registry import SAMPLERS


class EditSamplerConfig(SpecModel):
    """``sampler: {kind: edit, k: 1, edit_threshold: 0.9, edits_per_pass: 1, max_passes: 256}``."""

    kind: Literal["edit"] = "edit"
    k: int = Field(1, ge=1, le=1_000_000, description="unresolved positions committed per pass")
    score: Score = Field("max_prob", description="confidence used to rank unresolved positions")
    edit_threshold: float = Field(
        0.9, gt=0.0, le=1.0, description="a filled token is replaced when the argmax differs and has at least this probability"
    )
    edits_per_pass: int = Field(1, ge=0, le=1_000_000, description="filled tokens replaced per pass at most (0: never edit)")
    max_passes: int = Field(256, ge=1, le=1_000_000, description="model evaluations per sequence at most")


def free_suffix(fixed: torch.Tensor) -> torch.Tensor:
    """Bool[B, L]: positions after each row's last fixed position."""
    positions = torch.arange(fixed.shape[1], device=fixed.device)
    return positions > torch.where(fixed, positions, -1).amax(-1, keepdim=True)


def delete_marked(z: torch.Tensor, unresolved: torch.Tensor, deleted: torch.Tensor, mask_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove the ``deleted`` positions (Bool[B, L], inside the free suffix) by a stable left shift
    of the kept ones; the freed last positions become the mask and unresolved.
    Returns (z, unresolved)."""
    length = z.shape[1]
    keep = ~deleted
    order = torch.argsort((~keep).long(), dim=-1, stable=True)  # kept positions first, in order
    kept = keep.sum(-1, keepdim=True)
    tail = torch.arange(length, device=z.device) >= kept
    z = z.gather(1, order).masked_fill(tail, mask_id)
    return z, unresolved.gather(1, order) | tail


@SAMPLERS.register(EditSamplerConfig)
class EditSampler(Sampler):
    """See the module docstring. The model is called with t = #unresolved / #unknown per row
    (1 on the first pass, 0 once everything is filled): the masked fraction, the diffusion time of
    the mask stage only for the loglinear schedule (as in :class:`ConfidenceSampler`)."""

    def __init__(self, config: EditSamplerConfig):
        self.config = config

    @torch.no_grad()
    def generate(
        self, model: torch.nn.Module, noise: NoiseProcess, batch: Batch, steps: int | None = None
    ) -> Generation:
        """tokens: Long[B, L]; nfe: Long[B], passes per sequence. ``steps`` replaces k by
        ceil(#unknown / steps) per sequence."""
        cfg = self.config
        fixed = batch.fixed
        unknown = (~fixed).sum(-1)
        k = per_pass(unknown, cfg.k, steps)
        delete_id = getattr(noise, "delete_id", None)
        suffix = free_suffix(fixed)

        z = torch.where(fixed, batch.x0, noise.prior(tuple(fixed.shape), device=fixed.device))
        unresolved = ~fixed
        active = (~fixed).any(-1)
        nfe = torch.zeros_like(unknown)
        for _ in range(cfg.max_passes):
            rows = active.nonzero().squeeze(-1)
            if rows.numel() == 0:
                break
            zr, open_, fr = z[rows], unresolved[rows], fixed[rows]
            t = open_.sum(-1).float() / unknown[rows].float()
            valid = None if batch.valid is None else batch.valid[rows]
            probs = clean_log_probs(model_logits(model, zr, t, fr, valid), noise.mask_id).exp()
            if delete_id is not None:
                probs[..., delete_id] *= suffix[rows]
            tokens = probs.argmax(-1)
            best = probs.gather(-1, tokens[..., None]).squeeze(-1)

            score = confidence(probs, tokens, cfg.score).masked_fill(~open_, float("-inf"))
            commit = open_ & (descending_ranks(score) < k[rows, None])
            filled = ~fr & ~open_
            candidate = filled & (tokens != zr) & (best >= cfg.edit_threshold)
            ranked = descending_ranks(best.masked_fill(~candidate, float("-inf")))
            edit = candidate & (ranked < cfg.edits_per_pass)
            zr = torch.where(commit | edit, tokens, zr)
            open_ = open_ & ~commit
            if delete_id is not None:
                zr, open_ = delete_marked(zr, open_, ~open_ & ~fr & (zr == delete_id), noise.mask_id)
            z[rows], unresolved[rows] = zr, open_
            nfe[rows] += 1
            active[rows] = open_.any(-1) | edit.any(-1)
        return Generation(z, nfe)
