"""The web dashboard at ``/dashboard`` in a real browser against a real ``tesp serve``.

Debian's Chromium drives the page through Playwright (its Python package carries the driver;
no browser is downloaded). A missing Chromium fails the tests: CI installs it.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from tesp_core.server.auth import hash_password
from tesp_core.server.dashboard import CONTENT_SECURITY_POLICY, STATIC_DIR
from tests.conftest import TERMINAL, TespProcess, wait_for_state
from tests.servers import OidcIssuer

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    pytest.fail("the dashboard tests need playwright: pip install 'tesp[dev]'", pytrace=False)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 60_000
XSS = '<img src=x onerror="window.__tesp_xss=1">'


def _artifacts() -> Path:
    root = os.environ.get("TESP_TEST_ARTIFACTS") or Path(__file__).parents[2] / "test-artifacts"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TespProcess]:
    base = tmp_path_factory.mktemp("dashboard")
    proc = TespProcess(data_dir=base / "data", storage=base / "st").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (make test-system-deps)",
            pytrace=False,
        )
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    yield context.new_page()
    context.close()


def _submit(api: str, body: dict[str, Any], **kwargs: Any) -> str:
    response = requests.post(f"{api}/tasks", json=body, timeout=30, **kwargs)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _echo(name: str, text: str, tags: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "tags": tags or {},
        "executors": [{"image": "alpine", "command": ["echo", text]}],
    }


def _list_url(server: TespProcess, **params: str) -> str:
    return f"{server.url}/dashboard/#/?{urlencode(params)}"


def _rows(page: Page) -> dict[str, str]:
    """Task name -> state of the rows the list shows."""
    cells = page.locator("#tasks tbody tr").evaluate_all(
        "rows => rows.map(r => [r.querySelector('.col-name').textContent, r.dataset.state])"
    )
    return {name: state for name, state in cells}


def test_static_files_and_headers(server: TespProcess) -> None:
    moved = requests.get(f"{server.url}/dashboard", timeout=10, allow_redirects=False)
    assert moved.status_code == 307
    assert moved.headers["location"].endswith("/dashboard/")
    index = requests.get(f"{server.url}/dashboard/", timeout=10)
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert index.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert index.headers["x-content-type-options"] == "nosniff"
    assert index.headers["x-frame-options"] == "DENY"
    # No inline script: every <script> names a file of this origin.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", index.text, re.S)
    assert scripts == [(' src="app.js" defer', "")]
    script = requests.get(f"{server.url}/dashboard/app.js", timeout=10)
    assert "javascript" in script.headers["content-type"]
    assert script.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    # The script renders task data as text only.
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script.text
    assert requests.get(f"{server.url}/dashboard/missing.js", timeout=10).status_code == 404
    # What the wheel ships (pyproject package-data) is what is served.
    assert {p.name for p in STATIC_DIR.iterdir()} >= {"index.html", "app.js", "style.css"}


def test_list_filters_and_task_page(server: TespProcess, page: Page) -> None:
    prefix = f"dash-{uuid.uuid4().hex[:8]}-"
    known = f"hello from the dashboard {uuid.uuid4().hex}"
    echo_id = _submit(server.api, _echo(f"{prefix}echo", known, {"suite": prefix}))
    fail_id = _submit(
        server.api,
        {
            "name": f"{prefix}fail",
            "executors": [{"image": "alpine", "command": ["sh", "-c", "echo oops >&2; exit 3"]}],
        },
    )
    assert wait_for_state(server.api, echo_id, TERMINAL)["state"] == "COMPLETE"
    assert wait_for_state(server.api, fail_id, TERMINAL)["state"] == "EXECUTOR_ERROR"
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(_list_url(server, name_prefix=prefix))
    expect(page.locator("#tasks tbody tr")).to_have_count(2)
    assert _rows(page) == {f"{prefix}echo": "COMPLETE", f"{prefix}fail": "EXECUTOR_ERROR"}
    created = page.locator(f'tr[data-task-id="{echo_id}"] .col-created').text_content()
    assert created and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", created)

    page.select_option("#f-state", "EXECUTOR_ERROR")
    expect(page.locator("#tasks tbody tr")).to_have_count(1)
    assert _rows(page) == {f"{prefix}fail": "EXECUTOR_ERROR"}
    assert "state=EXECUTOR_ERROR" in page.url

    page.select_option("#f-state", "")
    page.fill("#f-tag-key", "suite")
    page.fill("#f-tag-value", prefix)
    page.click("#f-apply")
    expect(page.locator("#tasks tbody tr")).to_have_count(1)
    assert _rows(page) == {f"{prefix}echo": "COMPLETE"}

    page.locator(f'tr[data-task-id="{echo_id}"] .col-name a').click()
    expect(page.locator("#task-id")).to_have_text(echo_id)
    expect(page.locator("#log-0-0-stdout")).to_have_text(known + "\n")
    assert page.locator("#task-name").text_content() == f"{prefix}echo"
    assert page.locator("#executors ol.argv li").all_text_contents() == ["echo", known]
    assert page.locator("#log-0-0 .exit-code").text_content() == "0"
    assert page.locator("#tags").text_content() == f"Tagssuite{prefix}"
    assert page.locator("#cancel").count() == 0  # a finished task cannot be canceled
    page.screenshot(path=str(_artifacts() / "dashboard-task.png"), full_page=True)

    page.goto(f"{server.url}/dashboard/#/tasks/{fail_id}")
    expect(page.locator("#log-0-0 .exit-code")).to_have_text("3")
    assert page.locator("#log-0-0-stderr").text_content() == "oops\n"
    page.click("#back")  # back to the list as it was filtered
    expect(page.locator("#tasks tbody tr")).to_have_count(1)
    assert _rows(page) == {f"{prefix}echo": "COMPLETE"}
    assert page.locator("#f-tag-key").input_value() == "suite"
    assert errors == []


def test_task_strings_render_as_text(server: TespProcess, page: Page) -> None:
    tags = {XSS: XSS}
    task_id = _submit(server.api, _echo(XSS, XSS, tags))
    assert wait_for_state(server.api, task_id, TERMINAL)["state"] == "COMPLETE"
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    page.goto(_list_url(server, name_prefix=XSS))
    row = page.locator(f'tr[data-task-id="{task_id}"]')
    expect(row).to_have_count(1)
    assert row.locator(".col-name").text_content() == XSS
    assert row.locator(".tag").text_content() == f"{XSS}={XSS}"

    page.goto(f"{server.url}/dashboard/#/tasks/{task_id}")
    expect(page.locator("#log-0-0-stdout")).to_have_text(XSS + "\n")
    assert page.locator("#task-name").text_content() == XSS
    assert page.locator("#executors ol.argv li").all_text_contents() == ["echo", XSS]
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("window.__tesp_xss === undefined")
    assert dialogs == []


def test_paging_through_many_tasks(server: TespProcess, page: Page) -> None:
    prefix = f"page-{uuid.uuid4().hex[:8]}-"
    for i in range(30):
        _submit(server.api, _echo(f"{prefix}{i:02d}", "paged"))

    def names() -> list[str]:
        return page.locator("#tasks tbody .col-name").all_text_contents()

    def expect_page(number: int, first: int) -> None:
        expect(page.locator("#page-info")).to_contain_text(f"Page {number} ")
        # Newest first: page 1 holds tasks 29..20.
        assert names() == [f"{prefix}{i:02d}" for i in range(first, first - 10, -1)]

    page.goto(_list_url(server, name_prefix=prefix, page_size="25", refresh="off"))
    expect(page.locator("#tasks tbody tr")).to_have_count(25)
    page.select_option("#f-size", "10")
    expect(page.locator("#tasks tbody tr")).to_have_count(10)
    expect_page(1, 29)
    assert page.locator("#page-prev").is_disabled()
    page.click("#page-next")
    expect_page(2, 19)
    page.click("#page-next")
    expect_page(3, 9)
    assert page.locator("#page-next").is_disabled()
    page.click("#page-prev")
    expect_page(2, 19)
    page.click("#page-prev")
    expect_page(1, 29)
    assert page.locator("#page-prev").is_disabled()
    # The page and the way back live in the address: a reload stays on page 3 and can go back.
    page.click("#page-next")
    expect_page(2, 19)
    page.click("#page-next")
    expect_page(3, 9)
    assert "page_token=" in page.url and page.url.count("prev=") == 2
    page.reload()
    expect_page(3, 9)
    assert page.locator("#page-next").is_disabled()
    page.click("#page-prev")
    expect_page(2, 19)
    page.reload()
    expect_page(2, 19)
    page.click("#page-prev")
    expect_page(1, 29)
    assert "page_token=" not in page.url
    # A page size from the address that the select does not list is used and shown.
    page.goto(_list_url(server, name_prefix=prefix, page_size="7", refresh="off"))
    expect(page.locator("#tasks tbody tr")).to_have_count(7)
    assert page.locator("#f-size").input_value() == "7"
    assert page.locator("#notice").is_hidden()


def test_errors_replace_the_loading_text(server: TespProcess, page: Page) -> None:
    page.goto(f"{server.url}/dashboard/#/tasks/does-not-exist")
    expect(page.locator("#error")).to_have_text(
        "The server answered 404: task 'does-not-exist' not found"
    )
    expect(page.locator("#view .load-failed")).to_have_text("This task could not be loaded.")
    assert "Loading" not in (page.locator("#view").text_content() or "")
    assert page.locator("#back").get_attribute("href") == "#/"
    page.goto(_list_url(server, page_token="not-a-token"))
    expect(page.locator("#error")).to_contain_text("The server answered 400: page_token:")
    expect(page.locator("#task-list .load-failed")).to_have_text("The tasks could not be loaded.")
    assert "Loading" not in (page.locator("#view").text_content() or "")


def test_bad_address_parameters_are_set_aside(server: TespProcess, page: Page) -> None:
    prefix = f"hash-{uuid.uuid4().hex[:8]}-"
    task_id = _submit(server.api, _echo(f"{prefix}one", "hi"))
    requests_seen: list[str] = []
    page.on("request", lambda r: requests_seen.append(r.url) if "/tasks?" in r.url else None)
    page.goto(_list_url(server, name_prefix=prefix, state="BOGUS", page_size="5000"))
    expect(page.locator(f'tr[data-task-id="{task_id}"]')).to_have_count(1)
    expect(page.locator("#notice")).to_have_text(
        'Ignored in the address: state "BOGUS" is not a TES state; '
        'page_size "5000" is not 1 to 2047.'
    )
    assert page.locator("#f-state").input_value() == ""
    assert page.locator("#f-size").input_value() == "25"
    assert "BOGUS" not in page.url and "page_size=25" in page.url
    assert requests_seen and all("BOGUS" not in u and "page_size=25" in u for u in requests_seen)
    assert page.locator("#error").is_hidden()
    # In auth mode none no token can matter: no token button.
    assert page.locator("#auth-toggle").is_hidden()


def test_cancel_button(server: TespProcess, page: Page) -> None:
    body = {"name": "dash-cancel", "executors": [{"image": "alpine", "command": ["sleep", "300"]}]}
    task_id = _submit(server.api, body)
    page.on("dialog", lambda d: d.accept())
    page.goto(f"{server.url}/dashboard/#/tasks/{task_id}")
    page.click("#cancel")
    # The page keeps refreshing until the task reaches a final state.
    expect(page.locator("#view")).to_have_attribute("data-state", "CANCELED")
    assert page.locator("#cancel").count() == 0
    assert wait_for_state(server.api, task_id, TERMINAL)["state"] == "CANCELED"


@pytest.fixture(scope="module")
def basic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TespProcess]:
    base = tmp_path_factory.mktemp("dash-basic")
    users = {
        "alice": {"password_hash": hash_password("alice-pw", iterations=1000)},
        "bob": {"password_hash": hash_password("bob-pw", iterations=1000), "roles": ["guest"]},
    }
    env = {
        "TESP_AUTH_MODE": "basic",
        "TESP_BASIC_USERS": json.dumps(users),
        "TESP_USER_ROLE": "user",
    }
    proc = TespProcess(data_dir=base / "data", storage=base / "st", env=env).start()
    yield proc
    proc.stop()


def test_basic_auth_uses_the_browser_credentials(
    basic_server: TespProcess, browser: Browser
) -> None:
    task_id = _submit(basic_server.api, _echo("alice-task", "hi"), auth=("alice", "alice-pw"))
    # The page itself is public; the API answers 401 with a Basic challenge.
    assert requests.get(f"{basic_server.url}/dashboard/", timeout=10).status_code == 200
    # (Headless Chromium without credentials leaves the challenge unanswered, as a person
    # would leave the prompt open; a wrong password gets the 401 through to the page.)
    wrong = browser.new_context(http_credentials={"username": "alice", "password": "nope"})
    page = wrong.new_page()
    page.goto(f"{basic_server.url}/dashboard/")
    expect(page.locator("#error")).to_contain_text("401", timeout=WAIT_MS)
    expect(page.locator("#task-list .load-failed")).to_have_text("The tasks could not be loaded.")
    # A Basic challenge is the browser's business: no bearer token button.
    assert page.locator("#auth-toggle").is_hidden()
    wrong.close()
    # Signed in but without the role: 403, and the list says it could not load.
    guest = browser.new_context(http_credentials={"username": "bob", "password": "bob-pw"})
    page = guest.new_page()
    page.goto(f"{basic_server.url}/dashboard/#/tasks/{task_id}")
    expect(page.locator("#error")).to_have_text(
        "The server answered 403: the role 'user' is required", timeout=WAIT_MS
    )
    expect(page.locator("#view .load-failed")).to_have_text("This task could not be loaded.")
    assert "Loading" not in (page.locator("#view").text_content() or "")
    guest.close()
    # A browser that answers the challenge (here Playwright, for a person the prompt).
    signed_in = browser.new_context(http_credentials={"username": "alice", "password": "alice-pw"})
    page = signed_in.new_page()
    page.goto(f"{basic_server.url}/dashboard/")
    expect(page.locator(f'tr[data-task-id="{task_id}"] .col-name')).to_have_text(
        "alice-task", timeout=WAIT_MS
    )
    signed_in.close()


@pytest.fixture(scope="module")
def oidc_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TespProcess, OidcIssuer]]:
    issuer = OidcIssuer()
    base = tmp_path_factory.mktemp("dash-oidc")
    env = {
        "TESP_AUTH_MODE": "oidc",
        "TESP_OIDC_ISSUERS": json.dumps([issuer.url]),
        "TESP_OIDC_AUDIENCE": "tesp",
        "TESP_OIDC_ALGORITHMS": '["RS256"]',
    }
    proc = TespProcess(data_dir=base / "data", storage=base / "st", env=env).start()
    yield proc, issuer
    proc.stop()
    issuer.server.shutdown()
    issuer.server.server_close()


def test_oidc_bearer_token_pasted_into_the_page(
    oidc_server: tuple[TespProcess, OidcIssuer], page: Page
) -> None:
    server, issuer = oidc_server
    token = issuer.token("carol")
    headers = {"Authorization": f"Bearer {token}"}
    task_id = _submit(server.api, _echo("carol-task", "hi"), headers=headers)
    page.goto(f"{server.url}/dashboard/")
    expect(page.locator("#error")).to_contain_text("401")
    expect(page.locator("#auth")).to_be_visible()  # a Bearer challenge opens the token form
    expect(page.locator("#auth-toggle")).to_be_visible()
    page.fill("#auth-token", token)
    page.click("#auth-form button[type=submit]")
    expect(page.locator(f'tr[data-task-id="{task_id}"] .col-name')).to_have_text("carol-task")
    expect(page.locator("#error")).to_be_hidden()
    # Kept for this tab only, in session storage: a reload stays signed in.
    assert page.evaluate("sessionStorage.getItem('tesp.dashboard.token')") == token
    page.reload()
    expect(page.locator(f'tr[data-task-id="{task_id}"] .col-name')).to_have_text("carol-task")
    page.click("#auth-toggle")
    page.click("#auth-clear")
    expect(page.locator("#error")).to_contain_text("401")
    assert page.evaluate("sessionStorage.getItem('tesp.dashboard.token')") is None
