"""Training losses and ELBOs, keyed by `loss.kind`."""

from typing import Any

from components.losses import ar, gidd, mdlm, mixture, x0_ce  # noqa: F401  (registers the kinds)
from components.losses import edit, snapshot, two_head  # noqa: F401  (registers the kinds)
from components.losses.base import Loss, LossOutput
from components.losses.registry import LOSSES
from components.registry import SpecModel


def build(section: SpecModel | dict[str, Any], **context: Any) -> Loss:
    """Build the losses component declared by a spec section (model or plain dict).

    Context keywords are passed to the kind's constructor when it declares them (noise)."""
    return LOSSES.build(section, **context)


__all__ = ["LOSSES", "Loss", "LossOutput", "build"]
