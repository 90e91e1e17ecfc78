"""Per-host credentials for HTTP(S) and FTP: from the URL's userinfo or the ``hosts`` map."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True, repr=False)
class HostCredentials:
    """A user name and password (HTTP Basic, FTP login) or an HTTP bearer token."""

    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None

    def __repr__(self) -> str:
        # Never show secrets, even in a debugger or a traceback's locals.
        return f"HostCredentials(username={self.username!r}, password=***, bearer_token=***)"

    def authorization(self) -> str | None:
        """The HTTP ``Authorization`` header value, or ``None`` when there is nothing."""
        if self.bearer_token:
            return f"Bearer {self.bearer_token}"
        if self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        return None

    def secrets(self) -> tuple[str | None, ...]:
        """The values that must never appear in a message."""
        return (self.password, self.bearer_token)


def parse_hosts(raw: object) -> dict[str, HostCredentials]:
    """Validate a ``hosts`` map ``{"host[:port]": {"username", "password", "bearer_token"}}``.

    Raises :class:`ValueError` naming the host and key (never a value) when malformed.
    """
    if not isinstance(raw, Mapping):
        raise ValueError("'hosts' must be a mapping of host[:port] to credentials")
    hosts: dict[str, HostCredentials] = {}
    for host, entry in raw.items():
        if not isinstance(host, str) or not isinstance(entry, Mapping):
            raise ValueError("'hosts' entries must map a host name to an object")
        unknown = set(entry) - {"username", "password", "bearer_token"}
        if unknown:
            raise ValueError(f"'hosts.{host}' has unknown keys {sorted(unknown)}")
        for key in ("username", "password", "bearer_token"):
            if entry.get(key) is not None and not isinstance(entry.get(key), str):
                raise ValueError(f"'hosts.{host}.{key}' must be a string")
        hosts[host.lower()] = HostCredentials(
            entry.get("username"), entry.get("password"), entry.get("bearer_token")
        )
    return hosts


def credentials_for(
    url: str, hosts: Mapping[str, HostCredentials], default_ports: Mapping[str, int]
) -> HostCredentials | None:
    """Credentials for ``url``: its own ``user:pass@`` first, else ``hosts["host:port"]``,
    else ``hosts["host"]``; ``None`` when there are none.
    """
    parts = urlsplit(url)
    if parts.username is not None:
        password = unquote(parts.password) if parts.password is not None else None
        return HostCredentials(unquote(parts.username), password)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or default_ports.get(parts.scheme.lower())
    except ValueError:
        port = None
    host_port = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return hosts.get(host_port) or hosts.get(host)
