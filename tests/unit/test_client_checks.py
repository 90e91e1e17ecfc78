"""Pure checks of the ``tesp`` client: terminal-safe text, flag and URL validation, messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from rich.console import Console

from tesp_core.client.config import resolve_config, shown_url
from tesp_core.client.errors import HttpError, UnreachableError, UsageError
from tesp_core.client.http import api_base
from tesp_core.client.render import task_detail, task_table
from tesp_core.client.safe_text import block, one_line
from tesp_core.client.settings_view import settings_error
from tesp_core.client.task_spec import RunSpec, build_task, json_type, parse_task_file
from tesp_core.client.wait import is_transient, retry_pause
from tesp_core.config import Settings

EVIL = "evil\x1b[2J\x1b[31mRED\x07\x9b\u202e"
EVIL_SHOWN = "evil\\x1b[2J\\x1b[31mRED\\x07\\x9b\\u202e"


def test_one_line_escapes_every_control_character() -> None:
    assert one_line(EVIL) == EVIL_SHOWN
    assert one_line("a\nb\tc\rd\x7f\x00") == "a\\x0ab\\x09c\\x0dd\\x7f\\x00"
    assert one_line("h\u00e9llo \u65e5\u672c") == "h\u00e9llo \u65e5\u672c"
    assert one_line("\ud800") == "\\ud800"  # a lone surrogate would not even encode


def test_block_keeps_newlines_and_tabs_only() -> None:
    assert block("a\tb\r\nc\rd\x1b[0m\n") == "a\tb\nc\\x0dd\\x1b[0m\n"


def _render(renderable: object) -> str:
    console = Console(width=200, force_terminal=False, highlight=False)
    with console.capture() as captured:
        console.print(renderable)
    return captured.get()


def test_task_views_show_control_characters_escaped() -> None:
    task = {
        "id": "t1",
        "state": "COMPLETE",
        "name": EVIL,
        "tags": {EVIL: EVIL},
        "executors": [
            {"image": "alpine", "command": ["echo", "h\u00e9llo", "\x9b"], "env": {"K": EVIL}}
        ],
        "outputs": [{"path": "/out", "url": f"file:///srv/{EVIL}"}],
        "logs": [
            {
                "logs": [{"exit_code": 0, "stdout": f"line1\n\tline2 {EVIL}\n"}],
                "outputs": [{"path": "/out", "url": "file:///srv/out", "size_bytes": "30"}],
                "system_logs": [EVIL],
            }
        ],
    }
    detail = _render(task_detail(task))
    table = _render(task_table([task]))
    for shown in (detail, table):
        assert "\x1b" not in shown
        assert "\x07" not in shown
        assert "\x9b" not in shown
        assert EVIL_SHOWN in shown
    assert '["echo", "h\u00e9llo", "\\x9b"]' in detail  # real characters, no \\u00e9
    rows = [[part.strip() for part in line.split(None, 1)] for line in detail.splitlines()]
    assert ["env", f"K={EVIL_SHOWN}"] in rows
    assert ["tag", f"{EVIL_SHOWN}={EVIL_SHOWN}"] in rows
    assert "output file  /out -> file:///srv/out (30 bytes)" in detail
    assert "line1\n        line2" in detail  # stdout keeps its newline; rich expands the tab


def test_resources_must_be_finite_and_in_range() -> None:
    def run(**kwargs: float) -> dict[str, object]:
        return build_task(RunSpec(image="a", command=["true"], **kwargs))  # type: ignore[arg-type]

    assert run(ram=1.5, cpu=2)["resources"] == {"cpu_cores": 2, "ram_gb": 1.5}
    for kwargs, message in [
        ({"ram": float("nan")}, "--ram: must be a finite number (got nan)"),
        ({"ram": float("inf")}, "--ram: must be a finite number (got inf)"),
        ({"disk": -1.0}, "--disk: must be 0 or more (got -1)"),
        ({"cpu": 0}, "--cpu: must be 1 or more (got 0)"),
    ]:
        with pytest.raises(UsageError) as caught:
            run(**kwargs)
        assert str(caught.value) == message


def test_run_without_command_has_one_prefix() -> None:
    with pytest.raises(UsageError) as caught:
        build_task(RunSpec(image="a", command=[]))
    assert str(caught.value) == "give the command after --, e.g. tesp run --image alpine -- echo hi"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"resources": {"ram_gb": NaN}}', "stdin: not valid JSON: NaN is not allowed"),
        ('{"a": -Infinity}', "stdin: not valid JSON: -Infinity is not allowed"),
        ('{"a": 1e999}', "stdin: not valid JSON: the number 1e999 is out of range"),
        ("null", "stdin: must be a JSON object (a tesTask), not null"),
        ("[1]", "stdin: must be a JSON object (a tesTask), not array"),
        ('"x"', "stdin: must be a JSON object (a tesTask), not string"),
        ("1.5", "stdin: must be a JSON object (a tesTask), not number"),
        ("true", "stdin: must be a JSON object (a tesTask), not boolean"),
    ],
)
def test_task_file_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_task_file("stdin", text)
    assert str(caught.value) == message


def test_json_type_names() -> None:
    assert [json_type(v) for v in (None, True, 1, 1.0, "", [], {})] == [
        "null",
        "boolean",
        "number",
        "number",
        "string",
        "array",
        "object",
    ]


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://h:1", "http://h:1/ga4gh/tes/v1"),
        ("http://h:1/", "http://h:1/ga4gh/tes/v1"),
        ("http://h:1/v1", "http://h:1/v1"),
        ("http://h:1/v1/", "http://h:1/v1"),
        ("http://h:1/ga4gh/tes/v1", "http://h:1/ga4gh/tes/v1"),
        ("http://h:1/tes", "http://h:1/tes/ga4gh/tes/v1"),
    ],
)
def test_api_base(url: str, base: str) -> None:
    assert api_base(url) == base


NO_FLAGS: dict[str, str | None] = {"url": None, "user": None, "password": None, "token": None}


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"url": "127.0.0.1:8931"}, {}, "--url: needs http:// or https:// (got 127.0.0.1:8931)"),
        ({"url": "ftp://u:pw@x"}, {}, "--url: needs http:// or https:// (got ftp://u:***@x)"),
        ({}, {"TESP_URL": "u:pw@h:80"}, "TESP_URL: needs http:// or https:// (got u:***@h:80)"),
        ({"url": "http://"}, {}, "--url: no host in http://"),
    ],
)
def test_url_needs_http(
    flags: dict[str, str], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    environ = {"XDG_CONFIG_HOME": str(tmp_path), **env}
    with pytest.raises(UsageError) as caught:
        resolve_config({**NO_FLAGS, **flags}, environ=environ)
    assert str(caught.value) == message


def test_url_in_the_config_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('url = "localhost:8000"\n')
    with pytest.raises(UsageError) as caught:
        resolve_config(NO_FLAGS, environ={}, config_file=path)
    assert str(caught.value) == f"url in {path}: needs http:// or https:// (got localhost:8000)"
    assert shown_url("https://a:b@c/d") == "https://a:***@c/d"


def test_settings_error_names_the_setting_without_pydantic_prefix() -> None:
    with pytest.raises(ValidationError) as pair:
        Settings(s3_secret_access_key="x")  # type: ignore[arg-type]
    assert settings_error(pair.value) == (
        "invalid settings: set both s3_access_key_id and s3_secret_access_key, or neither"
    )
    with pytest.raises(ValidationError) as port:
        Settings(port="abc")  # type: ignore[arg-type]
    assert settings_error(port.value) == (
        "invalid setting port: Input should be a valid integer, unable to parse string as an "
        "integer"
    )


def test_what_a_wait_retries() -> None:
    assert is_transient(UnreachableError("refused"))
    assert not is_transient(UnreachableError("TLS", transient=False))
    assert is_transient(HttpError("bad gateway", 502))
    assert not is_transient(HttpError("not found", 404))
    assert not is_transient(UsageError("bad"))
    assert [retry_pause(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
