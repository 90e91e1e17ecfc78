"""TES paths inside the server's data directory are refused, paths beside it are not."""

from __future__ import annotations

import pytest

from tesp_core.errors import InvalidTaskError
from tesp_core.hidden import check_not_hidden
from tesp_core.models import Task


def task(**extra: object) -> Task:
    return Task.from_client({"executors": [{"image": "a", "command": ["true"]}], **extra})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"executors": [{"image": "a", "command": ["x"], "stdout": "/srv/tesp/o"}]},
            "executors[0].stdout",
        ),
        (
            {"executors": [{"image": "a", "command": ["x"], "stdin": "/srv/tesp/./i"}]},
            "executors[0].stdin",
        ),
        ({"volumes": ["/srv/x", "/srv/tesp"]}, "volumes[1]"),
        (
            {"inputs": [{"path": "/i", "url": "file:///srv/tesp/pulsar/embedded.json"}]},
            "inputs[0].url",
        ),
        (
            {
                "outputs": [
                    {"path": "/o1", "url": "s3://bucket/srv/tesp/x"},
                    {"path": "/o2", "url": "file:///srv/%74esp/app.yml"},
                ]
            },
            "outputs[1].url",
        ),
    ],
)
def test_paths_at_or_below_the_data_directory_are_refused(
    body: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidTaskError) as caught:
        check_not_hidden(task(**body), ("/srv/tesp/",))
    assert caught.value.field == field


def test_paths_beside_it_are_accepted() -> None:
    body = {"volumes": ["/srv/tesp-other", "/srv", "/data"]}
    check_not_hidden(task(**body), ("/srv/tesp",))
    check_not_hidden(task(**body), ("/",))  # "/" is never a data directory to enforce
