"""The exit status of ``tesp wait`` for each combination of final states."""

from __future__ import annotations

import pytest

from tesp_core.client.errors import ExitCode
from tesp_core.client.wait import exit_code_for


@pytest.mark.parametrize(
    ("states", "timed_out", "code"),
    [
        (["COMPLETE", "COMPLETE"], False, ExitCode.OK),
        (["COMPLETE", "EXECUTOR_ERROR"], False, ExitCode.EXECUTOR_ERROR),
        (["EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"], False, ExitCode.SYSTEM_ERROR),
        (["PREEMPTED"], False, ExitCode.SYSTEM_ERROR),
        (["CANCELED", "COMPLETE"], False, ExitCode.CANCELED),
        (["RUNNING", "COMPLETE"], True, ExitCode.TIMEOUT),
        (["RUNNING", "EXECUTOR_ERROR"], True, ExitCode.EXECUTOR_ERROR),
    ],
)
def test_exit_code_is_the_worst_outcome(states: list[str], timed_out: bool, code: ExitCode) -> None:
    assert exit_code_for(states, timed_out) is code


def test_exit_codes_are_distinct_and_documented() -> None:
    assert [int(c) for c in ExitCode] == [0, 2, 3, 4, 5, 6, 7]
