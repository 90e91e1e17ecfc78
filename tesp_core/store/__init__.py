"""Task persistence behind a small protocol; SQLite is the default implementation."""

from tesp_core.store.base import ListQuery, StoredTask, TaskStore
from tesp_core.store.sqlite import SQLiteTaskStore

__all__ = ["ListQuery", "SQLiteTaskStore", "StoredTask", "TaskStore"]
