"""Where the ``tesp`` client finds its server and credentials.

Precedence, highest first: command-line flags, ``TESP_URL`` / ``TESP_USER`` /
``TESP_PASSWORD`` / ``TESP_TOKEN``, the client TOML file (``--client-config``,
``TESP_CLIENT_CONFIG`` or ``$XDG_CONFIG_HOME/tesp/client.toml``), then
``http://127.0.0.1:8000``. None of these names is a server setting: the server's
``Settings`` (env prefix ``TESP_``) reads only the variables of its own fields, so they
can share one environment (a unit test guards that no name collides).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tesp_core.client.errors import UsageError

DEFAULT_URL = "http://127.0.0.1:8000"

# Client variable -> key in the client TOML file.
ENV_VARS = {
    "TESP_URL": "url",
    "TESP_USER": "user",
    "TESP_PASSWORD": "password",
    "TESP_TOKEN": "token",
}
CONFIG_ENV_VAR = "TESP_CLIENT_CONFIG"
_FILE_KEYS = frozenset(ENV_VARS.values())


@dataclass(frozen=True)
class ClientConfig:
    """The effective server URL and credentials of one ``tesp`` client command."""

    url: str = DEFAULT_URL
    user: str | None = None
    password: str | None = None
    token: str | None = None

    def __repr__(self) -> str:
        # A repr (a traceback, a debugger) must never show the credentials.
        hidden = "***" if self.password or self.token else None
        return f"ClientConfig(url={self.url!r}, user={self.user!r}, secrets={hidden!r})"

    @property
    def secrets(self) -> list[str]:
        """The secret strings of this configuration (to scrub from any message)."""
        return [s for s in (self.password, self.token) if s]


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/tesp/client.toml`` (``~/.config/tesp/client.toml``)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tesp" / "client.toml"


def read_config_file(path: Path, *, required: bool) -> dict[str, str]:
    """The keys of a client TOML file; a missing default file is simply empty."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise UsageError(f"--client-config: no such file {path}") from None
        return {}
    except OSError as exc:
        raise UsageError(f"client config {path}: cannot read it ({exc.strerror})") from None
    try:
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8", errors="replace"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"client config {path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - _FILE_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_FILE_KEYS))
        raise UsageError(f"client config {path}: unknown key {unknown[0]!r} (allowed: {allowed})")
    for key, value in data.items():
        if not isinstance(value, str):
            raise UsageError(f"client config {path}: {key} must be a string")
    return dict(data)


# The userinfo of a URL, with or without its scheme ("u:pw@host", "ftp://u:pw@host").
_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*://)?[^/@:]*):[^/]*@")


def shown_url(url: str) -> str:
    """``url`` fit to echo in a message: the password of its userinfo replaced by ``***``."""
    return _USERINFO.sub(r"\1:***@", url)


def check_url(source: str, url: str) -> None:
    """Refuse a server URL that is not ``http(s)://host...``; ``source`` says whose it is."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise UsageError(f"{source}: not a valid URL (got {shown_url(url)})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UsageError(f"{source}: needs http:// or https:// (got {shown_url(url)})")
    if not host:
        raise UsageError(f"{source}: no host in {shown_url(url)}")


def resolve_config(
    flags: dict[str, str | None],
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> ClientConfig:
    """Merge flags over env vars over the config file over the default URL."""
    env = os.environ if environ is None else environ
    explicit = config_file or (Path(env[CONFIG_ENV_VAR]) if env.get(CONFIG_ENV_VAR) else None)
    from_file = read_config_file(
        explicit or default_config_path(env), required=explicit is not None
    )
    merged: dict[str, str] = {}
    rank: dict[str, int] = {}
    for var, key in ENV_VARS.items():
        for level, value in enumerate((flags.get(key), env.get(var), from_file.get(key))):
            if value:
                merged[key], rank[key] = value, level
                break
    if "token" in merged and "user" in merged:
        # One Authorization header: the higher layer wins; within one layer, say so.
        if rank["token"] == rank["user"]:
            raise UsageError("give either a user and password or a token, not both")
        drop = ("user", "password") if rank["token"] < rank["user"] else ("token",)
        for key in drop:
            merged.pop(key, None)
    if "url" in merged:
        where = ("--url", "TESP_URL", f"url in {explicit or default_config_path(env)}")
        check_url(where[rank["url"]], merged["url"])
    if merged.get("password") and not merged.get("user"):
        raise UsageError("a password needs a user: set --user, TESP_USER or user in the config")
    return ClientConfig(
        url=merged.get("url", DEFAULT_URL),
        user=merged.get("user"),
        password=merged.get("password"),
        token=merged.get("token"),
    )
