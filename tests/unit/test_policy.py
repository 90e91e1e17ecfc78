"""Server-side acceptance rules (pure logic)."""

from __future__ import annotations

import pytest

from tesp_core.errors import InvalidTaskError
from tesp_core.models import Task
from tesp_core.policy import Policy, check_task, is_under_roots

POLICY = Policy(
    schemes=frozenset({"file", "http", "s3"}),
    file_roots=("/srv/data",),
    max_content_bytes=128 * 1024,
)


def _task(**extra: object) -> Task:
    return Task.from_client({"executors": [{"image": "a", "command": ["true"]}], **extra})


@pytest.mark.parametrize(
    ("path", "inside"),
    [
        ("/srv/data", True),
        ("/srv/data/x/y", True),
        ("/srv/database", False),
        ("/srv/data/../etc", False),
        ("relative", False),
        ("/etc/passwd", False),
    ],
)
def test_is_under_roots(path: str, inside: bool) -> None:
    assert is_under_roots(path, ["/srv/data"]) is inside


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"inputs": [{"path": "/i", "url": "ftp://h/x"}]}, "inputs[0].url"),
        ({"inputs": [{"path": "/i", "url": "file:///etc/passwd"}]}, "inputs[0].url"),
        ({"inputs": [{"path": "/i", "url": "file://otherhost/srv/data/x"}]}, "inputs[0].url"),
        ({"inputs": [{"path": "/i", "url": "/srv/data/../../etc/passwd"}]}, "inputs[0].url"),
        ({"outputs": [{"path": "/o", "url": "gs://b/o"}]}, "outputs[0].url"),
        ({"inputs": [{"path": "/i", "content": "x" * (128 * 1024 + 1)}]}, "inputs[0].content"),
        (
            {"resources": {"backend_parameters": {"k": "v"}, "backend_parameters_strict": True}},
            "resources.backend_parameters.k",
        ),
    ],
)
def test_rejections_name_the_field(extra: dict, field: str) -> None:
    with pytest.raises(InvalidTaskError) as info:
        check_task(_task(**extra), POLICY)
    assert info.value.field == field


def test_accepted() -> None:
    check_task(
        _task(
            inputs=[
                {"path": "/i", "url": "file:///srv/data/in.txt"},
                {"path": "/j", "url": "/srv/data/plain"},
                {"path": "/k", "content": "x" * (128 * 1024)},
            ],
            outputs=[{"path": "/o", "url": "s3://bucket/key"}],
            resources={"backend_parameters": {"k": "v"}, "backend_parameters_strict": False},
        ),
        POLICY,
    )
