"""The tasks registry, keyed by the spec's `kind:`."""

from components.registry import Registry
from components.tasks.base import Task

TASKS: Registry[Task] = Registry("tasks")
