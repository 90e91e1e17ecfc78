"""The TESP worker: runs one TES task on a compute node, inside a Pulsar job.

It imports only the standard library and :mod:`tesp_core.storage`, because it is shipped
as ``tesp-worker.pyz`` (see :func:`build_zipapp`) to nodes where TESP is not installed.
The contract with the service is ``docs/worker-protocol.md``.
"""

from tesp_core.worker.package import ZIPAPP_NAME, build_zipapp
from tesp_core.worker.spec import SpecError, WorkerSpec, parse_spec

__all__ = ["ZIPAPP_NAME", "SpecError", "WorkerSpec", "build_zipapp", "parse_spec"]
