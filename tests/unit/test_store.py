"""The SQLite store: paging, filters, persistence across re-opening."""

from __future__ import annotations

from pathlib import Path

import pytest

from tesp_core.errors import InvalidTaskError
from tesp_core.models import State, Task
from tesp_core.store import ListQuery, SQLiteTaskStore, StoredTask


def _add(store: SQLiteTaskStore, n: int, **fields: object) -> str:
    task = Task.model_validate(
        {
            "id": f"t{n}",
            "state": "QUEUED",
            "name": f"name-{n}",
            "executors": [{"image": "a", "command": ["true"]}],
            **fields,
        }
    )
    store.insert(StoredTask(task, owner="alice" if n % 2 else "bob"))
    return f"t{n}"


def test_paging_covers_every_task_once_newest_first(tmp_path: Path) -> None:
    store = SQLiteTaskStore(tmp_path / "db.sqlite")
    ids = [_add(store, n) for n in range(7)]
    seen, token = [], None
    while True:
        page, token = store.list_page(ListQuery(page_size=3, page_token=token, minimal=True))
        seen += [t.id for t in page]
        if token is None:
            break
    assert seen == ids[::-1]


def test_filters(tmp_path: Path) -> None:
    store = SQLiteTaskStore(tmp_path / "db.sqlite")
    _add(store, 1, tags={"a": "1", "b": "x"})
    _add(store, 2, tags={"a": "2"})
    _add(store, 3, tags={"a": ""}, name="name_%")

    def ids(**q: object) -> list[str]:
        return [t.id or "" for t in store.list_page(ListQuery(**q))[0]]  # type: ignore[arg-type]

    assert ids(tags=[("a", "1")]) == ["t1"]
    assert ids(tags=[("a", "")]) == ["t3", "t2", "t1"]
    assert ids(tags=[("a", "1"), ("b", "x")]) == ["t1"]
    assert ids(tags=[("a", "2"), ("b", "")]) == []
    assert ids(name_prefix="name_%") == ["t3"]
    assert ids(name_prefix="name-") == ["t2", "t1"]
    assert ids(owner="bob") == ["t2"]
    assert ids(state=State.RUNNING) == []


def test_survives_reopen_and_updates(tmp_path: Path) -> None:
    store = SQLiteTaskStore(tmp_path / "db.sqlite")
    _add(store, 1)
    stored = store.get("t1")
    assert stored is not None
    stored.task.state = State.RUNNING
    store.update_task(stored.task)
    store.update_backend("t1", {"submitted": True})
    store.close()
    again = SQLiteTaskStore(tmp_path / "db.sqlite")
    back = again.get("t1")
    assert back is not None and back.task.state is State.RUNNING
    assert back.backend == {"submitted": True} and back.owner == "alice"
    assert [s.task.id for s in again.in_states([State.RUNNING])] == ["t1"]
    assert again.count_by_state() == {State.RUNNING: 1}


def test_foreign_page_token_is_rejected(tmp_path: Path) -> None:
    store = SQLiteTaskStore(tmp_path / "db.sqlite")
    with pytest.raises(InvalidTaskError) as info:
        store.list_page(ListQuery(page_token="bm9wZQ"))
    assert info.value.field == "page_token"
