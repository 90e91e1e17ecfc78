"""The worker's log lines, without importing :mod:`logging` for tasks that transfer nothing.

Importing logging (with traceback, linecache, tokenize...) cost ~25M instructions, a fifth
of a ``true`` task's worker (issue 8). The worker logs a few INFO lines per task, so until
:func:`use_logging` is called they are written here, in exactly the format the worker
configured logging with before. The storage drivers log through :mod:`logging` itself, so
staging calls :func:`use_logging` before the first transfer; from then on every line goes
through a real, identically configured logging.
"""

from __future__ import annotations

import sys
import time

FORMAT = "%(asctime)s %(levelname)s %(message)s"
_real = False


def use_logging() -> None:
    """Configure :mod:`logging` as the worker always did and send every later line to it."""
    global _real
    if _real:
        return
    import logging

    logging.basicConfig(level=logging.INFO, format=FORMAT)
    _real = True


class Logger:
    """The subset of :class:`logging.Logger` the worker uses (INFO and above are shown)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def info(self, msg: str, *args: object) -> None:
        """Log ``msg % args`` at INFO."""
        self._emit("INFO", msg, args)

    def warning(self, msg: str, *args: object) -> None:
        """Log ``msg % args`` at WARNING."""
        self._emit("WARNING", msg, args)

    def exception(self, msg: str, *args: object) -> None:
        """Log ``msg % args`` at ERROR with the traceback being handled."""
        self._emit("ERROR", msg, args, with_traceback=True)

    def _emit(
        self, level: str, msg: str, args: tuple[object, ...], with_traceback: bool = False
    ) -> None:
        if _real:
            import logging

            real = logging.getLogger(self.name)
            if with_traceback:
                real.exception(msg, *args)
            else:
                real.log(getattr(logging, level), msg, *args)
            return
        line = f"{_asctime()} {level} {msg % args if args else msg}"
        if with_traceback and sys.exc_info()[0] is not None:
            import traceback

            text = "".join(traceback.format_exception(*sys.exc_info()))
            line += "\n" + text.removesuffix("\n")
        try:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # as logging does: a closed or broken stderr must not fail the task


def _asctime() -> str:
    """logging's default ``asctime``: local time, ``YYYY-MM-DD HH:MM:SS,mmm``."""
    now = time.time()
    msecs = int((now - int(now)) * 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{msecs:03d}"


def get_logger(name: str) -> Logger:
    """A logger named like the module, as ``logging.getLogger(__name__)`` would be."""
    return Logger(name)
