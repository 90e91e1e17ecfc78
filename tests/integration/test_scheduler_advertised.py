"""service-info advertises the slurm_* backend_parameters only when some backend declares
a scheduler (``pulsar_scheduler`` / ``backends.NAME.scheduler``). The keys' values are
checked either way; strict mode refuses them when no scheduler is configured."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.conftest import TespProcess

SLURM_KEYS = ["slurm_partition", "slurm_time_limit", "slurm_account", "slurm_qos"]


def _task(strict: bool, partition: str = "short") -> dict[str, object]:
    return {
        "executors": [{"image": "alpine", "command": ["true"]}],
        "resources": {
            "backend_parameters": {"slurm_partition": partition},
            "backend_parameters_strict": strict,
        },
    }


@pytest.fixture(scope="module", params=["none", "slurm"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, TespProcess]]:
    root = tmp_path_factory.mktemp(f"sched-{request.param}")
    env = {"TESP_DISPATCH": "false"}
    if request.param == "slurm":
        env["TESP_PULSAR_SCHEDULER"] = "slurm"
    tesp = TespProcess(root / "data", root / "storage", env=env).start()
    yield request.param, tesp
    tesp.stop()


def test_service_info_and_strict_mode_follow_the_scheduler(
    server: tuple[str, TespProcess],
) -> None:
    kind, tesp = server
    info = requests.get(f"{tesp.api}/service-info", timeout=10).json()
    advertised = info["tesResources_backend_parameters"]
    assert advertised == (
        [*SLURM_KEYS, "backend", "labels"] if kind == "slurm" else ["backend", "labels"]
    )
    # Not strict: accepted (and ignored without a scheduler).
    assert requests.post(f"{tesp.api}/tasks", json=_task(False), timeout=10).status_code == 200
    strict = requests.post(f"{tesp.api}/tasks", json=_task(True), timeout=10)
    if kind == "slurm":
        assert strict.status_code == 200
    else:
        assert strict.status_code == 400
        assert strict.json()["field"] == "resources.backend_parameters.slurm_partition"
        assert strict.json()["msg"] == (
            "resources.backend_parameters.slurm_partition: not supported by this server "
            "(backend_parameters_strict is true); supported: ['backend', 'labels']"
        )
    # A malformed value is refused either way.
    bad = requests.post(f"{tesp.api}/tasks", json=_task(False, "no;such"), timeout=10)
    assert bad.status_code == 400
    assert bad.json()["field"] == "resources.backend_parameters.slurm_partition"


def test_backend_scheduler_setting_is_validated() -> None:
    from pydantic import ValidationError

    from tesp_core.config import load_settings

    settings = load_settings(backends={"a": {"url": "http://h:1", "scheduler": "slurm"}, "b": {}})
    assert settings.has_scheduler()
    assert not load_settings(backends={"a": {"url": "http://h:1"}}).has_scheduler()
    with pytest.raises(ValidationError) as err:
        load_settings(backends={"a": {"url": "http://h:1", "scheduler": "pbs"}})
    assert err.value.errors()[0]["loc"] == ("backends", "a", "scheduler")
