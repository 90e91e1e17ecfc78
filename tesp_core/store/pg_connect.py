"""Reaching PostgreSQL: connection options, the start-up probe, and what an error means.

At start-up :func:`probe` connects once before the pool opens, so a wrong ``database_url``
fails at once with the driver's reason (a wrong password, a missing database, an invalid
option) instead of the pool retrying it for its whole timeout. Only a refused or timed-out
connection (a server still starting) is retried, briefly.
"""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tesp_core.errors import InvalidSettingError
from tesp_core.storage.redact import REDACTED, redact_text

log = logging.getLogger(__name__)

# Seconds one connection attempt may take (libpq waits forever by default), and how long
# start-up keeps retrying a server that refuses connections.
CONNECT_TIMEOUT = 2
STARTUP_RETRY_SECONDS = 10.0

# Substrings of libpq's messages for failures that may go away by themselves.
_TRANSIENT = (
    "connection refused",
    "timeout expired",
    "could not translate host name",
    "starting up",
)
# SQLSTATE "cannot connect now" (the server is starting or shutting down).
_TRANSIENT_STATES = frozenset({"57P03"})


def conninfo(url: str) -> str:
    """``url`` with a connect timeout (unless it sets one): a dead host fails fast."""
    if "connect_timeout" in conninfo_to_dict(url):
        return url
    return make_conninfo(url, connect_timeout=CONNECT_TIMEOUT)


def is_transient(exc: psycopg.Error) -> bool:
    """True for errors a retry may cure (refused, timed out), False for wrong settings."""
    if exc.sqlstate in _TRANSIENT_STATES:
        return True
    return exc.sqlstate is None and any(t in str(exc).lower() for t in _TRANSIENT)


def describe(exc: BaseException, url: str) -> str:
    """The driver's reason on one line, with the URL's password (if any) masked."""
    text = " ".join(str(exc).split())  # libpq's lines and double spaces, on one line
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.Error:
        password = None
    if password:
        text = text.replace(str(password), REDACTED)
    return redact_text(text) or type(exc).__name__


def probe(url: str) -> str:
    """The conninfo to open the pool with, after one successful connection.

    Raises InvalidSettingError("database_url", reason) when the URL cannot work, or when
    the server still refuses after :data:`STARTUP_RETRY_SECONDS`.
    """
    try:
        info = conninfo(url)
    except psycopg.Error as exc:  # a malformed option: libpq's parser says which
        raise InvalidSettingError("database_url", describe(exc, url)) from None
    deadline = time.monotonic() + STARTUP_RETRY_SECONDS
    while True:
        try:
            psycopg.connect(info).close()
            return info
        except psycopg.Error as exc:
            reason = describe(exc, url)
            if not is_transient(exc) or time.monotonic() >= deadline:
                raise InvalidSettingError("database_url", reason) from None
            log.warning("database_url: cannot connect yet (%s); retrying", reason)
            time.sleep(1.0)
