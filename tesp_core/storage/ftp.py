"""FTP transfers with :mod:`ftplib`: files, recursive directories, uploads with parents.

Paths follow RFC 1738 as curl does: ``ftp://host/a/b.txt`` names ``a/b.txt`` relative to the
login directory; ``ftp://host/%2Fsrv/b.txt`` (or ``ftp://host//srv/b.txt``) is absolute.
"""

from __future__ import annotations

import ftplib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from tesp_core.storage.base import (
    AccessDeniedError,
    NotFoundError,
    StorageError,
    TransportConfig,
)
from tesp_core.storage.credentials import HostCredentials, credentials_for, parse_hosts
from tesp_core.storage.retry import (
    RetryPolicy,
    TransientError,
    policy_from_config,
    safe_reason,
    with_retries,
)

logger = logging.getLogger(__name__)

_ANONYMOUS = HostCredentials("anonymous", "anonymous@")
# Replies meaning "this server does not do MLSD", as opposed to "no such directory".
_UNSUPPORTED = ("500", "502", "504")
# 550 covers both "no such file" and "not allowed"; the text tells them apart.
_DENIED_WORDS = ("denied", "permission", "privilege", "not allowed", "forbidden")

Action = Callable[[ftplib.FTP, str, str], int]
"""One operation inside a logged-in session: (ftp, remote path, login directory) -> bytes."""


@dataclass(frozen=True)
class FtpSettings:
    """The ``storage.ftp`` section of the worker spec, validated."""

    hosts: Mapping[str, HostCredentials] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_seconds: float = 60.0
    passive: bool = True
    chunk_size: int = 1024 * 1024

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> FtpSettings:
        """Build settings from the config dict; :class:`ValueError` names a bad key."""
        timeout = config.get("timeout_seconds", 60.0)
        passive = config.get("passive", True)
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError("'timeout_seconds' must be a positive number")
        if not isinstance(passive, bool):
            raise ValueError("'passive' must be a boolean")
        return cls(
            hosts=parse_hosts(config.get("hosts", {})),
            retry=policy_from_config(config),
            timeout_seconds=float(timeout),
            passive=passive,
        )


class FtpTransport:
    """Moves files between ``ftp://`` URLs and local paths (one session per operation)."""

    def __init__(self, config: TransportConfig) -> None:
        self.settings = FtpSettings.from_config(config)

    def download_file(self, url: str, dest: Path) -> int:
        """RETR the file at ``url`` into ``dest`` (binary, streaming)."""

        def action(ftp: ftplib.FTP, path: str, home: str) -> int:
            if not path:
                raise StorageError(url, "the URL names no file")
            return self._retrieve(ftp, path, dest, url)

        return self._run(url, action)

    def download_dir(self, url: str, dest: Path) -> int:
        """Download the directory tree at ``url`` into ``dest``, keeping the structure."""

        def action(ftp: ftplib.FTP, path: str, home: str) -> int:
            _require_directory(ftp, path, home, url)
            return self._retrieve_tree(ftp, path, home, dest, url)

        return self._run(url, action)

    def upload_file(self, src: Path, url: str) -> int:
        """STOR ``src`` at ``url``, creating missing remote directories one by one."""

        def action(ftp: ftplib.FTP, path: str, home: str) -> int:
            parent, _, name = path.rpartition("/")
            if not name:
                raise StorageError(url, "the URL names no file")
            _make_parents(ftp, parent, home)
            try:
                fh = open(src, "rb")  # noqa: SIM115 - closed below; errors mapped apart
            except OSError as exc:
                raise StorageError(url, f"cannot read {src}: {exc.strerror}") from exc
            with fh:
                ftp.storbinary(f"STOR {path}", fh, blocksize=self.settings.chunk_size)
                return fh.tell()

        return self._run(url, action)

    # -- sessions ---------------------------------------------------------------------

    def _run(self, url: str, action: Action) -> int:
        return with_retries(lambda: self._session(url, action), self.settings.retry)

    def _session(self, url: str, action: Action) -> int:
        parts = urlsplit(url)
        creds = credentials_for(url, self.settings.hosts, {"ftp": 21}) or _ANONYMOUS
        secrets = creds.secrets()
        # Plain FTP is what the task's URL asked for; the choice is the user's.
        ftp = ftplib.FTP(timeout=self.settings.timeout_seconds)  # noqa: S321
        try:
            ftp.connect(parts.hostname or "", parts.port or 21)
            ftp.login(creds.username or "anonymous", creds.password or "")
            ftp.set_pasv(self.settings.passive)
            return action(ftp, _remote_path(parts.path, url), ftp.pwd())
        except ftplib.error_perm as exc:
            raise _permanent(url, exc, secrets) from exc
        except (ftplib.error_temp, ftplib.error_reply, ftplib.error_proto, EOFError) as exc:
            raise TransientError(url, f"FTP {safe_reason(str(exc), secrets)}") from exc
        except ValueError as exc:  # ftplib refuses CR/LF in a command
            raise StorageError(url, "the path holds characters FTP cannot send") from exc
        except OSError as exc:
            raise TransientError(url, f"connection failed: {type(exc).__name__}") from exc
        finally:
            _close(ftp)

    def _retrieve(self, ftp: ftplib.FTP, path: str, dest: Path, url: str) -> int:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fh = open(dest, "wb")  # noqa: SIM115 - closed below; errors mapped apart
        except OSError as exc:
            raise StorageError(url, f"cannot write {dest}: {exc.strerror}") from exc
        with fh:
            ftp.retrbinary(f"RETR {path}", _writer(fh, url), blocksize=self.settings.chunk_size)
            return fh.tell()

    def _retrieve_tree(self, ftp: ftplib.FTP, path: str, home: str, dest: Path, url: str) -> int:
        dest.mkdir(parents=True, exist_ok=True)
        total = 0
        for name, is_dir in _list_directory(ftp, path, home):
            if name in ("", ".", "..") or "/" in name:
                continue
            remote = _join(path, name)
            if is_dir:
                total += self._retrieve_tree(ftp, remote, home, dest / name, url)
            else:
                total += self._retrieve(ftp, remote, dest / name, url)
        return total


def _permanent(url: str, exc: ftplib.error_perm, secrets: tuple[str | None, ...]) -> StorageError:
    reply = safe_reason(str(exc), secrets)
    code = reply[:3]
    lowered = reply.lower()
    if code == "530" or any(word in lowered for word in _DENIED_WORDS):
        return AccessDeniedError(url, f"FTP {reply}")
    if code == "550":
        return NotFoundError(url, f"FTP {reply}")
    return StorageError(url, f"FTP {reply}")


def _remote_path(url_path: str, url: str) -> str:
    """The server path for a URL path: relative to the login directory, no ``//``."""
    path = unquote(url_path)
    path = path[1:] if path.startswith("/") else path
    absolute = path.startswith("/")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise StorageError(url, "'.' and '..' are not allowed in FTP paths")
    joined = "/".join(parts)
    return "/" + joined if absolute else joined


def _join(parent: str, name: str) -> str:
    if not parent:
        return name
    return parent + name if parent.endswith("/") else f"{parent}/{name}"


def _require_directory(ftp: ftplib.FTP, path: str, home: str, url: str) -> None:
    try:
        ftp.cwd(path or home)
    except ftplib.error_perm as exc:
        raise NotFoundError(url, f"no such directory (FTP {safe_reason(str(exc))})") from exc
    finally:
        ftp.cwd(home)


def _list_directory(ftp: ftplib.FTP, path: str, home: str) -> list[tuple[str, bool]]:
    """(name, is_directory) of each entry, by MLSD, else by NLST and CWD probing."""
    try:
        facts = list(ftp.mlsd(path, facts=["type"]))
    except ftplib.error_perm as exc:
        if not str(exc).startswith(_UNSUPPORTED):
            raise
        return _list_by_probing(ftp, path, home)
    kinds = ((name, fact.get("type", "").lower()) for name, fact in facts)
    return [(name, kind == "dir") for name, kind in kinds if kind in ("dir", "file")]


def _list_by_probing(ftp: ftplib.FTP, path: str, home: str) -> list[tuple[str, bool]]:
    try:
        names = ftp.nlst(path) if path else ftp.nlst()
    except ftplib.error_perm:
        return []  # some servers answer 550 for an empty (existing) directory
    entries = []
    for listed in names:
        name = listed.rstrip("/").rpartition("/")[2]
        if name in ("", ".", ".."):
            continue
        try:
            ftp.cwd(_join(path, name))
            is_dir = True
        except ftplib.error_perm:
            is_dir = False
        ftp.cwd(home)
        entries.append((name, is_dir))
    return entries


def _make_parents(ftp: ftplib.FTP, parent: str, home: str) -> None:
    """MKD each missing component of ``parent``; once one is missing, all below are."""
    if parent in ("", "/"):
        return
    current = "/" if parent.startswith("/") else ""
    missing = False
    for component in (c for c in parent.split("/") if c):
        current = _join(current, component)
        if not missing:
            try:
                ftp.cwd(current)
                ftp.cwd(home)
                continue
            except ftplib.error_perm:
                missing = True
        ftp.mkd(current)


def _writer(fh: BinaryIO, url: str) -> Callable[[bytes], None]:
    def write(block: bytes) -> None:
        try:
            fh.write(block)
        except OSError as exc:
            raise StorageError(url, f"cannot write: {exc.strerror}") from exc

    return write


def _close(ftp: ftplib.FTP) -> None:
    if ftp.sock is None:
        return
    try:
        ftp.quit()
    except (OSError, EOFError, ftplib.Error):
        ftp.close()
