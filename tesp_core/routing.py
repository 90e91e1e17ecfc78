"""Which backend runs a task: pure rules over the configured backends, no I/O.

The rules, in order (docs/deployment-backends.md):

1. ``resources.backend_parameters.backend`` names one backend: only it is considered.
2. ``resources.backend_parameters.labels`` (comma-separated ``key`` or ``key=value``)
   keeps the backends that carry every label (``key`` alone: any value).
3. ``resources.cpu_cores`` / ``ram_gb`` / ``disk_gb`` keep the backends whose maxima fit.
4. Of those, backends that are down are skipped, and so are full ones (in flight ==
   capacity); the least loaded (in flight / capacity) wins, ties by configuration order.

A task nothing fits is refused at creation (:func:`check_routable`, a 400 naming the
field); :func:`choose` then tells "all down" (wait and retry) from "all full" (wait for a
free slot) from "nothing fits any more" (the configuration changed under a stored task).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from tesp_core.errors import BackendError, BackendUnavailableError, InvalidTaskError
from tesp_core.models import Task

BACKEND_PARAMETER = "backend"
LABELS_PARAMETER = "labels"

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}$")


class NoFittingBackendError(BackendError):
    """No configured backend can ever run the task (the task ends in SYSTEM_ERROR)."""


class BackendsDownError(BackendUnavailableError):
    """Every backend that fits the task is unreachable right now (the task waits)."""


class BackendsBusyError(BackendError):
    """Every backend that fits the task is up and full (the task waits for a free slot)."""


@dataclass(frozen=True)
class BackendProfile:
    """What routing knows of one backend: its name, capacity, labels and maxima."""

    name: str
    capacity: int = 8
    labels: Mapping[str, str] = field(default_factory=dict)
    max_cpu_cores: int | None = None
    max_ram_gb: float | None = None
    max_disk_gb: float | None = None


@dataclass(frozen=True)
class Demand:
    """What a task asks of a backend (from its ``resources``)."""

    backend: str | None = None
    # label key -> required value (None: any value)
    labels: Mapping[str, str | None] = field(default_factory=dict)
    cpu_cores: int | None = None
    ram_gb: float | None = None
    disk_gb: float | None = None


def parse_labels(labels: Sequence[str] | Mapping[str, str], where: str) -> dict[str, str]:
    """A backend's labels as a map: ``["gpu", "site=eu"]`` -> ``{"gpu": "", "site": "eu"}``.

    ``where`` names the setting in the ValueError raised for a malformed label.
    """
    pairs = (
        list(labels.items())
        if isinstance(labels, Mapping)
        else [item.partition("=")[::2] for item in labels]
    )
    out: dict[str, str] = {}
    for key, value in pairs:
        if not _LABEL.match(key):
            raise ValueError(f"{where}: label {key!r} must match {_LABEL.pattern}")
        out[key] = value
    return out


def task_demand(task: Task) -> Demand:
    """The routing demand of a task; InvalidTaskError names a malformed parameter."""
    res = task.resources
    if res is None:
        return Demand()
    params = res.backend_parameters or {}
    wanted: dict[str, str | None] = {}
    for item in (params.get(LABELS_PARAMETER) or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not _LABEL.match(key):
            raise InvalidTaskError(
                f"resources.backend_parameters.{LABELS_PARAMETER}",
                f"label {key!r} is not a label name (comma-separated key or key=value)",
            )
        wanted[key] = value if sep else None
    return Demand(
        backend=params.get(BACKEND_PARAMETER) or None,
        labels=wanted,
        cpu_cores=res.cpu_cores,
        ram_gb=res.ram_gb,
        disk_gb=res.disk_gb,
    )


def misfit(demand: Demand, profile: BackendProfile) -> str | None:
    """Why ``profile`` can never run ``demand`` (the field at fault), or None if it can."""
    for key, value in demand.labels.items():
        have = profile.labels.get(key)
        if have is None or (value is not None and have != value):
            return f"resources.backend_parameters.{LABELS_PARAMETER}"
    limits = (
        ("cpu_cores", demand.cpu_cores, profile.max_cpu_cores),
        ("ram_gb", demand.ram_gb, profile.max_ram_gb),
        ("disk_gb", demand.disk_gb, profile.max_disk_gb),
    )
    for name, asked, most in limits:
        if asked is not None and most is not None and asked > most:
            return f"resources.{name}"
    return None


def fitting(demand: Demand, profiles: Sequence[BackendProfile]) -> list[BackendProfile]:
    """The backends that could run ``demand``, in configuration order."""
    pool = [p for p in profiles if demand.backend is None or p.name == demand.backend]
    return [p for p in pool if misfit(demand, p) is None]


def check_routable(task: Task, profiles: Sequence[BackendProfile]) -> None:
    """Refuse (InvalidTaskError naming the field) a task no configured backend can run."""
    demand = task_demand(task)
    names = [p.name for p in profiles]
    if demand.backend is not None and demand.backend not in names:
        raise InvalidTaskError(
            f"resources.backend_parameters.{BACKEND_PARAMETER}",
            f"no backend named {demand.backend!r} on this server; backends: {names}",
        )
    if fitting(demand, profiles):
        return
    pool = [p for p in profiles if demand.backend is None or p.name == demand.backend]
    reasons = [misfit(demand, p) or "" for p in pool]
    # A resource at fault means some backend had the labels: the resource is the problem.
    field_name = min(reasons, key=lambda r: (r.endswith(LABELS_PARAMETER), r))
    raise InvalidTaskError(field_name, _explain(field_name, demand, pool))


def _explain(field_name: str, demand: Demand, pool: Sequence[BackendProfile]) -> str:
    who = f"backend {demand.backend!r}" if demand.backend else "no backend of this server"
    if field_name.endswith(LABELS_PARAMETER):
        offered = {p.name: dict(p.labels) for p in pool}
        verb = "lacks" if demand.backend else "carries"
        return f"{who} {verb} the labels asked for; labels by backend: {offered}"
    key = field_name.removeprefix("resources.")
    most = {p.name: getattr(p, f"max_{key}") for p in pool}
    verb = "cannot fit" if demand.backend else "fits"
    return (
        f"{who} {verb} {key} = {getattr(demand, key)} (with the labels asked for); "
        f"max {key} by backend: {most}"
    )


def choose(
    demand: Demand,
    profiles: Sequence[BackendProfile],
    load: Mapping[str, int],
    down: Collection[str],
) -> str:
    """The backend to run ``demand`` on now.

    ``load`` is each backend's jobs in flight, ``down`` the backends known unreachable.
    Raises NoFittingBackendError, BackendsDownError or BackendsBusyError.
    """
    candidates = fitting(demand, profiles)
    if not candidates:
        raise NoFittingBackendError(
            "no configured backend fits the task any more (backend, labels or resources); "
            f"backends: {[p.name for p in profiles]}"
        )
    up = [p for p in candidates if p.name not in down]
    if not up:
        raise BackendsDownError(
            f"every backend that fits the task is unreachable: {[p.name for p in candidates]}"
        )
    room = [p for p in up if load.get(p.name, 0) < p.capacity]
    if not room:
        raise BackendsBusyError(f"every backend that fits is full: {[p.name for p in up]}")
    order = {p.name: n for n, p in enumerate(profiles)}
    best = min(
        room,
        key=lambda p: (load.get(p.name, 0) / p.capacity, load.get(p.name, 0), order[p.name]),
    )
    return best.name
