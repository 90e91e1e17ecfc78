"""What TESP knows about each Pulsar job it drives over AMQP, kept on disk.

Pulsar pushes status updates once; a TESP restarted later must still know them. So every
update is written here (SQLite, stdlib) before the message is acknowledged to RabbitMQ, and
the backend answers ``status``/``read_json`` from here, never from Pulsar directly.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS amqp_jobs (
    job_id TEXT PRIMARY KEY,
    published INTEGER NOT NULL DEFAULT 0,
    seen INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    phase TEXT NOT NULL DEFAULT 'queued',
    returncode INTEGER,
    stderr TEXT NOT NULL DEFAULT '',
    result TEXT,
    heartbeat TEXT
)
"""

TERMINAL_PHASES = frozenset({"complete", "failed", "lost", "cancelled"})


@dataclass(frozen=True)
class JobRecord:
    """One job: whether its setup message went out, and the last status Pulsar sent."""

    job_id: str
    published: bool
    seen: bool
    cancel_requested: bool
    phase: str
    returncode: int | None
    stderr: str
    result: str | None
    heartbeat: str | None

    @property
    def terminal(self) -> bool:
        """True once Pulsar reported the job finished (complete, failed, lost, cancelled)."""
        return self.phase in TERMINAL_PHASES


class JobStateStore:
    """The ``amqp_jobs`` table of one SQLite file; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()

    def get(self, job_id: str) -> JobRecord | None:
        """The record of ``job_id``, or None if this TESP never set it up."""
        with self._lock:
            row = self._db.execute(
                "SELECT job_id, published, seen, cancel_requested, phase, returncode, stderr,"
                " result, heartbeat FROM amqp_jobs WHERE job_id = ?",
                (job_id,),
            ).fetchone()
        if row is None:
            return None
        return JobRecord(row[0], bool(row[1]), bool(row[2]), bool(row[3]), *row[4:])

    def active(self) -> list[JobRecord]:
        """Every published job Pulsar has not reported finished."""
        with self._lock:
            ids = [
                r[0]
                for r in self._db.execute(
                    "SELECT job_id FROM amqp_jobs WHERE published = 1 AND phase NOT IN"
                    " ('complete', 'failed', 'lost', 'cancelled')"
                )
            ]
        return [rec for rec in map(self.get, ids) if rec is not None]

    def create(self, job_id: str) -> None:
        """Start (or restart, for a job set up again) the record of ``job_id``."""
        with self._lock:
            self._db.execute("DELETE FROM amqp_jobs WHERE job_id = ?", (job_id,))
            self._db.execute("INSERT INTO amqp_jobs (job_id) VALUES (?)", (job_id,))

    def mark(self, job_id: str, column: str) -> None:
        """Set one of the flags ``published`` or ``cancel_requested``."""
        if column not in ("published", "cancel_requested"):
            raise ValueError(f"not a flag: {column}")
        with self._lock:
            self._db.execute(f"UPDATE amqp_jobs SET {column} = 1 WHERE job_id = ?", (job_id,))  # noqa: S608 - column checked above

    def update(
        self,
        job_id: str,
        *,
        phase: str,
        heartbeat: str,
        returncode: int | None = None,
        stderr: str = "",
        result: str | None = None,
    ) -> bool:
        """Record a status from Pulsar; a finished job never goes back. False if unknown."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE amqp_jobs SET seen = 1, heartbeat = ?,"
                " phase = CASE WHEN phase IN ('complete', 'failed', 'lost', 'cancelled')"
                "   THEN phase ELSE ? END,"
                " returncode = COALESCE(returncode, ?),"
                " stderr = CASE WHEN ? != '' THEN ? ELSE stderr END,"
                " result = COALESCE(result, ?)"
                " WHERE job_id = ?",
                (heartbeat, phase, returncode, stderr, stderr, result, job_id),
            )
            return cur.rowcount > 0

    def delete(self, job_id: str) -> None:
        """Forget ``job_id`` (after it was cleaned)."""
        with self._lock:
            self._db.execute("DELETE FROM amqp_jobs WHERE job_id = ?", (job_id,))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
