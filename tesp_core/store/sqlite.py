"""SQLite task store: one file under the data directory, indexed for listing and paging.

Tasks are kept as their JSON document plus the columns that listing filters on. Paging uses
keyset pagination on an ever-growing sequence number, so a deep page costs the same as the
first one and every task appears exactly once across pages even while tasks are created.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tesp_core.errors import InvalidTaskError
from tesp_core.models import State, Task
from tesp_core.store.base import ListQuery, StoredTask

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


def encode_page_token(seq: int) -> str:
    """An opaque token for 'tasks older than ``seq``'."""
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def decode_page_token(token: str) -> int:
    """The sequence number inside a page token; InvalidTaskError if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        digits = raw[1:]
        if not raw.startswith("s") or not digits.isascii() or not digits.isdigit():
            raise ValueError(raw)
        seq = int(digits)
        if not 1 <= seq < 2**63:
            raise ValueError(raw)
        return seq
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidTaskError("page_token", "not a page token issued by this server") from exc


class SQLiteTaskStore:
    """The default :class:`~tesp_core.store.base.TaskStore`, safe across threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def insert(self, stored: StoredTask) -> None:
        """Store a new task and its tags in one transaction."""
        task = stored.task
        assert task.id is not None and task.state is not None
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO tasks (id, name, state, owner, body, backend)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        task.id,
                        task.name,
                        task.state.value,
                        stored.owner,
                        _dump(task),
                        json.dumps(stored.backend),
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

    def update_task(self, task: Task) -> None:
        """Replace a task's document and state (its backend bookkeeping is left alone)."""
        assert task.state is not None
        with self._lock:
            self._db.execute(
                "UPDATE tasks SET state = ?, body = ? WHERE id = ?",
                (task.state.value, _dump(task), task.id),
            )

    def update_backend(self, task_id: str, backend: dict[str, Any]) -> None:
        """Replace a task's backend bookkeeping, leaving its document alone."""
        with self._lock:
            self._db.execute(
                "UPDATE tasks SET backend = ? WHERE id = ?", (json.dumps(backend), task_id)
            )

    def list_page(self, query: ListQuery) -> tuple[list[Task], str | None]:
        """One page, newest first; see :meth:`TaskStore.list`."""
        docs, token = self.list_documents(query)
        if query.minimal:
            return [
                Task.model_construct(id=d["id"], state=State(d["state"]), executors=[])
                for d in docs
            ], token
        return [Task.model_validate(d) for d in docs], token

    def list_documents(self, query: ListQuery) -> tuple[list[dict[str, Any]], str | None]:
        """:meth:`list_page` as JSON documents: ``{"id", "state"}`` only with ``minimal``."""
        where, params = _where(query)
        columns = "seq, id, state" if query.minimal else "seq, body"
        sql = f"SELECT {columns} FROM tasks {where} ORDER BY seq DESC LIMIT ?"  # noqa: S608
        with self._lock:
            rows = self._db.execute(sql, [*params, query.page_size + 1]).fetchall()
        more = len(rows) > query.page_size
        rows = rows[: query.page_size]
        if query.minimal:
            docs = [{"id": r[1], "state": r[2]} for r in rows]
        else:
            docs = [json.loads(r[1]) for r in rows]
        token = encode_page_token(rows[-1][0]) if more and rows else None
        return docs, token

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

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def _dump(task: Task) -> str:
    return task.model_dump_json(exclude_none=True)


def _stored(row: tuple[str, str | None, str]) -> StoredTask:
    body, owner, backend = row
    return StoredTask(Task.model_validate_json(body), owner, json.loads(backend))


def _where(query: ListQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.state is not None:
        clauses.append("state = ?")
        params.append(query.state.value)
    if query.owner is not None:
        clauses.append("owner = ?")
        params.append(query.owner)
    if query.name_prefix:
        # A literal prefix: no LIKE/GLOB metacharacters to escape.
        clauses.append("substr(name, 1, ?) = ?")
        params += [len(query.name_prefix), query.name_prefix]
    for key, value in query.tags:
        if value:
            clauses.append(
                "EXISTS (SELECT 1 FROM tags t"
                " WHERE t.seq = tasks.seq AND t.key = ? AND t.value = ?)"
            )
            params += [key, value]
        else:
            clauses.append("EXISTS (SELECT 1 FROM tags t WHERE t.seq = tasks.seq AND t.key = ?)")
            params.append(key)
    if query.page_token:
        clauses.append("seq < ?")
        params.append(decode_page_token(query.page_token))
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params
