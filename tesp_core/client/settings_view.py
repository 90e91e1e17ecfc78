"""``tesp config show``: the server's effective settings with every secret masked, as TOML.

Masked: every ``SecretStr`` (passwords, hashes, tokens, S3 keys), any string value whose
key names a credential, and the password or secret query values of every URL.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tomllib
from pathlib import Path, PurePath
from typing import Any

from pydantic import SecretStr, ValidationError

from tesp_core.client.render import print_json
from tesp_core.client.safe_text import one_line
from tesp_core.config import Settings, load_settings
from tesp_core.settings_checks import DuplicateKeyError
from tesp_core.storage.redact import REDACTED, redact_text, redact_url

# A plain-str setting named like this is a credential even if nobody typed it SecretStr.
_SECRET_KEY = re.compile(r"(?i)(password|passwd|secret|token|credential|private_key|api_key)")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def masked_settings(settings: Settings) -> dict[str, Any]:
    """The settings as plain data (JSON/TOML types) with every secret replaced by ``***``."""
    masked = _mask(settings.model_dump(mode="python"), key="")
    assert isinstance(masked, dict)  # a model dumps to a dict
    return masked


# URL settings kept secret as a whole, shown with only the password masked (as task logs
# show them): amqp://tesp:***@host/vhost.
_SECRET_URLS = frozenset({"amqp_url", "pulsar_amqp_url", "database_url"})


def _mask(value: Any, key: str) -> Any:
    if isinstance(value, SecretStr):
        if key in _SECRET_URLS and value.get_secret_value():
            return redact_url(value.get_secret_value())
        return REDACTED if value.get_secret_value() else ""
    if isinstance(value, dict):
        return {str(k): _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask(v, key) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, str):
        return REDACTED if value and _SECRET_KEY.search(key) else redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    # Enums, URLs, anything else pydantic may hold: their text, redacted.
    return redact_text(str(value))


def to_toml(data: dict[str, Any]) -> str:
    """``data`` as a TOML document (unset values become comments: TOML has no null)."""
    lines: list[str] = []
    _emit_table(lines, [], data)
    return "\n".join(lines).strip("\n") + "\n"


def _emit_table(lines: list[str], path: list[str], data: dict[str, Any]) -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if path and (scalars or not tables):
        lines.extend(["", f"[{'.'.join(_key(p) for p in path)}]"])
    for k, v in scalars.items():
        lines.append(f"# {_key(k)} is not set" if v is None else f"{_key(k)} = {_value(v)}")
    for k, v in tables.items():
        _emit_table(lines, [*path, k], v)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string (same escapes).
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + items + " }" if items else "{}"
    return json.dumps(str(value))


def settings_error(exc: ValidationError) -> str:
    """One line for invalid settings: the setting it names and pydantic's message, bare."""
    errors = exc.errors()
    err = errors[0]
    message = str(err["msg"])
    # A validator's ValueError/assert comes as "Value error, <its text>".
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    field = ".".join(str(p) for p in err["loc"])
    # A model-level validator has no loc: its message names the settings itself.
    head = f"invalid setting {field}" if field else "invalid settings"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return one_line(f"{head}: {message}{more}")


# pydantic-settings names the field and the source that could not be decoded.
_UNDECODABLE = re.compile(r'field "(\w+)" from source "(\w+)"')


def settings_load_error(exc: Exception, config_file: Path | None) -> str | None:
    """The one line for settings that could not be loaded (no traceback), or None when
    ``exc`` is no settings problem. Never echoes a value: it may be a secret."""
    from pydantic_settings import SettingsError

    if isinstance(exc, ValidationError):
        return settings_error(exc)
    if isinstance(exc, SettingsError):
        found = _UNDECODABLE.search(str(exc))
        field, source = found.groups() if found else ("settings", "")
        where = f"TESP_{field.upper()}" if "Env" in source else source or "?"
        cause = exc.__cause__
        problem = str(cause) if isinstance(cause, DuplicateKeyError) else "not valid JSON"
        return one_line(f"invalid setting {field}: {problem} ({where})")
    toml = config_file or os.environ.get("TESP_CONFIG")
    if isinstance(exc, tomllib.TOMLDecodeError):
        # Its message gives line and column only, never the file's text (maybe a secret).
        return one_line(f"settings file {toml} is not valid TOML: {exc}")
    if isinstance(exc, OSError):
        return one_line(f"cannot read the settings file {toml}: {exc.strerror}")
    return None


def cmd_config_show(config_file: Path | None, as_json: bool) -> int:
    """``tesp config show``: print the server settings ``tesp serve`` would use, masked."""
    if config_file is not None and not config_file.is_file():
        print(f"tesp: --config: no such file {config_file}", file=sys.stderr)
        return 2
    try:
        settings = load_settings(config_file)
    except (ValueError, OSError) as exc:  # ValidationError and SettingsError are ValueErrors
        line = settings_load_error(exc, config_file)
        if line is None:
            raise
        print(f"tesp: {line}", file=sys.stderr)
        return 2
    data = masked_settings(settings)
    if as_json:
        print_json(data)
    else:
        sys.stdout.write(to_toml(data))
    return 0
