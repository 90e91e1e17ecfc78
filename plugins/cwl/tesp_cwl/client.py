"""Where the tasks go: an in-process TESP (embedded) or any TES server over HTTP (py-tes).

Both sides offer the same three calls, :class:`TaskClient`; the job class knows no more.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import requests

log = logging.getLogger(__name__)

TERMINAL = frozenset({"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"})


class TaskRejectedError(Exception):
    """The TES server would not accept a task (the message carries its answer)."""


@dataclass(frozen=True)
class TaskOutcome:
    """A task as far as the CWL job cares: its state and the tool executor's result."""

    state: str
    exit_code: int | None = None
    stderr: str | None = None
    system_logs: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        """True once the task reached a terminal state."""
        return self.state in TERMINAL


class TaskClient(Protocol):
    """Create, read and cancel TES tasks."""

    def create(self, task: dict[str, Any]) -> str:
        """Submit ``task`` (TES JSON) and return its id."""
        ...

    def outcome(self, task_id: str) -> TaskOutcome:
        """The task's current state and, once it ran, the first executor's exit code."""
        ...

    def cancel(self, task_id: str) -> None:
        """Ask for the task to be cancelled."""
        ...


def _outcome(task: Any) -> TaskOutcome:
    """Read a TESP or py-tes task object (they share the TES field names)."""
    state = str(getattr(task.state, "value", task.state) or "UNKNOWN")
    exit_code: int | None = None
    stderr: str | None = None
    system_logs: list[str] = []
    for attempt in task.logs or []:
        system_logs.extend(attempt.system_logs or [])
        if attempt.logs:
            exit_code = attempt.logs[0].exit_code
            stderr = attempt.logs[0].stderr
    return TaskOutcome(state, exit_code, stderr, system_logs)


class RemoteTes:
    """A TES server reached over HTTP through py-tes."""

    def __init__(self, url: str, token: str | None = None) -> None:
        import tes  # py-tes

        self._tes = tes
        self._client = tes.HTTPClient(url, token=token) if token else tes.HTTPClient(url)

    def create(self, task: dict[str, Any]) -> str:
        """Submit ``task`` to the server."""
        model = self._tes.utils.unmarshal(task, self._tes.Task)
        try:
            created = self._client.create_task(model)
        except requests.HTTPError as exc:
            body = exc.response.text[:2000] if exc.response is not None else ""
            raise TaskRejectedError(f"the TES server refused the task: {exc}: {body}") from exc
        # py-tes 1.1 returns the id itself; older releases a CreateTaskResponse.
        return str(getattr(created, "id", created))

    def outcome(self, task_id: str) -> TaskOutcome:
        """Read the task's FULL view."""
        return _outcome(self._client.get_task(task_id, view="FULL"))

    def cancel(self, task_id: str) -> None:
        """Cancel through ``POST /tasks/{id}:cancel``."""
        self._client.cancel_task(task_id)

    def close(self) -> None:
        """Nothing to release."""


class EmbeddedTes:
    """A TESP started in this process (store, embedded Pulsar, service), stopped on close."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        file_roots: list[str] | None = None,
        runtime: str | None = None,
        max_in_flight: int = 8,
    ) -> None:
        from tesp_core.config import load_settings
        from tesp_core.runtime import Tesp

        self._owned_dir: Path | None = None
        if data_dir is None:
            data_dir = self._owned_dir = Path(tempfile.mkdtemp(prefix="tesp-cwl-"))
        settings = load_settings(
            data_dir=data_dir,
            # The embedded server acts for the user who runs tesp-cwl and reads what they
            # can read; a server of its own would be configured with narrower roots.
            file_roots=file_roots or ["/"],
            runtime=runtime,
            max_in_flight=max_in_flight,
        )
        self._tesp = Tesp(settings)
        self._tesp.start()

    def create(self, task: dict[str, Any]) -> str:
        """Submit to the in-process service."""
        return self._tesp.service.create_task(task)

    def outcome(self, task_id: str) -> TaskOutcome:
        """Read the stored task."""
        return _outcome(self._tesp.service.get_task(task_id))

    def cancel(self, task_id: str) -> None:
        """Cancel through the service."""
        self._tesp.service.cancel_task(task_id)

    def close(self) -> None:
        """Stop TESP and remove a data directory this object created."""
        self._tesp.stop()
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedTes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
