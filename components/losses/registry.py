"""The losses registry, keyed by the spec's `kind:`."""

from components.registry import Registry
from components.losses.base import Loss

LOSSES: Registry[Loss] = Registry("losses")
