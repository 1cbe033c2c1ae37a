"""Forward noise processes, keyed by `noise.kind`."""

from typing import Any

from components.noise import gidd, masked, uniform  # noqa: F401  (registers the kinds)
from components.noise import edit, gdds  # noqa: F401  (registers the kinds)
from components.noise.base import InterpolatingNoise, NoiseProcess
from components.noise.registry import NOISES
from components.registry import SpecModel


def build(section: SpecModel | dict[str, Any], **context: Any) -> NoiseProcess:
    """Build the noise component declared by a spec section (model or plain dict).

    Context keywords are passed to the kind's constructor when it declares them (vocab_size, mask_id)."""
    return NOISES.build(section, **context)


__all__ = ["NOISES", "InterpolatingNoise", "NoiseProcess", "build"]
