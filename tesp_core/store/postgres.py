"""PostgreSQL task store: one database shared by several TESP replicas.

The same tasks, filters and keyset paging as the SQLite store (:mod:`tesp_core.store.paging`:
the page tokens are the same), plus what several processes need: every in-flight
task names the replica that holds it (``lease_owner``), and ``tesp_replicas`` keeps each
replica's lease. A replica that stops renewing is presumed dead once its lease ends, and
:meth:`PostgresTaskStore.claim_orphans` hands its tasks to live replicas, each task to
exactly one (row locks, ``FOR UPDATE SKIP LOCKED``).

Why the claims are safe: taking a dead replica's tasks first locks that replica's row in
``tesp_replicas`` and re-checks it is still expired; :meth:`renew` and :meth:`hold` lock
the replica's own row too. So a replica either renews before it is declared dead (and
keeps its tasks) or learns, once it gets the lock, that its lease had lapsed.

Needs ``psycopg`` 3 and ``psycopg_pool`` (the ``postgres`` extra).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from tesp_core.errors import InvalidSettingError, StoreUnavailableError
from tesp_core.models import State, Task
from tesp_core.store.base import IN_FLIGHT, Lease, ListQuery, Renewal, StoredTask
from tesp_core.store.paging import Clause, FilterSQL, PagedStore, page_documents, page_select
from tesp_core.store.pg_connect import probe

log = logging.getLogger(__name__)

_FLIGHT = [s.value for s in IN_FLIGHT]
_FLIGHT_SQL = ", ".join(f"'{s}'" for s in _FLIGHT)

# A replica whose lease ended this many lease lengths ago, holding no task, is deleted
# from tesp_replicas (it is not coming back: a restarted replica has a new id).
PRUNE_AFTER_LEASES = 10

# Serialises schema creation: two replicas starting at once would both try CREATE TABLE.
_SCHEMA_LOCK = 0x7465_7370_0000_0001

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS tesp_tasks (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text NOT NULL UNIQUE,
        name text,
        state text NOT NULL,
        owner text,
        tags jsonb NOT NULL DEFAULT '{}',
        body text NOT NULL,
        backend text NOT NULL DEFAULT '{}',
        lease_owner text
    )""",
    "CREATE INDEX IF NOT EXISTS tesp_tasks_state_seq ON tesp_tasks (state, seq)",
    "CREATE INDEX IF NOT EXISTS tesp_tasks_owner_seq ON tesp_tasks (owner, seq)",
    "CREATE INDEX IF NOT EXISTS tesp_tasks_tags ON tesp_tasks USING gin (tags)",
    "CREATE INDEX IF NOT EXISTS tesp_tasks_lease ON tesp_tasks (lease_owner, seq)"
    f" WHERE state IN ({_FLIGHT_SQL})",
    """CREATE TABLE IF NOT EXISTS tesp_replicas (
        id text PRIMARY KEY,
        alive_until timestamptz NOT NULL,
        started timestamptz NOT NULL DEFAULT now()
    )""",
]


class PostgresTaskStore(PagedStore):
    """A :class:`~tesp_core.store.base.TaskStore` in PostgreSQL, shared by replicas."""

    def __init__(self, url: str, *, pool_size: int = 10, timeout: float = 3.0) -> None:
        # timeout: how long a request waits for a connection before it gets a 503 (while
        # the database is down, the pool keeps reconnecting in the background).
        info = probe(url)  # a wrong URL fails here, at once, with the driver's reason
        self._pool = ConnectionPool(
            info,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=timeout,
            name="tesp",
            # A connection that died with the server is replaced, not handed out.
            check=ConnectionPool.check_connection,
        )
        try:
            self._pool.open(wait=True, timeout=10.0)
        except PoolTimeout:
            self._pool.close()
            raise InvalidSettingError("database_url", "cannot open connections") from None
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _SCHEMA:
                conn.execute(statement)

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction on a pooled connection (committed unless the block raises).

        A lost or unreachable database raises StoreUnavailableError (HTTP 503).
        """
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("task store: the database is unavailable: %s", type(exc).__name__)
            raise StoreUnavailableError(type(exc).__name__) from exc

    def insert(self, stored: StoredTask, lease: Lease | None = None) -> None:
        """Store a new task, its tags and its holder in one statement."""
        task = stored.task
        assert task.id is not None and task.state is not None
        tags = {_col(k): _col(v) for k, v in (task.tags or {}).items()}
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO tesp_tasks (id, name, state, owner, tags, body, backend, lease_owner)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    task.id,
                    _col(task.name),
                    task.state.value,
                    _col(stored.owner),
                    Jsonb(tags),
                    _dump(task),
                    json.dumps(stored.backend),
                    lease.replica if lease is not None else None,
                ),
            )

    def get(self, task_id: str) -> StoredTask | None:
        """The task with this id, or None."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT body, owner, backend FROM tesp_tasks WHERE id = %s", (task_id,)
            ).fetchone()
        return None if row is None else _stored(row)

    def update_task(self, task: Task, expected: State | None = None) -> bool:
        """Replace a task's document and state, if still in ``expected`` (when given)."""
        assert task.state is not None
        sql = "UPDATE tesp_tasks SET state = %s, body = %s WHERE id = %s"
        params: list[Any] = [task.state.value, _dump(task), task.id]
        if expected is not None:
            sql += " AND state = %s"
            params.append(expected.value)
        with self._tx() as conn:
            return conn.execute(sql, params).rowcount == 1

    def update_backend(self, task_id: str, backend: dict[str, Any]) -> None:
        """Replace a task's backend bookkeeping, leaving its document alone."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE tesp_tasks SET backend = %s WHERE id = %s", (json.dumps(backend), task_id)
            )

    def list_documents(self, query: ListQuery) -> tuple[list[dict[str, Any]], str | None]:
        """:meth:`list_page` as JSON documents: ``{"id", "state"}`` only with ``minimal``."""
        sql, params = page_select("tesp_tasks", query, _FILTERS)
        with self._tx() as conn:
            rows = conn.execute(sql, params).fetchall()
        return page_documents(rows, query)

    def in_states(self, states: Sequence[State]) -> list[StoredTask]:
        """Every task in one of ``states``, oldest first."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT body, owner, backend FROM tesp_tasks WHERE state = ANY(%s) ORDER BY seq",
                ([s.value for s in states],),
            ).fetchall()
        return [_stored(row) for row in rows]

    def count_by_state(self) -> dict[State, int]:
        """Task counts per state."""
        with self._tx() as conn:
            rows = conn.execute("SELECT state, COUNT(*) FROM tesp_tasks GROUP BY state").fetchall()
        return {State(state): count for state, count in rows}

    # -- claims -----------------------------------------------------------------------------

    def renew(self, lease: Lease) -> Renewal:
        """Extend the replica's lease (registering it the first time)."""
        with self._tx() as conn:
            lapsed = not self._extend(conn, lease)
            conn.execute(
                "INSERT INTO tesp_replicas (id, alive_until)"
                " VALUES (%s, now() + make_interval(secs => %s))"
                " ON CONFLICT (id) DO UPDATE SET alive_until = EXCLUDED.alive_until",
                (lease.replica, lease.seconds),
            )
            rows = conn.execute(
                "SELECT id FROM tesp_tasks WHERE lease_owner = %s AND state = %s ORDER BY seq",
                (lease.replica, State.CANCELING.value),
            ).fetchall()
        return Renewal(lapsed=lapsed, canceling=[r[0] for r in rows])

    def hold(self, task_id: str, lease: Lease) -> bool:
        """True when the replica is alive (its lease now extended) and holds the task."""
        with self._tx() as conn:
            if not self._extend(conn, lease):
                return False
            cur = conn.execute(
                "UPDATE tesp_tasks SET lease_owner = %s WHERE id = %s"
                " AND (lease_owner = %s OR lease_owner IS NULL) RETURNING seq",
                (lease.replica, task_id, lease.replica),
            )
            return cur.fetchone() is not None

    @staticmethod
    def _extend(conn: psycopg.Connection[Any], lease: Lease) -> bool:
        """Lock the replica's row and extend its lease if still valid; False if lapsed."""
        row = conn.execute(
            "SELECT alive_until > now() FROM tesp_replicas WHERE id = %s FOR UPDATE",
            (lease.replica,),
        ).fetchone()
        if row is None or not row[0]:
            return False
        conn.execute(
            "UPDATE tesp_replicas SET alive_until = now() + make_interval(secs => %s)"
            " WHERE id = %s",
            (lease.seconds, lease.replica),
        )
        return True

    def held(self, lease: Lease) -> set[str]:
        """In-flight tasks this replica holds."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT id FROM tesp_tasks WHERE lease_owner = %s AND state = ANY(%s)",
                (lease.replica, _FLIGHT),
            ).fetchall()
        return {r[0] for r in rows}

    def claim_orphans(self, lease: Lease, limit: int | None = None) -> list[StoredTask]:
        """Take in-flight tasks of dead replicas (or of none), oldest first."""
        with self._tx() as conn:
            # Locked, so a replica renewing right now is either seen alive or waits for us
            # and then learns that its lease had lapsed.
            dead = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM tesp_replicas WHERE alive_until <= now() AND id <> %s"
                    " FOR UPDATE SKIP LOCKED",
                    (lease.replica,),
                ).fetchall()
            ]
            rows = conn.execute(
                "UPDATE tesp_tasks SET lease_owner = %s WHERE seq IN ("
                " SELECT seq FROM tesp_tasks WHERE state = ANY(%s)"
                " AND (lease_owner IS NULL OR lease_owner = ANY(%s) OR NOT EXISTS"
                "  (SELECT 1 FROM tesp_replicas r WHERE r.id = tesp_tasks.lease_owner))"
                " ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED)"
                " RETURNING seq, body, owner, backend",
                (lease.replica, _FLIGHT, dead, limit),
            ).fetchall()
            # Replicas dead for PRUNE_AFTER_LEASES leases that hold nothing are forgotten.
            conn.execute(
                "DELETE FROM tesp_replicas r"
                " WHERE r.alive_until < now() - make_interval(secs => %s) AND r.id <> %s"
                " AND NOT EXISTS (SELECT 1 FROM tesp_tasks t"
                " WHERE t.lease_owner = r.id AND t.state = ANY(%s))",
                (PRUNE_AFTER_LEASES * lease.seconds, lease.replica, _FLIGHT),
            )
        return [_stored(r[1:]) for r in sorted(rows, key=lambda r: int(r[0]))]

    def release(self, lease: Lease) -> None:
        """End the replica's lease now: live replicas adopt its tasks at their next round."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE tesp_replicas SET alive_until = '-infinity' WHERE id = %s",
                (lease.replica,),
            )

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()


_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def _col(value: str | None) -> str | None:
    """A string for a filter column: PostgreSQL text cannot hold NUL, so NUL is written
    ``\\0`` and a backslash ``\\\\`` (a prefix code: prefix matching is unchanged)."""
    if value is None:
        return None
    return value.replace("\\", "\\\\").replace("\x00", "\\0")


def _uncol(value: str | None) -> str | None:
    if value is None:
        return None
    return _ESCAPE.sub(lambda m: "\x00" if m.group(1) == "0" else m.group(1), value)


def _dump(task: Task) -> str:
    return task.model_dump_json(exclude_none=True)


def _stored(row: Sequence[Any]) -> StoredTask:
    body, owner, backend = row
    return StoredTask(Task.model_validate_json(body), _uncol(owner), json.loads(backend))


def _name_prefix(prefix: str) -> Clause:
    # A literal prefix: starts_with has no metacharacters (unlike LIKE).
    return "starts_with(name, %s)", [_col(prefix)]


def _tag(key: str, value: str) -> Clause:
    if value:
        return "tags @> %s", [Jsonb({_col(key): _col(value)})]
    return "tags ? %s", [_col(key)]


_FILTERS = FilterSQL(mark="%s", name_prefix=_name_prefix, tag=_tag, text=_col)
