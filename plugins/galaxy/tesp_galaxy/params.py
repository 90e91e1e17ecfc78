"""Destination parameters of the TESP runner: Galaxy's flat string map, parsed once.

Galaxy hands a runner its environment's parameters as a ``dict`` of strings (YAML may also
give ints, floats and bools). :func:`parse_params` turns that into a frozen
:class:`TesDestination`, rejecting unknown keys and bad values with the key named, so a typo
in ``job_conf.yml`` fails the job with a clear message instead of being ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: The executor image when neither the destination nor the tool names one. TESP's ``none``
#: and ``bwrap`` runtimes ignore it; a container runtime needs a real image.
DEFAULT_IMAGE = "galaxy-job"


class ParamsError(ValueError):
    """A destination parameter is unknown or has an invalid value."""


class StagingMode(StrEnum):
    """How a job's files reach the TES task."""

    #: The task sees Galaxy's paths directly (runtime ``none`` on the same host or a shared
    #: filesystem mounted at the same paths). Nothing is staged.
    SHARED = "shared"
    #: The job directory, input datasets and the tool's directory go in as TES inputs, the
    #: job directory and the output datasets come back as TES outputs (``file://`` URLs, at
    #: the same paths inside the task, so Galaxy's command line needs no rewriting).
    TES = "tes"


@dataclass(frozen=True)
class TesDestination:
    """Everything the runner needs to know about one Galaxy environment (destination)."""

    tes_url: str | None = None
    embedded: bool = False
    tes_user: str | None = None
    tes_password: str | None = field(default=None, repr=False)
    tes_token: str | None = field(default=None, repr=False)
    tes_timeout: int = 30
    image: str | None = None
    runtime: str | None = None
    cpu_cores: int | None = None
    ram_gb: float | None = None
    disk_gb: float | None = None
    preemptible: bool | None = None
    zones: tuple[str, ...] = ()
    backend_parameters: Mapping[str, str] = field(default_factory=dict)
    backend_parameters_strict: bool | None = None
    staging: StagingMode = StagingMode.SHARED
    #: Set metadata inside the job (needs Galaxy's virtualenv at the same path on the node).
    #: ``None``: yes with ``staging: shared``, no with ``staging: tes`` (Galaxy sets it once
    #: the outputs are back, as for Pulsar without remote metadata).
    embed_metadata_in_job: bool | None = None
    #: With ``staging: tes``, stage the tool's directory too (scripts next to the tool XML).
    stage_tool_directory: bool = True
    embedded_data_dir: str | None = None
    tes_tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def metadata_in_job(self) -> bool:
        """Whether the job script sets metadata (else Galaxy does, after the task)."""
        if self.embed_metadata_in_job is not None:
            return self.embed_metadata_in_job
        return self.staging is StagingMode.SHARED

    @property
    def client_key(self) -> tuple[Any, ...]:
        """Destinations with the same key can share one TES client."""
        if self.embedded:
            return ("embedded", self.embedded_data_dir, self.runtime)
        return ("http", self.tes_url, self.tes_user, self.tes_password, self.tes_token)


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "yes", "1", "on"}:
        return True
    if text in {"false", "no", "0", "off", ""}:
        return False
    raise ParamsError(f"destination parameter {key!r}: expected a boolean, got {value!r}")


def _positive_int(key: str, value: Any) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ParamsError(
            f"destination parameter {key!r}: expected an integer, got {value!r}"
        ) from None
    if number < 1:
        raise ParamsError(f"destination parameter {key!r}: must be at least 1")
    return number


def _non_negative_float(key: str, value: Any) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ParamsError(
            f"destination parameter {key!r}: expected a number, got {value!r}"
        ) from None
    if number < 0:
        raise ParamsError(f"destination parameter {key!r}: must not be negative")
    return number


def _string_map(key: str, value: Any) -> dict[str, str]:
    """A map given as a YAML mapping or as a JSON object string."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as exc:
            raise ParamsError(f"destination parameter {key!r}: not a JSON object: {exc}") from exc
    if not isinstance(value, Mapping):
        raise ParamsError(f"destination parameter {key!r}: expected a mapping")
    return {str(k): str(v) for k, v in value.items()}


def _text(key: str, value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


_PARSERS: dict[str, Any] = {
    "tes_url": _text,
    "embedded": _bool,
    "tes_user": _text,
    "tes_password": _text,
    "tes_token": _text,
    "tes_timeout": _positive_int,
    "image": _text,
    "runtime": _text,
    "cpu_cores": _positive_int,
    "ram_gb": _non_negative_float,
    "disk_gb": _non_negative_float,
    "preemptible": _bool,
    "backend_parameters": _string_map,
    "backend_parameters_strict": _bool,
    "embed_metadata_in_job": _bool,
    "stage_tool_directory": _bool,
    "embedded_data_dir": _text,
    "tes_tags": _string_map,
}

#: Keys Galaxy itself puts in (or passes through) destination parameters; not ours to judge.
_GALAXY_KEYS = frozenset({"runner", "id", "env", "resubmit", "container", "docker_enabled"})


def parse_params(params: Mapping[str, Any]) -> TesDestination:
    """Parse one destination's parameters (runner-level defaults already merged in)."""
    values: dict[str, Any] = {}
    for key, raw in params.items():
        if key == "staging":
            try:
                values["staging"] = StagingMode(str(raw).strip().lower())
            except ValueError:
                allowed = ", ".join(m.value for m in StagingMode)
                raise ParamsError(f"destination parameter 'staging': one of {allowed}") from None
        elif key == "zones":
            zones = raw if isinstance(raw, list | tuple) else str(raw).split(",")
            values["zones"] = tuple(z.strip() for z in zones if str(z).strip())
        elif key in _PARSERS:
            parsed = _PARSERS[key](key, raw)
            if parsed is not None:
                values[key] = parsed
        elif key in _GALAXY_KEYS or key.startswith(("docker_", "singularity_", "require_")):
            continue
        else:
            raise ParamsError(f"unknown destination parameter {key!r} for the TESP runner")
    dest = TesDestination(**values)
    if not dest.embedded and not dest.tes_url:
        raise ParamsError(
            "the TESP runner needs 'tes_url' (or 'embedded: true' with tesp installed)"
        )
    if dest.tes_password and not dest.tes_user:
        raise ParamsError("'tes_password' needs 'tes_user'")
    if dest.tes_token and dest.tes_user:
        raise ParamsError("give 'tes_user'/'tes_password' or 'tes_token', not both")
    return dest
