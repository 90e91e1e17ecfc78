"""The log formats of ``tesp serve``: the task id field, JSON lines, redaction, setup."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from tesp_core.logs import JsonFormatter, TaskIdFilter, TextFormatter, make_handler, setup_logging

TASK_ID = "0ea303f9-6ffa-4521-bf8f-b34d72c405f2"
SECRET = "hunter2-secret"


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger writing JSON lines into a buffer (nothing propagates)."""
    stream = io.StringIO()
    log = logging.getLogger("tests.unit.test_logs")
    log.handlers[:] = [make_handler("json", stream)]
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log, stream
    log.handlers.clear()
    log.propagate = True


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("tesp_core.service", logging.INFO, __file__, 1, msg, args, None)


def test_filter_lifts_the_task_id_of_a_task_line() -> None:
    record = _record("task %s: %s -> %s", TASK_ID, "QUEUED", "RUNNING")
    assert TaskIdFilter().filter(record) is True
    assert getattr(record, "task_id") == TASK_ID  # noqa: B009


def test_filter_leaves_other_lines_alone() -> None:
    for record in (
        _record("recovered %d running and %d queued tasks", 1, 2),
        _record("task without an argument"),
        _record("task %s: odd", 42),
    ):
        assert TaskIdFilter().filter(record) is True
        assert not hasattr(record, "task_id")


def test_json_line_fields(logger: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = logger
    log.warning("task %s: backend unavailable, will retry: %s", TASK_ID, "refused")
    log.info("dispatch is off")
    first, second = _lines(stream)
    assert first["level"] == "WARNING"
    assert first["logger"] == "tests.unit.test_logs"
    assert first["message"] == f"task {TASK_ID}: backend unavailable, will retry: refused"
    assert first["task_id"] == TASK_ID
    assert str(first["time"]).endswith("+00:00")
    assert set(second) == {"time", "level", "logger", "message"}


def test_explicit_task_id_and_extras_win(logger: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = logger
    log.info("worker finished", extra={"task_id": "abc", "exit_code": 3})
    (line,) = _lines(stream)
    assert line["task_id"] == "abc"
    assert line["exit_code"] == 3


def test_json_redacts_urls_and_tracebacks(logger: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = logger
    url = f"https://user:{SECRET}@data.example/x?X-Amz-Signature={SECRET}"
    try:
        raise RuntimeError(f"fetching {url} failed")
    except RuntimeError:
        log.exception("task %s: staging %s", TASK_ID, url)
    text = stream.getvalue()
    assert SECRET not in text
    (line,) = _lines(stream)
    assert line["message"] == (
        f"task {TASK_ID}: staging https://user:***@data.example/x?X-Amz-Signature=***"
    )
    assert "RuntimeError: fetching https://user:***@data.example/x" in str(line["exc_info"])


def test_text_format_redacts_too() -> None:
    record = _record("task %s: input %s", TASK_ID, f"ftp://me:{SECRET}@host/file")
    line = TextFormatter().format(record)
    assert line.endswith(f"INFO [tesp_core.service] task {TASK_ID}: input ftp://me:***@host/file")


def test_request_lines_lose_their_query_credentials() -> None:
    # urllib3 logs "METHOD /path?query HTTP/1.1" at DEBUG: no scheme, so no URL to redact.
    record = _record(
        '%s://%s:%s "%s %s %s" %s %s',
        "http",
        "127.0.0.1",
        8913,
        "POST",
        f"/jobs?job_id=t1&private_token={SECRET}",
        "HTTP/1.1",
        200,
        951,
    )
    line = TextFormatter().format(record)
    assert SECRET not in line
    assert line.endswith('"POST /jobs?job_id=t1&private_token=*** HTTP/1.1" 200 951')


def test_json_formatter_is_one_line_per_record() -> None:
    line = JsonFormatter().format(_record("two\nlines %s", "x"))
    assert "\n" not in line
    assert json.loads(line)["message"] == "two\nlines x"


def test_setup_logging_routes_every_logger_to_one_handler() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        setup_logging("json", "WARNING", stream)
        logging.getLogger("tesp_core.service").info("task %s: not shown", TASK_ID)
        logging.getLogger("uvicorn.error").warning("task %s: shown", TASK_ID)
        assert root.level == logging.WARNING
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    (line,) = _lines(stream)
    assert (line["logger"], line["task_id"]) == ("uvicorn.error", TASK_ID)
