"""DirWatcher on real directories: the worker's writes are reported, nothing else is."""

from __future__ import annotations

import os
import queue
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tesp_core.backends.watch import DirWatcher


@pytest.fixture
def seen() -> queue.Queue[str]:
    return queue.Queue()


@pytest.fixture
def watcher(seen: queue.Queue[str]) -> Iterator[DirWatcher]:
    w = DirWatcher(seen.put, frozenset({"progress.json", "result.json"}))
    assert w.available  # Linux: the CI machine has inotify
    yield w
    w.close()


def settle(watcher: DirWatcher, seen: queue.Queue[str], tmp_path: Path) -> list[str]:
    """Everything reported so far: a write to a sentinel directory is reported after all
    earlier events (one inotify queue keeps their order)."""
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    assert watcher.add("sentinel", str(sentinel))
    replace(sentinel, "result.json", "{}")
    got = []
    while (key := seen.get(timeout=5)) != "sentinel":
        got.append(key)
    return got


def replace(directory: Path, name: str, text: str) -> None:
    """Write as the worker does: a temporary file renamed over the target."""
    tmp = directory / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, directory / name)


def test_renames_and_writes_of_the_named_files_are_reported(
    watcher: DirWatcher, seen: queue.Queue[str], tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert watcher.add("job-a", str(a)) and watcher.add("job-b", str(b))
    (a / "other.txt").write_text("not watched")
    replace(b, "progress.json", "{}")
    (a / "result.json").write_text("{}")
    assert settle(watcher, seen, tmp_path) == ["job-b", "job-a"]


def test_a_removed_or_deleted_directory_is_no_longer_reported(
    watcher: DirWatcher, seen: queue.Queue[str], tmp_path: Path
) -> None:
    kept, removed, deleted = (tmp_path / n for n in ("kept", "removed", "deleted"))
    for d in (kept, removed, deleted):
        d.mkdir()
        assert watcher.add(d.name, str(d))
    watcher.remove("removed")
    replace(removed, "result.json", "{}")
    shutil.rmtree(deleted)
    deleted.mkdir()  # a new directory under the same path is not the watched one
    replace(deleted, "result.json", "{}")
    replace(kept, "result.json", "{}")
    assert settle(watcher, seen, tmp_path) == ["kept"]


def test_a_missing_directory_cannot_be_watched(watcher: DirWatcher, tmp_path: Path) -> None:
    assert watcher.add("job", str(tmp_path / "absent")) is False


def test_after_close_nothing_is_watched(seen: queue.Queue[str], tmp_path: Path) -> None:
    w = DirWatcher(seen.put, frozenset({"result.json"}))
    w.close()
    assert (w.available, w.add("job", str(tmp_path))) == (False, False)
