"""The noise registry, keyed by the spec's `kind:`."""

from components.registry import Registry
from components.noise.base import NoiseProcess

NOISES: Registry[NoiseProcess] = Registry("noise")
