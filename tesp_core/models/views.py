"""The MINIMAL / BASIC / FULL views of a task (``GET /tasks/{id}?view=``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from tesp_core.models.task import Task

_SECRET_ENV = re.compile(
    r"(?i)(secret|password|passwd|token|credential|private|(^|_)key$|access_key|api_?key)"
)


class View(StrEnum):
    """How much of a task a response carries."""

    MINIMAL = "MINIMAL"
    BASIC = "BASIC"
    FULL = "FULL"


def render(
    task: Task, view: View, *, redact_url: Callable[[str], str] | None = None
) -> dict[str, Any]:
    """Serialize ``task`` for ``view``.

    MINIMAL is ``id`` and ``state``. BASIC is everything but executor stdout/stderr, input
    ``content`` and ``system_logs``. FULL is everything. ``redact_url`` (the server passes
    ``tesp_core.storage.redact_url``; models import nothing of TESP) rewrites every
    ``inputs[].url`` and ``outputs[].url``, so credentials a client put in a URL are not
    shown back; the stored task keeps the real URL for the worker.
    """
    if view is View.MINIMAL:
        return {"id": task.id, "state": task.state}
    return render_document(task.model_dump(mode="json", exclude_none=True), view, redact_url)


def render_document(
    data: dict[str, Any], view: View, redact_url: Callable[[str], str] | None = None
) -> dict[str, Any]:
    """:func:`render` on a task's JSON document (as stored), changing it in place.

    The listing path uses this: parsing stored JSON is several times cheaper than
    building models for every task of a page.
    """
    if view is View.MINIMAL:
        return {"id": data.get("id"), "state": data.get("state")}
    if redact_url is not None:
        # Secrets a client passes to its command (e.g. storage keys) are shown masked.
        for executor in data.get("executors", []):
            env = executor.get("env") or {}
            for key in env:
                if _SECRET_ENV.search(key):
                    env[key] = "***"
        for item in [*data.get("inputs", []), *data.get("outputs", [])]:
            if "url" in item:
                item["url"] = redact_url(item["url"])
    if view is View.BASIC:
        for item in data.get("inputs", []):
            item.pop("content", None)
        for log in data.get("logs", []):
            log.pop("system_logs", None)
            for executor_log in log.get("logs", []):
                executor_log.pop("stdout", None)
                executor_log.pop("stderr", None)
    return data
