"""A small TES 1.1 HTTP client over ``requests``, translating failures into client errors.

Every message it raises names the server by its redacted URL and never repeats the
password or token it was given.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import requests

from tesp_core.client.config import ClientConfig
from tesp_core.client.errors import HttpError, UnreachableError, UsageError
from tesp_core.storage.redact import redact_url

API_PATH = "/ga4gh/tes/v1"
# Bases a user may give whole: the GA4GH one, and the short one TESP also serves.
API_BASES = (API_PATH, "/v1")
TIMEOUT = 30.0

_STATUS_WORDS = {
    401: "authentication failed",
    403: "forbidden",
    404: "not found",
}


def api_base(url: str) -> str:
    """``url`` with the TES base path appended unless it already ends with one."""
    base = url.rstrip("/")
    return base if base.endswith(API_BASES) else base + API_PATH


class TesClient:
    """The TES endpoints the ``tesp`` commands use: create, get, list, cancel."""

    def __init__(self, config: ClientConfig, timeout: float = TIMEOUT) -> None:
        self.config = config
        self.base = api_base(config.url)
        self.shown_url = redact_url(config.url)
        self.timeout = timeout
        self.session = requests.Session()
        if config.token:
            self.session.headers["Authorization"] = f"Bearer {config.token}"
        elif config.user:
            self.session.auth = (config.user, config.password or "")

    def create_task(self, task: dict[str, Any]) -> str:
        """POST a tesTask; the new task's id."""
        body = self._request("POST", "/tasks", json=task)
        task_id = body.get("id")
        if not isinstance(task_id, str):
            raise HttpError(f"TESP at {self.shown_url} answered without a task id", 200)
        return task_id

    def get_task(self, task_id: str, view: str = "MINIMAL") -> dict[str, Any]:
        """One task in ``view``."""
        return self._request("GET", f"/tasks/{quote(task_id, safe='')}", params={"view": view})

    def list_page(self, params: dict[str, Any]) -> dict[str, Any]:
        """One page of ``GET /tasks`` (``tasks`` and maybe ``next_page_token``)."""
        return self._request("GET", "/tasks", params=params)

    def list_all(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every task matching ``params``, following ``next_page_token`` to the end."""
        query = dict(params)
        while True:
            page = self.list_page(query)
            yield from page.get("tasks", [])
            token = page.get("next_page_token")
            if not token:
                return
            query["page_token"] = token

    def cancel_task(self, task_id: str) -> None:
        """Cancel a task (a task that already ended is left as it is)."""
        self._request("POST", f"/tasks/{quote(task_id, safe='')}:cancel")

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.session.request(
                method, self.base + path, timeout=self.timeout, **kwargs
            )
        except requests.exceptions.RequestException as exc:
            raise self._translate(exc) from None
        if response.status_code == 404 and not self._is_tes_404(path):
            raise HttpError(f"no TES API at {redact_url(self.base)} (HTTP 404)", 404)
        return self._decode(response)

    def _translate(self, exc: requests.exceptions.RequestException) -> Exception:
        where = f"cannot reach TESP at {self.shown_url}"
        if isinstance(exc, requests.exceptions.SSLError):
            # A certificate does not fix itself: no point in trying again.
            return UnreachableError(f"{where}: TLS handshake failed", transient=False)
        if isinstance(exc, requests.exceptions.Timeout):
            return UnreachableError(f"{where}: no answer within {self.timeout:g} s")
        if isinstance(exc, requests.exceptions.ConnectionError):
            return UnreachableError(where)
        if isinstance(exc, requests.exceptions.InvalidJSONError):
            # Only NaN/Infinity get here, and build_task/parse_task_file refuse those first.
            return UsageError("the task cannot be sent: NaN and Infinity are not JSON")
        if isinstance(exc, requests.exceptions.InvalidHeader):
            return UsageError("--user/--token: not valid in an HTTP header")
        if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema):
            return UsageError(f"--url: not a valid URL: {self.shown_url}")
        # Anything else; its text repeats the URL, so name only the kind.
        return UnreachableError(f"{where}: {type(exc).__name__}")

    def _is_tes_404(self, path: str) -> bool:
        """Whether a 404 is a TES answer (no such task) rather than no TES API at all."""
        if path in ("/tasks", "/service-info"):
            return False  # these exist on every TES server
        try:
            probe = self.session.get(self.base + "/service-info", timeout=self.timeout)
        except requests.exceptions.RequestException:
            return True  # not known: report the 404 as the server gave it
        return probe.status_code != 404

    def _decode(self, response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.ok and isinstance(body, dict):
            return body
        if response.ok:
            raise HttpError(
                f"TESP at {self.shown_url} answered HTTP {response.status_code} "
                "with something that is not a JSON object (is this a TES server?)",
                response.status_code,
            )
        return self._raise_status(response.status_code, body)

    def _raise_status(self, status: int, body: object) -> dict[str, Any]:
        message = body.get("msg") if isinstance(body, dict) else None
        field = body.get("field") if isinstance(body, dict) else None
        text = self.scrub(str(message)) if message else ""
        if status == 400:
            raise HttpError(f"invalid request: {text or 'HTTP 400'}", status, field)
        word = _STATUS_WORDS.get(status) or (
            "TESP server error" if status >= 500 else "request refused"
        )
        detail = f": {text}" if text else ""
        hint = ""
        if status == 401:
            hint = " (set TESP_USER and TESP_PASSWORD, or TESP_TOKEN; see docs/cli.md)"
        raise HttpError(f"{word} (HTTP {status}){detail}{hint}", status, field)

    def scrub(self, text: str) -> str:
        """``text`` without this client's secrets (a safety net for echoed values)."""
        for secret in self.config.secrets:
            text = text.replace(secret, "***")
        return text
