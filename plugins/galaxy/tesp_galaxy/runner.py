"""``TESPJobRunner``: Galaxy jobs as GA4GH TES tasks (on TESP, or any TES 1.1 server).

Load it from ``job_conf.yml``::

    runners:
      tesp:
        load: tesp_galaxy.runner:TESPJobRunner
    execution:
      default: tes
      environments:
        tes:
          runner: tesp
          tes_url: http://127.0.0.1:8000

Each job becomes one TES task whose single executor runs the job script Galaxy wrote
(``galaxy_<id>.sh`` in the job's working directory). The task id is the job's external id,
so a restarted Galaxy re-attaches to it (:meth:`TESPJobRunner.recover`). Parameters are in
:mod:`tesp_galaxy.params`. Nothing of TESP is imported here: the runner reaches TES over HTTP
(py-tes) unless a destination asks for ``embedded: true``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from galaxy import model
from galaxy.jobs.runners import AsynchronousJobRunner, AsynchronousJobState

from .client import ClientPool, TaskNotFoundError, TaskReport, TesError, TesUnavailableError
from .params import ParamsError, TesDestination, parse_params
from .task import GalaxyJob, build_task

if TYPE_CHECKING:
    from galaxy.jobs import MinimalJobWrapper
    from galaxy.jobs.job_destination import JobDestination

log = logging.getLogger(__name__)

__all__ = ["TESPJobRunner"]

# Galaxy's base runner validates its own parameters; the rest of a runner's ``kwds`` are our
# defaults for every destination of this runner.
_BASE_RUNNER_KWDS = frozenset({"recheck_missing_job_retries"})
_STILL_WAITING = frozenset({"UNKNOWN", "QUEUED", "INITIALIZING", "PAUSED"})


class TESPJobRunner(AsynchronousJobRunner[AsynchronousJobState]):
    """Run Galaxy jobs as TES tasks; poll them from Galaxy's monitor thread."""

    runner_name = "TESPRunner"

    def __init__(self, app: Any, nworkers: int, **kwargs: Any) -> None:
        base = {k: v for k, v in kwargs.items() if k in _BASE_RUNNER_KWDS}
        self.destination_defaults: dict[str, Any] = {
            k: v for k, v in kwargs.items() if k not in _BASE_RUNNER_KWDS
        }
        super().__init__(app, nworkers, **base)
        self._clients = ClientPool()

    # -- configuration ------------------------------------------------------------------

    def parse_destination_params(self, params: dict[str, Any]) -> TesDestination:
        """This runner's view of a destination (runner defaults, then the destination)."""
        return parse_params({**self.destination_defaults, **params})

    def _destination(self, job_destination: JobDestination) -> TesDestination:
        return self.parse_destination_params(dict(job_destination.params or {}))

    # -- submit -------------------------------------------------------------------------

    def queue_job(self, job_wrapper: MinimalJobWrapper) -> None:
        """Prepare the job, write its script, submit it as a TES task and start watching."""
        galaxy_id = job_wrapper.get_id_tag()
        try:
            dest = self._destination(job_wrapper.job_destination)
        except ParamsError as exc:
            job_wrapper.fail(f"TESP runner misconfigured: {exc}")
            return
        if not self.prepare_job(
            job_wrapper,
            include_metadata=dest.metadata_in_job,
            include_work_dir_outputs=True,
            modify_command_for_container=False,
        ):
            return
        state = AsynchronousJobState(
            job_wrapper=job_wrapper,
            job_destination=job_wrapper.job_destination,
            files_dir=job_wrapper.working_directory,
        )
        script = self.get_job_file(
            job_wrapper,
            exit_code_path=state.exit_code_file,
            shell=job_wrapper.shell,
            **_slot_statements(dest),
        )
        self.write_executable_script(state.job_file, script, job_io=job_wrapper.job_io)
        task = build_task(self._galaxy_job(job_wrapper, state), dest)
        try:
            task_id = self._clients.get(dest).create_task(task)
        except TesError as exc:
            log.error("(%s) submitting to TES failed: %s", galaxy_id, exc)
            job_wrapper.fail(f"Submitting the job to TES failed: {exc}")
            return
        log.info("(%s) submitted as TES task %s", galaxy_id, task_id)
        job_wrapper.set_external_id(task_id)
        state.job_id = task_id
        state.old_state = model.Job.states.QUEUED
        self.monitor_job(state)

    def _galaxy_job(self, job_wrapper: MinimalJobWrapper, state: AsynchronousJobState) -> GalaxyJob:
        job_io = job_wrapper.job_io
        container = getattr(job_wrapper, "container", None)
        env = {
            e["name"]: str(e["value"])
            for e in job_wrapper.job_destination.env
            if e.get("name") and "value" in e and not e.get("raw") and not e.get("execute")
        }
        tool = job_wrapper.tool
        inputs = [os.path.abspath(p) for p in job_io.get_input_fnames()]
        outputs = [os.path.abspath(str(p)) for p in job_io.get_output_fnames()]
        tool_dir = getattr(tool, "tool_dir", None) if tool is not None else None
        return GalaxyJob(
            galaxy_id=str(job_wrapper.get_id_tag()),
            name=state.job_name or f"g{job_wrapper.get_id_tag()}",
            job_script=os.path.abspath(state.job_file),
            working_directory=os.path.abspath(job_wrapper.working_directory),
            stdout_file=os.path.abspath(state.output_file),
            stderr_file=os.path.abspath(state.error_file),
            env=env,
            # An input's extra files come as a directory; everything else is a file.
            input_paths=tuple(p for p in inputs if not os.path.isdir(p)),
            input_directories=tuple(p for p in inputs if os.path.isdir(p)),
            output_paths=tuple(outputs),
            existing_output_paths=tuple(p for p in outputs if os.path.isfile(p)),
            tool_id=tool.id if tool is not None else None,
            tool_directory=os.path.abspath(tool_dir) if tool_dir else None,
            container_image=getattr(container, "container_id", None) if container else None,
        )

    # -- watch --------------------------------------------------------------------------

    def check_watched_item(self, job_state: AsynchronousJobState) -> AsynchronousJobState | None:
        """One poll of one task: keep watching (return it) or hand it off (return None)."""
        job_wrapper = job_state.job_wrapper
        galaxy_id = job_wrapper.get_id_tag()
        task_id = job_state.job_id
        if job_wrapper.get_state() in (model.Job.states.DELETED, model.Job.states.DELETING):
            log.debug("(%s/%s) job deleted in Galaxy; no longer watched", galaxy_id, task_id)
            return None
        assert task_id is not None
        try:
            report = self._clients.get(self._destination(job_state.job_destination)).get_task(
                task_id
            )
        except TesUnavailableError as exc:
            log.warning("(%s/%s) TES did not answer, will retry: %s", galaxy_id, task_id, exc)
            return job_state
        except (TaskNotFoundError, TesError, ParamsError) as exc:
            job_state.fail_message = f"Lost track of TES task {task_id}: {exc}"
            job_state.stop_job = False
            self.mark_as_failed(job_state)
            return None
        if report.state in _STILL_WAITING:
            return job_state
        if report.state == "RUNNING":
            if not job_state.running:
                log.debug("(%s/%s) running", galaxy_id, task_id)
                job_state.running = True
                job_state.old_state = model.Job.states.RUNNING
                job_wrapper.change_state(model.Job.states.RUNNING)
            if job_state.check_limits():
                self.mark_as_failed(job_state)
                return None
            return job_state
        if report.state in ("COMPLETE", "EXECUTOR_ERROR"):
            # EXECUTOR_ERROR is the job script exiting non-zero: Galaxy judges the tool's
            # exit code and streams itself, so both end in finish_job.
            log.info("(%s/%s) task ended %s", galaxy_id, task_id, report.state)
            _write_stream_files(job_state, report)
            self.mark_as_finished(job_state)
            return None
        job_state.fail_message = _failure_message(report)
        job_state.stop_job = False
        log.info("(%s/%s) task ended %s", galaxy_id, task_id, report.state)
        self.mark_as_failed(job_state)
        return None

    def finish_job(self, job_state: AsynchronousJobState) -> None:
        """Set metadata here if the job did not (then let Galaxy finish the job as usual).

        Galaxy's metadata script runs in Galaxy's environment, in the job directory the task
        left behind (``staging: tes`` copied it back), as the Pulsar and local runners do.
        """
        job_wrapper = job_state.job_wrapper
        try:
            in_job = self._destination(job_state.job_destination).metadata_in_job
        except ParamsError:
            in_job = True  # parsed fine at submit time; Galaxy's own retry still applies
        if not in_job and job_wrapper.requires_setting_metadata:
            self._handle_metadata_externally(job_wrapper, resolve_requirements=True)
        super().finish_job(job_state)

    # -- stop, recover, shut down --------------------------------------------------------

    def stop_job(self, job_wrapper: MinimalJobWrapper) -> None:
        """Cancel the job's TES task (Galaxy calls this when a job is deleted)."""
        job = job_wrapper.get_job()
        task_id = job.get_job_runner_external_id()
        if not task_id:
            log.debug("(%s) stop requested before the job reached TES", job.id)
            return
        try:
            self._clients.get(self._destination(job_wrapper.job_destination)).cancel_task(task_id)
            log.info("(%s/%s) TES task cancel requested", job.id, task_id)
        except (TesError, ParamsError) as exc:
            log.warning("(%s/%s) cancelling the TES task failed: %s", job.id, task_id, exc)

    def recover(self, job: model.Job, job_wrapper: MinimalJobWrapper) -> None:
        """Re-attach to a job's TES task after Galaxy restarted."""
        task_id = job.get_job_runner_external_id()
        if not task_id:
            # Never reached TES: submit it afresh.
            log.info("(%s) recovered without a TES task; queueing it again", job.id)
            self.mark_as_queued(job_wrapper)
            return
        state = AsynchronousJobState(
            job_wrapper=job_wrapper,
            job_destination=job_wrapper.job_destination,
            files_dir=job_wrapper.working_directory,
            job_id=task_id,
        )
        job_state = job.get_state()
        if job_state == model.Job.states.RUNNING:
            state.old_state = model.Job.states.RUNNING
            state.running = True
        else:
            state.old_state = model.Job.states.QUEUED
            state.running = False
        log.info("(%s/%s) recovered in state %s; watching again", job.id, task_id, job_state)
        self.monitor_job(state)

    def shutdown(self) -> None:
        """Stop Galaxy's threads, then the TES clients (and an embedded TESP)."""
        super().shutdown()
        self._clients.close()


def _slot_statements(dest: TesDestination) -> dict[str, str]:
    """Tell the tool how many cores and how much memory TES was asked for."""
    out: dict[str, str] = {}
    if dest.cpu_cores is not None:
        out["slots_statement"] = (
            f'GALAXY_SLOTS="{dest.cpu_cores}"; export GALAXY_SLOTS; '
            'GALAXY_SLOTS_CONFIGURED="1"; export GALAXY_SLOTS_CONFIGURED;'
        )
    if dest.ram_gb is not None:
        mb = int(dest.ram_gb * 1024)
        out["memory_statement"] = (
            f'GALAXY_MEMORY_MB="{mb}"; export GALAXY_MEMORY_MB; '
            f'GALAXY_MEMORY_MB_PER_SLOT="{mb // (dest.cpu_cores or 1)}"; '
            "export GALAXY_MEMORY_MB_PER_SLOT;"
        )
    return out


def _write_stream_files(job_state: AsynchronousJobState, report: TaskReport) -> None:
    """Fill the job-level stdout/stderr files from TES's log tails if the task left none.

    The executor writes them itself whenever the task's paths are Galaxy's (shared mode, or
    staged back with the job directory); this covers a TES server that keeps only logs.
    """
    for path, text in (
        (job_state.output_file, report.stdout),
        (job_state.error_file, report.stderr),
    ):
        if path and not os.path.exists(path):
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)


def _failure_message(report: TaskReport) -> str:
    detail = "; ".join(line.strip() for line in report.system_logs if line.strip())
    message = f"TES task {report.task_id} ended {report.state}"
    return f"{message}: {detail}" if detail else message
