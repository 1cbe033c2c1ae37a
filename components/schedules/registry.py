"""The time-sampling registry, keyed by ``schedule.time.kind``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from components.registry import Registry

if TYPE_CHECKING:
    from components.schedules.time import TimeSampler

TIME_SAMPLERS: Registry[TimeSampler] = Registry("schedule.time")
