"""jsonlite reads and writes what json does, for the documents the worker handles."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tesp_core.worker import jsonlite

DOCS: list[Any] = [
    {},
    [],
    "",
    0,
    -12,
    2**70,
    1.5,
    -0.0,
    1e300,
    None,
    True,
    False,
    {"a": [1, 2.5, None, True, False, {"b": {}, "c": []}], "d": "x"},
    {'quote"back\\slash': "tab\tnew\nline\u0000nul"},
    {"\u00e9t\u00e9": "\u2713 \U0001f600 \ud800 lone surrogate"},
    [[[]], [{}], [[1]]],
]


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("indent", [None, 1, 2])
def test_dumps_matches_json(doc: Any, indent: int | None) -> None:
    assert jsonlite.dumps(doc, indent=indent) == json.dumps(doc, indent=indent)


@pytest.mark.parametrize("doc", DOCS)
def test_loads_matches_json(doc: Any) -> None:
    text = json.dumps(doc, indent=1)
    assert jsonlite.loads(f" \n\t{text}\r\n ") == json.loads(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Expecting value: line 1 column 1 (char 0)"),
        ("  ", "Expecting value: line 1 column 3 (char 2)"),
        ("[1,]", "Expecting value: line 1 column 4 (char 3)"),
        ("nul", "Expecting value: line 1 column 1 (char 0)"),
        ('{"a": 1}\n x', "Extra data: line 2 column 2 (char 10)"),
        ("1 2", "Extra data: line 1 column 3 (char 2)"),
    ],
)
def test_loads_rejects_what_json_rejects_with_its_message(text: str, message: str) -> None:
    with pytest.raises(ValueError) as expected:
        json.loads(text)
    with pytest.raises(ValueError) as caught:
        jsonlite.loads(text)
    assert str(caught.value) == str(expected.value) == message


def test_loads_names_the_position_of_a_bad_object() -> None:
    with pytest.raises(ValueError, match=r"Expecting property name .*\(char 1\)"):
        jsonlite.loads("{")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1: "int key"}, {"set": {1}}, b"x"])
def test_dumps_refuses_what_is_not_plain_json(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        jsonlite.dumps(bad)
