"""Assembling a running TESP from settings: store, Pulsar (embedded or external), service.

The composition root: the only place that knows every concrete class. The server, the CLI
and the embedded mode of the workflow adapters all start TESP through :class:`Tesp`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import TracebackType

from tesp_core.backends.embedded import EmbeddedPulsar
from tesp_core.backends.pulsar import PulsarBackend
from tesp_core.config import Settings
from tesp_core.policy import Policy
from tesp_core.service import Limits, TaskService
from tesp_core.store.sqlite import SQLiteTaskStore
from tesp_core.translate import WorkerOptions
from tesp_core.worker.package import build_zipapp

log = logging.getLogger(__name__)

# Schemes the worker has a driver for. s3 needs boto3 on the compute node.
SUPPORTED_SCHEMES = frozenset({"file", "http", "https", "ftp", "s3"})


class Tesp:
    """A started TESP: ``with Tesp(settings) as tesp: tesp.service.create_task(...)``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pulsar: EmbeddedPulsar | None = None
        self.service: TaskService

    def start(self) -> Tesp:
        """Open the store, start (or reach) Pulsar, and start dispatching."""
        s = self.settings
        data_dir = s.data_dir.expanduser().resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        store = SQLiteTaskStore(data_dir / "tasks.sqlite")
        url, token, python = s.pulsar_url, s.pulsar_token, s.worker_python
        if url is None:
            self.pulsar = EmbeddedPulsar(data_dir / "pulsar", concurrent_jobs=s.max_in_flight)
            url = self.pulsar.start()
            token_value: str | None = self.pulsar.token
            python = python or sys.executable
        else:
            token_value = token.get_secret_value() if token else None
            python = python or "python3"
        backend = PulsarBackend(
            url,
            token=token_value,
            manager=s.pulsar_manager,
            worker_python=python,
            concurrency=s.max_in_flight + 4,
        )
        storage: dict[str, object] = {}
        if s.s3_endpoint_url:
            storage["s3"] = {"endpoint_url": s.s3_endpoint_url}
        self.service = TaskService(
            store,
            backend,
            policy=Policy(
                schemes=SUPPORTED_SCHEMES,
                file_roots=tuple(s.file_roots),
                max_content_bytes=s.max_content_bytes,
            ),
            worker_options=WorkerOptions(
                runtime=s.effective_runtime(),
                file_roots=tuple(s.file_roots),
                storage=storage,
                log_tail_bytes=s.log_tail_bytes,
            ),
            worker_zipapp=build_zipapp(data_dir / "worker"),
            limits=Limits(
                max_in_flight=s.max_in_flight,
                poll_max=s.poll_interval_max,
                max_task_seconds=s.max_task_seconds,
            ),
        )
        self.service.start()
        log.info(
            "TESP ready: data in %s, Pulsar at %s, runtime %s", data_dir, url, s.effective_runtime()
        )
        return self

    def stop(self) -> None:
        """Stop dispatching, close the store, stop the embedded Pulsar."""
        service = getattr(self, "service", None)
        if service is not None:
            service.stop()
            service.backend.close()
            service.store.close()
        if self.pulsar is not None:
            self.pulsar.stop()

    def __enter__(self) -> Tesp:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def storage_listing(settings: Settings) -> list[str]:
    """What ``service-info.storage`` advertises: the file roots and the remote schemes."""
    roots = [Path(r).as_uri() for r in settings.file_roots]
    return [*roots, "http://", "https://", "ftp://", "s3://"]
