"""TESP's end of Pulsar's RabbitMQ protocol: publish setup/kill/status, consume status_update.

Pulsar's names, which both sides must agree on: one durable direct exchange ``pulsar``; per
manager, durable queues ``<prefix>_<name>`` bound with the same routing key, where the
prefix is ``pulsar_`` for the manager ``_default_`` and ``pulsar_<manager>_`` otherwise
(unless the manager sets ``amqp_key_prefix``). TESP declares every queue it publishes to, so
a message sent while Pulsar is down waits in RabbitMQ instead of being dropped.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from tesp_core.errors import BackendError, BackendUnavailableError
from tesp_core.storage.redact import redact_text, redact_url

log = logging.getLogger(__name__)

try:
    # kombu's annotations are partial (mypy strict rejects its calls): used untyped here.
    kombu: Any = importlib.import_module("kombu")
    _amqp_errors: Any = importlib.import_module("amqp.exceptions")
    # Wrong user or password (AccessRefused), or a vhost the user may not open (NotAllowed):
    # no retry can fix these, the operator must.
    _REFUSED: tuple[type[BaseException], ...] = (
        _amqp_errors.AccessRefused,
        _amqp_errors.NotAllowed,
    )
    _KOMBU_ERRORS: tuple[type[BaseException], ...] = (
        OSError,
        importlib.import_module("kombu.exceptions").KombuError,
        _amqp_errors.AMQPError,
    )
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("pulsar_transport = 'amqp' needs kombu: pip install -e '.[amqp]'") from exc

EXCHANGE = "pulsar"
# Queues TESP publishes to, and the one it consumes.
PUBLISHED = ("setup", "kill", "status", "status_update_ack")
STATUS_UPDATE = "status_update"


def key_prefix(manager: str, amqp_key_prefix: str | None = None) -> str:
    """The queue-name prefix Pulsar uses for ``manager``."""
    if amqp_key_prefix is not None:
        return amqp_key_prefix
    return "pulsar_" if manager == "_default_" else f"pulsar_{manager}_"


class AmqpLink:
    """One publishing connection (under a lock) and one consumer thread.

    ``on_status`` gets each status_update body; the message is acknowledged only after it
    returned, so an update is never lost to a TESP that dies while handling it (it comes
    again, and handlers must accept a repeat). An exception in ``on_status`` leaves the
    message unacknowledged until the connection is re-opened.
    """

    def __init__(
        self,
        url: str,
        *,
        manager: str = "_default_",
        amqp_key_prefix: str | None = None,
        on_status: Callable[[dict[str, Any]], None],
        heartbeat: int = 60,
    ) -> None:
        self._url = url
        self.shown_url = redact_url(url)
        self._prefix = key_prefix(manager, amqp_key_prefix)
        self._exchange = kombu.Exchange(EXCHANGE, "direct", durable=True)
        self._queues = {
            name: kombu.Queue(
                self.queue_name(name),
                self._exchange,
                routing_key=self.queue_name(name),
                durable=True,
            )
            for name in (*PUBLISHED, STATUS_UPDATE)
        }
        self._on_status = on_status
        self.on_connect: Callable[[], None] | None = None
        self.on_tick: Callable[[], None] | None = None
        # Set while the consumer is connected; since when (time.time), for heartbeats.
        self.connected = threading.Event()
        self.connected_at = 0.0
        # Why the broker refused this TESP (credentials, vhost): None while it does not.
        self.refused: str | None = None
        self._heartbeat = heartbeat
        self._lock = threading.Lock()
        self._conn: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def queue_name(self, name: str) -> str:
        """The RabbitMQ queue (and routing key) for one of Pulsar's message kinds."""
        return f"{self._prefix}_{name}"

    def start(self) -> None:
        """Start consuming status updates (in a daemon thread)."""
        self._thread = threading.Thread(target=self._consume, name="tesp-amqp-status", daemon=True)
        self._thread.start()

    def check_access(self, timeout: float = 10.0) -> None:
        """BackendError when the broker refuses the credentials or the vhost; an
        unreachable broker is only logged (it may come up later)."""
        try:
            with kombu.Connection(self._url, connect_timeout=timeout) as conn:
                conn.ensure_connection(max_retries=1)
        except _REFUSED as exc:
            self.refused = self._refusal(exc)
            raise BackendError(self.refused) from exc
        except _KOMBU_ERRORS as exc:
            log.warning(
                "RabbitMQ at %s is unreachable for now (TESP keeps trying): %s",
                self.shown_url,
                redact_text(f"{type(exc).__name__}: {exc}"),
            )

    def _refusal(self, exc: BaseException) -> str:
        what = (
            "the user may not open the vhost (missing vhost or permissions)"
            if isinstance(exc, _amqp_errors.NotAllowed)
            else "wrong user name or password"
        )
        return f"RabbitMQ at {self.shown_url} refused the connection: {what}"

    def publish(self, name: str, payload: dict[str, Any], expiration: float | None = None) -> None:
        """Publish one persistent JSON message; BackendUnavailableError if RabbitMQ fails.

        ``expiration`` (seconds): RabbitMQ drops the message if nobody took it by then.
        """
        queue = self._queues[name]
        extra = {} if expiration is None else {"expiration": expiration}
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = kombu.Connection(self._url, connect_timeout=10)
                producer = self._conn.Producer()
                producer.publish(
                    payload,
                    serializer="json",
                    exchange=self._exchange,
                    routing_key=queue.routing_key,
                    declare=[queue],
                    delivery_mode=2,
                    retry=True,
                    retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
                    **extra,
                )
            except _REFUSED as exc:
                self._drop_connection()
                self.refused = self._refusal(exc)
                raise BackendUnavailableError(self.refused) from exc
            except _KOMBU_ERRORS as exc:
                self._drop_connection()
                raise BackendUnavailableError(
                    f"RabbitMQ at {self.shown_url} unreachable: {redact_text(str(exc))}"
                ) from exc

    def ping(self) -> bool:
        """True when the broker accepts a connection."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = kombu.Connection(self._url, connect_timeout=10)
                self._conn.ensure_connection(max_retries=1)
            except _KOMBU_ERRORS:
                self._drop_connection()
                return False
        return True

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # a broken connection may fail to close in many ways
                log.debug("closing a broken AMQP connection failed", exc_info=True)

    def _consume(self) -> None:
        queue = self._queues[STATUS_UPDATE]
        pause = 1.0
        while not self._stop.is_set():
            try:
                with (
                    kombu.Connection(self._url, heartbeat=self._heartbeat) as conn,
                    kombu.Consumer(conn, queues=[queue], callbacks=[self._handle], accept=["json"]),
                ):
                    log.info("consuming %s at %s", queue.name, self.shown_url)
                    pause, self.refused = 1.0, None
                    self.connected_at = time.time()
                    self.connected.set()
                    self._call(self.on_connect)
                    while not self._stop.is_set():
                        try:
                            conn.drain_events(timeout=0.5)
                        except TimeoutError:
                            conn.heartbeat_check()
                        self._call(self.on_tick)
            except Exception as exc:  # reconnect after any broker or network failure
                self.connected.clear()
                if self._stop.is_set():
                    break
                if isinstance(exc, _REFUSED):
                    self.refused = self._refusal(exc)
                    log.error("%s; fix the AMQP URL or the broker (retrying)", self.refused)
                else:
                    log.warning(
                        "AMQP status consumer at %s failed, reconnecting in %g s: %s",
                        self.shown_url,
                        pause,
                        redact_text(f"{type(exc).__name__}: {exc}"),
                    )
                self._stop.wait(pause)
                pause = min(pause * 2, 30.0)
        self.connected.clear()

    def _call(self, hook: Callable[[], None] | None) -> None:
        """Run a backend hook in the consumer thread; its failure must not stop consuming."""
        if hook is None:
            return
        try:
            hook()
        except BackendUnavailableError as exc:
            log.debug("AMQP hook deferred: %s", exc)
        except Exception:  # a hook's bug is logged, consuming goes on
            log.exception("AMQP hook failed")

    def _handle(self, body: Any, message: Any) -> None:
        if isinstance(body, dict):
            self._on_status(body)
            self._confirm(body)
        else:
            log.warning("ignoring a status_update that is not a JSON object")
        message.ack()

    def _confirm(self, body: dict[str, Any]) -> None:
        """Answer Pulsar's ``amqp_acknowledge`` request, else it republishes the update."""
        ack_id = body.get("acknowledge_uuid")
        if ack_id and body.get("acknowledge_queue") == "status_update_ack":
            self.publish("status_update_ack", {"acknowledge_uuid_response": ack_id})

    def close(self) -> None:
        """Stop consuming and close the connections."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            self._drop_connection()
