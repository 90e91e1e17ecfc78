"""The TESP worker: runs one TES task on a compute node, inside a Pulsar job.

It imports only the standard library and :mod:`tesp_core.storage`, because it is shipped
as ``tesp-worker.pyz`` (see :func:`build_zipapp`) to nodes where TESP is not installed.
The contract with the service is ``docs/worker-protocol.md``.

The names below are loaded on first use: every job starts a worker, and this package is
imported before ``__main__`` runs, so importing the server-side packaging code (zipapp,
hashlib...) here would be paid by every task (38 ms of a 160 ms ``true`` task, measured).
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: the worker does not import typing at all (see spec.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from tesp_core.worker.package import ZIPAPP_NAME, build_zipapp
    from tesp_core.worker.spec import SpecError, WorkerSpec, parse_spec

__all__ = ["ZIPAPP_NAME", "SpecError", "WorkerSpec", "build_zipapp", "parse_spec"]

_WHERE = {
    "ZIPAPP_NAME": "package",
    "build_zipapp": "package",
    "SpecError": "spec",
    "WorkerSpec": "spec",
    "parse_spec": "spec",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # __import__, not importlib.import_module: importing importlib (and warnings) here
    # would be paid by every task too.
    return getattr(__import__(f"{__name__}.{module}", fromlist=[name]), name)
