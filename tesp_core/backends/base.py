"""The backend protocol: what the service needs from an execution system."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tesp_core.backends.pulsar import JobStatus
from tesp_core.models import Task


class Backend(Protocol):
    """Submit, poll, read back, cancel and clean jobs. Job ids are TES task ids."""

    def submit(self, job_id: str, spec: dict[str, Any], worker: Path, task: Task) -> None:
        """Launch the worker on ``spec`` as job ``job_id``.

        ``task`` is the TES task the spec was made from (read-only): its resources,
        ``backend_parameters`` and tags are what a scheduler or a router acts on.
        """

    def status(self, job_id: str) -> JobStatus:
        """Where the job is; BackendJobLostError if the backend forgot it."""

    def finished_hint(self, job_id: str) -> bool | None:
        """True/False when the backend can tell cheaply that the worker finished; None if
        it cannot (then the service asks for the status every poll)."""

    def watch_hint(self, job_id: str) -> tuple[int, ...] | None:
        """A fingerprint of the job's progress and result files that changes whenever the
        worker writes one, read without a round trip (a stat); None when the backend
        cannot see them. The service skips a poll while it stays the same."""

    def listen(self, on_change: Callable[[str], None]) -> None:
        """Call ``on_change(job_id)`` (from any thread) when a job's worker files change, if
        this backend can tell; one that cannot does nothing, and its jobs are polled."""

    def read_json(self, job_id: str, name: str) -> dict[str, Any] | None:
        """A JSON file from the job's working directory (progress.json, result.json)."""

    def cancel(self, job_id: str) -> None:
        """Kill the job."""

    def request_stop(self, job_id: str) -> bool:
        """Ask the job's worker to stop its executor and report CANCELED (a cancel through
        TES), by a file in its working directory; False when this backend cannot."""

    def clean(self, job_id: str) -> None:
        """Remove what the job left on the backend."""

    def healthy(self) -> bool:
        """True when the backend answers."""

    def close(self) -> None:
        """Release connections."""
