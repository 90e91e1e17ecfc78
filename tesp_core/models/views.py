"""The MINIMAL / BASIC / FULL views of a task (``GET /tasks/{id}?view=``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tesp_core.models.task import Task


class View(StrEnum):
    """How much of a task a response carries."""

    MINIMAL = "MINIMAL"
    BASIC = "BASIC"
    FULL = "FULL"


def render(task: Task, view: View) -> dict[str, Any]:
    """Serialize ``task`` for ``view``.

    MINIMAL is ``id`` and ``state``. BASIC is everything but executor stdout/stderr, input
    ``content`` and ``system_logs``. FULL is everything.
    """
    if view is View.MINIMAL:
        return {"id": task.id, "state": task.state}
    data = task.model_dump(mode="json", exclude_none=True)
    if view is View.BASIC:
        for item in data.get("inputs", []):
            item.pop("content", None)
        for log in data.get("logs", []):
            log.pop("system_logs", None)
            for executor_log in log.get("logs", []):
                executor_log.pop("stdout", None)
                executor_log.pop("stderr", None)
    return data
