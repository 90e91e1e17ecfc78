"""The store contract against both stores: SQLite and a real PostgreSQL server.

The same assertions as the SQLite unit tests (paging, filters, persistence, page tokens),
then the claims that several replicas rely on: which replica holds a task, a dead
replica's tasks going to exactly one live replica, a lapsed lease being reported.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tesp_core.errors import InvalidSettingError, InvalidTaskError
from tesp_core.models import State, Task
from tesp_core.store import ListQuery, SQLiteTaskStore, StoredTask, TaskStore
from tesp_core.store.base import Lease
from tesp_core.store.paging import encode_page_token
from tesp_core.store.postgres import PostgresTaskStore
from tests.pg import Postgres

Opener = Callable[[], TaskStore]


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Opener]]:
    """(kind, a function that opens the same store again) for a fresh, empty store."""
    opened: list[TaskStore] = []
    if request.param == "sqlite":

        def open_store() -> TaskStore:
            opened.append(SQLiteTaskStore(tmp_path / "db.sqlite"))
            return opened[-1]

    else:
        url = request.getfixturevalue("postgres").create_database()

        def open_store() -> TaskStore:
            opened.append(PostgresTaskStore(url))
            return opened[-1]

    yield request.param, open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: tuple[str, Opener]) -> TaskStore:
    return opener[1]()


def _add(store: TaskStore, n: int, lease: Lease | None = None, **fields: object) -> str:
    task = Task.model_validate(
        {
            "id": f"t{n}",
            "state": "QUEUED",
            "name": f"name-{n}",
            "executors": [{"image": "a", "command": ["true"]}],
            **fields,
        }
    )
    store.insert(StoredTask(task, owner="alice" if n % 2 else "bob"), lease)
    return f"t{n}"


def _ids(store: TaskStore, **q: object) -> list[str]:
    return [t.id or "" for t in store.list_page(ListQuery(**q))[0]]  # type: ignore[arg-type]


# -- the contract shared with SQLite ----------------------------------------------------------


def test_paging_covers_every_task_once_newest_first(store: TaskStore) -> None:
    ids = [_add(store, n) for n in range(7)]
    seen, token, tokens = [], None, []
    while True:
        page, token = store.list_page(ListQuery(page_size=3, page_token=token, minimal=True))
        seen += [t.id for t in page]
        assert all(t.state is State.QUEUED for t in page)
        if token is None:
            break
        tokens.append(token)
    assert seen == ids[::-1]
    assert len(tokens) == 2
    # Full documents page the same way.
    docs, token = store.list_documents(ListQuery(page_size=4))
    assert [d["id"] for d in docs] == ids[:2:-1] and docs[0]["name"] == "name-6"
    docs, token = store.list_documents(ListQuery(page_size=4, page_token=token))
    assert [d["id"] for d in docs] == ["t2", "t1", "t0"] and token is None


def test_filters(store: TaskStore) -> None:
    _add(store, 1, tags={"a": "1", "b": "x"})
    _add(store, 2, tags={"a": "2"})
    _add(store, 3, tags={"a": ""}, name="name_%")
    assert _ids(store, tags=[("a", "1")]) == ["t1"]
    assert _ids(store, tags=[("a", "")]) == ["t3", "t2", "t1"]
    assert _ids(store, tags=[("a", "1"), ("b", "x")]) == ["t1"]
    assert _ids(store, tags=[("a", "2"), ("b", "")]) == []
    assert _ids(store, name_prefix="name_%") == ["t3"]
    assert _ids(store, name_prefix="name-") == ["t2", "t1"]
    assert _ids(store, name_prefix="name") == ["t3", "t2", "t1"]
    assert _ids(store, owner="bob") == ["t2"]
    assert _ids(store, state=State.RUNNING) == []
    assert _ids(store, state=State.QUEUED, owner="alice", tags=[("b", "")]) == ["t1"]


def test_odd_characters_in_filtered_fields(store: TaskStore) -> None:
    # PostgreSQL text cannot hold NUL; the store must still keep and match it exactly.
    _add(store, 1, name="a\x00b\\", tags={"k\x00": "v\\0", "%": "_"})
    _add(store, 2, name="a\\0b", tags={"k\\0": "v\x00"})
    assert _ids(store, name_prefix="a\x00") == ["t1"]
    assert _ids(store, name_prefix="a\\0") == ["t2"]
    assert _ids(store, name_prefix="a\x00b\\") == ["t1"]
    assert _ids(store, tags=[("k\x00", "v\\0")]) == ["t1"]
    assert _ids(store, tags=[("k\x00", "v\x00")]) == []
    assert _ids(store, tags=[("k\\0", "")]) == ["t2"]
    assert _ids(store, tags=[("%", "_")]) == ["t1"]
    stored = store.get("t1")
    assert stored is not None and stored.task.name == "a\x00b\\"
    assert stored.task.tags == {"k\x00": "v\\0", "%": "_"}


def test_survives_reopen_and_updates(opener: tuple[str, Opener]) -> None:
    store = opener[1]()
    _add(store, 1)
    _add(store, 2)
    stored = store.get("t1")
    assert stored is not None
    stored.task.state = State.RUNNING
    assert store.update_task(stored.task)
    store.update_backend("t1", {"submitted": True})
    store.close()
    again = opener[1]()
    back = again.get("t1")
    assert back is not None and back.task.state is State.RUNNING
    assert back.backend == {"submitted": True} and back.owner == "alice"
    assert again.get("nope") is None
    assert [s.task.id for s in again.in_states([State.RUNNING])] == ["t1"]
    assert [s.task.id for s in again.in_states([State.QUEUED, State.RUNNING])] == ["t1", "t2"]
    assert again.count_by_state() == {State.RUNNING: 1, State.QUEUED: 1}


def test_update_only_from_the_expected_state(store: TaskStore) -> None:
    _add(store, 1)
    task = Task.model_validate(
        {"id": "t1", "state": "CANCELING", "executors": [{"image": "a", "command": ["true"]}]}
    )
    assert store.update_task(task, expected=State.QUEUED)
    task.state = State.RUNNING
    assert not store.update_task(task, expected=State.QUEUED)
    stored = store.get("t1")
    assert stored is not None and stored.task.state is State.CANCELING


def test_foreign_page_token_is_rejected(store: TaskStore) -> None:
    for token in ["bm9wZQ", encode_page_token(1)[:-1] + "!", "czA"]:
        with pytest.raises(InvalidTaskError) as info:
            store.list_page(ListQuery(page_token=token))
        assert info.value.field == "page_token"


# -- claims ------------------------------------------------------------------------------------


def test_created_tasks_are_held_by_their_replica(store: TaskStore) -> None:
    a, b = Lease("replica-a", 30), Lease("replica-b", 30)
    store.renew(a)
    store.renew(b)
    _add(store, 1, a)
    _add(store, 2, b)
    _add(store, 3)  # nobody's
    assert store.held(a) == {"t1"} and store.held(b) == {"t2"}
    assert store.hold("t1", a) and not store.hold("t1", b)
    assert store.hold("t3", b) and store.held(b) == {"t2", "t3"}


def test_a_cancel_stored_elsewhere_reaches_the_holder(store: TaskStore) -> None:
    a = Lease("replica-a", 30)
    store.renew(a)
    _add(store, 1, a)
    _add(store, 2, a)
    stored = store.get("t2")
    assert stored is not None
    stored.task.state = State.CANCELING
    assert store.update_task(stored.task, expected=State.QUEUED)
    renewal = store.renew(a)
    assert renewal.canceling == ["t2"] and not renewal.lapsed


def test_sqlite_adopts_every_task_of_a_previous_process(tmp_path: Path) -> None:
    store = SQLiteTaskStore(tmp_path / "db.sqlite")
    old, new = Lease("old-life", 30), Lease("new-life", 30)
    for n in range(4):
        _add(store, n, old)
    done = store.get("t3")
    assert done is not None
    done.task.state = State.COMPLETE
    store.update_task(done.task)
    # One file belongs to one process: the previous life's claims are stale at once.
    assert [s.task.id for s in store.claim_orphans(new, limit=2)] == ["t0", "t1"]
    assert [s.task.id for s in store.claim_orphans(new)] == ["t2"]
    assert store.claim_orphans(new) == []
    assert store.held(new) == {"t0", "t1", "t2"}
    store.close()


def test_postgres_live_replicas_keep_their_tasks(postgres: Postgres) -> None:
    url = postgres.create_database()
    store = PostgresTaskStore(url)
    a, b = Lease("replica-a", 30), Lease("replica-b", 30)
    store.renew(a)
    store.renew(b)
    for n in range(3):
        _add(store, n, a)
    assert store.claim_orphans(b) == []
    store.release(a)
    # A clean stop hands the tasks over at once, and the stopped replica knows it.
    assert [s.task.id for s in store.claim_orphans(b, limit=2)] == ["t0", "t1"]
    assert [s.task.id for s in store.claim_orphans(b)] == ["t2"]
    assert not store.hold("t0", a)
    assert store.renew(a).lapsed and store.held(a) == set()
    store.close()


def test_postgres_dead_replica_tasks_go_to_exactly_one_replica(postgres: Postgres) -> None:
    url = postgres.create_database()
    dying = Lease("dying", 1)
    setup = PostgresTaskStore(url)
    setup.renew(dying)
    ids = {_add(setup, n, dying) for n in range(300)}
    time.sleep(1.2)  # the lease ends
    replicas = [PostgresTaskStore(url, pool_size=2) for _ in range(4)]
    leases = [Lease(f"live-{n}", 30) for n in range(4)]
    claimed: list[list[str]] = [[] for _ in replicas]
    start = threading.Barrier(len(replicas))

    def adopt(n: int) -> None:
        replicas[n].renew(leases[n])
        start.wait()
        while batch := replicas[n].claim_orphans(leases[n], limit=7):
            claimed[n] += [s.task.id or "" for s in batch]

    threads = [threading.Thread(target=adopt, args=(n,)) for n in range(len(replicas))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [t for part in claimed for t in part]
    assert sorted(every) == sorted(ids)  # each task once, none left behind
    for n, store in enumerate(replicas):
        assert store.held(leases[n]) == set(claimed[n])
    # The dead replica learns it lost everything when it renews.
    renewal = setup.renew(dying)
    assert renewal.lapsed and setup.held(dying) == set()
    assert not setup.hold("t0", dying)
    for store in [setup, *replicas]:
        store.close()


def test_postgres_schema_is_created_once_by_concurrent_starts(postgres: Postgres) -> None:
    url = postgres.create_database()
    stores: list[PostgresTaskStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait()
        try:
            stores.append(PostgresTaskStore(url, pool_size=1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(stores) == 4
    _add(stores[0], 1)
    assert [s.get("t1") is not None for s in stores] == [True] * 4
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'tesp_%' ORDER BY 1"
        ).fetchall()
    assert tables == [("tesp_replicas",), ("tesp_tasks",)]
    for store in stores:
        store.close()


def test_postgres_unreachable_database_is_a_clear_error(postgres: Postgres) -> None:
    url = f"postgresql://tesp:secret-pw@127.0.0.1:{postgres.port}/no_such_db"
    with pytest.raises(InvalidSettingError) as info:
        PostgresTaskStore(url, timeout=2)
    assert str(info.value) == (
        'invalid setting database_url: connection failed: connection to server at "127.0.0.1",'
        f' port {postgres.port} failed: FATAL: database "no_such_db" does not exist'
    )
    assert "secret-pw" not in str(info.value)


def test_database_url_must_be_postgresql() -> None:
    from pydantic import ValidationError

    from tesp_core.config import load_settings

    with pytest.raises(ValidationError) as info:
        load_settings(database_url="mysql://u:hidden-pw@db/tesp")
    assert "must be a postgresql:// URL" in str(info.value)
    assert "hidden-pw" not in str(info.value)
    url = load_settings(database_url="postgresql://u:pw@db/tesp").database_url
    assert url is not None and url.get_secret_value() == "postgresql://u:pw@db/tesp"
