"""A PostgreSQL server for the store tests (one per session; a fresh database per test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg import Postgres, start_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL server on 127.0.0.1 for the session."""
    with start_postgres() as server:
        yield server
