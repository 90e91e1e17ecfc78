"""cwltool's tool factory: CommandLineTools whose jobs run as TES tasks."""

from __future__ import annotations

import functools
import os
import urllib.parse
from collections.abc import Callable, MutableSequence
from typing import Any, cast

from cwl_utils.types import CWLDirectoryType, CWLFileType
from cwltool.command_line_tool import CommandLineTool
from cwltool.context import LoadingContext, RuntimeContext
from cwltool.errors import UnsupportedRequirement
from cwltool.job import JobBase
from cwltool.mpi import MPIRequirementName
from cwltool.pathmapper import MapperEnt, PathMapper
from cwltool.process import Process
from cwltool.workflow import default_make_tool
from ruamel.yaml.comments import CommentedMap

from tesp_cwl.client import TaskClient
from tesp_cwl.job import TesJob
from tesp_cwl.paths import DEFAULT_IMAGE, REMOTE_SCHEMES


class TesPathMapper(PathMapper):
    """A PathMapper that leaves remote files where they are (the TES worker fetches them).

    cwltool's own mapper downloads ``http(s)`` files to the submitting host first.
    """

    def visit(
        self,
        obj: CWLFileType | CWLDirectoryType,
        stagedir: str,
        basedir: str,
        copy: bool = False,
        staged: bool = False,
    ) -> None:
        """Map a remote File to itself; everything else as cwltool does."""
        location = str(obj.get("location", ""))
        scheme = urllib.parse.urlsplit(location).scheme
        if obj.get("class") != "File" or scheme not in REMOTE_SCHEMES or location in self._pathmap:
            super().visit(obj, stagedir, basedir, copy=copy, staged=staged)
            return
        stagedir = cast(str | None, obj.get("dirname")) or stagedir
        target = os.path.join(stagedir, str(obj["basename"]))
        kind = "WritableFile" if copy else "File"
        self._pathmap[location] = MapperEnt(location, target, kind, staged)
        self.visitlisting(
            cast(Any, obj).get("secondaryFiles", []), stagedir, basedir, copy=copy, staged=staged
        )


class TesCommandLineTool(CommandLineTool):
    """A CommandLineTool whose job class submits to a TES server."""

    job_class: type[TesJob] = TesJob

    def make_job_runner(self, runtimeContext: RuntimeContext) -> type[JobBase]:
        """Our job class, once the requirements we cannot meet are ruled out."""
        _, mpi_required = self.get_requirement(MPIRequirementName)
        if mpi_required:
            raise UnsupportedRequirement("MPIRequirement is not supported on TES")
        docker, docker_required = self.get_requirement("DockerRequirement")
        if docker is None:
            # As cwltool does for --default-container: the job then gets host directories
            # of its own (job.outdir) apart from the TES-side paths (builder.outdir).
            self.requirements.insert(
                0,
                {
                    "class": "DockerRequirement",
                    "dockerPull": runtimeContext.default_container or DEFAULT_IMAGE,
                },
            )
        if (
            docker is not None
            and docker_required
            and not (docker.get("dockerPull") or docker.get("dockerImageId"))
        ):
            raise UnsupportedRequirement(
                "DockerRequirement needs dockerPull or dockerImageId on TES "
                "(dockerFile, dockerLoad and dockerImport are not supported)"
            )
        return self.job_class

    def make_path_mapper(
        self,
        reffiles: MutableSequence[CWLFileType | CWLDirectoryType],
        stagedir: str,
        runtimeContext: RuntimeContext,
        separateDirs: bool,
    ) -> PathMapper:
        """Map inputs with :class:`TesPathMapper`."""
        return TesPathMapper(reffiles, runtimeContext.basedir, stagedir, separateDirs)


def make_tool_factory(client: TaskClient) -> Callable[[CommentedMap, LoadingContext], Process]:
    """A ``LoadingContext.construct_tool_object`` that runs CommandLineTools on ``client``."""
    job_class = TesJob.bound(client)
    tool_class = cast(
        type[TesCommandLineTool],
        type("TesCommandLineTool", (TesCommandLineTool,), {"job_class": job_class}),
    )
    return functools.partial(_make_tool, tool_class)


def _make_tool(
    tool_class: type[TesCommandLineTool], toolpath_object: CommentedMap, loading: LoadingContext
) -> Process:
    if isinstance(toolpath_object, dict) and toolpath_object.get("class") == "CommandLineTool":
        return tool_class(toolpath_object, loading)
    return default_make_tool(toolpath_object, loading)
