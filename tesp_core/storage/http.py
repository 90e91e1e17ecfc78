"""HTTP(S) transfers: streaming GET, directory index listings, and PUT uploads.

Built on :mod:`http.client` rather than :mod:`urllib.request` so that the request target is
sent exactly as written in the URL (a presigned query string must not be re-encoded), and so
that credentials are never forwarded to another host on a redirect.
"""

from __future__ import annotations

import http.client
import logging
import re
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from html.parser import HTMLParser
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urljoin, urlsplit

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

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Bytes that may not appear in a request target; everything else is sent untouched.
_ILLEGAL_IN_TARGET = re.compile(r"[^\x21-\x7e]")
_MAX_LISTING_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class HttpSettings:
    """The ``storage.http`` section of the worker spec, validated."""

    hosts: Mapping[str, HostCredentials] = field(default_factory=dict)
    max_redirects: int = 10
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_seconds: float = 60.0
    chunk_size: int = 1024 * 1024
    verify_tls: bool = True
    ca_file: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> HttpSettings:
        """Build settings from the config dict; :class:`ValueError` names a bad key."""
        max_redirects = config.get("max_redirects", 10)
        timeout = config.get("timeout_seconds", 60.0)
        verify = config.get("verify_tls", True)
        ca_file = config.get("ca_file")
        if not isinstance(max_redirects, int) or max_redirects < 0:
            raise ValueError("'max_redirects' must be a non-negative integer")
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError("'timeout_seconds' must be a positive number")
        if not isinstance(verify, bool):
            raise ValueError("'verify_tls' must be a boolean")
        if ca_file is not None and not isinstance(ca_file, str):
            raise ValueError("'ca_file' must be a path")
        return cls(
            hosts=parse_hosts(config.get("hosts", {})),
            max_redirects=max_redirects,
            retry=policy_from_config(config),
            timeout_seconds=float(timeout),
            verify_tls=verify,
            ca_file=ca_file,
        )


class HttpTransport:
    """Moves files between ``http://``/``https://`` URLs and local paths."""

    def __init__(self, config: TransportConfig) -> None:
        self.settings = HttpSettings.from_config(config)
        self._tls = ssl.create_default_context(cafile=self.settings.ca_file)
        if not self.settings.verify_tls:
            self._tls.check_hostname = False
            self._tls.verify_mode = ssl.CERT_NONE

    def download_file(self, url: str, dest: Path) -> int:
        """GET ``url`` into ``dest``, streaming, with retries on 5xx and dropped connections."""
        return with_retries(lambda: self._get_once(url, dest), self.settings.retry)

    def download_dir(self, url: str, dest: Path) -> int:
        """Download every file below the index page at ``url``, keeping the structure."""
        base = _as_directory(url)
        dest.mkdir(parents=True, exist_ok=True)
        pending: list[tuple[str, Path]] = [(base, dest)]
        seen: set[str] = set()
        total = 0
        while pending:
            dir_url, local = pending.pop()
            if dir_url in seen:
                continue
            seen.add(dir_url)
            hrefs = with_retries(partial(self._list_once, dir_url), self.settings.retry)
            for child_url, name in _children(dir_url, hrefs):
                if child_url.endswith("/"):
                    (local / name).mkdir(exist_ok=True)
                    pending.append((child_url, local / name))
                else:
                    total += self.download_file(child_url, local / name)
        return total

    def upload_file(self, src: Path, url: str) -> int:
        """PUT ``src`` to ``url`` with a Content-Length, streaming the body from disk."""
        try:
            size = src.stat().st_size
        except OSError as exc:
            raise StorageError(url, f"cannot read {src}: {exc.strerror}") from exc
        return with_retries(lambda: self._put_once(src, url, size), self.settings.retry)

    # -- one attempt each -------------------------------------------------------------

    def _get_once(self, url: str, dest: Path) -> int:
        with self._response("GET", url) as resp:
            _check_status(resp, url)
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                fh = open(dest, "wb")  # noqa: SIM115 - closed below; errors mapped apart
            except OSError as exc:
                raise StorageError(url, f"cannot write {dest}: {exc.strerror}") from exc
            with fh:
                return self._copy_body(resp, fh, url)

    def _list_once(self, url: str) -> list[str]:
        with self._response("GET", url) as resp:
            _check_status(resp, url)
            content_type = resp.getheader("Content-Type", "")
            if "html" not in content_type.lower():
                raise StorageError(url, f"not an HTML directory listing ({content_type!r})")
            try:
                raw = resp.read(_MAX_LISTING_BYTES)
            except (OSError, http.client.HTTPException) as exc:
                raise TransientError(url, f"reading the listing failed: {_describe(exc)}") from exc
            charset = resp.headers.get_content_charset() or "utf-8"
            return _hrefs(raw.decode(charset, errors="replace"))

    def _put_once(self, src: Path, url: str, size: int) -> int:
        try:
            fh = open(src, "rb")  # noqa: SIM115 - closed below; errors mapped apart
        except OSError as exc:
            raise StorageError(url, f"cannot read {src}: {exc.strerror}") from exc
        with fh, self._response("PUT", url, body=fh, size=size) as resp:
            _check_status(resp, url)
        return size

    # -- the wire ---------------------------------------------------------------------

    @contextmanager
    def _response(
        self, method: str, url: str, body: BinaryIO | None = None, size: int = 0
    ) -> Iterator[http.client.HTTPResponse]:
        """The final response to one request, redirects followed; closed on exit."""
        conn, resp = self._exchange(method, url, body, size)
        try:
            yield resp
        finally:
            resp.close()
            conn.close()

    def _exchange(
        self, method: str, url: str, body: BinaryIO | None, size: int
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        current = url
        for _hop in range(self.settings.max_redirects + 1):
            conn = self._connect(current, url)
            headers = {"User-Agent": "tesp-storage", "Accept-Encoding": "identity"}
            auth = self._authorization(url, current)
            if auth:
                headers["Authorization"] = auth
            if body is not None:
                body.seek(0)
                headers["Content-Length"] = str(size)
            resp = self._send(conn, method, current, url, body, headers)
            location = resp.getheader("Location")
            if resp.status not in _REDIRECTS or not location:
                return conn, resp
            resp.close()
            conn.close()
            if body is not None and resp.status not in (307, 308):
                raise StorageError(url, f"HTTP {resp.status} redirect on {method} not followed")
            current = urljoin(current, location)
            logger.debug("following HTTP %d redirect", resp.status)
        raise StorageError(url, f"more than {self.settings.max_redirects} redirects")

    def _connect(self, current: str, url: str) -> http.client.HTTPConnection:
        parts = urlsplit(current)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise StorageError(url, f"cannot follow a redirect to a {scheme or 'relative'} URL")
        try:
            port = parts.port
        except ValueError as exc:
            raise StorageError(url, "invalid port in URL") from exc
        timeout = self.settings.timeout_seconds
        block = self.settings.chunk_size
        if scheme == "https":
            return http.client.HTTPSConnection(
                parts.hostname, port, timeout=timeout, context=self._tls, blocksize=block
            )
        return http.client.HTTPConnection(parts.hostname, port, timeout=timeout, blocksize=block)

    def _send(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        current: str,
        url: str,
        body: BinaryIO | None,
        headers: dict[str, str],
    ) -> http.client.HTTPResponse:
        try:
            conn.request(method, _request_target(current), body=body, headers=headers)
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise StorageError(url, f"TLS certificate not trusted: {exc.verify_message}") from exc
        except http.client.InvalidURL as exc:
            conn.close()
            raise StorageError(url, "invalid URL") from exc
        except (OSError, http.client.HTTPException) as exc:
            # A server may answer (e.g. 401) and close before reading a whole PUT body.
            if body is None or not isinstance(exc, BrokenPipeError | ConnectionResetError):
                conn.close()
                raise TransientError(url, f"connection failed: {_describe(exc)}") from exc
        try:
            return conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise TransientError(url, f"no response: {_describe(exc)}") from exc

    def _authorization(self, original: str, current: str) -> str | None:
        """Credentials for ``current``; the original URL's own go only to its own origin."""
        if _origin(current) == _origin(original):
            creds = credentials_for(original, self.settings.hosts, _DEFAULT_PORTS)
        else:
            creds = credentials_for(current, self.settings.hosts, _DEFAULT_PORTS)
        return creds.authorization() if creds else None

    def _copy_body(self, resp: http.client.HTTPResponse, fh: BinaryIO, url: str) -> int:
        buf = bytearray(self.settings.chunk_size)
        view = memoryview(buf)
        total = 0
        while True:
            try:
                n = resp.readinto(view)
            except (OSError, http.client.HTTPException) as exc:
                raise TransientError(url, f"download interrupted: {_describe(exc)}") from exc
            if not n:
                return total
            try:
                fh.write(view[:n])
            except OSError as exc:
                raise StorageError(url, f"cannot write: {exc.strerror}") from exc
            total += n


def _check_status(resp: http.client.HTTPResponse, url: str) -> None:
    status = resp.status
    if 200 <= status < 300:
        return
    reason = f"HTTP {status} {safe_reason(resp.reason or '')}".rstrip()
    if status in (404, 410):
        raise NotFoundError(url, reason)
    if status in (401, 403):
        raise AccessDeniedError(url, reason)
    if status >= 500 or status in (408, 429):
        raise TransientError(url, reason)
    raise StorageError(url, reason)


def _describe(exc: BaseException) -> str:
    # repr() of socket errors never holds the URL; still clean it, servers echo things.
    return safe_reason(f"{type(exc).__name__}: {exc}")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or ""), port


def _request_target(url: str) -> str:
    """The path and query exactly as written (fragment dropped), minimally made legal."""
    rest = url.split("://", 1)[1]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    target = rest[cut:].split("#", 1)[0]
    if not target.startswith("/"):
        target = "/" + target
    return _ILLEGAL_IN_TARGET.sub(lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), target)


def _as_directory(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return parts._replace(path=path, query="", fragment="").geturl()


def _children(dir_url: str, hrefs: list[str]) -> list[tuple[str, str]]:
    """(absolute URL, local name) of each listed entry directly below ``dir_url``."""
    found: dict[str, str] = {}
    for href in hrefs:
        if not href or href[0] in "?#/" or "://" in href or href.startswith("../"):
            continue
        child = urljoin(dir_url, href.split("#", 1)[0])
        if "?" in child or not child.startswith(dir_url) or child == dir_url:
            continue
        rest = child[len(dir_url) :]
        name = unquote(rest.rstrip("/"))
        if not name or "/" in rest.rstrip("/") or "/" in name or name in (".", ".."):
            continue
        found[child] = name
    return sorted(found.items())


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(value for key, value in attrs if key == "href" and value)


def _hrefs(html: str) -> list[str]:
    parser = _AnchorParser()
    parser.feed(html)
    parser.close()
    return parser.hrefs
