"""Exit codes of the ``tesp`` client commands and the errors that carry them.

::

    ClientError                    an expected failure: one line on stderr, no traceback
    +-- UsageError          2      bad flags, a bad task file, a bad client config
    +-- UnreachableError    2      no answer from the server (refused, DNS, TLS, timeout)
    +-- HttpError           3      the server refused the request (4xx/5xx) or answered junk
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a ``tesp`` client command's exit status means (docs/cli.md)."""

    OK = 0
    # 1 is left to Python itself: an unexpected error (a bug) that printed a traceback.
    USAGE = 2
    REQUEST_FAILED = 3
    EXECUTOR_ERROR = 4
    SYSTEM_ERROR = 5
    CANCELED = 6
    TIMEOUT = 7


class ClientError(Exception):
    """An expected failure of a client command; ``str()`` is the message for the user."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(ClientError):
    """The command line, a task file or the client configuration is wrong."""


class UnreachableError(ClientError):
    """The server could not be reached at all; ``transient`` if trying again may help."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class HttpError(ClientError):
    """The server answered with an error status (``status``); ``field`` names a bad field."""

    exit_code = ExitCode.REQUEST_FAILED

    def __init__(self, message: str, status: int, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
