"""Being told when a local job's worker writes its progress or result file (Linux inotify).

The embedded Pulsar's job directories are on this host. Watching them turns "poll every
few milliseconds in case the worker wrote something" into "look when it did": a finished
task is seen as soon as its ``result.json`` lands, and an idle one costs nothing. The
service still polls (more slowly), so a missed or unavailable notification only delays.

inotify is reached through ctypes (the standard library has no binding). Where it is
missing (not Linux, no libc symbol, the per-user watch limit reached) :class:`DirWatcher`
says so with ``available`` / ``add() -> False`` and the caller polls as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import struct
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# <sys/inotify.h>
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_IGNORED = 0x00008000
_IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


class DirWatcher:
    """Calls ``on_change(key)`` (from its own thread) when a file named in ``names`` is
    written or moved into a directory added under ``key``."""

    def __init__(self, on_change: Callable[[str], None], names: frozenset[str]) -> None:
        self._on_change = on_change
        self._names = {name.encode() for name in names}
        self._lock = threading.Lock()
        self._keys: dict[int, str] = {}
        self._wds: dict[str, int] = {}
        self._libc = _libc()
        self._fd = -1
        if self._libc is not None:
            self._fd = self._libc.inotify_init1(_IN_CLOEXEC)
        self.available = self._fd >= 0
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = os.pipe() if self.available else (-1, -1)
        if self.available:
            self._thread = threading.Thread(target=self._run, name="tesp-watch", daemon=True)
            self._thread.start()
        else:
            log.info("inotify is not available: local jobs are polled")

    def add(self, key: str, directory: str) -> bool:
        """Watch ``directory`` for ``key``; False when it cannot be (then poll it)."""
        if not self.available or self._libc is None:
            return False
        # A file written in place is reported when closed, one renamed over when it lands.
        mask = _IN_CLOSE_WRITE | _IN_MOVED_TO
        with self._lock:
            wd = self._libc.inotify_add_watch(self._fd, os.fsencode(directory), mask)
            if wd < 0:
                err = ctypes.get_errno()
                log.debug("job %s: cannot watch %s: %s", key, directory, os.strerror(err))
                return False
            self._keys[wd] = key
            self._wds[key] = wd
        return True

    def remove(self, key: str) -> None:
        """Stop watching ``key``'s directory (a deleted directory drops its watch itself)."""
        with self._lock:
            wd = self._wds.pop(key, None)
            if wd is None:
                return
            self._keys.pop(wd, None)
            if self._libc is not None:
                self._libc.inotify_rm_watch(self._fd, wd)

    def close(self) -> None:
        """Stop the thread and release the inotify instance."""
        if not self.available:
            return
        self.available = False
        os.write(self._stop_w, b"x")
        if self._thread is not None:
            self._thread.join(5)
        for fd in (self._fd, self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self._fd, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                data = os.read(self._fd, 64 * 1024)
            except OSError as exc:
                log.warning("inotify read failed, local jobs fall back to polling: %s", exc)
                return
            for key in self._changed(data):
                try:
                    self._on_change(key)
                except Exception:  # the watcher must outlive any one callback
                    log.exception("job %s: change callback failed", key)

    def _changed(self, data: bytes) -> list[str]:
        """The keys whose watched files the events in ``data`` touch, each once, in order."""
        keys: dict[str, None] = {}
        offset = 0
        with self._lock:
            while offset + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                if mask & _IN_IGNORED:  # the directory went away (the job was cleaned)
                    key = self._keys.pop(wd, None)
                    if key is not None:
                        self._wds.pop(key, None)
                    continue
                key = self._keys.get(wd)
                if key is not None and name in self._names:
                    keys[key] = None
        return list(keys)
