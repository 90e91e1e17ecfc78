"""``tesp config show``: the server's effective settings with every secret masked, as TOML.

Masked: every ``SecretStr`` (passwords, hashes, tokens, S3 keys), any string value whose
key names a credential, and the password or secret query values of every URL.
"""

from __future__ import annotations

import json
import math
import re
import sys
import tomllib
from pathlib import Path, PurePath
from typing import Any

from pydantic import SecretStr, ValidationError

from tesp_core.client.render import print_json
from tesp_core.client.safe_text import one_line
from tesp_core.config import Settings, load_settings
from tesp_core.storage.redact import REDACTED, redact_text

# A plain-str setting named like this is a credential even if nobody typed it SecretStr.
_SECRET_KEY = re.compile(r"(?i)(password|passwd|secret|token|credential|private_key|api_key)")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def masked_settings(settings: Settings) -> dict[str, Any]:
    """The settings as plain data (JSON/TOML types) with every secret replaced by ``***``."""
    masked = _mask(settings.model_dump(mode="python"), key="")
    assert isinstance(masked, dict)  # a model dumps to a dict
    return masked


def _mask(value: Any, key: str) -> Any:
    if isinstance(value, SecretStr):
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


def cmd_config_show(config_file: Path | None, as_json: bool) -> int:
    """``tesp config show``: print the server settings ``tesp serve`` would use, masked."""
    if config_file is not None and not config_file.is_file():
        print(f"tesp: --config: no such file {config_file}", file=sys.stderr)
        return 2
    try:
        settings = load_settings(config_file)
    except ValidationError as exc:
        print(f"tesp: {settings_error(exc)}", file=sys.stderr)
        return 2
    except tomllib.TOMLDecodeError as exc:
        # Its message gives line and column only, never the file's text (maybe a secret).
        print(f"tesp: settings file is not valid TOML: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"tesp: cannot read the settings file: {exc.strerror}", file=sys.stderr)
        return 2
    data = masked_settings(settings)
    if as_json:
        print_json(data)
    else:
        sys.stdout.write(to_toml(data))
    return 0
