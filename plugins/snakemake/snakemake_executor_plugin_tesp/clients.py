"""Two ways to reach a TES: a server over HTTP, or a TESP embedded in this process.

Both speak TES JSON (the FULL view's dicts), so the executor does not care which one it has.
The heavy imports (``requests``, ``tesp_core``) happen when a client is built, never when
Snakemake imports the plugin.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from snakemake_executor_plugin_tesp.errors import (
    TesClientError,
    TesRequestError,
    TesUnavailableError,
)

if TYPE_CHECKING:
    import requests

    from tesp_core.runtime import Tesp

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"})
# TESP accepts up to 2047; other servers may cap lower and then simply page more.
PAGE_SIZE = 1000
MAX_PAGES = 200


class TesClient(Protocol):
    """What the executor needs from a TES."""

    def create_task(self, body: Mapping[str, Any]) -> str:
        """Create a task; return its id."""

    def get_task(self, task_id: str, view: str = "FULL") -> dict[str, Any]:
        """One task in ``view``."""

    def list_states(self, tags: Mapping[str, str], wanted: Collection[str]) -> dict[str, str]:
        """``{task id: state}`` of the tasks carrying ``tags``, paging until ``wanted`` is seen."""

    def cancel_task(self, task_id: str) -> None:
        """Ask the TES to cancel a task."""

    def close(self) -> None:
        """Release whatever the client holds (an embedded TESP stops here)."""


def collect_states(
    pages: Iterator[tuple[list[dict[str, Any]], str | None]], wanted: Collection[str]
) -> dict[str, str]:
    """Fold listing pages into ``{id: state}``; stop once every id in ``wanted`` was seen."""
    states: dict[str, str] = {}
    missing = set(wanted)
    for tasks, _token in pages:
        for task in tasks:
            if task.get("id") and task.get("state"):
                states[str(task["id"])] = str(task["state"])
                missing.discard(str(task["id"]))
        if wanted and not missing:
            break
    return states


class RemoteTes:
    """Any TES 1.1 server over HTTP (TESP, Funnel, ...), with basic or bearer auth.

    The API base is found once: the URL as given if it already ends in ``/ga4gh/tes/v1`` or
    ``/v1``, else whichever of those two answers ``service-info``. Each thread keeps its own
    keep-alive session (Snakemake submits from one thread and polls from another).
    """

    def __init__(
        self,
        url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._user, self._password, self._token = user, password, token
        self._local = threading.local()
        self._base: str | None = None

    # -- the TesClient protocol -------------------------------------------------------------

    def create_task(self, body: Mapping[str, Any]) -> str:
        """``POST /tasks``."""
        answer = self._call("POST", "/tasks", json=dict(body))
        return str(answer["id"])

    def get_task(self, task_id: str, view: str = "FULL") -> dict[str, Any]:
        """``GET /tasks/{id}``."""
        answer: dict[str, Any] = self._call("GET", f"/tasks/{task_id}", params={"view": view})
        return answer

    def list_states(self, tags: Mapping[str, str], wanted: Collection[str]) -> dict[str, str]:
        """``GET /tasks?tag_key=..&tag_value=..`` (MINIMAL view), page after page."""
        return collect_states(self._pages(tags), wanted)

    def cancel_task(self, task_id: str) -> None:
        """``POST /tasks/{id}:cancel``."""
        self._call("POST", f"/tasks/{task_id}:cancel")

    def close(self) -> None:
        """Close this thread's session (others close with their threads)."""
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()
            self._local.session = None

    # -- HTTP -------------------------------------------------------------------------------

    def _pages(self, tags: Mapping[str, str]) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        token: str | None = None
        for _ in range(MAX_PAGES):
            params: list[tuple[str, str]] = [("view", "MINIMAL"), ("page_size", str(PAGE_SIZE))]
            for key, value in tags.items():
                params += [("tag_key", key), ("tag_value", value)]
            if token:
                params.append(("page_token", token))
            answer = self._call("GET", "/tasks", params=params)
            token = answer.get("next_page_token") or None
            yield list(answer.get("tasks") or []), token
            if not token:
                return

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            import requests

            session = requests.Session()
            if self._user is not None and self._password is not None:
                session.auth = (self._user, self._password)
            if self._token:
                session.headers["Authorization"] = f"Bearer {self._token}"
            self._local.session = session
        return session

    def _api_base(self) -> str:
        if self._base is not None:
            return self._base
        if self.url.endswith(("/ga4gh/tes/v1", "/v1")):
            self._base = self.url
            return self._base
        tried: list[str] = []
        for candidate in (f"{self.url}/ga4gh/tes/v1", f"{self.url}/v1"):
            try:
                self._raw("GET", f"{candidate}/service-info")
            except TesRequestError as exc:
                tried.append(f"{candidate}: {exc}")
                continue
            self._base = candidate
            return candidate
        raise TesUnavailableError(f"no TES API under {self.url} ({'; '.join(tried)})")

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._raw(method, self._api_base() + path, **kwargs)

    def _raw(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        import requests

        try:
            response = self._session().request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise TesUnavailableError(f"{method} {url}: {exc}") from exc
        if response.status_code >= 500:
            raise TesUnavailableError(f"{method} {url}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise TesRequestError(response.status_code, _error_message(response))
        try:
            body = response.json()
        except ValueError as exc:
            raise TesUnavailableError(f"{method} {url}: the answer is not JSON") from exc
        return body if isinstance(body, dict) else {}


def _error_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:500]
    return str(body)[:500]


class EmbeddedTes:
    """A TESP (store, service, embedded Pulsar) running inside this process.

    ``data_dir`` keeps its SQLite store and Pulsar job directories; ``runtime`` (None: TESP's
    default) decides how executors run; ``file_roots`` are the directories file:// URLs
    may name.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        runtime: str | None = None,
        file_roots: Collection[str] = (),
        max_in_flight: int = 8,
    ) -> None:
        from tesp_core.config import load_settings
        from tesp_core.runtime import Tesp

        settings = load_settings(
            data_dir=data_dir,
            runtime=runtime,
            file_roots=list(file_roots),
            max_in_flight=max_in_flight,
            poll_interval_max=1.0,
        )
        self._tesp: Tesp | None = Tesp(settings).start()

    def _service(self) -> Any:
        if self._tesp is None:
            raise TesUnavailableError("the embedded TESP was stopped")
        return self._tesp.service

    def create_task(self, body: Mapping[str, Any]) -> str:
        """Validate, store and queue the task in the embedded service."""
        with _translated():
            task_id: str = self._service().create_task(dict(body))
        return task_id

    def get_task(self, task_id: str, view: str = "FULL") -> dict[str, Any]:
        """The task rendered as the HTTP server would."""
        from tesp_core.models import View, render

        with _translated():
            task = self._service().get_task(task_id)
        return render(task, View(view))

    def list_states(self, tags: Mapping[str, str], wanted: Collection[str]) -> dict[str, str]:
        """States of the tasks carrying ``tags``, straight from the store."""
        from tesp_core.store.base import ListQuery

        service = self._service()

        def pages() -> Iterator[tuple[list[dict[str, Any]], str | None]]:
            token: str | None = None
            for _ in range(MAX_PAGES):
                query = ListQuery(
                    tags=list(tags.items()), page_size=PAGE_SIZE, page_token=token, minimal=True
                )
                with _translated():
                    tasks, token = service.list_tasks(query)
                yield [{"id": t.id, "state": str(t.state)} for t in tasks], token
                if not token:
                    return

        return collect_states(pages(), wanted)

    def cancel_task(self, task_id: str) -> None:
        """Cancel through the service (kills the Pulsar job)."""
        with _translated():
            self._service().cancel_task(task_id)

    def close(self) -> None:
        """Stop dispatching, close the store and stop the embedded Pulsar."""
        tesp, self._tesp = self._tesp, None
        if tesp is not None:
            tesp.stop()


@contextmanager
def _translated() -> Iterator[None]:
    """Turn tesp_core's errors into the client error tree (HTTP-like status codes)."""
    from tesp_core.errors import BackendError, ForbiddenError, InvalidTaskError, TaskNotFoundError

    try:
        yield
    except InvalidTaskError as exc:
        raise TesRequestError(400, str(exc)) from exc
    except TaskNotFoundError as exc:
        raise TesRequestError(404, str(exc)) from exc
    except ForbiddenError as exc:
        raise TesRequestError(403, str(exc)) from exc
    except BackendError as exc:
        raise TesUnavailableError(str(exc)) from exc


def wait_until_ended(
    client: TesClient, tags: Mapping[str, str], task_ids: Collection[str], timeout: float
) -> dict[str, str]:
    """Poll until every task in ``task_ids`` is terminal or ``timeout`` passed; last states."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while True:
        try:
            states = client.list_states(tags, task_ids)
        except TesClientError as exc:
            log.warning("could not read task states: %s", exc)
        if all(states.get(t) in TERMINAL_STATES for t in task_ids):
            return states
        if time.monotonic() >= deadline:
            return states
        time.sleep(0.2)
