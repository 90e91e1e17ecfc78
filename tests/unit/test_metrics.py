"""Metrics bookkeeping without a server: finished tasks, staged bytes, registries."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tesp_core.errors import BackendJobLostError, BackendUnavailableError
from tesp_core.metrics import Metrics, protocol_of
from tesp_core.models import Executor, State, Task, TaskLog


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def _task(state: State) -> Task:
    return Task(
        id="t1",
        state=state,
        creation_time="2026-12-03T10:00:00+00:00",
        executors=[Executor(image="alpine", command=["true"])],
        logs=[TaskLog(end_time="2026-12-03T10:00:07.5+00:00")],
    )


def test_finished_task_counts_state_duration_and_bytes() -> None:
    metrics = Metrics(lambda: {State.COMPLETE: 4})
    result = {
        "inputs": [
            {"url": "s3://b/k", "path": "/a", "size_bytes": "10"},
            {"url": "s3://b/k2", "path": "/b", "size_bytes": "5"},
            {"url": "gopher://x/y", "path": "/c", "size_bytes": "1"},
            {"url": "https://h/x", "path": "/d", "size_bytes": "not a number"},
            "garbage",
        ],
        "outputs": [{"url": "/srv/plain/path", "path": "/o", "size_bytes": "3"}],
    }
    metrics.task_finished(_task(State.COMPLETE), result)
    assert _value(metrics, "tesp_tasks_finished_total", state="COMPLETE") == 1
    assert _value(metrics, "tesp_task_duration_seconds_sum", state="COMPLETE") == 7.5
    assert _value(metrics, "tesp_staging_bytes_total", direction="input", protocol="s3") == 15
    assert _value(metrics, "tesp_staging_bytes_total", direction="input", protocol="other") == 1
    assert _value(metrics, "tesp_staging_bytes_total", direction="output", protocol="file") == 3
    assert _value(metrics, "tesp_tasks", state="COMPLETE") == 4
    assert _value(metrics, "tesp_tasks", state="QUEUED") == 0


def test_backend_errors_by_operation_and_kind() -> None:
    metrics = Metrics(dict)
    down = BackendUnavailableError("down")
    down.backend = "b"  # as the router names the backend that failed
    metrics.backend_error("submit", down)
    metrics.backend_error("submit", down)
    metrics.backend_error("poll", BackendJobLostError("gone"))
    assert (
        _value(
            metrics,
            "tesp_backend_errors_total",
            backend="b",
            operation="submit",
            kind="unavailable",
        )
        == 2
    )
    assert (
        _value(
            metrics, "tesp_backend_errors_total", backend="none", operation="poll", kind="job_lost"
        )
        == 1
    )


def test_registries_are_per_instance_and_a_failing_store_does_not_break_a_scrape() -> None:
    def broken() -> dict[State, int]:
        raise OSError("database is locked")

    first, second = Metrics(broken), Metrics(dict)
    first.observe_request("GET", "/tasks", 200, 0.01)
    assert (
        _value(first, "tesp_http_requests_total", method="GET", route="/tasks", status="200") == 1
    )
    assert (
        _value(second, "tesp_http_requests_total", method="GET", route="/tasks", status="200") == 0
    )
    assert "tesp_tasks{" not in first.render().decode()


def test_protocol_labels() -> None:
    assert [protocol_of(u) for u in ("HTTPS://h/x", "/p", "file:///p", "ftp://h/", "x:y")] == [
        "https",
        "file",
        "file",
        "ftp",
        "other",
    ]
