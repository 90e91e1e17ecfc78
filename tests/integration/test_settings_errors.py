"""Wrong settings stop ``tesp serve`` and ``tesp config show`` with one line naming the
real setting (exit 2, no traceback): bad JSON in a ``TESP_*`` variable, duplicate or
case-twin backend names, non-http backend URLs, Pulsar settings next to ``[backends]``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

URL_PROBLEM = "must be an http:// or https:// URL with a host (http://HOST:PORT/)"

CASES = [
    (
        {"TESP_BACKENDS": '{"a": {"url": "http://x"'},
        "invalid setting backends: not valid JSON (TESP_BACKENDS)",
    ),
    ({"TESP_FILE_ROOTS": "/tmp"}, "invalid setting file_roots: not valid JSON (TESP_FILE_ROOTS)"),
    (
        {"TESP_BACKENDS": '{"a": {"url": "http://x"}, "a": {"url": "http://y"}}'},
        "invalid setting backends: the key 'a' appears twice (TESP_BACKENDS)",
    ),
    (
        {"TESP_BACKENDS": '{"a": {"url": "http://x"}, "A": {"url": "http://y"}}'},
        "invalid setting backends: backend names 'a' and 'A' differ only in case",
    ),
    (
        {"TESP_BACKENDS": '{"bad name": {"url": "http://x"}}'},
        "invalid setting backends: backend name 'bad name' must be letters, digits, _ . - "
        "(at most 63, starting with a letter or digit)",
    ),
    (
        {"TESP_BACKENDS": '{"a": {}, "b": {}}'},
        "invalid setting backends: only one may be the embedded Pulsar (no url): ['a', 'b']",
    ),
    (
        {"TESP_BACKENDS": '{"a": {"url": "notaurl"}}'},
        f"invalid setting backends.a.url: {URL_PROBLEM}",
    ),
    (
        {"TESP_BACKENDS": '{"a": {"url": "ftp://x"}}'},
        f"invalid setting backends.a.url: {URL_PROBLEM}",
    ),
    ({"TESP_PULSAR_URL": "ftp://x"}, f"invalid setting pulsar_url: {URL_PROBLEM}"),
    (
        {"TESP_BACKENDS": '{"a": {"url": "http://x", "labels": 5}}'},
        'invalid setting backends.a.labels: must be a list of strings (["gpu", "site=eu"]) '
        "or a table of strings",
    ),
    (
        {"TESP_BACKENDS": '{"a": {"url": "http://x", "labels": ["two words"]}}'},
        "invalid setting backends.a.labels: label 'two words' must match "
        "^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}$",
    ),
    (
        {"TESP_DATABASE_URL": "mysql://u:pw@h/db"},
        "invalid setting database_url: must be a postgresql:// URL "
        "(postgresql://USER:PASSWORD@HOST/DB)",
    ),
    (
        {"TESP_BACKENDS": '{"a": {"url": "http://x"}}', "TESP_PULSAR_TOKEN": "t0ken"},
        "invalid setting pulsar_token: cannot be combined with backends (it would be ignored): "
        "give each backend its own settings under [backends.NAME] and remove pulsar_token",
    ),
]


def _tesp(*args: str, env: dict[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tesp_core.cli", *args],
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(("env", "line"), CASES)
@pytest.mark.parametrize("command", ["serve", "config"])
def test_bad_settings_are_one_line_naming_the_setting(
    tmp_path: Path, command: str, env: dict[str, str], line: str
) -> None:
    args = (
        ("serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "d"))
        if command == "serve"
        else ("config", "show")
    )
    done = _tesp(*args, env=env, home=tmp_path)
    assert (done.returncode, done.stderr) == (2, f"tesp: {line}\n")


def test_pulsar_url_flag_with_backends_is_refused(tmp_path: Path) -> None:
    done = _tesp(
        *("serve", "--port", str(free_port()), "--pulsar-url", "http://127.0.0.1:1"),
        env={"TESP_BACKENDS": '{"a": {"url": "http://127.0.0.1:2"}}'},
        home=tmp_path,
    )
    assert (done.returncode, done.stderr) == (
        2,
        "tesp: invalid setting pulsar_url: cannot be combined with backends (it would be "
        "ignored): give each backend its own settings under [backends.NAME] and remove "
        "pulsar_url\n",
    )


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "tesp.toml"
    config.write_text("port = \n")
    for args in (("serve", "--config", str(config)), ("config", "show", "--config", str(config))):
        done = _tesp(*args, env={}, home=tmp_path)
        assert (done.returncode, done.stderr) == (
            2,
            f"tesp: settings file {config} is not valid TOML: Invalid value (at line 1, "
            "column 8)\n",
        )
