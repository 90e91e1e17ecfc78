"""Listing that every SQL store shares: page tokens, filters and the page of documents.

Paging is keyset pagination on a task's ever-growing sequence number (``seq``): a page
token means "tasks older than this one", so a deep page costs the same as the first and
every task appears exactly once across pages even while tasks are created. The tokens are
the same in every store. Each store says how its SQL writes the filters that differ
(:class:`FilterSQL`); the order and the meaning of the filters live here, once.
"""

from __future__ import annotations

import base64
import binascii
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tesp_core.errors import InvalidTaskError
from tesp_core.models import State, Task
from tesp_core.store.base import ListQuery

# One condition of a WHERE clause and the parameters of its placeholders.
Clause = tuple[str, list[Any]]


def encode_page_token(seq: int) -> str:
    """An opaque token for 'tasks older than ``seq``'."""
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def decode_page_token(token: str) -> int:
    """The sequence number inside a page token; InvalidTaskError if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        digits = raw[1:]
        if not raw.startswith("s") or not digits.isascii() or not digits.isdigit():
            raise ValueError(raw)
        seq = int(digits)
        if not 1 <= seq < 2**63:
            raise ValueError(raw)
        return seq
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidTaskError("page_token", "not a page token issued by this server") from exc


def _same(value: str) -> Any:
    return value


@dataclass(frozen=True)
class FilterSQL:
    """How one store's SQL writes the filters of a :class:`ListQuery`.

    The columns ``state``, ``owner`` and ``seq`` are compared the same way everywhere;
    the name prefix and the tags are stored differently by each store.
    """

    # The parameter placeholder of the driver (``?`` or ``%s``).
    mark: str
    # Condition for "name starts with this literal prefix".
    name_prefix: Callable[[str], Clause]
    # Condition for "has tag ``key`` with ``value``" ('' = any value).
    tag: Callable[[str, str], Clause]
    # How a string is written into a filter column (e.g. escaped).
    text: Callable[[str], Any] = _same


def where(query: ListQuery, sql: FilterSQL) -> Clause:
    """The WHERE clause (or '') selecting ``query``'s tasks older than its page token."""
    clauses: list[str] = []
    params: list[Any] = []

    def add(clause: Clause) -> None:
        clauses.append(clause[0])
        params.extend(clause[1])

    if query.state is not None:
        add((f"state = {sql.mark}", [query.state.value]))
    if query.owner is not None:
        add((f"owner = {sql.mark}", [sql.text(query.owner)]))
    if query.name_prefix:
        add(sql.name_prefix(query.name_prefix))
    for key, value in query.tags:
        add(sql.tag(key, value))
    if query.page_token:
        add((f"seq < {sql.mark}", [decode_page_token(query.page_token)]))
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def page_select(table: str, query: ListQuery, sql: FilterSQL) -> Clause:
    """The SELECT of one page, newest first: rows ``(seq, body)`` or, with ``minimal``,
    ``(seq, id, state)``. It asks for one row more than the page, to tell if more follow."""
    condition, params = where(query, sql)
    columns = "seq, id, state" if query.minimal else "seq, body"
    # Only constants and placeholders: every value is a parameter.
    select = f"SELECT {columns} FROM {table} {condition} ORDER BY seq DESC LIMIT {sql.mark}"  # noqa: S608
    return select, [*params, query.page_size + 1]


def page_documents(
    rows: Sequence[Sequence[Any]], query: ListQuery
) -> tuple[list[dict[str, Any]], str | None]:
    """The documents and next page token from the rows of :func:`page_select`."""
    more = len(rows) > query.page_size
    rows = rows[: query.page_size]
    if query.minimal:
        docs = [{"id": r[1], "state": r[2]} for r in rows]
    else:
        docs = [json.loads(r[1]) for r in rows]
    token = encode_page_token(rows[-1][0]) if more and rows else None
    return docs, token


class PagedStore(ABC):
    """:meth:`list_page` of a :class:`~tesp_core.store.base.TaskStore`, built on the
    store's :meth:`list_documents`."""

    @abstractmethod
    def list_documents(self, query: ListQuery) -> tuple[list[dict[str, Any]], str | None]:
        """One page of tasks as JSON documents: ``{"id", "state"}`` only with ``minimal``."""

    def list_page(self, query: ListQuery) -> tuple[list[Task], str | None]:
        """One page of tasks, newest first, and the token of the next page (None at the end).

        With ``query.minimal`` the tasks carry only ``id`` and ``state``.
        """
        docs, token = self.list_documents(query)
        if query.minimal:
            return [
                Task.model_construct(id=d["id"], state=State(d["state"]), executors=[])
                for d in docs
            ], token
        return [Task.model_validate(d) for d in docs], token
