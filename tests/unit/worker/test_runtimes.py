"""Exact argv for every runtime; no process is started."""

from __future__ import annotations

import itertools
import posixpath
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tesp_core.worker.runtimes import (
    Bind,
    Invocation,
    RuntimeSpecError,
    apptainer_image,
    build_invocation,
    plan_binds,
)
from tesp_core.worker.spec import Executor, Runtime, SpecError, WorkerSpec, parse_spec

JR = Path("/jobs/j1/root")
HOSTILE = "a b;rm -rf /"
SUBST = "$(id)"
BASE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/root"}


class FakeFS:
    """A tiny host: /bin -> usr/bin, /etc, /home/u, /usr, /tmp, /dev, /proc."""

    dirs = frozenset({"/", "/dev", "/etc", "/home", "/home/u", "/proc", "/tmp", "/usr"})
    links: ClassVar[dict[str, str]] = {"/bin": "usr/bin"}
    files = frozenset({"/etc/passwd"})

    def is_dir(self, path: str) -> bool:
        return path in self.dirs

    def is_file(self, path: str) -> bool:
        return path in self.files

    def is_link(self, path: str) -> bool:
        return path in self.links

    def listdir(self, path: str) -> list[str]:
        every = self.dirs | self.files | set(self.links)
        return [posixpath.basename(p) for p in every if p != "/" and posixpath.dirname(p) == path]

    def readlink(self, path: str) -> str:
        return self.links[path]


def make_spec(kind: str, **extra: Any) -> WorkerSpec:
    raw: dict[str, Any] = {
        "version": 1,
        "task_id": "t",
        "runtime": {"kind": kind},
        "executors": [{"image": "ubuntu:24.04", "command": ["true"]}],
        "storage": {},
    }
    raw.update(extra)
    return parse_spec(raw)


def executor(**extra: Any) -> Executor:
    fields: dict[str, Any] = {"image": "ubuntu:24.04", "command": ("sh", "-c", HOSTILE), **extra}
    return Executor(**fields)


def invoke(kind: str, ex: Executor, binds: list[Bind], **runtime: Any) -> Invocation:
    return build_invocation(
        Runtime(kind, **runtime), ex, JR, binds, BASE_ENV, "/jobs/j1/work", FakeFS()
    )


def test_plan_binds_is_minimal_and_sorted() -> None:
    spec = make_spec(
        "docker",
        inputs=[
            {"path": "/data/in/a.txt", "url": "file:///s/a"},
            {"path": "/ref", "type": "DIRECTORY", "url": "file:///s/r"},
            {"path": "/top.txt", "content": "x"},
        ],
        outputs=[
            {"path": "/data/out.txt", "url": "file:///s/o"},
            {"path": "/res/*/x.log", "url": "file:///s/l/", "path_prefix": "/res/"},
        ],
        volumes=["/data", "/vol"],
        executors=[{"image": "x", "command": ["true"], "stdout": "/logs/o.txt"}],
    )
    assert plan_binds(spec) == [
        Bind("/data"),
        Bind("/logs"),
        Bind("/ref"),
        Bind("/res"),
        Bind("/top.txt", is_file=True),
        Bind("/vol"),
    ]


def test_plan_binds_adds_missing_bwrap_workdirs_only() -> None:
    spec = make_spec(
        "bwrap",
        volumes=["/vol"],
        executors=[
            {"image": "x", "command": ["true"], "workdir": "/vol/sub"},  # covered
            {"image": "x", "command": ["true"], "workdir": "/home/u"},  # exists on the host
            {"image": "x", "command": ["true"], "workdir": "/tmp/wd"},  # /tmp is private
            {"image": "x", "command": ["true"], "workdir": "/work/dir"},  # missing
        ],
    )
    assert plan_binds(spec, FakeFS()) == [Bind("/tmp/wd"), Bind("/vol"), Bind("/work/dir")]
    assert plan_binds(spec) == [Bind("/vol")]


@pytest.mark.parametrize("path", ["/", "/proc/x", "/dev/shm"])
def test_plan_binds_refuses_unbindable_paths(path: str) -> None:
    with pytest.raises(RuntimeSpecError, match="cannot bind"):
        plan_binds(make_spec("bwrap", volumes=[path]))


def test_wildcard_at_the_root_cannot_be_bound() -> None:
    spec = make_spec(
        "docker", outputs=[{"path": "/*.txt", "url": "file:///s/", "path_prefix": "/"}]
    )
    with pytest.raises(RuntimeSpecError):
        plan_binds(spec)


def test_none_runs_the_command_on_the_host() -> None:
    ex = executor(workdir="/w", env={"X": SUBST, "PATH": "/opt/bin"})
    inv = invoke("none", ex, [])
    assert inv == Invocation(
        ["sh", "-c", HOSTILE], {"PATH": "/opt/bin", "HOME": "/root", "X": SUBST}, "/w"
    )
    assert invoke("none", executor(), []).cwd == "/jobs/j1/work"


def test_bwrap_with_every_mount_point_present_binds_the_host_root() -> None:
    ex = executor(env={"X": SUBST})
    inv = invoke("bwrap", ex, [Bind("/home/u"), Bind("/tmp/w")])
    assert inv.argv == [
        "bwrap",
        "--ro-bind", "/", "/",
        "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
        "--bind", "/jobs/j1/root/home/u", "/home/u",
        "--bind", "/jobs/j1/root/tmp/w", "/tmp/w",
        "--chdir", "/tmp",
        "--die-with-parent", "--unshare-pid", "--cap-drop", "ALL",
        "--", "sh", "-c", HOSTILE,
    ]  # fmt: skip
    # Env values never enter the argv: they travel in the process environment.
    assert inv.env == {**BASE_ENV, "X": SUBST}
    assert inv.cwd is None


def test_bwrap_rebuilds_directories_that_lack_a_mount_point() -> None:
    ex = executor(workdir="/data")
    binds = [Bind("/data"), Bind("/home/new/x"), Bind("/top.txt", is_file=True)]
    argv = invoke("bwrap", ex, binds, executable="/usr/bin/bwrap", extra_args=("--unshare-net",))
    assert argv.argv == [
        "/usr/bin/bwrap",
        "--symlink", "usr/bin", "/bin",
        "--ro-bind", "/etc", "/etc",
        "--ro-bind", "/home", "/home",
        "--ro-bind", "/usr", "/usr",
        "--tmpfs", "/home",
        "--ro-bind", "/home/u", "/home/u",
        "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
        "--bind", "/jobs/j1/root/data", "/data",
        "--bind", "/jobs/j1/root/home/new/x", "/home/new/x",
        "--bind", "/jobs/j1/root/top.txt", "/top.txt",
        "--remount-ro", "/home",
        "--remount-ro", "/",
        "--chdir", "/data",
        "--die-with-parent", "--unshare-pid", "--cap-drop", "ALL", "--unshare-net",
        "--", "sh", "-c", HOSTILE,
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["docker", "podman"])
def test_docker_and_podman(kind: str) -> None:
    ex = executor(workdir="/data", stdin="/data/in", env={"X": HOSTILE, "Y": SUBST})
    inv = invoke(kind, ex, [Bind("/vol"), Bind("/data")], extra_args=("--network=none",))
    assert inv.argv == [
        kind, "run", "--rm", "--network=none", "-i",
        "-v", "/jobs/j1/root/data:/data",
        "-v", "/jobs/j1/root/vol:/vol",
        "-w", "/data",
        "-e", f"X={HOSTILE}",
        "-e", f"Y={SUBST}",
        "ubuntu:24.04", "sh", "-c", HOSTILE,
    ]  # fmt: skip
    assert inv.env == BASE_ENV  # the task env must not steer the docker client itself


def test_docker_without_stdin_or_workdir() -> None:
    inv = invoke("docker", executor(), [], executable="/opt/docker")
    assert inv.argv == ["/opt/docker", "run", "--rm", "ubuntu:24.04", "sh", "-c", HOSTILE]


@pytest.mark.parametrize("path", ["/a:b", "/a,b"])
def test_docker_refuses_paths_that_would_be_misparsed(path: str) -> None:
    with pytest.raises(RuntimeSpecError, match="cannot be bound"):
        invoke("docker", executor(), [Bind(path)])


@pytest.mark.parametrize(
    ("kind", "prefix"), [("apptainer", "APPTAINERENV_"), ("singularity", "SINGULARITYENV_")]
)
def test_apptainer_and_singularity(kind: str, prefix: str) -> None:
    ex = executor(workdir="/data", env={"X": f"{HOSTILE},{SUBST}"})
    inv = invoke(kind, ex, [Bind("/data")])
    assert inv.argv == [
        kind, "exec",
        "--bind", "/jobs/j1/root/data:/data",
        "--pwd", "/data",
        "docker://ubuntu:24.04", "sh", "-c", HOSTILE,
    ]  # fmt: skip
    assert inv.env == {**BASE_ENV, f"{prefix}X": f"{HOSTILE},{SUBST}"}


@pytest.mark.parametrize(
    ("image", "ref"),
    [
        ("ubuntu:24.04", "docker://ubuntu:24.04"),
        ("/srv/images/tool.sif", "/srv/images/tool.sif"),
        ("library://alpine:3", "library://alpine:3"),
        ("docker://quay.io/x/y:1", "docker://quay.io/x/y:1"),
    ],
)
def test_apptainer_image_references(image: str, ref: str) -> None:
    assert apptainer_image(image) == ref


@pytest.mark.parametrize("kind", ["docker", "podman", "apptainer", "singularity"])
@pytest.mark.parametrize("image", ["--privileged", "-v/:/h", "a b", "x\ny", "x\x00"])
def test_hostile_images_never_reach_an_argv(kind: str, image: str) -> None:
    with pytest.raises(SpecError, match="image"):
        invoke(kind, executor(image=image), [])


def test_shell_characters_in_an_image_stay_one_argv_element() -> None:
    argv = invoke("docker", executor(image="x;id$(id)"), []).argv
    assert argv[-4:] == ["x;id$(id)", "sh", "-c", HOSTILE]


@pytest.mark.parametrize("path", ["/home/u", "/home/u/vol", "/home/u/a/b.txt"])
def test_bwrap_refuses_a_tes_path_inside_a_hidden_directory(path: str) -> None:
    # Binding it would leave the directory (TESP's data, other jobs' specs) visible.
    with pytest.raises(RuntimeSpecError, match=f"TES path '{path}' lies in a directory tasks"):
        invoke("bwrap", executor(), [Bind(path)], hide=("/home/u",))


def test_bwrap_masks_a_hidden_directory_next_to_tes_paths() -> None:
    argv = invoke("bwrap", executor(), [Bind("/home/v")], hide=("/home/u",)).argv
    assert ("--tmpfs", "/home/u") in itertools.pairwise(argv)
