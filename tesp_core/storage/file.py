"""The ``file://`` driver (and plain absolute paths), confined to configured roots."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tesp_core.storage.base import AccessDeniedError, NotFoundError, StorageError

_LOCAL_HOSTS = ("", "localhost")


class FileTransport:
    """Copies between local paths and ``file://`` URLs inside ``file_roots``.

    Every path is resolved (symlinks included) before the check, so neither ``..`` nor a
    symlink leads outside the roots. An empty ``file_roots`` refuses everything.
    """

    def __init__(self, file_roots: list[str], denied: list[str] | None = None) -> None:
        self._roots = [Path(os.path.realpath(root)) for root in file_roots]
        # Inside a root but never reachable: TESP's data directory (a file root such as
        # "/" or "/srv" may contain it; its files hold every task's secrets).
        self._denied = [Path(os.path.realpath(path)) for path in denied or []]

    def _local(self, url: str) -> Path:
        """The resolved local path of ``url``, or AccessDeniedError outside the roots."""
        if url.startswith("/"):
            raw = url
        else:
            parts = urlsplit(url)
            if parts.scheme.lower() != "file" or parts.netloc.lower() not in _LOCAL_HOSTS:
                raise StorageError(url, "not a local file URL")
            raw = unquote(parts.path)
        if not raw.startswith("/") or "\x00" in raw:
            raise StorageError(url, "not an absolute path")
        return self._confine(url, Path(os.path.realpath(raw)))

    def _confine(self, url: str, path: Path) -> Path:
        if not self._roots:
            raise AccessDeniedError(url, "no file roots are allowed on this node")
        if not any(path == root or path.is_relative_to(root) for root in self._roots):
            raise AccessDeniedError(url, "path is outside the allowed file roots")
        if any(path == root or path.is_relative_to(root) for root in self._denied):
            raise AccessDeniedError(url, "path is in TESP's data directory")
        return path

    def download_file(self, url: str, dest: Path) -> int:
        """Copy the file at ``url`` to ``dest`` (parents created); return its size."""
        src = self._local(url)
        if not src.exists():
            raise NotFoundError(url, "no such file")
        if not src.is_file():
            raise StorageError(url, "not a regular file")
        return _copy(url, src, dest)

    def download_dir(self, url: str, dest: Path) -> int:
        """Copy the tree at ``url`` to ``dest``; every entry is confined like the root."""
        src = self._local(url)
        if not src.exists():
            raise NotFoundError(url, "no such directory")
        if not src.is_dir():
            raise StorageError(url, "not a directory")
        total = 0
        try:
            dest.mkdir(parents=True, exist_ok=True)
            for current, dirs, files in os.walk(src, followlinks=False):
                rel = Path(current).relative_to(src)
                for name in sorted(dirs):
                    # Linked directories are skipped: following them could loop forever.
                    if not Path(current, name).is_symlink():
                        (dest / rel / name).mkdir(parents=True, exist_ok=True)
                for name in sorted(files):
                    entry = self._confine(url, Path(os.path.realpath(Path(current, name))))
                    if entry.is_file():
                        total += _copy(url, entry, dest / rel / name)
        except OSError as exc:
            raise StorageError(url, exc.strerror or type(exc).__name__) from exc
        return total

    def upload_file(self, src: Path, url: str) -> int:
        """Copy local ``src`` to ``url`` (parent directories created); return its size."""
        dest = self._local(url)
        if dest.is_dir():
            raise StorageError(url, "destination is a directory")
        return _copy(url, src, dest)


def _copy(url: str, src: Path, dest: Path) -> int:
    """Stream ``src`` to ``dest`` in constant memory; foreign errors become StorageError."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with src.open("rb") as reader, dest.open("wb") as writer:
            shutil.copyfileobj(reader, writer, 1024 * 1024)
            return writer.tell()
    except FileNotFoundError as exc:
        raise NotFoundError(url, exc.strerror or "no such file") from exc
    except PermissionError as exc:
        raise AccessDeniedError(url, exc.strerror or "permission denied") from exc
    except OSError as exc:
        raise StorageError(url, exc.strerror or type(exc).__name__) from exc
