"""Several TESP replicas on one shared store: who drives which task, and taking over.

Each ``tesp serve`` process is a replica with a random id. Every in-flight task is held
by exactly one replica (the one that created or adopted it); only the holder submits and
polls it. A :class:`LeaseKeeper` thread keeps the replica's lease alive, forwards cancels
that another replica's API stored, and adopts the tasks of replicas whose lease lapsed
(they died). See docs/deployment-replicas.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tesp_core.store.base import Lease, StoredTask, TaskStore

log = logging.getLogger(__name__)

# How many orphans one replica adopts per round: several live replicas share the work of
# a dead one instead of the first to look taking everything.
ORPHANS_PER_ROUND = 200


class LeaseKeeper:
    """The background thread that renews a replica's lease and adopts orphaned tasks.

    The callbacks run on this thread: ``adopt`` gets tasks just claimed, ``cancel`` the
    ids of held tasks someone set CANCELING (each id once), ``drop`` the ids still held
    after the lease lapsed (every other tracked task now belongs to someone else).
    """

    def __init__(
        self,
        store: TaskStore,
        lease: Lease,
        *,
        adopt: Callable[[list[StoredTask]], None],
        cancel: Callable[[list[str]], None],
        drop: Callable[[set[str]], None],
    ) -> None:
        self.store = store
        self.lease = lease
        self._adopt = adopt
        self._cancel = cancel
        self._drop = drop
        # Renew well before the lease ends; cancels set elsewhere are noticed this fast.
        self.interval = min(lease.seconds / 3, 2.0)
        self._forwarded: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start renewing and adopting in the background."""
        self._thread = threading.Thread(target=self._run, name="tesp-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (the lease is released by the caller, after in-flight calls)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception as exc:  # a database hiccup must not end the thread
                log.warning("replica %s: renewing its lease failed: %s", self.lease.replica, exc)

    def tick(self) -> None:
        """One round: renew, forward new cancels, resync after a lapse, adopt orphans."""
        renewal = self.store.renew(self.lease)
        if renewal.lapsed:
            held = self.store.held(self.lease)
            log.warning(
                "replica %s: its lease had lapsed; it keeps the %d tasks it still holds",
                self.lease.replica,
                len(held),
            )
            self._drop(held)
        fresh = [t for t in renewal.canceling if t not in self._forwarded]
        self._forwarded = set(renewal.canceling)
        if fresh:
            self._cancel(fresh)
        orphans = self.store.claim_orphans(self.lease, ORPHANS_PER_ROUND)
        if orphans:
            log.info(
                "replica %s: adopted %d tasks of a replica that stopped renewing (first: %s)",
                self.lease.replica,
                len(orphans),
                orphans[0].task.id,
            )
            self._adopt(orphans)
