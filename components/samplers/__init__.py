"""Samplers (reverse processes and decoding strategies), keyed by `sampler.kind`."""

from typing import Any

from components.samplers import ancestral, autoregressive, confidence, self_correction  # noqa: F401  (registers the kinds)
from components.samplers import edit, gated  # noqa: F401  (registers the kinds)
from components.samplers import semi_ar  # noqa: F401  (last: its inner sampler is any kind above)
from components.samplers.base import Sampler
from components.samplers.registry import SAMPLERS
from components.registry import SpecModel


def build(section: SpecModel | dict[str, Any], **context: Any) -> Sampler:
    """Build the samplers component declared by a spec section (model or plain dict).

    Context keywords are passed to the kind's constructor when it declares them."""
    return SAMPLERS.build(section, **context)


__all__ = ["SAMPLERS", "Sampler", "build"]
