"""A SQLite task store whose file another process holds locked answers StoreUnavailableError
(HTTP 503), not a raw sqlite3 error (500)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tesp_core.errors import StoreUnavailableError
from tesp_core.store.sqlite import SQLiteTaskStore


def test_locked_sqlite_database_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteTaskStore(tmp_path / "tasks.sqlite")
    other = sqlite3.connect(tmp_path / "tasks.sqlite", isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailableError) as caught:
            store.update_backend("t1", {})
        assert str(caught.value) == "the task store is unavailable; try again later"
        other.execute("ROLLBACK")
        store.update_backend("t1", {})  # the store works again once the lock is gone
        assert store.get("t1") is None
    finally:
        other.close()
        store.close()
