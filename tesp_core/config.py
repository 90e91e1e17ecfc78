"""TESP settings: a TOML file plus ``TESP_*`` environment variables (pydantic-settings).

Precedence, highest first: explicit arguments (e.g. ``tesp serve --port``), ``TESP_*``
environment variables, the TOML file named by ``--config`` or ``TESP_CONFIG``, defaults.
Settings are built when a command runs, never at import time.
"""

from __future__ import annotations

import os
import shutil
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("tesp_config_file", default=None)

RuntimeKind = Literal["none", "bwrap", "docker", "podman", "apptainer", "singularity"]


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tesp"


class Settings(BaseSettings):
    """Everything a TESP server can be told. See docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="TESP_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Field(default_factory=_default_data_dir)

    # Pulsar. No URL: TESP starts an embedded Pulsar on loopback and stops it on exit.
    pulsar_url: str | None = None
    pulsar_token: SecretStr | None = None
    pulsar_manager: str = "_default_"
    # How many Pulsar jobs TESP keeps in flight (Pulsar's own queue limit is not honoured).
    max_in_flight: int = Field(default=8, ge=1)
    # Give up on a job Pulsar reports running after this long (None: no limit).
    max_task_seconds: float | None = Field(default=None, gt=0)
    poll_interval_max: float = Field(default=2.0, gt=0)

    # Where executors run and how. None picks bwrap when installed, else none.
    runtime: RuntimeKind | None = None
    # The python that runs the worker on the compute node. None: this interpreter for the
    # embedded Pulsar, ``python3`` for an external one.
    worker_python: str | None = None

    # Storage.
    file_roots: list[str] = Field(default_factory=list)
    s3_endpoint_url: str | None = None

    # Limits of what a client may send.
    max_content_bytes: int = Field(default=1024 * 1024, ge=128 * 1024)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=256 * 1024)
    log_tail_bytes: int = Field(default=64 * 1024, ge=1024)

    # Service-info.
    service_id: str = "org.tesp.local"
    service_name: str = "TESP"
    organization_name: str = "TESP"
    organization_url: str = "https://example.org/tesp"

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
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = _CONFIG_FILE.get() or os.environ.get("TESP_CONFIG")
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)

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
