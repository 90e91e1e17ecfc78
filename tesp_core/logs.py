"""Log output of ``tesp serve``: plain text or JSON lines, with the task id as a field.

The library only logs (``logging.getLogger(__name__)``); it installs no handler. The
``tesp serve`` command calls :func:`setup_logging` with the ``log_format`` and
``log_level`` settings.

Every line about a task already reads ``"task %s: ..."`` with the id as the first
argument; :class:`TaskIdFilter` lifts that id into a ``task_id`` attribute (unless the
call gave one with ``extra={"task_id": ...}``), so JSON lines carry it as a field of its
own and nobody has to parse messages. Both formats pass the final message through
:func:`~tesp_core.storage.redact.redact_text`, a last guard against a URL with a
credential slipping into a line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from tesp_core.storage.redact import redact_text

LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


def _task_id_of(record: logging.LogRecord) -> str | None:
    """The task id a ``"task %s: ..."`` line names, if the record is one."""
    msg, args = record.msg, record.args
    if not isinstance(msg, str) or not msg.startswith("task %s"):
        return None
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


class TaskIdFilter(logging.Filter):
    """Give every record about a task a ``task_id`` attribute; lets every record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``task_id`` when the record names a task (never drops a record)."""
        if getattr(record, "task_id", None) is None:
            task_id = _task_id_of(record)
            if task_id is not None:
                record.task_id = task_id
        return True


class TextFormatter(logging.Formatter):
    """The classic one-line format, with URLs in messages redacted."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line, with the message redacted."""
        record.message = redact_text(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, task_id, extras, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        task_id = getattr(record, "task_id", None)
        if task_id is not None:
            line["task_id"] = str(task_id)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info:
            line["exc_info"] = redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            line["stack_info"] = redact_text(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False)


def make_handler(log_format: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    """A stream handler (stderr by default) with the formatter and the task id filter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(TaskIdFilter())
    return handler


def setup_logging(
    log_format: LogFormat = "text", level: LogLevel = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Route every logger (uvicorn's too) to one root handler; replaces earlier handlers."""
    handler = make_handler(log_format, stream)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    return handler
