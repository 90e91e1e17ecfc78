"""Session fixtures: one RabbitMQ broker and one Pulsar in message-queue mode on loopback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.amqp.pulsar_mq import PulsarMQ, start_pulsar_mq
from tests.amqp.rabbitmq import RabbitMQ, start_rabbitmq
from tests.conftest import TespProcess

# The user and vhost docs/deployment-amqp.md sets up; a password of its own, so the tests
# can check it never leaks from TESP.
AMQP_USER, AMQP_PASSWORD, AMQP_VHOST = "tesp", "amqp-s3cret-pw-4711", "tesp"


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    with start_rabbitmq(tmp_path_factory.mktemp("amqp") / "rabbitmq") as broker:
        broker.ctl("add_vhost", AMQP_VHOST)
        broker.ctl("add_user", AMQP_USER, AMQP_PASSWORD)
        broker.ctl("set_permissions", "-p", AMQP_VHOST, AMQP_USER, ".*", ".*", ".*")
        yield broker


@pytest.fixture(scope="session")
def amqp_url(rabbitmq: RabbitMQ) -> str:
    return f"amqp://{AMQP_USER}:{AMQP_PASSWORD}@127.0.0.1:{rabbitmq.port}/{AMQP_VHOST}"


@pytest.fixture(scope="session")
def pulsar_mq(tmp_path_factory: pytest.TempPathFactory, amqp_url: str) -> Iterator[PulsarMQ]:
    with start_pulsar_mq(tmp_path_factory.mktemp("pulsar-mq"), amqp_url) as pulsar:
        yield pulsar


def amqp_tesp(
    base: Path, amqp_url: str, port: int | None = None, manager: str = "_default_"
) -> TespProcess:
    """A ``tesp serve`` (not started) that reaches Pulsar only through RabbitMQ."""
    server = TespProcess(
        data_dir=base / "data",
        storage=base / "storage",
        env={
            "TESP_PULSAR_TRANSPORT": "amqp",
            "TESP_PULSAR_AMQP_URL": amqp_url,
            "TESP_WORKER_PYTHON": sys.executable,
            "TESP_PULSAR_MANAGER": manager,
        },
    )
    if port is not None:
        server.port = port
    return server


@pytest.fixture(scope="module")
def amqp_server(
    tmp_path_factory: pytest.TempPathFactory, amqp_url: str, pulsar_mq: PulsarMQ
) -> Iterator[TespProcess]:
    server = amqp_tesp(tmp_path_factory.mktemp("tesp-amqp"), amqp_url)
    server.env["TESP_HEARTBEAT_STALE_SECONDS"] = "20"
    server.start()
    yield server
    server.stop()
