"""Which positions of a chat row are fixed, valid and scored, and the end-of-answer remedies.

A row is ``[context][answer][tail]`` (see examples.py). The context is fixed (never noised or
scored) with ``loss_on: assistant`` and scored like the answer with ``loss_on: all``. The tail
depends on ``end_remedy``:

- ``none``: the tail is padding (fixed, not attended): every training window the model sees
  ends with the end token, which is what teaches it to put ``<|im_end|>`` at the end of
  whatever window it is given (the failure diffusionGPT reported).
- ``scored_padding``: after an answer that kept its end token the tail is pad tokens that are
  attended and scored, so the model learns to fill the rest of the window with pad after the
  end of an answer; the answer length is then chosen by the model (LLaDA's SFT recipe,
  Nie et al. 2025, pads with end-of-text tokens the same way).
- ``random_cut``: with probability ``cut_probability`` the window ends after a uniformly drawn
  number 1 .. a - 1 of the a answer tokens, without the end token (the rest becomes padding);
  the window's end is then no longer a sign that the answer ends.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from components.batch import Batch
from components.tasks.chat.examples import ExampleArrays

LossOn = Literal["assistant", "all"]
EndRemedy = Literal["none", "scored_padding", "random_cut"]


def rows_to_batch(
    arrays: ExampleArrays,
    rows: np.ndarray,
    *,
    pad_id: int,
    loss_on: LossOn,
    end_remedy: EndRemedy,
    cut_probability: float,
    rng: np.random.Generator,
) -> Batch:
    """The examples ``rows`` (Int[B]) as a Batch of Long[B, seq_len]; ``rng`` draws the cuts."""
    x0 = torch.from_numpy(arrays.tokens[rows].astype(np.int64))
    context = torch.from_numpy(arrays.context[rows].astype(np.int64))[:, None]
    answer = arrays.answer[rows].astype(np.int64)
    ended = torch.from_numpy(arrays.ended[rows])[:, None]
    if end_remedy == "random_cut":
        cut = (rng.random(len(rows)) < cut_probability) & (answer >= 2)
        kept = rng.integers(1, np.maximum(answer, 2))  # 1 .. a - 1
        answer = np.where(cut, kept, answer)
        ended = ended & ~torch.from_numpy(cut)[:, None]
    end = context + torch.from_numpy(answer)[:, None]
    position = torch.arange(x0.shape[1])[None, :]
    tail = position >= end
    x0 = x0.masked_fill(tail, pad_id)
    valid = ~tail | ended if end_remedy == "scored_padding" else ~tail
    fixed = ~valid
    if loss_on == "assistant":
        fixed = fixed | (position < context)
    return Batch(x0=x0, fixed=fixed, valid=valid)


def prompt_batch(arrays: ExampleArrays, rows: np.ndarray, pad_id: int) -> Batch:
    """Generation input for the examples ``rows``: the context fixed, every later position open
    (x0 holds pad there; a sampler chooses the answer and its length)."""
    x0 = torch.from_numpy(arrays.tokens[rows].astype(np.int64))
    context = torch.from_numpy(arrays.context[rows].astype(np.int64))[:, None]
    fixed = torch.arange(x0.shape[1])[None, :] < context
    return Batch(x0=x0.masked_fill(~fixed, pad_id), fixed=fixed, valid=torch.ones_like(fixed))
