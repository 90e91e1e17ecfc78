"""Every page under docs/ is in mkdocs.yml's nav, and every nav entry is a page.

``mkdocs build --strict`` (``make docs``) checks links; this keeps a new page from being
forgotten in the navigation, and a nav entry from pointing at a page that is not there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _nav_pages(node: Any) -> list[str]:
    """The page paths of a mkdocs nav tree (lists of pages or ``{title: page|section}``)."""
    if isinstance(node, str):
        return [] if "://" in node else [node]
    if isinstance(node, list):
        return [page for item in node for page in _nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in _nav_pages(value)]
    raise AssertionError(f"unexpected nav entry {node!r}")


def _config() -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert isinstance(config, dict)
    return config


def test_mkdocs_reads_docs_dir() -> None:
    config = _config()
    assert config["docs_dir"] == "docs"
    assert config["strict"] is True
    assert config["validation"]["omitted_files"] == "warn"


def test_every_page_is_in_nav() -> None:
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    listed = set(_nav_pages(_config()["nav"]))
    missing = [page for page in pages if page not in listed]
    assert missing == [], f"add these docs pages to mkdocs.yml nav: {missing}"


def test_every_nav_entry_is_a_page_listed_once() -> None:
    listed = _nav_pages(_config()["nav"])
    absent = [page for page in listed if not (DOCS / page).is_file()]
    assert absent == [], f"mkdocs.yml nav names pages that do not exist: {absent}"
    repeated = sorted({page for page in listed if listed.count(page) > 1})
    assert repeated == [], f"mkdocs.yml nav lists these pages more than once: {repeated}"
    assert listed[0] == "index.md"
