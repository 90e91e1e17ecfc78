"""Choosing the transport for a URL."""

from __future__ import annotations

from tesp_core.storage.base import TYPE_CHECKING, StorageError

if TYPE_CHECKING:
    from tesp_core.storage.base import Transport, TransportConfig


def transport_for(url: str, config: TransportConfig) -> Transport:
    """Return the driver for ``url``'s scheme, configured from the worker spec's ``storage``.

    ``http``/``https`` use ``config["http"]``, ``ftp`` uses ``config["ftp"]``, ``s3`` uses
    ``config["s3"]`` (see docs/storage.md). A malformed section is a :class:`StorageError`
    naming the key, never its value.
    """
    # Imported here, like the drivers: a task without inputs or outputs never needs it.
    from urllib.parse import urlsplit

    scheme = urlsplit(url).scheme.lower() or "file"
    if scheme == "file":
        from tesp_core.storage.file import FileTransport

        return FileTransport(config.get("file_roots", []), config.get("file_denied", []))
    section = "http" if scheme == "https" else scheme
    raw = config.get(section) or {}
    if not isinstance(raw, dict):
        raise StorageError(url, f"storage config: {section!r} must be an object")
    try:
        if scheme in ("http", "https"):
            from tesp_core.storage.http import HttpTransport

            return HttpTransport(raw)
        if scheme == "ftp":
            from tesp_core.storage.ftp import FtpTransport

            return FtpTransport(raw)
        if scheme == "s3":
            from tesp_core.storage.s3 import S3Transport

            return S3Transport(raw)
    except ValueError as exc:
        raise StorageError(url, f"storage config {section!r}: {exc}") from exc
    raise StorageError(url, f"unsupported URL scheme {scheme!r}")
