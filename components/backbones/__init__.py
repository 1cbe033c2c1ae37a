"""Denoiser networks, keyed by `backbone.kind`."""

from typing import Any

from components.backbones import causal, dit, encoder  # noqa: F401  (registers the kinds)
from components.backbones import hf, two_head  # noqa: F401  (registers the kinds)
from components.backbones.base import Backbone
from components.backbones.registry import BACKBONES
from components.registry import SpecModel


def build(section: SpecModel | dict[str, Any], **context: Any) -> Backbone:
    """Build the backbones component declared by a spec section (model or plain dict).

    Context keywords are passed to the kind's constructor when it declares them (vocab_size, seq_len)."""
    return BACKBONES.build(section, **context)


__all__ = ["BACKBONES", "Backbone", "build"]
