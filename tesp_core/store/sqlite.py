"""SQLite task store: one file under the data directory, indexed for listing and paging.

Tasks are kept as their JSON document plus the columns that listing filters on; paging
and the filters' meaning are shared with the other stores (:mod:`tesp_core.store.paging`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tesp_core.errors import StoreUnavailableError
from tesp_core.models import State, Task
from tesp_core.store.base import IN_FLIGHT, Lease, ListQuery, Renewal, StoredTask
from tesp_core.store.paging import Clause, FilterSQL, PagedStore, page_documents, page_select

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT,
    state TEXT NOT NULL,
    owner TEXT,
    body TEXT NOT NULL,
    backend TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS tasks_state_seq ON tasks(state, seq);
CREATE INDEX IF NOT EXISTS tasks_owner_seq ON tasks(owner, seq);
CREATE TABLE IF NOT EXISTS tags (
    seq INTEGER NOT NULL REFERENCES tasks(seq),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (seq, key)
);
CREATE INDEX IF NOT EXISTS tags_key_value ON tags(key, value, seq);
"""

_IN_FLIGHT_SQL = ",".join(f"'{s.value}'" for s in IN_FLIGHT)
# In-flight tasks held by a replica id (?), and those held by anyone else.
_HELD = f"lease_owner = ? AND state IN ({_IN_FLIGHT_SQL})"
_NOT_HELD = f"(lease_owner IS NULL OR lease_owner <> ?) AND state IN ({_IN_FLIGHT_SQL})"


class _Guard:
    """The store's lock: serialises calls, and turns "database is locked" (another process
    holds the file past sqlite's busy timeout) into StoreUnavailableError (HTTP 503)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _: object
    ) -> None:
        self._lock.release()
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise StoreUnavailableError("sqlite: database is locked") from exc


class SQLiteTaskStore(PagedStore):
    """The default :class:`~tesp_core.store.base.TaskStore`, safe across threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _Guard()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(tasks)")}
        if "lease_owner" not in columns:  # a database from before claims existed
            self._db.execute("ALTER TABLE tasks ADD COLUMN lease_owner TEXT")

    def insert(self, stored: StoredTask, lease: Lease | None = None) -> None:
        """Store a new task and its tags in one transaction."""
        task = stored.task
        assert task.id is not None and task.state is not None
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO tasks (id, name, state, owner, body, backend, lease_owner)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        task.id,
                        task.name,
                        task.state.value,
                        stored.owner,
                        _dump(task),
                        json.dumps(stored.backend),
                        lease.replica if lease is not None else None,
                    ),
                )
                seq = cur.lastrowid
                if task.tags:
                    self._db.executemany(
                        "INSERT INTO tags (seq, key, value) VALUES (?, ?, ?)",
                        [(seq, k, v) for k, v in task.tags.items()],
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def get(self, task_id: str) -> StoredTask | None:
        """The task with this id, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT body, owner, backend FROM tasks WHERE id = ?", (task_id,)
            ).fetchone()
        return None if row is None else _stored(row)

    def update_task(self, task: Task, expected: State | None = None) -> bool:
        """Replace a task's document and state (its backend bookkeeping is left alone)."""
        assert task.state is not None
        sql = "UPDATE tasks SET state = ?, body = ? WHERE id = ?"
        params = [task.state.value, _dump(task), task.id]
        if expected is not None:
            sql += " AND state = ?"
            params.append(expected.value)
        with self._lock:
            return self._db.execute(sql, params).rowcount == 1

    def update_backend(self, task_id: str, backend: dict[str, Any]) -> None:
        """Replace a task's backend bookkeeping, leaving its document alone."""
        with self._lock:
            self._db.execute(
                "UPDATE tasks SET backend = ? WHERE id = ?", (json.dumps(backend), task_id)
            )

    def list_documents(self, query: ListQuery) -> tuple[list[dict[str, Any]], str | None]:
        """:meth:`list_page` as JSON documents: ``{"id", "state"}`` only with ``minimal``."""
        sql, params = page_select("tasks", query, _FILTERS)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return page_documents(rows, query)

    def in_states(self, states: Sequence[State]) -> list[StoredTask]:
        """Every task in one of ``states``, oldest first."""
        marks = ",".join("?" for _ in states)
        with self._lock:
            rows = self._db.execute(
                f"SELECT body, owner, backend FROM tasks WHERE state IN ({marks})"  # noqa: S608
                " ORDER BY seq",
                [s.value for s in states],
            ).fetchall()
        return [_stored(row) for row in rows]

    def count_by_state(self) -> dict[State, int]:
        """Task counts per state."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall()
        return {State(state): count for state, count in rows}

    # -- claims ---------------------------------------------------------------------------
    #
    # One SQLite file belongs to one TESP process at a time (like its data directory), so
    # a claim by any other replica id is a previous life of this server: stale at once.

    def renew(self, lease: Lease) -> Renewal:
        """Nothing lapses in a single process; report tasks set CANCELING."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM tasks WHERE lease_owner = ? AND state = ? ORDER BY seq",
                (lease.replica, State.CANCELING.value),
            ).fetchall()
        return Renewal(lapsed=False, canceling=[r[0] for r in rows])

    def hold(self, task_id: str, lease: Lease) -> bool:
        """True unless the task is unknown (or held under another id by this process)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE tasks SET lease_owner = ? WHERE id = ?"
                " AND (lease_owner IS NULL OR lease_owner = ?)",
                (lease.replica, task_id, lease.replica),
            )
            return cur.rowcount == 1

    def held(self, lease: Lease) -> set[str]:
        """In-flight tasks claimed by this replica id."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT id FROM tasks WHERE {_HELD}",  # noqa: S608 - constants only
                (lease.replica,),
            ).fetchall()
        return {r[0] for r in rows}

    def claim_orphans(self, lease: Lease, limit: int | None = None) -> list[StoredTask]:
        """Every in-flight task not claimed by this replica id (oldest first)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    f"SELECT seq, body, owner, backend FROM tasks WHERE {_NOT_HELD}"  # noqa: S608
                    " ORDER BY seq LIMIT ?",
                    (lease.replica, -1 if limit is None else limit),
                ).fetchall()
                self._db.executemany(
                    "UPDATE tasks SET lease_owner = ? WHERE seq = ?",
                    [(lease.replica, r[0]) for r in rows],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return [_stored(r[1:]) for r in rows]

    def release(self, lease: Lease) -> None:
        """Nothing to do: the next process on this file treats old claims as stale."""

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def _dump(task: Task) -> str:
    return task.model_dump_json(exclude_none=True)


def _stored(row: tuple[str, str | None, str]) -> StoredTask:
    body, owner, backend = row
    return StoredTask(Task.model_validate_json(body), owner, json.loads(backend))


def _name_prefix(prefix: str) -> Clause:
    # A literal prefix: no LIKE/GLOB metacharacters to escape.
    # Compared as UTF-8 bytes: SQLite's text functions stop at a NUL character.
    raw = prefix.encode()
    return "substr(CAST(name AS BLOB), 1, ?) = ?", [len(raw), raw]


def _tag(key: str, value: str) -> Clause:
    if value:
        return (
            "EXISTS (SELECT 1 FROM tags t WHERE t.seq = tasks.seq AND t.key = ? AND t.value = ?)",
            [key, value],
        )
    return "EXISTS (SELECT 1 FROM tags t WHERE t.seq = tasks.seq AND t.key = ?)", [key]


_FILTERS = FilterSQL(mark="?", name_prefix=_name_prefix, tag=_tag)
