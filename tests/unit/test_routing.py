"""Routing between named backends (pure rules) and the pool's placement bookkeeping."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tesp_core.backends.pulsar import JobStatus, PulsarBackend
from tesp_core.backends.router import BackendPool, PoolMember, never_sent
from tesp_core.errors import BackendError, BackendUnavailableError, InvalidTaskError
from tesp_core.models import Task
from tesp_core.routing import (
    BackendProfile,
    BackendsBusyError,
    BackendsDownError,
    NoFittingBackendError,
    check_routable,
    choose,
    parse_labels,
    task_demand,
)

A = BackendProfile(
    "a", capacity=2, labels={"gpu": "a100", "site": "eu"}, max_cpu_cores=4, max_ram_gb=16
)
B = BackendProfile("b", capacity=4, labels={"site": "us"}, max_cpu_cores=64, max_ram_gb=256)
PROFILES = [A, B]
_LABELS = "resources.backend_parameters.labels"


def _task(**resources: Any) -> Task:
    body: dict[str, Any] = {"executors": [{"image": "a", "command": ["true"]}]}
    if resources:
        body["resources"] = resources
    return Task.from_client(body)


def _params(**params: str) -> Task:
    return _task(backend_parameters=params)


def test_parse_labels_accepts_lists_and_maps() -> None:
    assert parse_labels(["gpu", "site=eu"], "x") == {"gpu": "", "site": "eu"}
    assert parse_labels({"site": "eu"}, "x") == {"site": "eu"}
    with pytest.raises(ValueError, match=r"backends\.a\.labels: label 'two words'"):
        parse_labels(["two words"], "backends.a.labels")


def test_demand_reads_backend_labels_and_resources() -> None:
    demand = task_demand(
        _task(
            cpu_cores=2, ram_gb=3.5, backend_parameters={"backend": "a", "labels": "gpu, site=eu"}
        )
    )
    assert demand.backend == "a"
    assert demand.labels == {"gpu": None, "site": "eu"}
    assert (demand.cpu_cores, demand.ram_gb, demand.disk_gb) == (2, 3.5, None)
    with pytest.raises(InvalidTaskError) as err:
        task_demand(_params(labels="ok,not ok"))
    assert err.value.field == "resources.backend_parameters.labels"


_BY_BACKEND = "{'a': {'gpu': 'a100', 'site': 'eu'}, 'b': {'site': 'us'}}"


@pytest.mark.parametrize(
    ("task", "field", "message"),
    [
        (
            _params(backend="c"),
            "resources.backend_parameters.backend",
            "no backend named 'c' on this server; backends: ['a', 'b']",
        ),
        (
            _params(labels="gpu=h100"),
            _LABELS,
            f"no backend carries the labels gpu=h100; labels by backend: {_BY_BACKEND}",
        ),
        (
            _params(labels="tpu"),
            _LABELS,
            f"no backend carries the labels tpu; labels by backend: {_BY_BACKEND}",
        ),
        # No labels asked: the message says nothing of labels.
        (
            _task(cpu_cores=128),
            "resources.cpu_cores",
            "no backend fits cpu_cores = 128; max cpu_cores by backend: {'a': 4, 'b': 64}",
        ),
        (
            _task(ram_gb=512),
            "resources.ram_gb",
            "no backend fits ram_gb = 512.0; max ram_gb by backend: {'a': 16, 'b': 256}",
        ),
        # gpu fits only a, 16 cores only b: both halves of the conflict are named.
        (
            _task(cpu_cores=16, backend_parameters={"labels": "gpu"}),
            "resources.cpu_cores",
            "no backend with the labels gpu fits cpu_cores = 16; their max cpu_cores: "
            "{'a': 4}; backends ['b'] fit cpu_cores = 16 but lack the labels",
        ),
        (
            _task(cpu_cores=16, backend_parameters={"backend": "a"}),
            "resources.cpu_cores",
            "backend 'a' cannot fit cpu_cores = 16; its max cpu_cores: 4",
        ),
        (
            _params(backend="b", labels="gpu"),
            _LABELS,
            "backend 'b' lacks the labels gpu; its labels: {'site': 'us'}",
        ),
    ],
)
def test_statically_impossible_tasks_are_refused_naming_the_field(
    task: Task, field: str, message: str
) -> None:
    with pytest.raises(InvalidTaskError) as err:
        check_routable(task, PROFILES)
    assert (err.value.field, err.value.problem) == (field, message)


def test_refusals_state_the_actual_conflict() -> None:
    """The operator's two cases: b fits 4 cores but lacks gpu; 16 cores fit nothing."""
    profiles = [
        BackendProfile("a", labels={"gpu": ""}, max_cpu_cores=2),
        BackendProfile("b", max_cpu_cores=8),
    ]
    with pytest.raises(InvalidTaskError) as err:
        check_routable(_task(cpu_cores=16), profiles)
    assert err.value.problem == (
        "no backend fits cpu_cores = 16; max cpu_cores by backend: {'a': 2, 'b': 8}"
    )
    with pytest.raises(InvalidTaskError) as err:
        check_routable(_task(cpu_cores=4, backend_parameters={"labels": "gpu"}), profiles)
    assert (err.value.field, err.value.problem) == (
        "resources.cpu_cores",
        "no backend with the labels gpu fits cpu_cores = 4; their max cpu_cores: {'a': 2}; "
        "backends ['b'] fit cpu_cores = 4 but lack the labels",
    )


def test_possible_tasks_pass_the_check() -> None:
    for task in (_task(), _params(backend="b"), _params(labels="site=eu"), _task(cpu_cores=64)):
        check_routable(task, PROFILES)


def test_named_backend_wins_even_when_busier() -> None:
    demand = task_demand(_params(backend="b"))
    assert choose(demand, PROFILES, {"a": 0, "b": 3}, ()) == "b"


def test_labels_and_resources_restrict_the_candidates() -> None:
    assert choose(task_demand(_params(labels="gpu")), PROFILES, {"a": 1}, ()) == "a"
    assert choose(task_demand(_params(labels="site=us")), PROFILES, {"b": 3}, ()) == "b"
    assert choose(task_demand(_task(cpu_cores=8)), PROFILES, {"b": 3}, ()) == "b"


def test_least_load_relative_to_capacity_then_configuration_order() -> None:
    demand = task_demand(_task())
    assert choose(demand, PROFILES, {}, ()) == "a"
    assert choose(demand, PROFILES, {"a": 1}, ()) == "b"  # 1/2 against 0/4
    assert choose(demand, PROFILES, {"a": 1, "b": 2}, ()) == "a"  # equal ratio: fewer jobs
    assert choose(demand, PROFILES, {"a": 1, "b": 3}, ()) == "a"  # 0.5 against 0.75


def test_down_and_full_backends_are_skipped() -> None:
    demand = task_demand(_task())
    assert choose(demand, PROFILES, {}, {"a"}) == "b"
    assert choose(demand, PROFILES, {"a": 2}, ()) == "b"
    with pytest.raises(BackendsDownError, match="unreachable: \\['a', 'b'\\]"):
        choose(demand, PROFILES, {}, {"a", "b"})
    with pytest.raises(BackendsBusyError, match="full: \\['a'\\]"):
        choose(demand, PROFILES, {"a": 2}, {"b"})
    # Down beats busy only when nothing fitting is up with room.
    with pytest.raises(BackendsBusyError):
        choose(demand, PROFILES, {"a": 2, "b": 4}, ())


def test_nothing_fits_any_more_is_a_backend_error() -> None:
    with pytest.raises(NoFittingBackendError) as err:
        choose(task_demand(_params(backend="gone")), PROFILES, {}, ())
    assert isinstance(err.value, BackendError)
    assert not isinstance(err.value, BackendUnavailableError)


# -- the pool -----------------------------------------------------------------------------


class _Recorder:
    """A backend that remembers the jobs submitted to it (the pool's collaborator)."""

    def __init__(self, fail: BackendUnavailableError | None = None) -> None:
        self.jobs: list[str] = []
        self.fail = fail

    def submit(self, job_id: str, spec: dict[str, Any], worker: Path, task: Task) -> None:
        if self.fail is not None:
            raise self.fail
        self.jobs.append(job_id)

    def status(self, job_id: str) -> JobStatus:
        return JobStatus("running" if job_id in self.jobs else "lost")

    def finished_hint(self, job_id: str) -> bool | None:
        return None

    def watch_hint(self, job_id: str) -> tuple[int, ...] | None:
        return None

    def listen(self, on_change: Callable[[str], None]) -> None:
        pass

    def read_json(self, job_id: str, name: str) -> dict[str, Any] | None:
        return None

    def cancel(self, job_id: str) -> None:
        pass

    def clean(self, job_id: str) -> None:
        self.jobs.remove(job_id)

    def healthy(self) -> bool:
        return self.fail is None

    def close(self) -> None:
        pass


def _pool(a: _Recorder, b: _Recorder) -> BackendPool:
    return BackendPool(
        [PoolMember(A, a, "http://a"), PoolMember(B, b, "http://b")], recheck_seconds=0.0
    )


def test_pool_sends_each_jobs_calls_to_its_backend() -> None:
    a, b = _Recorder(), _Recorder()
    pool = _pool(a, b)
    task = _task()
    names = [pool.place(f"j{n}", task).name for n in range(4)]
    assert names == ["a", "b", "b", "a"]  # by load ratio: 0/2, 1/2 vs 0/4, 1/2 vs 1/4, ...
    for n in range(4):
        pool.submit(f"j{n}", {}, Path("w"), task)
    assert (a.jobs, b.jobs) == (["j0", "j3"], ["j1", "j2"])
    assert pool.in_flight() == {"a": 2, "b": 2}
    assert pool.status("j3").phase == "running"
    pool.clean("j1")
    pool.forget("j1")
    assert b.jobs == ["j2"] and pool.in_flight() == {"a": 2, "b": 1}
    assert pool.metadata("a", "j0") == {
        "backend": "a",
        "pulsar_job_id": "j0",
        "pulsar_url": "http://a",
    }


def test_an_ended_job_keeps_its_backend_but_not_its_room() -> None:
    a, b = _Recorder(), _Recorder()
    pool = _pool(a, b)
    task = _task()
    for n in range(3):
        pool.place(f"j{n}", task)  # a 1/2, b 2/4: both half full
    pool.ended("j0")
    assert pool.in_flight() == {"a": 0, "b": 2}
    assert pool.place("j3", task).name == "a"  # a's only job is over: 0/2 beats 2/4
    pool.submit("j0", {}, Path("w"), task)
    pool.clean("j0")  # its calls still go to a
    assert a.jobs == []
    pool.forget("j0")
    pool.ended("j0")  # a forgotten job is not marked again
    assert pool.in_flight() == {"a": 1, "b": 2}


def test_pool_pins_a_resumed_submission_and_reattaches_after_restart() -> None:
    a, b = _Recorder(), _Recorder()
    pool = _pool(a, b)
    where = pool.place("j", _task(), pinned="b")
    assert (where.name, where.resumed) == ("b", True)
    fresh = _pool(a, b)
    fresh.attach("k", "b")
    b.jobs.append("k")
    assert fresh.placed("k") and fresh.status("k").phase == "running"
    fresh.attach("old", "gone")
    with pytest.raises(BackendError, match="backend 'gone', which is not configured"):
        fresh.status("old")


def test_pool_reroutes_a_submission_that_never_reached_its_backend() -> None:
    refused = _refused_error()
    a, b = _Recorder(fail=refused), _Recorder()
    pool = _pool(a, b)
    task = _task()
    assert pool.place("j", task).name == "a"
    with pytest.raises(BackendUnavailableError):
        pool.submit("j", {}, Path("w"), task)
    # a is down now, and the job never reached it: the retry goes to b, once b has room.
    for n in range(4):
        assert pool.place(f"k{n}", task).name == "b"
    with pytest.raises(BackendsBusyError):
        pool.place("j", task, pinned="a")
    pool.release("j")  # waiting for room (released, not forgotten) keeps it movable
    pool.forget("k0")
    where = pool.place("j", task, pinned="a")
    assert (where.name, where.resumed) == ("b", False)
    # a comes back: its health check brings it into routing again.
    a.fail = None
    assert pool.place("k", task).name == "a"


def test_pool_keeps_a_job_whose_submission_may_have_arrived() -> None:
    a, b = _Recorder(fail=BackendUnavailableError("HTTP 502")), _Recorder()
    pool = _pool(a, b)
    task = _task()
    pool.place("j", task)
    with pytest.raises(BackendUnavailableError):
        pool.submit("j", {}, Path("w"), task)
    assert pool.place("j", task, pinned="a").name == "a"


def test_pool_single_backend_takes_unnamed_bookkeeping() -> None:
    only = _Recorder()
    pool = BackendPool.single(only)
    assert pool.names == ["default"]
    pool.attach("j", None)
    only.jobs.append("j")
    assert pool.status("j").phase == "running"
    named = BackendPool([PoolMember(A, only)])
    assert named.resolve(None) == "a"  # one backend: a single-backend TESP's tasks are its


def _refused_error() -> BackendUnavailableError:
    """What PulsarBackend raises when nothing listens (a real refused connection)."""
    backend = PulsarBackend("http://127.0.0.1:9", timeout=2)
    try:
        backend.status("j")
    except BackendUnavailableError as exc:
        return exc
    raise AssertionError("port 9 answered")


def test_never_sent_tells_refused_from_other_failures() -> None:
    assert never_sent(_refused_error())
    try:
        requests.get("http://127.0.0.1:9", timeout=2)
    except requests.ConnectionError as exc:
        assert never_sent(exc)
    assert not never_sent(BackendUnavailableError("Pulsar failed on POST: HTTP 500"))
    flagged = BackendUnavailableError("broker down")
    flagged.never_sent = True  # type: ignore[attr-defined]
    assert never_sent(flagged)
