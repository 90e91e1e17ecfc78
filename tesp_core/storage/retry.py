"""Retrying transient transfer failures, and keeping secrets out of failure reasons.

Drivers raise :class:`TransientError` for failures worth another attempt (a dropped
connection, a 5xx, an FTP 4xx reply) and call :func:`with_retries` around one whole,
idempotent operation (a download restarts from byte 0, an upload re-sends the file).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from tesp_core.storage.base import StorageError
from tesp_core.storage.redact import REDACTED, redact_text

logger = logging.getLogger(__name__)

T = TypeVar("T")


class TransientError(StorageError):
    """A failure that may go away on its own; retried by :func:`with_retries`."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry: ``retries`` extra attempts after the first,
    waiting ``backoff_seconds * 2**n`` (capped at ``max_backoff_seconds``) before attempt n+1.
    """

    retries: int = 3
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
        return float(min(self.max_backoff_seconds, self.backoff_seconds * (2**attempt)))


def with_retries(
    operation: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``operation``, retrying on :class:`TransientError` with exponential backoff.

    The last :class:`TransientError` propagates once the retries are spent; any other
    exception propagates at once.
    """
    attempt = 0
    while True:
        try:
            return operation()
        except TransientError as exc:
            if attempt >= policy.retries:
                raise
            delay = policy.delay(attempt)
            attempt += 1
            # str(exc) is already redacted.
            logger.warning(
                "transfer failed (%s); retry %d/%d in %.1fs", exc, attempt, policy.retries, delay
            )
            sleep(delay)


def safe_reason(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with URLs redacted and every known secret value replaced.

    Used on messages that come from a foreign library or a remote server, which may echo
    a URL, a user name or a password back to us.
    """
    cleaned = redact_text(text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            cleaned = cleaned.replace(secret, REDACTED)
    return cleaned


def policy_from_config(config: Mapping[str, object]) -> RetryPolicy:
    """Read ``retries`` / ``backoff_seconds`` / ``max_backoff_seconds`` from a driver config.

    Raises :class:`ValueError` (naming the key, never the value) when one is malformed.
    """
    defaults = RetryPolicy()
    retries = config.get("retries", defaults.retries)
    backoff = config.get("backoff_seconds", defaults.backoff_seconds)
    cap = config.get("max_backoff_seconds", defaults.max_backoff_seconds)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError("'retries' must be a non-negative integer")
    for name, value in (("backoff_seconds", backoff), ("max_backoff_seconds", cap)):
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name!r} must be a non-negative number")
    assert isinstance(backoff, int | float) and isinstance(cap, int | float)
    return RetryPolicy(retries, float(backoff), float(cap))
