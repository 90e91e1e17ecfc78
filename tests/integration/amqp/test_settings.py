"""AMQP settings a fresh operator gets wrong: a bad URL, wrong credentials, a missing vhost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.amqp.rabbitmq import RabbitMQ
from tests.integration.amqp.conftest import AMQP_PASSWORD, AMQP_USER, AMQP_VHOST


def _tesp(
    tmp_path: Path, *args: str, url: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TESP_DATA_DIR": str(tmp_path / "data"),
        "TESP_PULSAR_TRANSPORT": "amqp",
        "TESP_PULSAR_AMQP_URL": url,
        "TESP_PORT": "0",
    }
    return subprocess.run(
        [sys.executable, "-m", "tesp_core.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_an_unencoded_password_is_a_clear_error_that_shows_none_of_it(tmp_path: Path) -> None:
    done = _tesp(tmp_path, "serve", url="amqp://tesp:s3cr#tPW/x@127.0.0.1:25673/tesp")
    assert done.returncode == 2
    assert "pulsar_amqp_url is not a valid amqp:// or amqps:// URL" in done.stderr
    assert "percent-encode" in done.stderr
    assert "Traceback" not in done.stderr
    for part in ("s3cr", "tPW", "#t"):
        assert part not in done.stderr + done.stdout


def test_config_show_masks_only_the_password(tmp_path: Path) -> None:
    url = f"amqp://{AMQP_USER}:{AMQP_PASSWORD}@127.0.0.1:5671/{AMQP_VHOST}"
    done = _tesp(tmp_path, "config", "show", url=url)
    assert done.returncode == 0, done.stderr
    assert f'pulsar_amqp_url = "amqp://{AMQP_USER}:***@127.0.0.1:5671/{AMQP_VHOST}"' in done.stdout
    assert AMQP_PASSWORD not in done.stdout


def test_wrong_password_fails_the_start_naming_the_cause(
    tmp_path: Path, rabbitmq: RabbitMQ
) -> None:
    url = f"amqp://{AMQP_USER}:not-the-password@127.0.0.1:{rabbitmq.port}/{AMQP_VHOST}"
    done = _tesp(tmp_path, "serve", url=url)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "refused the connection: wrong user name or password" in done.stderr
    assert "not-the-password" not in done.stderr + done.stdout
    assert "TESP ready" not in done.stderr + done.stdout


def test_missing_vhost_fails_the_start_naming_the_cause(tmp_path: Path, rabbitmq: RabbitMQ) -> None:
    url = f"amqp://{AMQP_USER}:{AMQP_PASSWORD}@127.0.0.1:{rabbitmq.port}/no-such-vhost"
    done = _tesp(tmp_path, "serve", url=url)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "refused the connection: the user may not open the vhost" in done.stderr
    assert AMQP_PASSWORD not in done.stderr + done.stdout


def test_every_broker_port_is_on_loopback(rabbitmq: RabbitMQ) -> None:
    listening = rabbitmq.listening()
    ports = {port for _, port in listening}
    # AMQP, Erlang distribution and epmd at least.
    assert rabbitmq.port in ports and len(ports) >= 3, listening
    # epmd adds the IPv6 loopback to the address it is given.
    assert {addr for addr, _ in listening} <= {"127.0.0.1", "::1"}, listening
    assert all(addr == "127.0.0.1" for addr, port in listening if port != rabbitmq.epmd_port)
