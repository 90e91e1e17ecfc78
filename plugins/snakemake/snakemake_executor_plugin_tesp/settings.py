"""``--tesp-*`` settings. Each field becomes a flag; ``env_var`` ones also ``SNAKEMAKE_TESP_*``.

No ``from __future__ import annotations`` here: Snakemake reads the field types at runtime
(``field.type``) to build the argparse arguments.
"""

from dataclasses import dataclass, field

from snakemake_interface_executor_plugins.settings import ExecutorSettingsBase

RUNTIMES = ("none", "bwrap", "docker", "podman", "apptainer", "singularity")


@dataclass
class ExecutorSettings(ExecutorSettingsBase):  # type: ignore[misc]  # untyped base
    """How Snakemake reaches the TES and what each job's task asks for."""

    url: str | None = field(
        default=None,
        metadata={
            "help": "URL of the TES server (e.g. http://127.0.0.1:8000). Unset: run an "
            "embedded TESP inside Snakemake, keeping its data under .snakemake/tesp.",
            "env_var": True,
            "type": str,
        },
    )
    user: str | None = field(
        default=None,
        metadata={"help": "User name for HTTP basic auth.", "env_var": True, "type": str},
    )
    password: str | None = field(
        default=None,
        metadata={
            "help": "Password for HTTP basic auth (prefer the environment variable).",
            "env_var": True,
            "type": str,
        },
    )
    token: str | None = field(
        default=None,
        metadata={
            "help": "Bearer token (prefer the environment variable).",
            "env_var": True,
            "type": str,
        },
    )
    image: str | None = field(
        default=None,
        metadata={
            "help": "Container image of every job's TES executor. Default: the official "
            "Snakemake image of the running version (ignored by the 'none' runtime).",
            "env_var": True,
            "type": str,
        },
    )
    runtime: str | None = field(
        default=None,
        metadata={
            "help": "Embedded TESP only: how executors run (none, bwrap, docker, podman, "
            "apptainer, singularity). Default: 'none' with a shared filesystem, else TESP's "
            "default. A TES server chooses its own runtime.",
            "env_var": True,
            "type": str,
            "choices": RUNTIMES,
        },
    )
    backend_parameters: str | None = field(
        default=None,
        metadata={
            "help": "Extra tesResources.backend_parameters for every task, as "
            "KEY=VALUE[,KEY=VALUE...].",
            "env_var": True,
            "type": str,
        },
    )
