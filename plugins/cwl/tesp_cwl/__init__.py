"""cwltool on TES: each CommandLineTool job becomes one TES task (``tesp-cwl``).

The pieces: :func:`make_tool_factory` (cwltool's ``LoadingContext.construct_tool_object``),
:class:`TesCommandLineTool` and :class:`TesJob` (the job class), the pure
:func:`build_task`, and the task clients :class:`EmbeddedTes` (an in-process TESP) and
:class:`RemoteTes` (any TES server through py-tes).
"""

from tesp_cwl.client import EmbeddedTes, RemoteTes, TaskClient, TaskOutcome
from tesp_cwl.job import TesJob
from tesp_cwl.task import JobSpec, build_task, plan_staging
from tesp_cwl.tool import TesCommandLineTool, TesPathMapper, make_tool_factory

__all__ = [
    "EmbeddedTes",
    "JobSpec",
    "RemoteTes",
    "TaskClient",
    "TaskOutcome",
    "TesCommandLineTool",
    "TesJob",
    "TesPathMapper",
    "build_task",
    "make_tool_factory",
    "plan_staging",
]
