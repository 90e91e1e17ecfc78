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
);
CREATE TABLE IF NOT EXISTS amqp_pending (
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    due REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, kind)
)
"""
# Columns added after the first release: an older state file gets them on opening.
_ADDED = {
    # The task was closed (cleaned) while its job could still appear: the row stays as a
    # tombstone, so a job Pulsar reports later is killed and cleaned.
    "cleaned": "INTEGER NOT NULL DEFAULT 0",
    # When (time.time) Pulsar first answered "lost" for a cancelled job it never reported.
    "lost_since": "REAL",
}
PENDING_KINDS = ("kill", "clean")

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
    cleaned: bool = False
    lost_since: float | None = None

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
        self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(amqp_jobs)")}
        for column, kind in _ADDED.items():
            if column not in have:
                self._db.execute(f"ALTER TABLE amqp_jobs ADD COLUMN {column} {kind}")
        self._lock = threading.Lock()

    def get(self, job_id: str) -> JobRecord | None:
        """The record of ``job_id``, or None if this TESP never set it up."""
        with self._lock:
            row = self._db.execute(
                "SELECT job_id, published, seen, cancel_requested, phase, returncode, stderr,"
                " result, heartbeat, cleaned, lost_since FROM amqp_jobs WHERE job_id = ?",
                (job_id,),
            ).fetchone()
        if row is None:
            return None
        return JobRecord(
            job_id=row[0],
            published=bool(row[1]),
            seen=bool(row[2]),
            cancel_requested=bool(row[3]),
            phase=row[4],
            returncode=row[5],
            stderr=row[6],
            result=row[7],
            heartbeat=row[8],
            cleaned=bool(row[9]),
            lost_since=row[10],
        )

    def active(self) -> list[JobRecord]:
        """Every published job Pulsar has not reported finished."""
        with self._lock:
            ids = [
                r[0]
                for r in self._db.execute(
                    "SELECT job_id FROM amqp_jobs WHERE published = 1 AND cleaned = 0"
                    " AND phase NOT IN"
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
        """Set one of the flags ``published``, ``cancel_requested`` or ``cleaned``."""
        if column not in ("published", "cancel_requested", "cleaned"):
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

    def lost_answer(self, job_id: str, when: float) -> float:
        """Note that Pulsar answered "lost" (for a job it never reported); since when."""
        with self._lock:
            self._db.execute(
                "UPDATE amqp_jobs SET lost_since = COALESCE(lost_since, ?) WHERE job_id = ?",
                (when, job_id),
            )
            row = self._db.execute(
                "SELECT lost_since FROM amqp_jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
        return float(row[0]) if row and row[0] is not None else when

    def finish(self, job_id: str, phase: str) -> None:
        """Set a terminal phase TESP decided itself (not one Pulsar reported)."""
        with self._lock:
            self._db.execute("UPDATE amqp_jobs SET phase = ? WHERE job_id = ?", (phase, job_id))

    def delete(self, job_id: str) -> None:
        """Forget ``job_id`` (after it was cleaned)."""
        with self._lock:
            self._db.execute("DELETE FROM amqp_jobs WHERE job_id = ?", (job_id,))

    # -- kills and clean-ups that could not be sent yet (the broker was down) ---------------

    def add_pending(self, job_id: str, kind: str, due: float = 0.0) -> None:
        """Remember to send ``kind`` (kill or clean) for ``job_id`` at ``due`` or later."""
        if kind not in PENDING_KINDS:
            raise ValueError(f"not a pending kind: {kind}")
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO amqp_pending (job_id, kind, due) VALUES (?, ?, ?)",
                (job_id, kind, due),
            )

    def due_pending(self, now: float) -> list[tuple[str, str]]:
        """(job id, kind) of every pending message due at ``now``, kills first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, kind FROM amqp_pending WHERE due <= ? ORDER BY kind DESC, due",
                (now,),
            ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def pending(self) -> list[tuple[str, str]]:
        """Every pending (job id, kind), due or not."""
        return self.due_pending(float("inf"))

    def done_pending(self, job_id: str, kind: str) -> None:
        """The pending message was published."""
        with self._lock:
            self._db.execute(
                "DELETE FROM amqp_pending WHERE job_id = ? AND kind = ?", (job_id, kind)
            )

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
