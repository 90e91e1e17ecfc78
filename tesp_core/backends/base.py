"""The backend protocol: what the service needs from an execution system."""

from __future__ import annotations

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

    def read_json(self, job_id: str, name: str) -> dict[str, Any] | None:
        """A JSON file from the job's working directory (progress.json, result.json)."""

    def cancel(self, job_id: str) -> None:
        """Kill the job."""

    def clean(self, job_id: str) -> None:
        """Remove what the job left on the backend."""

    def healthy(self) -> bool:
        """True when the backend answers."""

    def close(self) -> None:
        """Release connections."""
