"""JSON for the worker's start path without importing :mod:`json`.

``import json`` brings in :mod:`re` (its scanner and encoder compile patterns at import)
and with it :mod:`enum`: about a fifth of a trivial task's worker start-up (issue 8). The
worker reads one small spec and writes two small files, so it uses CPython's C scanner
(``_json``, the same code :func:`json.loads` runs) and a short encoder built on its string
escaper. Where ``_json`` is missing (another interpreter) both fall back to :mod:`json`.

``loads`` accepts what ``json.loads`` accepts (and raises a ValueError where it raises
one); ``dumps`` writes what ``json.dumps(value, indent=1)`` writes for the documents the
worker produces: dicts with string keys, lists, strings, ints, finite floats, bools, None.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_make_scanner: Any = None
_quote: Any = None
try:
    from _json import encode_basestring_ascii as _quote
    from _json import make_scanner as _make_scanner
except ImportError:  # pragma: no cover - CPython always has it
    pass

_WS = " \t\n\r"


class _Context:
    """The attributes the C scanner reads from its ``JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


_scan: Any = _make_scanner(_Context()) if _make_scanner is not None else None


def loads(text: str) -> Any:
    """Parse one JSON document; ValueError (with the position) when it is not one."""
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, end = _scan(text, start)
    except StopIteration as stop:
        raise ValueError(_where("Expecting value", text, stop.value)) from None
    rest = text[end:].lstrip(_WS)
    if rest:
        raise ValueError(_where("Extra data", text, len(text) - len(rest)))
    return value


def _where(message: str, text: str, pos: int) -> str:
    """``message`` with the position as json.JSONDecodeError words it."""
    line = text.count("\n", 0, pos) + 1
    column = pos - text.rfind("\n", 0, pos)
    return f"{message}: line {line} column {column} (char {pos})"


def dumps(value: Any, indent: int | None = None) -> str:
    """``json.dumps(value, indent=indent)`` for plain data (TypeError on anything else)."""
    if _make_scanner is None:  # pragma: no cover
        import json

        return json.dumps(value, indent=indent)
    out: list[str] = []
    _encode(value, out, "\n" if indent is not None else "", " " * (indent or 0))
    return "".join(out)


def _encode(value: Any, out: list[str], newline: str, step: str) -> None:
    if isinstance(value, str):
        out.append(_quote(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"out of range float value: {value!r}")
        out.append(float.__repr__(value))
    elif isinstance(value, dict):
        _container(value, out, newline, step, "{", "}")
    elif isinstance(value, (list, tuple)):
        _container(value, out, newline, step, "[", "]")
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _container(
    value: dict[str, Any] | list[Any] | tuple[Any, ...],
    out: list[str],
    newline: str,
    step: str,
    open_: str,
    close: str,
) -> None:
    if not value:
        out.append(open_ + close)
        return
    # json.dumps's separators: "," between items when indenting, else ", ".
    inner = newline + step if newline else ""
    sep = "," + inner if newline else ", "
    out.append(open_ + inner)
    for n, item in enumerate(value):
        if n:
            out.append(sep)
        if isinstance(value, dict):
            if not isinstance(item, str):
                raise TypeError(f"keys must be str, not {type(item).__name__}")
            out.append(_quote(item) + ": ")
            _encode(value[item], out, inner, step)
        else:
            _encode(item, out, inner, step)
    out.append(newline + close if newline else close)
