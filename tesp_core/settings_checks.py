"""Checks behind the settings validators (tesp_core/config.py), kept apart from the fields.

Each raises ValueError with a plain problem; pydantic puts it at the setting's own
location (``database_url``, ``backends.a.labels``), which ``tesp serve`` and ``tesp config
show`` print as ``tesp: invalid setting <loc>: <problem>``. No message repeats a URL: a
malformed one may hold half a password.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic.fields import FieldInfo
from pydantic_settings import EnvSettingsSource

BACKEND_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

# The Pulsar settings of the single-backend form; [backends] replaces all of them.
SINGLE_BACKEND_SETTINGS = (
    "pulsar_url",
    "pulsar_token",
    "pulsar_manager",
    "pulsar_transport",
    "pulsar_amqp_url",
    "pulsar_scheduler",
)

# libpq's sslmode values (a bogus one is a permanent error: refuse it before connecting).
_SSLMODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})


def check_http_url(url: str | None) -> str | None:
    """``url`` unchanged when it is an http(s):// URL with a host, else ValueError."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError:
        raise ValueError("not a valid URL (a bad port or bracket)") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("must be an http:// or https:// URL with a host (http://HOST:PORT/)")
    return url


def check_database_url(url: str | None) -> str | None:
    """``url`` unchanged when it is a usable postgresql:// URL, else ValueError."""
    if url is None:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        raise ValueError("must be a postgresql:// URL (postgresql://USER:PASSWORD@HOST/DB)")
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        raise ValueError(
            "the port is not a number (percent-encode special characters such as / : @ # "
            "in the user name and password)"
        ) from None
    if parts.port == 0:
        raise ValueError("the port must be between 1 and 65535")
    for key, value in parse_qsl(parts.query):
        if key == "sslmode" and value not in _SSLMODES:
            raise ValueError(f"sslmode must be one of {sorted(_SSLMODES)}")
    return url


def check_label_shape(value: Any) -> Any:
    """A backend's ``labels``: a list of strings or a table of strings, else ValueError."""
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return value
    raise ValueError('must be a list of strings (["gpu", "site=eu"]) or a table of strings')


def check_backend_names(names: list[str]) -> None:
    """ValueError for a malformed name or two names that differ only in case."""
    seen: dict[str, str] = {}
    for name in names:
        if not BACKEND_NAME.match(name):
            raise ValueError(
                f"backend name {name[:64]!r} must be letters, digits, _ . - (at most 63, "
                "starting with a letter or digit)"
            )
        other = seen.setdefault(name.lower(), name)
        if other != name:
            raise ValueError(f"backend names {other!r} and {name!r} differ only in case")


class DuplicateKeyError(ValueError):
    """A JSON object in a setting names one key twice (JSON keeps only the last)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"the key {key[:64]!r} appears twice")
        out[key] = value
    return out


class StrictJsonEnvSource(EnvSettingsSource):
    """The ``TESP_*`` environment, whose JSON values may not repeat a key."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        """Like the default (``json.loads``), refusing duplicate object keys."""
        decoded = super().decode_complex_value(field_name, field, value)
        if isinstance(value, str | bytes) and decoded is not value:
            json.loads(value, object_pairs_hook=_no_duplicates)
        return decoded
