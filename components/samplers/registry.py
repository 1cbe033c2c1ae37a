"""The samplers registry, keyed by the spec's `kind:`."""

from components.registry import Registry
from components.samplers.base import Sampler

SAMPLERS: Registry[Sampler] = Registry("samplers")
