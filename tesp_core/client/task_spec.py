"""Pure builders of a tesTask from ``tesp run`` flags and from a task file (no I/O here).

``-i URL:PATH`` splits at the last ``:`` that starts an absolute path, so URLs with a port
or a scheme (``s3://b/k:/data/k``, ``http://h:8080/f:/in/f``) work; ``-o PATH:URL`` splits
at the first ``:`` that starts a URL scheme.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from tesp_core.client.errors import UsageError

# Every scheme TES storage knows (file, http(s), ftp, s3) is written scheme://...
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://.")


def _looks_like_url(text: str) -> bool:
    return bool(_URL.match(text))


def split_input(flag: str, value: str) -> tuple[str, str]:
    """``URL:PATH`` -> (url, path); the error names ``flag`` and shows the expected form."""
    at = value.rfind(":/")
    while at > 0:
        url, path = value[:at], value[at + 1 :]
        # "s3://b/k" alone would split inside its own "://": the URL part must stay a URL.
        if _looks_like_url(url) and not path.startswith("//"):
            return url, path
        at = value.rfind(":/", 0, at)
    raise UsageError(
        f"{flag} {value!r}: expected URL:PATH with an absolute PATH, "
        f"e.g. {flag} s3://bucket/key:/data/key"
    )


def split_output(flag: str, value: str) -> tuple[str, str]:
    """``PATH:URL`` -> (path, url); the error names ``flag`` and shows the expected form."""
    if value.startswith("/"):
        for at in (i for i, c in enumerate(value) if c == ":"):
            path, url = value[:at], value[at + 1 :]
            if path and _looks_like_url(url):
                return path, url
    raise UsageError(
        f"{flag} {value!r}: expected PATH:URL with an absolute PATH, "
        f"e.g. {flag} /data/out.txt:s3://bucket/out.txt"
    )


def split_pair(flag: str, value: str, *, value_required: bool = True) -> tuple[str, str]:
    """``KEY=VALUE`` -> (key, value); ``KEY`` alone gives "" when allowed."""
    key, sep, rest = value.partition("=")
    if not key or (value_required and not sep):
        raise UsageError(f"{flag} {value!r}: expected KEY=VALUE")
    return key, rest


@dataclass
class RunSpec:
    """What ``tesp run`` was told: one executor and its inputs, outputs and resources."""

    image: str
    command: list[str]
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    name: str | None = None
    workdir: str | None = None
    cpu: int | None = None
    ram: float | None = None
    disk: float | None = None


def build_task(spec: RunSpec) -> dict[str, Any]:
    """The tesTask of one executor; ``command`` is kept as the argv it was given."""
    if not spec.command:
        raise UsageError("give the command after --, e.g. tesp run --image alpine -- echo hi")
    executor: dict[str, Any] = {"image": spec.image, "command": list(spec.command)}
    if spec.workdir:
        executor["workdir"] = spec.workdir
    if spec.env:
        executor["env"] = dict(split_pair("--env", e) for e in spec.env)
    task: dict[str, Any] = {"executors": [executor]}
    if spec.name:
        task["name"] = spec.name
    if spec.inputs:
        task["inputs"] = [
            {"url": url, "path": path} for url, path in (split_input("-i", v) for v in spec.inputs)
        ]
    if spec.outputs:
        task["outputs"] = [
            {"path": path, "url": url}
            for path, url in (split_output("-o", v) for v in spec.outputs)
        ]
    if spec.tags:
        task["tags"] = dict(split_pair("--tag", t, value_required=False) for t in spec.tags)
    resources = {
        key: _resource(flag, value, least)
        for key, flag, value, least in (
            ("cpu_cores", "--cpu", spec.cpu, 1),
            ("ram_gb", "--ram", spec.ram, 0),
            ("disk_gb", "--disk", spec.disk, 0),
        )
        if value is not None
    }
    if resources:
        task["resources"] = resources
    return task


def _resource(flag: str, value: float, least: int) -> float:
    # NaN and Infinity are not JSON: caught here, they never reach the request.
    if not math.isfinite(value):
        raise UsageError(f"{flag}: must be a finite number (got {value})")
    if value < least:
        raise UsageError(f"{flag}: must be {least} or more (got {value:g})")
    return value


_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (type(None), "null"),
    (bool, "boolean"),
    (int, "number"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def json_type(value: object) -> str:
    """The JSON name of a parsed JSON value's type (``null``, ``array``, ...)."""
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), "value")


def _no_constant(name: str) -> Any:
    def reject(constant: str) -> Any:
        raise UsageError(f"{name}: not valid JSON: {constant} is not allowed")

    return reject


def _finite_float(name: str) -> Any:
    def parse(text: str) -> float:
        number = float(text)
        if not math.isfinite(number):
            raise UsageError(f"{name}: not valid JSON: the number {text} is out of range")
        return number

    return parse


def parse_task_file(name: str, text: str) -> dict[str, Any]:
    """A task file's JSON object; errors name the file and the line and column."""
    try:
        # Python's parser takes NaN/Infinity (and 1e999 as inf); JSON and the server do not.
        data = json.loads(text, parse_constant=_no_constant(name), parse_float=_finite_float(name))
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{name}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise UsageError(f"{name}: nested too deeply") from None
    if not isinstance(data, dict):
        raise UsageError(f"{name}: must be a JSON object (a tesTask), not {json_type(data)}")
    return data
