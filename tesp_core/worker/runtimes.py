"""Argv builders, one per runtime kind. Pure functions: no process is started here.

Every user string ends up as one element of an argv list (never in a shell). Under every
runtime except ``none``, TES path ``P`` lives at ``JOB_ROOT/P`` on the host and is bound to
``P`` inside the namespace or container.
"""

from __future__ import annotations

import os
import posixpath

from tesp_core.worker.spec import TYPE_CHECKING, Record, SpecError, validate_image

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Protocol

    from tesp_core.worker.spec import Executor, Runtime, WorkerSpec

    StrPath = str | os.PathLike[str]
else:
    # HostFS is a protocol only for mypy; at run time typing is not imported (see spec.py).
    Protocol = object

CONTAINER_KINDS = frozenset({"docker", "podman"})
APPTAINER_KINDS = frozenset({"apptainer", "singularity"})
# Mounted fresh by bwrap itself; a TES path may not live under /dev or /proc.
_BWRAP_SPECIAL = ("/dev", "/proc", "/tmp")
_BWRAP_DEFAULT_WORKDIR = "/tmp"
_IMAGE_SCHEMES = ("docker://", "library://", "oras://", "shub://", "docker-archive:", "oci:")


class RuntimeSpecError(SpecError):
    """The spec cannot be run under the chosen runtime (e.g. a path it cannot bind)."""


class Bind(Record):
    """A TES path bound from the job root: a directory, or a single file (ordered)."""

    __slots__ = ("path", "is_file")  # noqa: RUF023

    def __init__(self, path: str, is_file: bool = False) -> None:
        self.path = path
        self.is_file = is_file

    def __lt__(self, other: Bind) -> bool:
        return (self.path, self.is_file) < (other.path, other.is_file)


class Invocation(Record):
    """What to hand to ``subprocess.Popen``: argv, the full environment and the host cwd."""

    __slots__ = ("argv", "env", "cwd")  # noqa: RUF023

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | None = None) -> None:
        self.argv = argv
        self.env = env
        self.cwd = cwd


class HostFS(Protocol):
    """The few host file-system queries the bwrap planner needs (faked in unit tests)."""

    def is_dir(self, path: str) -> bool: ...

    def is_file(self, path: str) -> bool: ...

    def is_link(self, path: str) -> bool: ...

    def listdir(self, path: str) -> list[str]: ...

    def readlink(self, path: str) -> str: ...


class RealFS:
    """:class:`HostFS` on the real host."""

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` is a directory (following symlinks)."""
        return os.path.isdir(path)

    def is_file(self, path: str) -> bool:
        """Whether ``path`` is a regular file (following symlinks)."""
        return os.path.isfile(path)

    def is_link(self, path: str) -> bool:
        """Whether ``path`` is a symlink."""
        return os.path.islink(path)

    def listdir(self, path: str) -> list[str]:
        """Entry names of ``path``."""
        return os.listdir(path)

    def readlink(self, path: str) -> str:
        """The target of symlink ``path``."""
        return os.readlink(path)


def host_path(kind: str, job_root: StrPath, tes_path: str) -> str:
    """Where TES path ``tes_path`` lives on the host under runtime ``kind``."""
    if kind == "none":
        return tes_path
    rel = tes_path.lstrip("/")
    return os.path.join(job_root, rel) if rel else os.fspath(job_root)


def _is_under(path: str, ancestor: str) -> bool:
    return ancestor == "/" or path == ancestor or path.startswith(ancestor.rstrip("/") + "/")


def static_dir(pattern: str) -> str:
    """The directory part of a glob before its first wildcard component."""
    parts: list[str] = []
    for part in pattern.split("/")[1:]:
        if any(c in part for c in "*?["):
            break
        parts.append(part)
    return "/" + "/".join(parts)


def _file_bind(path: str) -> Bind:
    # A file's directory is bound so that an output file that does not exist yet can be
    # created; a file directly under / is bound alone (binding / itself is impossible).
    parent = posixpath.dirname(path)
    return Bind(path, is_file=True) if parent == "/" else Bind(parent)


def plan_binds(spec: WorkerSpec, fs: HostFS | None = None) -> list[Bind]:
    """The minimal, sorted set of binds from the job root covering every TES path.

    A path under another bound path needs no bind of its own: it already is inside the
    parent's job-root directory. With ``fs`` (bwrap), executor workdirs that would not
    exist inside the namespace are bound too.
    """
    wanted: set[Bind] = {Bind(v) for v in spec.volumes}
    for item in spec.inputs:
        wanted.add(Bind(item.path) if item.type == "DIRECTORY" else _file_bind(item.path))
    for out in spec.outputs:
        if out.wildcard:
            wanted.add(Bind(static_dir(out.path)))
        else:
            wanted.add(Bind(out.path) if out.type == "DIRECTORY" else _file_bind(out.path))
    for ex in spec.executors:
        wanted.update(_file_bind(p) for p in (ex.stdin, ex.stdout, ex.stderr) if p)
    binds = _minimal(wanted)
    if fs is not None:
        for ex in spec.executors:
            wd = ex.workdir
            if not wd or any(_is_under(wd, b.path) for b in binds):
                continue
            if _is_under(wd, "/tmp") or not fs.is_dir(wd) or fs.is_link(wd):
                binds = _minimal({*binds, Bind(wd)})
    for bind in binds:
        if bind.path == "/" or any(_is_under(bind.path, s) for s in _BWRAP_SPECIAL[:2]):
            raise RuntimeSpecError(f"cannot bind TES path {bind.path!r} from the job directory")
    return binds


def _minimal(wanted: set[Bind]) -> list[Bind]:
    ordered = sorted(wanted)
    kept: list[Bind] = []
    for bind in ordered:
        if not any(_is_under(bind.path, k.path) for k in kept if not k.is_file):
            kept.append(bind)
    return kept


def merged_env(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` overlaid with the executor's env."""
    env = dict(base)
    env.update(extra)
    return env


def none_invocation(ex: Executor, base_env: Mapping[str, str], default_cwd: str) -> Invocation:
    """Run on the host: TES paths are host paths, the workdir is the host cwd."""
    return Invocation(list(ex.command), merged_env(base_env, ex.env), ex.workdir or default_cwd)


def _bwrap_view(
    directory: str, targets: Sequence[Bind], fs: HostFS, pre: list[str], post: list[str]
) -> None:
    """Make every target's mount point creatable, keeping the host visible read-only.

    bwrap cannot create a mount point inside a read-only bind, so a directory that lacks
    one is rebuilt on a tmpfs from read-only binds of its entries (then remounted
    read-only); a directory that has them all is left alone.
    """
    children: dict[str, list[Bind]] = {}
    for bind in targets:
        rest = bind.path[len(directory) :].lstrip("/")
        children.setdefault(posixpath.join(directory, rest.split("/")[0]), []).append(bind)
    if directory == "/":
        for special in _BWRAP_SPECIAL:
            children.pop(special, None)
    if all(_mount_point_ok(child, binds, fs) for child, binds in children.items()):
        if directory == "/":
            pre += ["--ro-bind", "/", "/"]
    else:
        if directory != "/":
            pre += ["--tmpfs", directory]
        bound = {b.path for b in targets}
        for name in sorted(fs.listdir(directory)):
            entry = posixpath.join(directory, name)
            if entry in bound or (directory == "/" and entry in _BWRAP_SPECIAL):
                continue
            if fs.is_link(entry):
                pre += ["--symlink", fs.readlink(entry), entry]
            else:
                pre += ["--ro-bind", entry, entry]
        post.insert(0, directory)
    for child, binds in sorted(children.items()):
        inner = [b for b in binds if b.path != child]
        if inner and fs.is_dir(child) and not fs.is_link(child):
            _bwrap_view(child, inner, fs, pre, post)


def _mount_point_ok(child: str, binds: Sequence[Bind], fs: HostFS) -> bool:
    if fs.is_link(child):
        return False
    own = [b for b in binds if b.path == child]
    if own:
        return fs.is_file(child) if own[0].is_file else fs.is_dir(child)
    return fs.is_dir(child)


def bwrap_argv(
    runtime: Runtime, ex: Executor, job_root: StrPath, binds: Sequence[Bind], fs: HostFS
) -> list[str]:
    """The bwrap argv: the host read-only, fresh /dev, /proc, /tmp, TES paths bound rw."""
    pre: list[str] = []
    remounts: list[str] = []
    _bwrap_view("/", binds, fs, pre, remounts)
    argv = [runtime.executable or "bwrap", *pre]
    argv += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    # TESP's own files (its data directory, every job's staging area with its spec and
    # secrets) are masked; bind sources below are still read from the host.
    for hidden in _hidden(runtime, job_root, binds, fs):
        argv += ["--tmpfs", hidden]
    for bind in sorted(binds):
        argv += ["--bind", host_path("bwrap", job_root, bind.path), bind.path]
    for directory in remounts:
        argv += ["--remount-ro", directory]
    argv += ["--chdir", ex.workdir or _BWRAP_DEFAULT_WORKDIR]
    # The pid namespace dies with its init, so nothing the executor forks survives it.
    # No capabilities: a worker running as root would otherwise hand the executor root's,
    # and with them umount (of the masks above) and remount of the read-only host.
    # extra_args come after, so an operator can still --cap-add what a tool needs.
    argv += ["--die-with-parent", "--unshare-pid", "--cap-drop", "ALL"]
    argv += [*runtime.extra_args, "--", *ex.command]
    return argv


def _hidden(runtime: Runtime, job_root: StrPath, binds: Sequence[Bind], fs: HostFS) -> list[str]:
    """The host directories to mask: the configured ones and this job's staging root.

    ``job_root`` is ``<staging>/<job id>/working/root``; masking ``<staging>`` hides every
    job's directory (their specs hold credentials) from the executor. A directory that
    does not exist is not masked. A TES path inside one is refused: binding it would mean
    leaving the directory visible (how other tasks' secrets once leaked).
    """
    staging = posixpath.dirname(posixpath.dirname(posixpath.dirname(os.fspath(job_root))))
    wanted = [*runtime.hide, staging]
    out: list[str] = []
    for path in sorted({posixpath.normpath(p) for p in wanted}):
        if path in ("/", "/tmp") or not fs.is_dir(path) or fs.is_link(path):
            continue
        inside = [b.path for b in binds if _is_under(b.path, path)]
        if inside:
            raise RuntimeSpecError(
                f"TES path {inside[0]!r} lies in a directory tasks cannot see "
                "(TESP's data directory or Pulsar's staging area)"
            )
        if any(_is_under(path, kept) for kept in out):
            continue  # already masked by a parent (sorted: parents come first)
        out.append(path)
    return out


def _check_volume_spec(host: str, container: str) -> None:
    # ':' and ',' separate fields in -v and --bind; such a path would be mis-parsed.
    for value in (host, container):
        if ":" in value or "," in value:
            raise RuntimeSpecError(f"path {value!r} cannot be bound (contains ':' or ',')")


def docker_argv(
    runtime: Runtime, ex: Executor, job_root: StrPath, binds: Sequence[Bind]
) -> list[str]:
    """``docker run`` (or podman): TES paths bound with ``-v``, env with ``-e K=V``."""
    image = validate_image(ex.image, "executor.image")
    argv = [runtime.executable or runtime.kind, "run", "--rm", *runtime.extra_args]
    if ex.stdin:
        argv.append("-i")
    for bind in sorted(binds):
        host = host_path(runtime.kind, job_root, bind.path)
        _check_volume_spec(host, bind.path)
        argv += ["-v", f"{host}:{bind.path}"]
    if ex.workdir:
        argv += ["-w", ex.workdir]
    for key, value in ex.env.items():
        argv += ["-e", f"{key}={value}"]
    # "--" would be taken as the image by docker; the image was checked not to start with "-".
    return [*argv, image, *ex.command]


def apptainer_image(image: str) -> str:
    """An image reference apptainer understands: a local ``.sif`` or a URI, else docker://."""
    image = validate_image(image, "executor.image")
    if image.endswith(".sif") or image.startswith(_IMAGE_SCHEMES):
        return image
    return f"docker://{image}"


def apptainer_argv(
    runtime: Runtime, ex: Executor, job_root: StrPath, binds: Sequence[Bind]
) -> list[str]:
    """``apptainer exec`` (or singularity); env travels in the process environment."""
    argv = [runtime.executable or runtime.kind, "exec", *runtime.extra_args]
    for bind in sorted(binds):
        host = host_path(runtime.kind, job_root, bind.path)
        _check_volume_spec(host, bind.path)
        argv += ["--bind", f"{host}:{bind.path}"]
    if ex.workdir:
        argv += ["--pwd", ex.workdir]
    return [*argv, apptainer_image(ex.image), *ex.command]


def apptainer_env(kind: str, base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``APPTAINERENV_K=V`` (``SINGULARITYENV_``): exact values, unlike ``--env`` (CSV)."""
    prefix = "APPTAINERENV_" if kind == "apptainer" else "SINGULARITYENV_"
    env = dict(base)
    env.update({prefix + key: value for key, value in extra.items()})
    return env


def build_invocation(
    runtime: Runtime,
    ex: Executor,
    job_root: StrPath,
    binds: Sequence[Bind],
    base_env: Mapping[str, str],
    default_cwd: str,
    fs: HostFS | None = None,
) -> Invocation:
    """The invocation of executor ``ex`` under ``runtime``."""
    kind = runtime.kind
    if kind == "none":
        return none_invocation(ex, base_env, default_cwd)
    if kind == "bwrap":
        argv = bwrap_argv(runtime, ex, job_root, binds, fs or RealFS())
        return Invocation(argv, merged_env(base_env, ex.env))
    if kind in CONTAINER_KINDS:
        return Invocation(docker_argv(runtime, ex, job_root, binds), dict(base_env))
    if kind in APPTAINER_KINDS:
        argv = apptainer_argv(runtime, ex, job_root, binds)
        return Invocation(argv, apptainer_env(kind, base_env, ex.env))
    raise RuntimeSpecError(f"unknown runtime {kind!r}")
