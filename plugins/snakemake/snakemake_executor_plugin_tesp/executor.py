"""The executor: each Snakemake job becomes one TES task; states are read in batches."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface
from snakemake_interface_executor_plugins.settings import SharedFSUsage

from snakemake_executor_plugin_tesp.clients import TERMINAL_STATES, TesClient, wait_until_ended
from snakemake_executor_plugin_tesp.errors import TesClientError, TesRequestError
from snakemake_executor_plugin_tesp.failure import describe_failure
from snakemake_executor_plugin_tesp.settings import ExecutorSettings
from snakemake_executor_plugin_tesp.task_builder import (
    RUN_TAG,
    JobFacts,
    TaskOptions,
    build_task,
    parse_backend_parameters,
)

log = logging.getLogger(__name__)

# First status check soon after a change, then back off towards the configured interval but
# no further than SLOW_CHECK_SECONDS: one round is one batched listing, cheap for the server,
# while Snakemake's default of 10 s between rounds would idle short jobs for seconds.
FAST_CHECK_SECONDS = 0.25
SLOW_CHECK_SECONDS = 2.0
CANCEL_WAIT_SECONDS = 30.0


class Executor(RemoteExecutor):  # type: ignore[misc]  # the interface package is untyped
    """Runs every job as a TES task on the TES named by ``--tesp-url`` or an embedded TESP."""

    def __post_init__(self) -> None:
        settings = self.workflow.executor_settings
        self.tesp_settings: ExecutorSettings = (
            settings if isinstance(settings, ExecutorSettings) else ExecutorSettings()
        )
        self.run_id = uuid.uuid4().hex
        self.workdir = Path(self.workflow.workdir_init)
        usage = self.workflow.storage_settings.shared_fs_usage
        self.shared_fs = SharedFSUsage.INPUT_OUTPUT in usage
        self.log_dir = Path(self.workflow.persistence.path) / "tesp" / "logs"
        try:
            extra = parse_backend_parameters(self.tesp_settings.backend_parameters)
        except ValueError as exc:
            raise WorkflowError(f"--tesp-backend-parameters: {exc}") from exc
        self.options = TaskOptions(
            image=self.tesp_settings.image or _default_image(self.workflow),
            workflow=self.workdir.name or "workflow",
            run_id=self.run_id,
            workdir=str(self.workdir) if self.shared_fs else None,
            backend_parameters=extra,
        )
        self._interval = FAST_CHECK_SECONDS
        self.client: TesClient = self._connect()
        log.info("TES tasks of this run are tagged %s=%s", RUN_TAG, self.run_id)

    def _connect(self) -> TesClient:
        from snakemake_executor_plugin_tesp.clients import EmbeddedTes, RemoteTes

        s = self.tesp_settings
        if s.url:
            return RemoteTes(s.url, user=s.user, password=s.password, token=s.token)
        runtime = s.runtime or ("none" if self.shared_fs else None)
        nodes = self.workflow.resource_settings.nodes
        in_flight = nodes if isinstance(nodes, int) and 0 < nodes < sys.maxsize else 8
        data_dir = Path(self.workflow.persistence.path) / "tesp"
        try:
            return EmbeddedTes(
                data_dir,
                runtime=runtime,
                file_roots=[str(self.workdir)],
                max_in_flight=max(1, min(in_flight, 64)),
            )
        except Exception as exc:  # any start-up failure of the embedded TESP ends the run
            raise WorkflowError(f"could not start the embedded TESP in {data_dir}: {exc}") from exc

    # -- submission ------------------------------------------------------------------------

    def run_job(self, job: JobExecutorInterface) -> None:
        """Create the job's TES task and register it with Snakemake."""
        facts = job_facts(job, self.format_job_exec(job))
        env = {k: str(v) for k, v in self.envvars().items()}
        options = TaskOptions(**{**self.options.__dict__, "env": env})
        body = build_task(facts, options)
        if self._is_preemptible(facts):
            body["resources"]["preemptible"] = True
        try:
            task_id = self.client.create_task(body)
        except TesClientError as exc:
            self.report_job_error(
                SubmittedJobInfo(job), msg=f"Could not create the TES task: {exc}\n"
            )
            return
        log.debug("job %s: TES task %s", facts.jobid, task_id)
        self.report_job_submission(
            SubmittedJobInfo(job, external_jobid=task_id, aux={"name": body["name"]})
        )
        self._interval = FAST_CHECK_SECONDS
        self.next_seconds_between_status_checks = self._interval

    def _is_preemptible(self, facts: JobFacts) -> bool:
        rules = getattr(self.workflow.remote_execution_settings, "preemptible_rules", None)
        check = getattr(rules, "is_preemptible", None)
        return bool(check and not facts.is_group and check(facts.name))

    # -- status ----------------------------------------------------------------------------

    async def check_active_jobs(
        self, active_jobs: list[SubmittedJobInfo]
    ) -> AsyncGenerator[SubmittedJobInfo, None]:
        """One listing of this run's tasks per round; yield the jobs still running."""
        # The polling thread starts before __post_init__ built the client; nothing to do
        # until the first job was submitted.
        if not active_jobs:
            return
        wanted = [j.external_jobid for j in active_jobs if j.external_jobid]
        tags = {RUN_TAG: self.run_id}
        try:
            async with self.status_rate_limiter:
                states = await asyncio.to_thread(self.client.list_states, tags, wanted)
        except TesClientError as exc:
            self.logger.warning(f"TES status check failed, retrying: {exc}")
            states = {}
            if isinstance(exc, TesRequestError) and exc.status in (401, 403):
                raise WorkflowError(f"the TES refused the status check: {exc}") from exc
        changed = False
        for job_info in active_jobs:
            task_id = job_info.external_jobid
            state = states.get(task_id) if task_id else "SYSTEM_ERROR"
            if state is None and task_id and not states:
                yield job_info  # the listing failed: try again next round
                continue
            if state is None and task_id:
                # Not in the listing (a TES that ignores tag filters lists other tasks).
                state = await self._state_of(task_id)
            if state not in TERMINAL_STATES:
                yield job_info
                continue
            changed = True
            if state == "COMPLETE":
                self.report_job_success(job_info)
            else:
                await self._report_failure(job_info, str(state))
        self._interval = FAST_CHECK_SECONDS if changed else self._backoff()
        self.next_seconds_between_status_checks = self._interval

    def _backoff(self) -> float:
        configured = float(self.workflow.remote_execution_settings.seconds_between_status_checks)
        return min(max(self._interval * 1.5, FAST_CHECK_SECONDS), configured, SLOW_CHECK_SECONDS)

    async def _state_of(self, task_id: str) -> str | None:
        try:
            async with self.status_rate_limiter:
                task = await asyncio.to_thread(self.client.get_task, task_id, "MINIMAL")
        except TesRequestError as exc:
            return "SYSTEM_ERROR" if exc.status == 404 else None
        except TesClientError:
            return None
        return str(task.get("state")) if task.get("state") else None

    async def _report_failure(self, job_info: SubmittedJobInfo, state: str) -> None:
        task_id = str(job_info.external_jobid)
        try:
            async with self.status_rate_limiter:
                task = await asyncio.to_thread(self.client.get_task, task_id, "FULL")
        except TesClientError as exc:
            task = {"id": task_id, "state": state, "logs": [{"system_logs": [str(exc)]}]}
        failure = describe_failure(task)
        aux_logs: list[str] = []
        try:
            path = self._write_log(job_info, task_id, failure.log)
            aux_logs.append(str(path))
        except OSError as exc:
            log.warning("job %s: could not write the task log: %s", job_info.job.jobid, exc)
        self.report_job_error(job_info, msg=failure.message, aux_logs=aux_logs, tes_state=state)

    def _write_log(self, job_info: SubmittedJobInfo, task_id: str, text: str) -> Path:
        name = str((job_info.aux or {}).get("name") or job_info.job.name).replace(os.sep, "_")
        path = self.log_dir / f"{name.replace(':', '_')}.{task_id}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    # -- cancel and shutdown ---------------------------------------------------------------

    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        """Cancel the tasks of ``active_jobs`` and wait (bounded) until they ended."""
        task_ids = [str(j.external_jobid) for j in active_jobs if j.external_jobid]
        for task_id in task_ids:
            try:
                self.client.cancel_task(task_id)
            except TesClientError as exc:
                log.warning("could not cancel TES task %s: %s", task_id, exc)
        if task_ids:
            states = wait_until_ended(
                self.client, {RUN_TAG: self.run_id}, task_ids, CANCEL_WAIT_SECONDS
            )
            pending = [t for t in task_ids if states.get(t) not in TERMINAL_STATES]
            if pending:
                log.warning("TES tasks still ending after cancel: %s", ", ".join(pending))

    def shutdown(self) -> None:
        """Stop polling, then release the client (an embedded TESP stops here)."""
        super().shutdown()
        client = getattr(self, "client", None)
        if client is not None:
            client.close()


def job_facts(job: JobExecutorInterface, command: str) -> JobFacts:
    """Read what the task builder needs off a Snakemake job."""
    rules: Any = job.rules
    if callable(rules):
        rules = rules()
    names = tuple(sorted(str(getattr(r, "name", r)) for r in rules))
    is_group = bool(job.is_group())
    return JobFacts(
        name=str(job.name),
        jobid=str(job.jobid),
        rules=names,
        threads=int(job.threads or 1),
        resources=dict(job.resources.items()),
        command=command,
        attempt=int(job.attempt),
        is_group=is_group,
    )


def _default_image(workflow: Any) -> str:
    image = getattr(workflow.remote_execution_settings, "container_image", None)
    if image:
        return str(image)
    from importlib.metadata import version

    return f"snakemake/snakemake:v{version('snakemake')}"
