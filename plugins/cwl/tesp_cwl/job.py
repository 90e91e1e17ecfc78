"""One cwltool CommandLineTool job run as one TES task."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, cast

from cwltool.context import RuntimeContext
from cwltool.errors import UnsupportedRequirement, WorkflowException
from cwltool.job import JobBase, relink_initialworkdir
from cwltool.pathmapper import MapperEnt, PathMapper
from cwltool.utils import bytes2str_in_dicts

from tesp_cwl.client import TaskClient, TaskOutcome
from tesp_cwl.paths import DEFAULT_IMAGE, EMPTY_DIRS_MANIFEST
from tesp_cwl.task import JobSpec, Staged, StagingPlan, build_task, plan_staging

log = logging.getLogger(__name__)

_POLL_MIN = 0.1
_POLL_MAX = 2.0


def _entries(mapper: PathMapper | None) -> Iterable[Staged]:
    if mapper is None:
        return []
    return [
        Staged(ent.resolved, ent.target, ent.type or "")
        for _, ent in mapper.items_exclude_children()
        if ent.staged
    ]


class TesJob(JobBase):
    """A cwltool job whose command runs as a TES task.

    cwltool built the command line with TES paths (the tool runs in "container" mode with
    :mod:`tesp_cwl.paths` as its directories); this class stages ``self.pathmapper`` and
    the InitialWorkDir listing as TES inputs, runs the task, and brings the output
    directory back to ``self.outdir`` for cwltool to collect.
    """

    client: ClassVar[TaskClient]

    @classmethod
    def bound(cls, client: TaskClient) -> type[TesJob]:
        """A subclass sending its tasks to ``client`` (cwltool instantiates job classes)."""
        return cast(type[TesJob], type("TesJob", (cls,), {"client": client}))

    def _required_env(self) -> dict[str, str]:
        return {"HOME": self.builder.outdir, "TMPDIR": self.builder.tmpdir}

    def image(self, runtime_context: RuntimeContext) -> str:
        """The task's image: DockerRequirement, else ``--default-container``, else ours."""
        req, is_required = self.get_requirement("DockerRequirement")
        if req is not None:
            image = req.get("dockerPull") or req.get("dockerImageId")
            if image:
                return str(image)
            if is_required:
                raise UnsupportedRequirement(
                    "DockerRequirement without dockerPull or dockerImageId: a TES task "
                    "can only run an image that a registry serves"
                )
        return str(runtime_context.default_container or DEFAULT_IMAGE)

    def run(
        self, runtimeContext: RuntimeContext, tmpdir_lock: threading.Lock | None = None
    ) -> None:
        """Build the task, run it, collect the outputs, and call back."""
        if tmpdir_lock:
            with tmpdir_lock:
                os.makedirs(self.tmpdir, exist_ok=True)
        else:
            os.makedirs(self.tmpdir, exist_ok=True)
        os.makedirs(self.outdir, exist_ok=True)
        outputs: dict[str, Any] = {}
        status = "permanentFail"
        try:
            image = self.image(runtimeContext)
            self._make_generatemapper(runtimeContext)
            task = build_task(self._spec(image, runtimeContext))
            outcome = self._run_task(task)
            status = self._status(outcome)
            self._bring_back()
            if self.generatemapper is not None:
                relink_initialworkdir(
                    self.generatemapper,
                    self.outdir,
                    self.builder.outdir,
                    inplace_update=self.inplace_update,
                )
            rcode = outcome.exit_code if outcome.exit_code is not None else 1
            collected = bytes2str_in_dicts(self.collect_outputs(self.outdir, rcode))
            outputs = cast(dict[str, Any], collected)
        except UnsupportedRequirement:
            raise
        except WorkflowException as exc:
            log.error("[job %s] Job error:\n%s", self.name, exc)
            status = "permanentFail"
        except Exception as exc:
            log.exception("[job %s] failed: %s", self.name, exc)
            status = "permanentFail"
        self._finish(runtimeContext, outputs, status)

    # -- building the task ------------------------------------------------------------------

    def _make_generatemapper(self, runtime_context: RuntimeContext) -> None:
        if "listing" in self.generatefiles:
            ctx = runtime_context.copy()
            ctx.outdir = self.outdir
            self.generatemapper = self.make_path_mapper(
                self.generatefiles["listing"], self.builder.outdir, ctx, False
            )

    def _content(self, runtime_context: RuntimeContext, text: str) -> str:
        store = runtime_context.secret_store
        return str(store.retrieve(text)) if store is not None else text

    def _spill(self, target: str, text: str) -> str:
        path = Path(self.tmpdir, "literals", target.lstrip("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path.as_uri()

    def _spec(self, image: str, runtime_context: RuntimeContext) -> JobSpec:
        entries = [*_entries(self.pathmapper), *_entries(self.generatemapper)]
        staging: StagingPlan = plan_staging(
            entries,
            content_of=lambda text: self._content(runtime_context, text),
            spill=self._spill,
        )
        stdin = None
        if self.stdin:
            if self.pathmapper.reversemap(self.stdin) is None:
                raise WorkflowException(f"{self.stdin} missing from pathmapper")
            stdin = self.stdin
        command = [str(arg) for arg in self.command_line]
        env = dict(self.environment)
        store = runtime_context.secret_store
        if store is not None:
            command = cast(list[str], store.retrieve(cast(Any, command)))
            env = cast(dict[str, str], store.retrieve(cast(Any, env)))
        if not command:
            raise WorkflowException("Cannot run a CommandLineTool with an empty command line.")
        log.info("[job %s] TES task: %s", self.name, " ".join(command))
        return JobSpec(
            name=self.name,
            image=image,
            command=command,
            outdir=self.builder.outdir,
            tmpdir=self.builder.tmpdir,
            outdir_url=Path(self.outdir).as_uri(),
            env=env,
            staging=staging,
            resources=self.builder.resources,
            stdin=stdin,
            stdout=self.stdout,
            stderr=self.stderr,
            tags={"cwl_job": self.name},
        )

    # -- running it -------------------------------------------------------------------------

    def _run_task(self, task: dict[str, Any]) -> TaskOutcome:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("[job %s] TES task body %s", self.name, json.dumps(task, indent=2))
        task_id = self.client.create(task)
        log.info("[job %s] submitted as TES task %s", self.name, task_id)
        deadline = time.monotonic() + self.timelimit if self.timelimit else None
        interval = _POLL_MIN
        while True:
            outcome = self.client.outcome(task_id)
            if outcome.done:
                return outcome
            if deadline is not None and time.monotonic() > deadline:
                log.warning("[job %s] exceeded time limit of %ss", self.name, self.timelimit)
                self.client.cancel(task_id)
                return TaskOutcome("CANCELED", None, None, ["time limit exceeded"])
            time.sleep(interval)
            interval = min(_POLL_MAX, interval * 1.5)

    def _status(self, outcome: TaskOutcome) -> str:
        rcode = outcome.exit_code
        if outcome.state != "COMPLETE" or rcode is None:
            log.error(
                "[job %s] TES task ended %s: %s",
                self.name,
                outcome.state,
                "; ".join(outcome.system_logs) or "no executor log",
            )
            return "permanentFail"
        if rcode in self.successCodes:
            return "success"
        if rcode in self.temporaryFailCodes:
            return "temporaryFail"
        if rcode in self.permanentFailCodes:
            return "permanentFail"
        if rcode == 0:
            return "success"
        log.warning("[job %s] exited with status: %d", self.name, rcode)
        if outcome.stderr:
            log.warning("[job %s] stderr (tail):\n%s", self.name, outcome.stderr)
        return "permanentFail"

    def _bring_back(self) -> None:
        """Restore what a file-by-file upload cannot carry: empty dirs, in-place updates."""
        manifest = Path(self.outdir, EMPTY_DIRS_MANIFEST)
        if manifest.exists():
            for line in manifest.read_text().splitlines():
                rel = line.removeprefix("./")
                if rel and not rel.startswith("/") and ".." not in rel.split("/"):
                    Path(self.outdir, rel).mkdir(parents=True, exist_ok=True)
            manifest.unlink()
        if self.generatemapper is None or not self.inplace_update:
            return
        for _, ent in self.generatemapper.items_exclude_children():
            self._write_back(ent)

    def _write_back(self, ent: MapperEnt) -> None:
        prefix = self.builder.outdir + "/"
        if ent.type not in ("WritableFile", "WritableDirectory") or not ent.target.startswith(
            prefix
        ):
            return
        produced = Path(self.outdir, ent.target[len(prefix) :])
        if not produced.exists() or ent.resolved.startswith("_:"):
            return
        if ent.type == "WritableFile":
            shutil.copyfile(produced, ent.resolved)
        else:
            shutil.copytree(produced, ent.resolved, dirs_exist_ok=True)

    def _finish(
        self, runtime_context: RuntimeContext, outputs: dict[str, Any], status: str
    ) -> None:
        if status != "success":
            log.warning("[job %s] completed %s", self.name, status)
        else:
            log.info("[job %s] completed %s", self.name, status)
        if runtime_context.workflow_eval_lock is None:
            raise WorkflowException("runtimeContext.workflow_eval_lock must not be None")
        if self.output_callback:
            with runtime_context.workflow_eval_lock:
                self.output_callback(outputs, status)
        if runtime_context.rm_tmpdir:
            if self.stagedir and os.path.exists(self.stagedir):
                shutil.rmtree(self.stagedir, True)
            shutil.rmtree(self.tmpdir, True)
