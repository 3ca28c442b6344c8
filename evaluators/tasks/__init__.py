"""Text tasks for the tinylm tier: each generates its own prompts and SFT corpus, offline and
deterministically from a seed, and owns its gold reward.

Adding a task = one file here defining a ``TextTask`` subclass with its ``name``: every module of
this package is imported and every ``TextTask`` subclass with a name of its own becomes a task.
Tokens are whole words from the task's own small vocabulary (no tokenizer download). Prompts
have a fixed token length per task so batches need no left padding.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from evaluators.tasks.base import TextTask


def _discover() -> dict[str, type[TextTask]]:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    tasks: dict[str, type[TextTask]] = {}
    todo = list(TextTask.__subclasses__())
    while todo:
        cls = todo.pop(0)
        todo.extend(cls.__subclasses__())
        if cls.name != TextTask.name and not getattr(cls, "__abstractmethods__", None):
            if tasks.setdefault(cls.name, cls) is not cls:
                raise TypeError(f"two tasks are named {cls.name!r}: {tasks[cls.name].__name__}, {cls.__name__}")
    return dict(sorted(tasks.items()))


TASKS: dict[str, type[TextTask]] = _discover()


def make_task(name: str, **params: Any) -> TextTask:
    """The task called ``name`` built with its YAML ``task_params``."""
    try:
        cls = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
    return cls(**params)


__all__ = ["TASKS", "TextTask", "make_task"]
