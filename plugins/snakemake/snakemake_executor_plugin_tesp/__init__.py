"""``snakemake --executor tesp``: every Snakemake job runs as a GA4GH TES task.

On any TES 1.1 server (``--tesp-url``), or with no URL on a TESP embedded in the Snakemake
process. Snakemake imports every installed executor plugin at start-up, so this module
imports only the interface package; TESP itself and ``requests`` load when a run starts.
"""

from snakemake_interface_executor_plugins.settings import CommonSettings

from snakemake_executor_plugin_tesp.executor import Executor
from snakemake_executor_plugin_tesp.settings import ExecutorSettings

common_settings = CommonSettings(
    non_local_exec=True,
    # The default is a shared filesystem; --shared-fs-usage none switches to storage plugins.
    implies_no_shared_fs=False,
    # Without a shared SOURCES (--shared-fs-usage none), Snakemake uploads a source archive
    # to the default storage and each job's command starts with `snakemake --deploy-sources`.
    # With shared sources (the default) this does nothing. False would leave it to the user's
    # --job-deploy-sources flag, and a job without it finds no Snakefile.
    job_deploy_sources=True,
    # Environment variables (--envvars, and the storage plugins' env_var settings such as
    # the S3 keys) travel in the TES executor's env, never on the command line.
    pass_envvar_declarations_to_cmd=False,
    # The job's environment (host under 'none', or the image) brings the storage plugins;
    # pip-installing them into every job would need network access from each task.
    auto_deploy_default_storage_provider=False,
    init_seconds_before_status_checks=0,
)

__all__ = ["Executor", "ExecutorSettings", "common_settings"]
