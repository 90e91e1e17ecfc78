"""Assembling a running TESP from settings: store, Pulsar (embedded or external), service.

The composition root: the only place that knows every concrete class. The server, the CLI
and the embedded mode of the workflow adapters all start TESP through :class:`Tesp`.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from tesp_core.backends.base import Backend
from tesp_core.backends.embedded import EmbeddedPulsar
from tesp_core.backends.pulsar import PulsarBackend
from tesp_core.backends.router import BackendPool, PoolMember
from tesp_core.config import AMQP_MODULE, BackendSettings, Settings
from tesp_core.policy import Policy
from tesp_core.routing import BackendProfile, parse_labels
from tesp_core.service import Limits, TaskService
from tesp_core.storage.redact import redact_url
from tesp_core.store.base import TaskStore
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
        # The database keeps the URLs clients sent (credentials included) and job specs hold
        # storage secrets: nobody but this user may enter the data directory.
        data_dir.chmod(0o700)
        if s.effective_runtime() == "none" and s.auth_mode != "none":
            log.warning(
                "runtime 'none' with authentication: every authenticated user runs commands "
                "on this host as this server's user and can read other tasks' files; use "
                "bwrap or a container runtime unless all users are trusted"
            )
        store = open_store(s, data_dir)
        zipapp = build_zipapp(data_dir / "worker")
        backend, max_in_flight = self._backends(data_dir, zipapp)
        storage = worker_storage(s)
        self.service = TaskService(
            store,
            backend,
            policy=Policy(
                schemes=SUPPORTED_SCHEMES,
                file_roots=tuple(s.file_roots),
                max_content_bytes=s.max_content_bytes,
                scheduler=s.has_scheduler(),
            ),
            worker_options=WorkerOptions(
                runtime=s.effective_runtime(),
                file_roots=tuple(s.file_roots),
                storage=storage,
                log_tail_bytes=s.log_tail_bytes,
                hide=(str(data_dir),),
            ),
            worker_zipapp=zipapp,
            limits=Limits(
                max_in_flight=max_in_flight,
                poll_max=s.poll_interval_max,
                max_task_seconds=s.max_task_seconds,
                backend_retry_seconds=s.backend_retry_seconds,
                heartbeat_stale_seconds=s.heartbeat_stale_seconds,
                lease_seconds=s.lease_seconds if s.database_url is not None else None,
            ),
        )
        self.service.start(dispatch=s.dispatch)
        log.info(
            "TESP ready: data in %s, backends %s, runtime %s",
            data_dir,
            backend.names,
            s.effective_runtime(),
        )
        return self

    # -- backends (docs/deployment-backends.md) ----------------------------------------------

    def _backends(self, data_dir: Path, zipapp: Path) -> tuple[BackendPool, int]:
        """The named backends (or the one ``default`` Pulsar) and the in-flight limit."""
        s = self.settings
        if not s.backends:
            single = BackendSettings.model_construct(
                url=s.pulsar_url,
                token=s.pulsar_token if s.pulsar_url else None,
                manager=s.pulsar_manager,
                capacity=s.max_in_flight,
                worker_python=s.worker_python,
                transport=s.pulsar_transport,
                amqp_url=s.pulsar_amqp_url,
            )
            backend, shown = self._backend(single, data_dir, zipapp)
            return BackendPool.single(backend, shown, s.max_in_flight), s.max_in_flight
        members = []
        for name, b in s.backends.items():
            backend, shown = self._backend(b, data_dir, zipapp)
            labels = parse_labels(b.labels, f"backends.{name}.labels")
            profile = BackendProfile(
                name, b.capacity, labels, b.max_cpu_cores, b.max_ram_gb, b.max_disk_gb
            )
            members.append(PoolMember(profile, backend, shown))
        total = sum(b.capacity for b in s.backends.values())
        # max_in_flight, when set, still caps the total over every backend.
        limit = min(total, s.max_in_flight) if "max_in_flight" in s.model_fields_set else total
        return BackendPool(members), limit

    def _backend(self, b: BackendSettings, data_dir: Path, zipapp: Path) -> tuple[Backend, str]:
        """One backend and its URL as task logs show it (credentials redacted)."""
        token = b.token.get_secret_value() if b.token else None
        if b.transport == "amqp":
            assert b.amqp_url is not None  # BackendSettings checked it
            shown = redact_url(b.url or b.amqp_url.get_secret_value())
            return _amqp_backend(b, token, data_dir), shown
        if b.url is None:
            self.pulsar = EmbeddedPulsar(data_dir / "pulsar", concurrent_jobs=b.capacity)
            url = self.pulsar.start()
            embedded = PulsarBackend(
                url,
                token=self.pulsar.token,
                manager=b.manager,
                worker_python=b.worker_python or sys.executable,
                concurrency=b.capacity + 4,
                local_staging=data_dir / "pulsar" / "staging",
                local_worker=zipapp,
            )
            return embedded, redact_url(url)
        external = PulsarBackend(
            b.url,
            token=token,
            manager=b.manager,
            worker_python=b.worker_python or "python3",
            concurrency=b.capacity + 4,
        )
        return external, redact_url(b.url)

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


def _amqp_backend(b: BackendSettings, token: str | None, data_dir: Path) -> Backend:
    """A PulsarAmqpBackend, imported only when a backend asks for the AMQP transport."""
    module = importlib.import_module(AMQP_MODULE)
    assert b.amqp_url is not None  # BackendSettings checked it
    backend: Backend = module.PulsarAmqpBackend(
        b.url,
        amqp_url=b.amqp_url.get_secret_value(),
        state_dir=data_dir / "amqp",
        token=token,
        manager=b.manager,
        worker_python=b.worker_python or "python3",
    )
    return backend


def open_store(settings: Settings, data_dir: Path) -> TaskStore:
    """PostgreSQL when ``database_url`` is set (replicas may share it), else SQLite."""
    if settings.database_url is None:
        return SQLiteTaskStore(data_dir / "tasks.sqlite")
    try:
        from tesp_core.store.postgres import PostgresTaskStore
    except ImportError as exc:
        raise RuntimeError("database_url needs the postgres extra: tesp[postgres]") from exc
    backends = settings.backends.values()
    if any(b.url is None for b in backends) or (not backends and settings.pulsar_url is None):
        log.warning(
            "database_url with the embedded Pulsar: other replicas cannot reach its jobs and "
            "will not finish its tasks if this one dies; give every replica the same "
            "external Pulsar (docs/deployment-replicas.md)"
        )
    return PostgresTaskStore(
        settings.database_url.get_secret_value(), pool_size=settings.database_pool_size
    )


def storage_listing(settings: Settings) -> list[str]:
    """What ``service-info.storage`` advertises: the file roots, the remote schemes, and the
    S3 endpoint when one is configured.
    """
    roots = [Path(r).as_uri() for r in settings.file_roots]
    listing = [*roots, "http://", "https://", "ftp://", "s3://"]
    endpoint = s3_endpoint(settings)
    if endpoint:
        listing.append(f"s3:// (endpoint {redact_url(endpoint)})")
    return listing


# -- the worker spec's storage section ---------------------------------------------------
#
# The embedded Pulsar starts jobs in a clean environment (HOME, PATH, TMPDIR only), and an
# external Pulsar's nodes have their own, so nothing the server's environment says about
# storage reaches the worker unless it travels in the spec. Shape: docs/worker-protocol.md.


def s3_endpoint(settings: Settings) -> str | None:
    """The S3 endpoint: the setting, else the server's ``AWS_ENDPOINT_URL_S3`` /
    ``AWS_ENDPOINT_URL`` (as boto3 reads them), else None (AWS itself).
    """
    if settings.s3_endpoint_url:
        return settings.s3_endpoint_url
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


@dataclass(frozen=True, repr=False)
class AwsChain:
    """What the server's own AWS configuration resolves to (credentials frozen)."""

    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    method: str | None = None

    def __repr__(self) -> str:
        return f"AwsChain(region={self.region!r}, method={self.method!r}, credentials=***)"


def resolve_aws_chain() -> AwsChain:
    """Resolve boto3's credential chain and region once, here on the server.

    Empty when boto3 is not installed or nothing is configured. The EC2 instance-metadata
    provider is left out: those credentials belong to the machine (a worker on it reaches
    them itself), and probing for them off EC2 costs seconds at every start.
    """
    try:
        import boto3  # noqa: F401 - the documented requirement; botocore comes with it
        import botocore.session
    except ImportError:
        return AwsChain()
    try:
        session = botocore.session.Session()
        session.get_component("credential_provider").remove("iam-role")
        region = session.get_config_variable("region") or None
        creds = session.get_credentials()
        frozen = creds.get_frozen_credentials() if creds is not None else None
    except Exception as exc:  # a broken ~/.aws raises many kinds; none must stop TESP
        log.warning("S3: the server's AWS configuration is unusable (%s)", type(exc).__name__)
        return AwsChain()
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        return AwsChain(region=region)
    return AwsChain(
        region, frozen.access_key, frozen.secret_key, frozen.token or None, creds.method
    )


def worker_storage(settings: Settings, chain: AwsChain | None = None) -> dict[str, Any]:
    """The ``storage`` section of every worker spec (``file_roots`` is added by translate).

    ``chain`` defaults to :func:`resolve_aws_chain`; it is consulted for what the S3
    settings leave unset. Holds secrets: never log the result.
    """
    storage: dict[str, Any] = {}
    s3 = _s3_section(settings, chain)
    if s3:
        storage["s3"] = s3
    if settings.http_hosts:
        storage["http"] = {
            "hosts": {
                host: {
                    "username": c.username,
                    "password": _reveal(c.password),
                    "bearer_token": _reveal(c.bearer_token),
                }
                for host, c in settings.http_hosts.items()
            }
        }
    if settings.ftp_hosts:
        storage["ftp"] = {
            "hosts": {
                host: {"username": c.username, "password": _reveal(c.password)}
                for host, c in settings.ftp_hosts.items()
            }
        }
    log.info(
        "storage: S3 endpoint %s; HTTP credentials for %s; FTP logins for %s",
        redact_url(s3["endpoint_url"]) if "endpoint_url" in s3 else "(AWS)",
        sorted(settings.http_hosts) or "no host",
        sorted(settings.ftp_hosts) or "no host",
    )
    return storage


def _s3_section(settings: Settings, chain: AwsChain | None) -> dict[str, str]:
    explicit = settings.s3_access_key_id is not None
    if chain is None:
        need_chain = settings.s3_region is None or (not explicit and settings.s3_server_credentials)
        chain = resolve_aws_chain() if need_chain else AwsChain()
    values: dict[str, str | None] = {
        "endpoint_url": s3_endpoint(settings),
        "region": settings.s3_region or chain.region,
        "addressing_style": settings.s3_addressing_style,
    }
    if explicit:
        values["aws_access_key_id"] = _reveal(settings.s3_access_key_id)
        values["aws_secret_access_key"] = _reveal(settings.s3_secret_access_key)
        values["aws_session_token"] = _reveal(settings.s3_session_token)
        log.info("S3: workers get the configured credentials (s3_access_key_id)")
    elif settings.s3_server_credentials and chain.access_key_id:
        values["aws_access_key_id"] = chain.access_key_id
        values["aws_secret_access_key"] = chain.secret_access_key
        values["aws_session_token"] = chain.session_token
        log.info("S3: workers get the server's AWS credentials (from %s)", chain.method)
        if chain.session_token:
            log.warning(
                "S3: the server's AWS credentials are temporary (%s); they were read once at "
                "start-up and will expire. Configure s3_access_key_id/s3_secret_access_key, "
                "or set s3_server_credentials = false to let nodes use their own.",
                chain.method,
            )
    return {key: value for key, value in values.items() if value}


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None
