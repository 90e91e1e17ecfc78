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
    if not _has_labels(demand, profile):
        return f"resources.backend_parameters.{LABELS_PARAMETER}"
    return _too_small(demand, profile)


def _has_labels(demand: Demand, profile: BackendProfile) -> bool:
    for key, value in demand.labels.items():
        have = profile.labels.get(key)
        if have is None or (value is not None and have != value):
            return False
    return True


_RESOURCES = ("cpu_cores", "ram_gb", "disk_gb")


def _too_small(demand: Demand, profile: BackendProfile) -> str | None:
    """The first resource of ``demand`` above the maxima of ``profile``, or None."""
    for name in _RESOURCES:
        asked, most = getattr(demand, name), getattr(profile, f"max_{name}")
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
    labelled = [p for p in pool if _has_labels(demand, p)]
    if not labelled:
        raise InvalidTaskError(
            f"resources.backend_parameters.{LABELS_PARAMETER}", _no_labels(demand, pool)
        )
    # Some backend has the labels, so a resource is what none of those can give.
    field_name = min(
        (r for r in map(lambda p: _too_small(demand, p), labelled) if r is not None),
        key=lambda r: _RESOURCES.index(r.removeprefix("resources.")),
    )
    raise InvalidTaskError(field_name, _too_big(field_name, demand, pool, labelled))


def _wanted(demand: Demand) -> str:
    return ", ".join(k if v is None else f"{k}={v}" for k, v in demand.labels.items())


def _no_labels(demand: Demand, pool: Sequence[BackendProfile]) -> str:
    offered = {p.name: dict(p.labels) for p in pool}
    if demand.backend:
        return (
            f"backend {demand.backend!r} lacks the labels {_wanted(demand)}; "
            f"its labels: {offered[demand.backend]}"
        )
    return f"no backend carries the labels {_wanted(demand)}; labels by backend: {offered}"


def _too_big(
    field_name: str,
    demand: Demand,
    pool: Sequence[BackendProfile],
    labelled: Sequence[BackendProfile],
) -> str:
    key = field_name.removeprefix("resources.")
    asked = f"{key} = {getattr(demand, key)}"
    most = {p.name: getattr(p, f"max_{key}") for p in labelled}
    if demand.backend:
        return (
            f"backend {demand.backend!r} cannot fit {asked}; its max {key}: {most[demand.backend]}"
        )
    if not demand.labels:
        return f"no backend fits {asked}; max {key} by backend: {most}"
    message = f"no backend with the labels {_wanted(demand)} fits {asked}; their max {key}: {most}"
    roomy = [p.name for p in pool if _too_small(demand, p) is None]
    if roomy:
        message += f"; backends {roomy} fit {asked} but lack the labels"
    return message


def choose(
    demand: Demand,
    profiles: Sequence[BackendProfile],
    load: Mapping[str, int],
    down: Collection[str],
    why_down: Mapping[str, str] | None = None,
) -> str:
    """The backend to run ``demand`` on now.

    ``load`` is each backend's jobs in flight, ``down`` the backends known unreachable
    (``why_down``: the last error of each, named when every fitting one is down).
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
        reasons = [
            f"{p.name}: {(why_down or {})[p.name]}"
            for p in candidates
            if (why_down or {}).get(p.name)
        ]
        raise BackendsDownError(
            f"every backend that fits the task is unreachable: {[p.name for p in candidates]}"
            + (f" ({'; '.join(reasons)})" if reasons else "")
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
