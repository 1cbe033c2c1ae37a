"""Generative perplexity judge (diffusion.md section 6): an AR run of ours scores generated text.

The judge is a finished run with ``task: text``, ``backbone: causal`` and ``loss: ar``, named by
its spec file and read from a checkpoint in the layout ``difflab run`` writes
(``<run folder>/step_N/state.pt`` holding ``model``, ``ema``, ``step``,
``spec_hash``). Nothing is downloaded: a judge whose tokenizer comes from the hub needs it in the
cache already. Hugging Face causal LMs are not supported as judges: ``transformers`` is not a
dependency of difflab.

Procedure for one sample (Long[L] ids of the evaluated model's tokenizer):

1. split at the evaluated tokenizer's eos into documents and decode each, skipping special tokens;
2. re-tokenize each document with the judge's tokenizer, joined by the judge's eos (so document
   boundaries survive; with the judge's own tokenizer this is the identity on encoded text);
3. cut the judge ids to the judge's context: ``truncate`` keeps the first ``context`` ids (GIDD),
   ``chunk`` scores every consecutive window of ``context`` ids, each from a fresh start;
4. score each window as the ``ar`` loss does (start token = the judge's mask id, causal pass at
   t = 0) and sum the NLL; gen PPL = exp(sum NLL / sum judge tokens) over all samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field

from components import backbones
from components.backbones.causal import shift_right, shift_valid
from components.metrics.text import GenerativePerplexity, NllSum
from components.registry import SpecModel
from components.tasks.registry import TASKS
from components.tasks.text.tokenizer import TextTokenizer

if TYPE_CHECKING:
    from components.spec.loading import ResolvedSpec
    from components.tasks.text.task import TextTask

Overflow = Literal["truncate", "chunk"]


class JudgeError(ValueError):
    """The judge cannot be used: wrong kind of run, no checkpoint, a checkpoint of another spec."""


class JudgeConfig(SpecModel):
    """``judge: {spec: experiments/text/local-ar.yaml}`` in the text task section."""

    spec: Path = Field(description="spec file of an AR run of ours (task text, backbone causal, loss ar)")
    checkpoint: Path | None = Field(
        None,
        description="its run folder (latest complete checkpoint), a checkpoint folder or a state.pt; "
        "default the spec's run folder {train.storage}/{name}-{hash[:12]}",
    )
    context: int | None = Field(None, ge=2, le=131_072, description="judge tokens per window; default the judge's seq_len")
    overflow: Overflow = Field(
        "truncate", description="truncate: score the first `context` judge tokens; chunk: every window of `context`"
    )
    batch_size: int = Field(32, ge=1, le=4096, description="windows per judge pass")


def checkpoint_file(path: Path) -> Path:
    """The state.pt that ``path`` names: the file itself, a checkpoint folder's, or the latest
    complete checkpoint of a run folder. Raises JudgeError when there is none."""
    if path.is_file():
        return path
    if (path / "state.pt").is_file():
        return path / "state.pt"
    steps = [p for p in path.glob("step_*") if p.name[5:].isdigit() and (p / "state.pt").is_file()]
    if not steps:
        raise JudgeError(f"judge: no checkpoint at {path} (train the judge's spec first: difflab run <spec>)")
    return max(steps, key=lambda p: int(p.name[5:])) / "state.pt"


def retokenize(tokens: Sequence[int], source: TextTokenizer, judge: TextTokenizer) -> list[int]:
    """Judge ids of one sample: ``tokens`` split at ``source``'s eos, each piece decoded without
    special tokens and encoded by ``judge``, pieces joined by ``judge``'s eos (procedure steps 1-2)."""
    pieces: list[list[int]] = [[]]
    for token in tokens:
        if token == source.eos_id:
            pieces.append([])
        else:
            pieces[-1].append(token)
    encoded = judge.encode_documents([source.decode(piece) for piece in pieces])
    return [token for document in encoded for token in document][:-1]


def windows(ids: Sequence[int], context: int, overflow: Overflow) -> list[list[int]]:
    """The scored windows of one sample's judge ids (procedure step 3); none for no ids."""
    if overflow == "truncate":
        return [list(ids[:context])] if ids else []
    return [list(ids[i : i + context]) for i in range(0, len(ids), context)]


@dataclass
class Judge:
    """A loaded judge. name: ``<spec name>-<hash[:12]> step <N>``; model: the causal backbone in
    eval mode; tokenizer: its task's tokenizer; context: judge tokens per window."""

    name: str
    model: torch.nn.Module
    tokenizer: TextTokenizer
    context: int
    overflow: Overflow
    batch_size: int

    def to(self, device: torch.device | str) -> "Judge":
        self.model.to(device)
        return self

    @torch.no_grad()
    def nll(self, documents: Sequence[Sequence[int]]) -> NllSum:
        """Summed NLL (nats) and token count of the judge over ``documents`` (lists of judge ids),
        windowed by :func:`windows`; ``sequences`` counts the documents."""
        device = next(self.model.parameters()).device
        cut = [w for ids in documents for w in windows(ids, self.context, self.overflow)]
        total = NllSum()
        for start in range(0, len(cut), self.batch_size):
            part = cut[start : start + self.batch_size]
            width = max(len(w) for w in part)
            ids = torch.full((len(part), width), self.tokenizer.pad_id, dtype=torch.long)
            for row, window in enumerate(part):
                ids[row, : len(window)] = torch.tensor(window)
            ids = ids.to(device)
            valid = (torch.arange(width) < torch.tensor([len(w) for w in part])[:, None]).to(device)
            inputs = shift_right(ids, self.tokenizer.mask_id)
            t = torch.zeros(len(part), device=device)
            logits = self.model(inputs, t, valid=shift_valid(valid), causal=True)
            nll = -torch.log_softmax(logits.float(), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
            total.add(nll, valid)
        return NllSum(total.nats, total.tokens, len(documents))

    def perplexity(self, samples: Sequence[Sequence[int]], source: TextTokenizer) -> GenerativePerplexity:
        """Generative PPL of samples given as ids of ``source`` (padding already removed)."""
        nll = self.nll([retokenize(sample, source, self.tokenizer) for sample in samples])
        same = source.fingerprint == self.tokenizer.fingerprint
        retokenization = (
            "decoded without special tokens, split into documents at eos, re-tokenized with the judge's "
            + ("tokenizer (the sampled one)" if same else f"tokenizer {self.tokenizer.fingerprint[:12]}")
            + ", documents joined by its eos"
        )
        return GenerativePerplexity(self.name, retokenization, self.context, nll, self.overflow)


def check_judge(config: JudgeConfig, cache_dir: Path) -> tuple[ResolvedSpec, TextTask]:
    """The judge's resolved spec and text task, its tokenizer prepared. Raises SpecError for a bad
    spec file and JudgeError for a run that is not an AR text run. The checkpoint may not exist
    yet (the judge can train alongside the runs it scores)."""
    # Imported here: components.spec imports every task kind, this module included.
    from components.spec.loading import load_spec

    resolved = load_spec(config.spec)
    spec = resolved.spec
    kinds = (spec.task.kind, spec.backbone.kind, spec.loss.kind)
    if kinds != ("text", "causal", "ar"):
        raise JudgeError(f"judge {config.spec}: needs task text, backbone causal, loss ar; got {', '.join(kinds)}")
    task = TASKS.build(spec.task, cache_dir=cache_dir)
    task.prepare_tokenizer()
    return resolved, task


def load_judge(config: JudgeConfig, cache_dir: Path) -> Judge:
    """The judge on the CPU (EMA weights when the run kept them), from ``config.checkpoint`` or
    the latest checkpoint of the spec's run folder. Raises JudgeError when there is no checkpoint,
    it was written by another spec, or the context exceeds the judge's seq_len."""
    resolved, task = check_judge(config, cache_dir)
    spec = resolved.spec
    path = checkpoint_file(config.checkpoint or Path(spec.train.storage) / f"{spec.name}-{resolved.short_hash}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("spec_hash") != resolved.hash:
        raise JudgeError(f"judge: {path} was written by another spec than {config.spec} (hash differs)")
    context = config.context or task.seq_len
    if context > task.seq_len:
        raise JudgeError(f"judge: context {context} exceeds the judge's seq_len {task.seq_len}")
    model = backbones.build(resolved.spec.backbone, vocab_size=task.vocab_size, seq_len=task.seq_len)
    model.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
    name = f"{resolved.spec.name}-{resolved.short_hash} step {int(state['step'])}"
    return Judge(name, model.eval(), task.tokenizer, context, config.overflow, config.batch_size)
