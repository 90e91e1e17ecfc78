"""The error tree of TESP's core. The server maps each class to one HTTP status.

::

    TespError
    +-- InvalidTaskError        400  a field of the request is wrong (``field``, ``problem``)
    +-- TaskNotFoundError       404  no such task (or not visible to this caller)
    +-- ForbiddenError          403  the caller may not do this
    +-- BackendError                 the backend (Pulsar) failed; never shown raw to clients
        +-- BackendUnavailableError  the backend could not be reached
        |   +-- BackendAuthError     the backend refused TESP's credentials
        +-- BackendJobLostError      the backend no longer knows the job
    +-- StoreUnavailableError   503  the task store (database) cannot be reached now
    +-- InvalidSettingError          a setting is unusable at start-up (``tesp serve`` exit 2)
"""

from __future__ import annotations

# Request strings echoed in messages are cut here: a 5000-character id is not repeated.
ECHO_LIMIT = 64


def shorten(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` as an error message may echo it: at most ``limit`` characters, then "…"."""
    return text if len(text) <= limit else text[:limit] + "\u2026"


class TespError(Exception):
    """Base of every error TESP raises on purpose."""


class InvalidTaskError(TespError):
    """A request field is invalid. ``field`` is a dotted path such as ``executors[0].image``."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class TaskNotFoundError(TespError):
    """No task with this id is visible to the caller."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"task {shorten(task_id)!r} not found")


class ForbiddenError(TespError):
    """The caller is authenticated but may not perform the action."""


class BackendError(TespError):
    """The execution backend failed. ``backend`` names it (set by the router), if known."""

    backend: str | None = None


class BackendUnavailableError(BackendError):
    """The backend could not be reached (connection refused, timeout, 5xx)."""


class BackendAuthError(BackendUnavailableError):
    """The backend refused TESP's credentials (a wrong ``pulsar_token``).

    A configuration error, but handled like an outage: tasks wait (and a router sends new
    ones elsewhere) until the token is fixed, instead of failing one after another. The
    refused request did nothing on the backend.
    """

    never_sent = True


class BackendJobLostError(BackendError):
    """The backend does not know the job any more (e.g. its state was wiped)."""


class StoreUnavailableError(TespError):
    """The task store cannot be reached right now (PostgreSQL down, SQLite locked).

    Transient: clients may retry. The message never carries the driver's text (it may name
    hosts and users); the server logs the cause.
    """

    def __init__(self, cause: str = "") -> None:
        self.cause = cause
        super().__init__("the task store is unavailable; try again later")


class InvalidSettingError(TespError):
    """A setting that validated but does not work (a database URL that cannot connect)."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"invalid setting {setting}: {problem}")
