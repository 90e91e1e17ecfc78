"""TESP settings: a TOML file plus ``TESP_*`` environment variables (pydantic-settings).

Precedence, highest first: explicit arguments (e.g. ``tesp serve --port``), ``TESP_*``
environment variables, the TOML file named by ``--config`` or ``TESP_CONFIG``, defaults.
Settings are built when a command runs, never at import time.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tesp_core import settings_checks as checks

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("tesp_config_file", default=None)

RuntimeKind = Literal["none", "bwrap", "docker", "podman", "apptainer", "singularity"]


class FtpHostCredentials(BaseModel):
    """An FTP login for one ``host[:port]`` (setting ``ftp_hosts``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    username: str
    password: SecretStr | None = None


class HttpHostCredentials(BaseModel):
    """HTTP Basic credentials or a bearer token for one ``host[:port]`` (``http_hosts``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    username: str | None = None
    password: SecretStr | None = None
    bearer_token: SecretStr | None = None

    @model_validator(mode="after")
    def _username_or_token(self) -> HttpHostCredentials:
        if self.username is None and self.bearer_token is None:
            raise ValueError("give a username (and password) or a bearer_token")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        return self


class BasicUserSetting(BaseModel):
    """One HTTP Basic user: a ``tesp hash-password`` hash and the user's roles."""

    model_config = ConfigDict(extra="forbid")

    password_hash: SecretStr
    roles: list[str] = Field(default_factory=lambda: ["user"])


# Where the AMQP transport's backend class, PulsarAmqpBackend, lives (imported lazily).
AMQP_MODULE = "tesp_core.backends.pulsar_amqp"


def check_amqp_url(url: SecretStr | None, field: str) -> None:
    """ValueError naming ``field`` when ``url`` is no usable amqp(s):// URL. The message
    never contains any part of the URL: a bad one may hold half a password."""
    from urllib.parse import urlsplit

    if url is None:
        return
    try:
        parts = urlsplit(url.get_secret_value())
        port, host = parts.port, parts.hostname
    except ValueError:
        port, host = None, None
        parts = None
    if parts is None or parts.scheme not in ("amqp", "amqps") or not host or port == 0:
        raise ValueError(
            f"{field} is not a valid amqp:// or amqps:// URL "
            "(amqp://USER:PASSWORD@HOST:PORT/VHOST); percent-encode special characters such "
            "as # / ? @ : % in the user name and password (# as %23, / as %2F)"
        )


class BackendSettings(BaseModel):
    """One named Pulsar backend (setting ``backends``, TOML ``[backends.NAME]``).

    See docs/deployment-backends.md for routing between several.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    # Pulsar's REST URL. None with transport "rest": the embedded Pulsar (at most one).
    url: str | None = None
    token: SecretStr | None = None
    manager: str = "_default_"
    # How many of TESP's jobs this backend runs at once.
    capacity: int = Field(default=8, ge=1)
    # ["gpu", "site=eu"] or {gpu = "", site = "eu"}; tasks ask with backend_parameters.labels.
    labels: list[str] | dict[str, str] = Field(default_factory=list)
    # The largest task this backend fits (None: no limit).
    max_cpu_cores: int | None = Field(default=None, ge=1)
    max_ram_gb: float | None = Field(default=None, gt=0)
    max_disk_gb: float | None = Field(default=None, gt=0)
    # None: this interpreter for the embedded Pulsar, python3 for an external one.
    worker_python: str | None = None
    transport: Literal["rest", "amqp"] = "rest"
    amqp_url: SecretStr | None = None
    # "slurm": this Pulsar submits to Slurm, so tasks' slurm_* backend_parameters apply
    # (and service-info advertises them; docs/deployment-slurm.md).
    scheduler: Literal["slurm"] | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return checks.check_http_url(value)

    @field_validator("labels", mode="before")
    @classmethod
    def _label_shape(cls, value: Any) -> Any:
        return checks.check_label_shape(value)

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: list[str] | dict[str, str]) -> list[str] | dict[str, str]:
        from tesp_core.routing import parse_labels

        try:
            parse_labels(value, "labels")
        except ValueError as exc:  # drop parse_labels' "labels: " prefix: loc says it
            raise ValueError(str(exc).partition(": ")[2]) from None
        return value

    @model_validator(mode="after")
    def _transport(self) -> BackendSettings:
        if self.transport == "amqp" and self.amqp_url is None:
            raise ValueError("transport 'amqp' needs amqp_url")
        check_amqp_url(self.amqp_url, "amqp_url")
        if self.transport == "amqp" and importlib.util.find_spec(AMQP_MODULE) is None:
            raise ValueError(f"transport 'amqp' needs {AMQP_MODULE}, which this TESP lacks")
        if self.token is not None and self.url is None:
            raise ValueError("a token needs a url (the embedded Pulsar makes its own)")
        return self


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tesp"


class Settings(BaseSettings):
    """Everything a TESP server can be told. See docs/configuration.md."""

    # hide_input_in_errors: a ValidationError must not echo a credential it was given.
    model_config = SettingsConfigDict(env_prefix="TESP_", extra="forbid", hide_input_in_errors=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Field(default_factory=_default_data_dir)
    # Tasks in PostgreSQL (postgresql://user:password@host/db, needs the postgres extra)
    # instead of SQLite in data_dir, so several replicas can share them
    # (docs/deployment-replicas.md). A replica silent for lease_seconds is presumed dead.
    database_url: SecretStr | None = None
    lease_seconds: float = Field(default=30.0, ge=1)
    database_pool_size: int = Field(default=10, ge=1)

    # Several named Pulsars with routing (docs/deployment-backends.md). Empty: the one
    # Pulsar below, named "default".
    backends: dict[str, BackendSettings] = Field(default_factory=dict)
    # Pulsar. No URL: TESP starts an embedded Pulsar on loopback and stops it on exit.
    pulsar_url: str | None = None
    pulsar_token: SecretStr | None = None
    pulsar_manager: str = "_default_"
    # "amqp": reach that Pulsar only through RabbitMQ (its message_queue_url mode, no REST
    # call; docs/deployment-amqp.md). Needs pulsar_amqp_url and the amqp extra.
    pulsar_transport: Literal["rest", "amqp"] = "rest"
    pulsar_amqp_url: SecretStr | None = None
    # "slurm": that Pulsar submits to Slurm (slurm_* backend_parameters apply).
    pulsar_scheduler: Literal["slurm"] | None = None
    # How many Pulsar jobs TESP keeps in flight (Pulsar's own queue limit is not honoured).
    max_in_flight: int = Field(default=8, ge=1)
    # false: accept and store tasks but send none to Pulsar (they stay QUEUED).
    dispatch: bool = True
    # Give up on a job Pulsar reports running after this long (None: no limit).
    max_task_seconds: float | None = Field(default=None, gt=0)
    # While Pulsar is unreachable, tasks wait and are retried with backoff; after this long
    # a task that could not be submitted or polled ends in SYSTEM_ERROR.
    backend_retry_seconds: float = Field(default=300.0, gt=0)
    # A running worker rewrites its progress file every 10 s; a job Pulsar still calls
    # running whose worker went silent this long (a restarted node or Pulsar) fails.
    heartbeat_stale_seconds: float = Field(default=120.0, ge=20)
    poll_interval_max: float = Field(default=2.0, gt=0)

    # Where executors run and how. None picks bwrap when installed, else none.
    runtime: RuntimeKind | None = None
    # The python that runs the worker on the compute node. None: this interpreter for the
    # embedded Pulsar, ``python3`` for an external one.
    worker_python: str | None = None

    # Storage (docs/storage.md). The embedded Pulsar runs jobs in a clean environment, so
    # the worker sees only what these settings put into its spec.
    file_roots: list[str] = Field(default_factory=list)
    # None: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL of the server, else AWS itself.
    s3_endpoint_url: str | None = None
    # None: the region of the server's AWS configuration (AWS_REGION, ~/.aws/config...).
    s3_region: str | None = None
    # None: the server's AWS credential chain, resolved once at start-up (if any).
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_session_token: SecretStr | None = None
    # False: workers use their node's own AWS chain instead of the server's credentials.
    s3_server_credentials: bool = True
    s3_addressing_style: Literal["auto", "path", "virtual"] | None = None
    # Per-host credentials, keyed "host:port" (tried first) or "host".
    http_hosts: dict[str, HttpHostCredentials] = Field(default_factory=dict)
    ftp_hosts: dict[str, FtpHostCredentials] = Field(default_factory=dict)

    # Limits of what a client may send.
    max_content_bytes: int = Field(default=1024 * 1024, ge=128 * 1024)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=256 * 1024)
    log_tail_bytes: int = Field(default=64 * 1024, ge=1024)

    # Authentication (docs/auth.md). "none" is only allowed on a loopback address.
    auth_mode: Literal["none", "basic", "oidc"] = "none"
    basic_users: dict[str, BasicUserSetting] = Field(default_factory=dict)
    oidc_issuers: list[str] = Field(default_factory=list)
    oidc_audience: str | None = None
    oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    oidc_roles_claim: str = "roles"
    # A principal with admin_role sees and cancels every task; when user_role is set, a
    # principal without it (and without admin_role) is refused with 403.
    admin_role: str = "admin"
    user_role: str = ""

    # Operations (docs/operations.md): log lines as text or JSON, and who may read
    # /metrics when auth is on (false: the admin role only).
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    metrics_public: bool = False

    # Service-info.
    service_id: str = "org.tesp.local"
    service_name: str = "TESP"
    organization_name: str = "TESP"
    organization_url: str = "https://example.org/tesp"
    # Omitted from service-info unless set: a default server is no "production" deployment
    # and has no documentation page of its own. environment: e.g. prod, test, dev, staging.
    service_environment: str | None = None
    documentation_url: str | None = Field(default=None, pattern=r"^https?://\S+$")

    @model_validator(mode="after")
    def _pulsar_amqp(self) -> Settings:
        if self.pulsar_transport == "amqp" and self.pulsar_amqp_url is None:
            raise ValueError("pulsar_transport 'amqp' needs pulsar_amqp_url")
        check_amqp_url(self.pulsar_amqp_url, "pulsar_amqp_url")
        return self

    @field_validator("backends")
    @classmethod
    def _backends(cls, value: dict[str, BackendSettings]) -> dict[str, BackendSettings]:
        checks.check_backend_names(list(value))
        embedded = [n for n, b in value.items() if b.url is None and b.transport == "rest"]
        if len(embedded) > 1:
            raise ValueError(f"only one may be the embedded Pulsar (no url): {embedded}")
        return value

    @field_validator(*checks.SINGLE_BACKEND_SETTINGS)
    @classmethod
    def _single_backend(cls, value: Any, info: ValidationInfo) -> Any:
        # Settings validate their defaults too: only a value other than the default conflicts.
        assert info.field_name is not None
        if info.data.get("backends") and value != cls.model_fields[info.field_name].default:
            raise ValueError(
                "cannot be combined with backends (it would be ignored): give each backend "
                f"its own settings under [backends.NAME] and remove {info.field_name}"
            )
        return value

    @field_validator("pulsar_url")
    @classmethod
    def _pulsar_url(cls, value: str | None) -> str | None:
        return checks.check_http_url(value)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        checks.check_database_url(value.get_secret_value() if value else None)
        return value

    @model_validator(mode="after")
    def _s3_key_pair(self) -> Settings:
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("set both s3_access_key_id and s3_secret_access_key, or neither")
        if self.s3_session_token is not None and self.s3_access_key_id is None:
            raise ValueError("s3_session_token needs s3_access_key_id and s3_secret_access_key")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then env, then the TOML file in ``TESP_CONFIG`` (if any)."""
        # The environment refuses JSON values that repeat a key (JSON keeps the last).
        env = checks.StrictJsonEnvSource(settings_cls)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env]
        toml_path = _CONFIG_FILE.get() or os.environ.get("TESP_CONFIG")
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)

    def has_scheduler(self) -> bool:
        """Whether some backend submits to a batch scheduler (its slurm_* keys apply)."""
        if self.backends:
            return any(b.scheduler is not None for b in self.backends.values())
        return self.pulsar_scheduler is not None

    def effective_runtime(self) -> RuntimeKind:
        """The configured runtime, or bwrap where it is installed, else none."""
        if self.runtime is not None:
            return self.runtime
        return "bwrap" if shutil.which("bwrap") else "none"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from a TOML file (optional), the environment and explicit overrides."""
    token = _CONFIG_FILE.set(config_file)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    finally:
        _CONFIG_FILE.reset(token)
