"""Text tasks for the tinylm tier: each generates its own prompts and SFT corpus, offline and
deterministically from a seed, and owns its gold reward.

Adding a task = one file here defining a ``TextTask`` subclass, plus one line in ``TASKS``.
Tokens are whole words from the task's own small vocabulary (no tokenizer download). Prompts
have a fixed token length per task so batches need no left padding.
"""

from __future__ import annotations

from typing import Any

from evaluators.tasks.base import TextTask
from evaluators.tasks.sentiment import SentimentTask
from evaluators.tasks.sorting import SortingTask

TASKS: dict[str, type[TextTask]] = {
    "sentiment": SentimentTask,
    "sorting": SortingTask,
}


def make_task(name: str, **params: Any) -> TextTask:
    """The task called ``name`` built with its YAML ``task_params``."""
    try:
        cls = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
    return cls(**params)


__all__ = ["TASKS", "TextTask", "make_task"]
