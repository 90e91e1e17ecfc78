"""A real ``tesp serve`` on PostgreSQL: a database that goes away, and wrong database URLs.

While the database is down, requests that need it get a prompt 503 with the TES error body
(not a 500 after the pool's wait); once it is back the server answers again. A database
URL that can never work stops ``tesp serve`` at once with the driver's reason, exit 2.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import TespProcess, free_port
from tests.pg import ROLE, Postgres, start_postgres

UNAVAILABLE = {"status_code": 503, "msg": "the task store is unavailable; try again later"}
TASK = {"executors": [{"image": "alpine", "command": ["true"]}]}


@pytest.fixture
def stoppable_postgres() -> Iterator[Postgres]:
    """A PostgreSQL server of this test's own: the test stops and restarts it."""
    with start_postgres() as server:
        yield server


def test_database_down_gives_503_and_recovers(stoppable_postgres: Postgres, tmp_path: Path) -> None:
    pg = stoppable_postgres
    tesp = TespProcess(
        tmp_path / "data",
        tmp_path / "storage",
        env={"TESP_DATABASE_URL": pg.url(), "TESP_DISPATCH": "false"},
    ).start()
    try:
        created = requests.post(f"{tesp.api}/tasks", json=TASK, timeout=10)
        assert created.status_code == 200
        task_id = created.json()["id"]
        assert requests.get(f"{tesp.url}/readyz", timeout=10).status_code == 200

        pg.stop()
        # Each call must answer within the requests timeout (the pool used to wait 30 s).
        ready = requests.get(f"{tesp.url}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["checks"]["store"] == "query failed (StoreUnavailableError)"
        got = requests.get(f"{tesp.api}/tasks/{task_id}", timeout=10)
        assert (got.status_code, got.json()) == (503, UNAVAILABLE)
        posted = requests.post(f"{tesp.api}/tasks", json=TASK, timeout=10)
        assert (posted.status_code, posted.json()) == (503, UNAVAILABLE)

        pg.start()
        # The pool reconnects in the background; the first calls after the restart may
        # still see the outage, so ask a few times (each bounded by the timeout).
        answers = []
        for _ in range(20):
            got = requests.get(f"{tesp.api}/tasks/{task_id}", timeout=10)
            answers.append(got.status_code)
            if got.status_code == 200:
                break
        assert answers[-1] == 200, answers
        assert got.json()["id"] == task_id
        assert requests.get(f"{tesp.url}/readyz", timeout=10).status_code == 200
        assert requests.post(f"{tesp.api}/tasks", json=TASK, timeout=10).status_code == 200
    finally:
        tesp.stop()


def _serve(database_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "tesp_core.cli", "serve"),
            *("--port", str(free_port()), "--data-dir", str(tmp_path / "data")),
        ],
        env={"TESP_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def bad_urls_postgres() -> Iterator[Postgres]:
    """A PostgreSQL server the wrong URLs below point at."""
    with start_postgres() as server:
        yield server


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("postgresql://nobody:s3cret-pw@{host}:{port}/postgres", 'role "nobody" does not exist'),
        (f"postgresql://{ROLE}:s3cret-pw@{{host}}:{{port}}/nodb", 'database "nodb" does not exist'),
        (
            f"postgresql://{ROLE}:s3cret-pw@{{host}}:{{port}}/postgres?bogus_option=1",
            'invalid URI query parameter: "bogus_option"',
        ),
    ],
    ids=["unknown-role", "missing-database", "invalid-option"],
)
def test_permanent_database_errors_fail_fast(
    bad_urls_postgres: Postgres, tmp_path: Path, url: str, cause: str
) -> None:
    pg = bad_urls_postgres
    done = _serve(url.format(host=pg.host, port=pg.port), tmp_path)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("tesp: invalid setting database_url: "), done.stderr
    assert cause in last
    assert "Traceback" not in done.stderr
    assert "s3cret-pw" not in done.stderr + done.stdout


def test_refused_database_fails_naming_the_cause(tmp_path: Path) -> None:
    done = _serve(f"postgresql://{ROLE}:s3cret-pw@127.0.0.1:{free_port()}/postgres", tmp_path)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("tesp: invalid setting database_url: "), done.stderr
    assert "Connection refused" in last
    assert "Traceback" not in done.stderr
    assert "s3cret-pw" not in done.stderr


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://u:p@h:notaport/db", "the port is not a number"),
        ("postgresql://u:p@h/db?sslmode=bogus", "sslmode must be one of"),
        ("mysql://u:p@h/db", "must be a postgresql:// URL"),
    ],
)
def test_malformed_database_urls_are_refused_by_config_show(
    tmp_path: Path, url: str, problem: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tesp_core.cli", "config", "show"],
        env={"TESP_DATABASE_URL": url, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"tesp: invalid setting database_url: {problem}")
    assert ":p@" not in done.stderr


def test_long_dead_replicas_without_tasks_are_pruned(postgres: Postgres) -> None:
    import psycopg

    from tesp_core.models import State, Task
    from tesp_core.store import StoredTask
    from tesp_core.store.base import Lease
    from tesp_core.store.postgres import PRUNE_AFTER_LEASES, PostgresTaskStore

    url = postgres.create_database()
    store = PostgresTaskStore(url)
    live = Lease("live", 30)
    store.renew(live)
    for name in ("dead-empty", "dead-holding", "recent"):
        store.renew(Lease(name, 30))
    task = Task.model_validate({**TASK, "id": "t1", "state": State.QUEUED.value})
    store.insert(StoredTask(task, None, {}), Lease("dead-holding", 30))
    ago = PRUNE_AFTER_LEASES * live.seconds + 60
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE tesp_replicas SET alive_until = now() - make_interval(secs => %s)"
            " WHERE id IN ('dead-empty', 'dead-holding')",
            (ago,),
        )
        conn.execute(
            "UPDATE tesp_replicas SET alive_until = now() - interval '1 s' WHERE id = 'recent'"
        )
        # A replica adopting t1 in this round still prunes only replicas holding nothing.
        claimed = store.claim_orphans(live, limit=0)
        rows = conn.execute("SELECT id FROM tesp_replicas ORDER BY id").fetchall()
    assert claimed == []
    assert [r[0] for r in rows] == ["dead-holding", "live", "recent"]
    store.close()
