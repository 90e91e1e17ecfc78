"""Talking to TES: over HTTP with py-tes (any TES server), or to an in-process TESP.

Both speak the same small protocol, :class:`TesClient`, and hand back a :class:`TaskReport`
so the runner never sees py-tes or tesp_core objects. The embedded client imports
``tesp_core`` only when it is built: Galaxy's environment cannot hold TESP itself (Galaxy pins
``pulsar-galaxy-lib<0.16``, which ships the same ``pulsar`` package as TESP's
``pulsar-app==0.16``), so in the usual install only the HTTP client is available.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .params import TesDestination

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"})


class TesError(RuntimeError):
    """TES could not be reached, or refused a request."""


class TesUnavailableError(TesError):
    """TES did not answer (network, 5xx): the request may work later."""


class TaskNotFoundError(TesError):
    """TES does not know the task (404)."""


@dataclass(frozen=True)
class TaskReport:
    """The parts of a TES task (FULL view) the runner acts on."""

    task_id: str
    state: str
    exit_codes: tuple[int, ...] = ()
    stdout: str = ""
    stderr: str = ""
    system_logs: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_terminal(self) -> bool:
        """True once the task's state never changes again."""
        return self.state in TERMINAL_STATES


def report_from_dict(task: dict[str, Any]) -> TaskReport:
    """A :class:`TaskReport` from a TES task in JSON form (FULL view)."""
    exit_codes: list[int] = []
    stdout: list[str] = []
    stderr: list[str] = []
    system_logs: list[str] = []
    for attempt in task.get("logs") or []:
        for exe in attempt.get("logs") or []:
            if exe.get("exit_code") is not None:
                exit_codes.append(int(exe["exit_code"]))
            stdout.append(exe.get("stdout") or "")
            stderr.append(exe.get("stderr") or "")
        system_logs.extend(attempt.get("system_logs") or [])
    return TaskReport(
        task_id=str(task.get("id")),
        state=str(task.get("state") or "UNKNOWN"),
        exit_codes=tuple(exit_codes),
        stdout="".join(stdout),
        stderr="".join(stderr),
        system_logs=tuple(system_logs),
    )


class TesClient(Protocol):
    """The four calls the runner makes."""

    def create_task(self, task: dict[str, Any]) -> str:
        """Submit a task, return its id."""

    def get_task(self, task_id: str) -> TaskReport:
        """The task's current state and logs."""

    def cancel_task(self, task_id: str) -> None:
        """Ask TES to cancel the task (no-op for an ended task)."""

    def close(self) -> None:
        """Release what the client holds."""


class HttpTesClient:
    """Any TES 1.1 server, through py-tes."""

    def __init__(self, dest: TesDestination) -> None:
        import tes  # py-tes: imported here so a missing install fails the destination only

        if not dest.tes_url:
            raise TesError("tes_url is not set")
        self._tes = tes
        self.url = dest.tes_url
        self._client = tes.HTTPClient(
            dest.tes_url,
            timeout=dest.tes_timeout,
            user=dest.tes_user,
            password=dest.tes_password,
            token=dest.tes_token,
        )

    def _call(self, what: str, task_id: str | None, fn: Any, *args: Any) -> Any:
        import requests

        try:
            return fn(*args)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status == 404 and task_id:
                raise TaskNotFoundError(f"TES at {self.url} has no task {task_id}") from exc
            if status is None or status >= 500:
                raise TesUnavailableError(f"{what} at {self.url} failed: {exc}") from exc
            body = exc.response.text[:2000] if exc.response is not None else ""
            raise TesError(f"{what} at {self.url} refused ({status}): {body}") from exc
        except requests.RequestException as exc:
            raise TesUnavailableError(f"{what} at {self.url} failed: {exc}") from exc

    def create_task(self, task: dict[str, Any]) -> str:
        model = self._tes.utils.unmarshal(task, self._tes.Task, convert_camel_case=False)
        return str(self._call("create task", None, self._client.create_task, model))

    def get_task(self, task_id: str) -> TaskReport:
        model = self._call("get task", task_id, self._client.get_task, task_id, "FULL")
        return report_from_dict(model.as_dict())

    def cancel_task(self, task_id: str) -> None:
        self._call("cancel task", task_id, self._client.cancel_task, task_id)

    def close(self) -> None:
        """py-tes keeps no connection open."""


class EmbeddedTesClient:
    """A TESP started inside the Galaxy process (needs ``tesp`` importable)."""

    def __init__(self, dest: TesDestination) -> None:
        try:
            from tesp_core.config import Settings
            from tesp_core.runtime import Tesp
        except ImportError as exc:
            raise TesError(
                "embedded mode needs the 'tesp' package in Galaxy's environment; "
                "use 'tes_url' to reach a 'tesp serve' instead"
            ) from exc
        data_dir = Path(dest.embedded_data_dir or "database/tesp").expanduser().resolve()
        kwargs: dict[str, Any] = {"data_dir": data_dir, "file_roots": ["/"]}
        if dest.runtime:
            kwargs["runtime"] = dest.runtime
        self._tesp = Tesp(Settings(**kwargs)).start()

    def create_task(self, task: dict[str, Any]) -> str:
        return self._tesp.service.create_task(task)

    def get_task(self, task_id: str) -> TaskReport:
        from tesp_core.errors import TaskNotFoundError as CoreNotFound

        try:
            task = self._tesp.service.get_task(task_id)
        except CoreNotFound as exc:
            raise TaskNotFoundError(f"embedded TESP has no task {task_id}") from exc
        return report_from_dict(task.model_dump(mode="json"))

    def cancel_task(self, task_id: str) -> None:
        self._tesp.service.cancel_task(task_id)

    def close(self) -> None:
        self._tesp.stop()


class ClientPool:
    """One client per distinct TES endpoint, built on first use, shared by all threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[Any, ...], TesClient] = {}

    def get(self, dest: TesDestination) -> TesClient:
        """The client for ``dest``."""
        with self._lock:
            client = self._clients.get(dest.client_key)
            if client is None:
                client = EmbeddedTesClient(dest) if dest.embedded else HttpTesClient(dest)
                self._clients[dest.client_key] = client
            return client

    def close(self) -> None:
        """Close every client."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                client.close()
            except Exception:  # a failing close must not stop the others
                log.exception("closing TES client failed")
