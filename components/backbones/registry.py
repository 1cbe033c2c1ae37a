"""The backbones registry, keyed by the spec's `kind:`."""

from components.registry import Registry
from components.backbones.base import Backbone

BACKBONES: Registry[Backbone] = Registry("backbones")
