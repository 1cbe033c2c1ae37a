"""Resolved model sizes for ``difflab validate``: layers, heads, width and parameter counts.

The backbone is built on the meta device (shapes only: no memory, no initialisation), so the
count is exact for every backbone kind and costs milliseconds even for large presets. The
vocabulary size enters the count (embeddings, output layer); it is taken only from what is
known without a download: the task itself (Sudoku), or a tokenizer trained to a given size.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from components import backbones
from components.experiment import build_task
from components.spec.model import Spec
from components.structure import Structure
from pipelines.storage import cache_dir


class _ShapesOnly(TorchFunctionMode):
    """Skips in-place initialisers (``normal_``, ``zero_``, ...) on meta tensors: they carry no
    values, and torch's meta kernels for random fills cost seconds on their first call."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        target = args[0] if args else kwargs.get("tensor")
        if name.endswith("_") and not name.startswith("__") and isinstance(target, torch.Tensor) and target.is_meta:
            return target
        return func(*args, **kwargs)


def offline_vocab(spec: Spec) -> tuple[int, int, Structure] | None:
    """(vocabulary size, sequence length, the task's structure) when known without loading a
    tokenizer, else None."""
    task = spec.task
    tokenizer = getattr(task, "tokenizer", None)
    if tokenizer is not None:
        trained = getattr(tokenizer, "train", None)
        return (trained.vocab_size, task.seq_len, Structure.sequence(task.seq_len)) if trained is not None else None
    built = build_task(spec, cache_dir())
    return built.vocab_size, built.seq_len, built.structure()


def dims(config: Any) -> tuple[int, int, int] | None:
    """(layers, heads, width) of a backbone section after its preset, or None for kinds without
    them (a wrapper such as two_head reports its ``trunk``)."""
    if hasattr(config, "dims"):
        return config.dims()
    if all(hasattr(config, k) for k in ("layers", "heads", "width")):
        return config.layers, config.heads, config.width
    inner = getattr(config, "trunk", None)
    return dims(inner) if inner is not None else None


def parameter_counts(spec: Spec, vocab_size: int, seq_len: int, structure: Structure | None = None) -> tuple[int, int]:
    """(all parameters, parameters without token/position embeddings) of the spec's backbone;
    ``structure`` is the task's (needed by structured positions or attention)."""
    with torch.device("meta"), _ShapesOnly():
        model = backbones.build(spec.backbone, vocab_size=vocab_size, seq_len=seq_len, structure=structure)
    return model.num_parameters(exclude_embeddings=False), model.num_parameters()


def describe_model(spec: Spec) -> str:
    """One line: ``dit: 8 layers, 8 heads, width 512; 28,829,184 parameters (19,... without embeddings), vocabulary 50,258``."""
    config = spec.backbone
    sizes = dims(config)
    shape = f"{config.kind}: {sizes[0]} layers, {sizes[1]} heads, width {sizes[2]}" if sizes else config.kind
    known = offline_vocab(spec)
    if known is None:
        return f"{shape}; parameter count once the tokenizer is available (difflab run prints it)"
    total, body = parameter_counts(spec, *known)
    return f"{shape}; {total:,} parameters ({body:,} without embeddings) at vocabulary {known[0]:,}"
