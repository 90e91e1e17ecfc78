"""The store protocol: what the service needs from persistence, nothing more."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tesp_core.models import State, Task


@dataclass(frozen=True)
class StoredTask:
    """A task as stored: the TES document plus the service's private bookkeeping."""

    task: Task
    owner: str | None = None
    # Backend bookkeeping (e.g. the Pulsar job id and URL); never shown to clients.
    backend: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ListQuery:
    """Filters and paging of ``GET /tasks``. ``tags`` maps key -> value ('' = any value)."""

    name_prefix: str | None = None
    state: State | None = None
    tags: Sequence[tuple[str, str]] = ()
    owner: str | None = None
    page_size: int = 256
    page_token: str | None = None
    minimal: bool = False


class TaskStore(Protocol):
    """Persistence of tasks. Implementations are safe to call from several threads."""

    def insert(self, stored: StoredTask) -> None:
        """Store a new task (its ``id`` must be unique)."""

    def get(self, task_id: str) -> StoredTask | None:
        """Return the task with this id, or None."""

    def update_task(self, task: Task) -> None:
        """Replace the document and state of an existing task (not its bookkeeping)."""

    def update_backend(self, task_id: str, backend: dict[str, Any]) -> None:
        """Replace only the backend bookkeeping of a task (never its state)."""

    def list_page(self, query: ListQuery) -> tuple[list[Task], str | None]:
        """One page of tasks, newest first, and the token of the next page (None at the end).

        With ``query.minimal`` the tasks carry only ``id`` and ``state``.
        """

    def list_documents(self, query: ListQuery) -> tuple[list[dict[str, Any]], str | None]:
        """:meth:`list_page` as the tasks' JSON documents (the cheap path for the API)."""

    def in_states(self, states: Sequence[State]) -> list[StoredTask]:
        """Every task currently in one of ``states`` (used for dispatch and recovery)."""

    def count_by_state(self) -> dict[State, int]:
        """How many tasks are in each state."""

    def close(self) -> None:
        """Release the underlying resources."""
