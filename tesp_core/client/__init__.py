"""The ``tesp`` client commands: submit, run, get, list, cancel, wait and config show.

A thin layer over TES 1.1 HTTP (:class:`TesClient`); see docs/cli.md.
"""

from __future__ import annotations

from tesp_core.client.config import ClientConfig, resolve_config
from tesp_core.client.errors import ClientError, ExitCode, HttpError, UnreachableError, UsageError
from tesp_core.client.http import TesClient

__all__ = [
    "ClientConfig",
    "ClientError",
    "ExitCode",
    "HttpError",
    "TesClient",
    "UnreachableError",
    "UsageError",
    "resolve_config",
]
