"""Errors of the TES clients, translated once at the client boundary.

::

    TesClientError                 talking to the TES failed
    +-- TesUnavailableError        not reachable (connection refused, timeout, 5xx)
    +-- TesRequestError            the TES refused the request (4xx); ``status`` says which
"""

from __future__ import annotations


class TesClientError(Exception):
    """Base of the errors a :class:`~snakemake_executor_plugin_tesp.clients.TesClient` raises."""


class TesUnavailableError(TesClientError):
    """The TES could not be reached or answered with a server error."""


class TesRequestError(TesClientError):
    """The TES refused the request. ``status`` is the HTTP status (or its equivalent)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"HTTP {status}: {message}")
