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


@dataclass(frozen=True)
class Lease:
    """Who holds a task: one running TESP (a replica) and how long its claims last.

    A replica that does not renew within ``seconds`` is presumed dead and its in-flight
    tasks may be claimed by another replica sharing the store.
    """

    replica: str
    seconds: float = 30.0


@dataclass(frozen=True)
class Renewal:
    """What :meth:`TaskStore.renew` learnt about this replica's tasks."""

    # The replica's lease had lapsed (or was never taken): other replicas may have claimed
    # some of its tasks, so it must drop those that :meth:`TaskStore.held` no longer lists.
    lapsed: bool
    # Tasks this replica holds that someone (another replica's API) set CANCELING.
    canceling: list[str] = field(default_factory=list)


IN_FLIGHT = (State.QUEUED, State.INITIALIZING, State.RUNNING, State.CANCELING)


class TaskStore(Protocol):
    """Persistence of tasks. Implementations are safe to call from several threads."""

    def insert(self, stored: StoredTask, lease: Lease | None = None) -> None:
        """Store a new task (its ``id`` must be unique), held by ``lease``'s replica."""

    def get(self, task_id: str) -> StoredTask | None:
        """Return the task with this id, or None."""

    def update_task(self, task: Task, expected: State | None = None) -> bool:
        """Replace the document and state of an existing task (not its bookkeeping).

        With ``expected``, only while the stored state still is ``expected`` (another
        replica may have set CANCELING meanwhile). True when the task was replaced.
        """

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

    # -- claims: which replica drives which in-flight task ---------------------------------

    def renew(self, lease: Lease) -> Renewal:
        """Extend (or first take) the replica's lease; report what changed meanwhile."""

    def hold(self, task_id: str, lease: Lease) -> bool:
        """True when the replica, its lease still valid (and now extended), holds the task.

        Checked right before a task is submitted, so only its holder ever submits it.
        """

    def held(self, lease: Lease) -> set[str]:
        """The ids of the in-flight tasks the replica holds."""

    def claim_orphans(self, lease: Lease, limit: int | None = None) -> list[StoredTask]:
        """Atomically take over in-flight tasks nobody (alive) holds, oldest first.

        Each task is returned to exactly one replica.
        """

    def release(self, lease: Lease) -> None:
        """Give up every claim of the replica (a clean stop): others may adopt at once."""

    def close(self) -> None:
        """Release the underlying resources."""
