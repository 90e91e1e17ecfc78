"""The transport protocol every storage driver implements, and the error tree."""

from __future__ import annotations

from tesp_core.storage.redact import redact_url

# The worker imports this package for every task; typing and pathlib would cost it more
# than the rest of its start-up, so they exist here for mypy only (TYPE_CHECKING is the
# name mypy treats as true; typing.TYPE_CHECKING would import typing).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, Protocol

    TransportConfig = dict[str, Any]
else:
    Protocol = object
    TransportConfig = dict


class StorageError(Exception):
    """A transfer failed. ``url`` is redacted; ``str()`` is safe to log and show."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = redact_url(url)
        self.scheme = self.url.split(":", 1)[0] if ":" in self.url else "file"
        self.reason = reason
        super().__init__(f"{self.scheme}: {self.url}: {reason}")


class NotFoundError(StorageError):
    """The source object, file or directory does not exist."""


class AccessDeniedError(StorageError):
    """Credentials were refused, or the path is outside the allowed roots."""


class Transport(Protocol):
    """Moves bytes between a URL and a local path, streaming (constant memory).

    ``download_*`` create parent directories of ``dest``; ``upload_*`` create remote parents
    where the protocol has them. Every method returns the number of bytes moved and raises
    :class:`StorageError` (never a foreign exception) on failure.
    """

    def download_file(self, url: str, dest: Path) -> int: ...

    def download_dir(self, url: str, dest: Path) -> int: ...

    def upload_file(self, src: Path, url: str) -> int: ...
