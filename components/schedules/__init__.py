"""Schedules: diffusion-time sampling and learning rate."""

from typing import Any

from components.registry import SpecModel
from components.schedules.lr import LrSchedule
from components.schedules.registry import TIME_SAMPLERS
from components.schedules.time import TimeSampler


def build_time(section: SpecModel | dict[str, Any]) -> TimeSampler:
    """Build a time sampler from a ``schedule.time`` section."""
    return TIME_SAMPLERS.build(section)


__all__ = ["LrSchedule", "TIME_SAMPLERS", "TimeSampler", "build_time"]
