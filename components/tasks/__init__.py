"""Tasks (data, tokenizer, metrics), keyed by `task.kind`."""

from typing import Any

from components.tasks.base import Task
from components.tasks.registry import TASKS
from components.tasks.sudoku import task as _sudoku  # noqa: F401  (registers kind "sudoku")
from components.tasks.text import task as _text  # noqa: F401  (registers kind "text")
from components.tasks.chat import task as _chat  # noqa: F401  (registers kind "chat")
from components.registry import SpecModel


def build(section: SpecModel | dict[str, Any], **context: Any) -> Task:
    """Build the tasks component declared by a spec section (model or plain dict).

    Context keywords are passed to the kind's constructor when it declares them (cache_dir)."""
    return TASKS.build(section, **context)


__all__ = ["TASKS", "Task", "build"]
