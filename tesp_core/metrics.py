"""Prometheus metrics of a TESP server, and the hooks the task service reports through.

:class:`TaskHooks` is what :class:`~tesp_core.service.TaskService` calls when something
worth counting happens (a backend call failed, a task reached its final state); the base
class does nothing, so a service without metrics pays nothing. :class:`Metrics` implements
the hooks on its own ``CollectorRegistry`` (never the global one: several servers, or
tests, may live in one process) and is what ``/metrics`` renders.

Label values come from fixed sets (states, route templates, URL schemes, operation names),
never from raw paths, task ids or URLs, so the series count stays bounded and no secret
can reach a label.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tesp_core.errors import BackendError, BackendJobLostError, BackendUnavailableError
from tesp_core.models import State, Task

log = logging.getLogger(__name__)

# Storage protocols with a driver; anything else is counted as "other".
PROTOCOLS = frozenset({"file", "http", "https", "ftp", "s3"})

# Task run times range from a second to days.
TASK_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, float("inf"))

_Kind = TypeVar("_Kind", Counter, Histogram)


class TaskHooks:
    """Events of the task lifecycle, reported by the service. These defaults do nothing.

    Implementations must be cheap and must not raise: they run on the dispatch path.
    """

    def backend_error(self, operation: str, exc: BaseException) -> None:
        """A backend call (``submit``, ``poll``, ``cancel``, ``clean``) failed with ``exc``."""

    def task_finished(self, task: Task, result: dict[str, Any] | None) -> None:
        """``task`` reached its final state; ``result`` is the worker's result.json, if any."""


def error_kind(exc: BaseException) -> str:
    """The label of a backend error: ``unavailable``, ``job_lost``, ``error`` or ``other``."""
    if isinstance(exc, BackendUnavailableError):
        return "unavailable"
    if isinstance(exc, BackendJobLostError):
        return "job_lost"
    if isinstance(exc, BackendError):
        return "error"
    return "other"


def protocol_of(url: str) -> str:
    """The storage protocol label of a URL (a plain path is ``file``)."""
    try:
        scheme = urlsplit(url).scheme.lower() or "file"
    except ValueError:
        return "other"
    return scheme if scheme in PROTOCOLS else "other"


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    except (ValueError, TypeError):
        return None
    return max(delta.total_seconds(), 0.0)


def staged_bytes(entries: object) -> Iterator[tuple[str, int]]:
    """``(protocol, bytes)`` of each ``inputs``/``outputs`` entry of a result.json."""
    if not isinstance(entries, list):
        return
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            continue
        try:
            size = int(entry.get("size_bytes", 0))
        except (TypeError, ValueError):
            continue
        if size > 0:
            yield protocol_of(entry["url"]), size


class _TaskStateCollector(Collector):
    """``tesp_tasks{state}``: the tasks in each state, counted by the store at scrape time."""

    def __init__(self, count_by_state: Callable[[], dict[State, int]]) -> None:
        self._count = count_by_state

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("tesp_tasks", "Tasks in each TES state.", labels=["state"])
        try:
            counts = self._count()
        except Exception as exc:  # a scrape must not fail because the store is down
            log.warning("counting tasks by state failed: %s", type(exc).__name__)
            return
        for state in State:
            gauge.add_metric([state.value], float(counts.get(state, 0)))
        yield gauge


class Metrics(TaskHooks):
    """Every metric of one server, on a registry of its own."""

    def __init__(self, count_by_state: Callable[[], dict[State, int]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = self._metric(
            Counter,
            "tesp_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
        )
        self.latency = self._metric(
            Histogram,
            "tesp_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
        )
        self.backend_errors = self._metric(
            Counter,
            "tesp_backend_errors",
            "Failed backend (Pulsar) calls, by backend, operation and kind of error.",
            ["backend", "operation", "kind"],
        )
        self.staging_bytes = self._metric(
            Counter,
            "tesp_staging_bytes",
            "Bytes the workers downloaded for inputs and uploaded for outputs, by protocol.",
            ["direction", "protocol"],
        )
        self.task_duration = self._metric(
            Histogram,
            "tesp_task_duration_seconds",
            "Time from a task's creation to its end, by final state.",
            ["state"],
            buckets=TASK_BUCKETS,
        )
        self.tasks_finished = self._metric(
            Counter,
            "tesp_tasks_finished",
            "Tasks that reached a final state, by state.",
            ["state"],
        )
        self.registry.register(_TaskStateCollector(count_by_state))

    def _metric(
        self, kind: type[_Kind], name: str, doc: str, labels: Sequence[str], **options: Any
    ) -> _Kind:
        """A ``kind`` metric (with ``options`` such as buckets) on this server's registry."""
        return kind(name, doc, labels, registry=self.registry, **options)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered HTTP request (``route`` is a template, never a raw path)."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def backend_error(self, operation: str, exc: BaseException) -> None:
        """Count a failed backend call (backend "none": no backend was chosen yet)."""
        backend = getattr(exc, "backend", None) or "none"
        self.backend_errors.labels(backend, operation, error_kind(exc)).inc()

    def task_finished(self, task: Task, result: dict[str, Any] | None) -> None:
        """Count the final state, the duration and the bytes the worker staged."""
        try:
            self._task_finished(task, result)
        except Exception:  # metrics must never break a task's last state change
            log.exception("task %s: recording metrics failed", task.id)

    def _task_finished(self, task: Task, result: dict[str, Any] | None) -> None:
        state = (task.state or State.UNKNOWN).value
        self.tasks_finished.labels(state).inc()
        end = task.logs[0].end_time if task.logs else None
        seconds = _seconds_between(task.creation_time, end)
        if seconds is not None:
            self.task_duration.labels(state).observe(seconds)
        if result is None:
            return
        for direction, key in (("input", "inputs"), ("output", "outputs")):
            for protocol, size in staged_bytes(result.get(key)):
                self.staging_bytes.labels(direction, protocol).inc(size)

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)
