"""The frozen window: the queries a cycle sends, all through the same planner as ``sagesql query``.

For a table with an updated-date column, a cycle reads::

    SELECT * FROM t
    WHERE updated >= :lower AND updated <= :upper [AND (filter)]
    ORDER BY updated, key

with ``lower = watermark - lookback`` and ``upper = server now - delay`` fixed when the
cycle starts, so rows changed while it runs fall outside it (they are read by the next
one, at their new time) and nothing moves inside it.

Where the API can apply all of that exactly and in that order (Sage 200 ``$filter`` and
``$orderby``, CRM ``where=`` and ``orderBy``), the window is read in keyset chunks, each
one request with a pushed LIMIT::

    ... AND (updated > :cu OR (updated = :cu AND key > :ck)) ... LIMIT :n

A chunk starts strictly after the last row of the previous one, so rows leaving the
window while it is read (changed or deleted) cannot shift the rows after them out of
a page: offset paging would lose one at every page boundary. Any number of rows may
share one updated second. A filter the API cannot apply exactly would stop the LIMIT
from being pushed; it is then evaluated by SQLite as a column of the result
(``sagesql_poll_match``) and rows failing it are skipped, not sent.

Elsewhere (Sage Accounting: ``updated_or_created_since`` is the only bound it takes and
it cannot sort by key) the window is one query, paged by the API; see poller.py for
how such a read is proven complete before the watermark passes it.

Tables without an updated-date column, and id-set comparisons, scan by key the same
way: ``key > :ck ORDER BY key LIMIT :n`` chunks where possible, else one query.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sagesql.activities.polling.tables import TableSpec, planning_connection
from sagesql.schemas.catalog import Catalog

MATCH = "sagesql_poll_match"
_DUMMY = {"lower": "2000-01-01T00:00:00Z", "upper": "2000-01-02T00:00:00Z"}


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Query:
    """A query of the window (or a scan) with its bind parameters."""

    sql: str
    params: dict[str, Any]
    flagged: bool  # the filter is a result column (MATCH), not in the WHERE clause
    chunk: int | None  # rows per request when read in keyset chunks


class Window:
    """The queries of one table: chosen once, by asking the planner what it can push."""

    def __init__(self, spec: TableSpec, chunk: int, catalog: Catalog) -> None:
        self.spec = spec
        self.chunk_size = max(1, chunk)
        self._connection = planning_connection(catalog, spec.product)

    # -- the window of updated rows --------------------------------------------------------

    def _window_sql(self, *, cursor: bool, limit: bool, flagged: bool) -> str:
        s = self.spec
        assert s.updated is not None
        upd, key = quote(s.updated), quote(s.key)
        select = "*"
        if s.filter and flagged:
            select = f"*, CASE WHEN ({s.filter}) THEN 1 ELSE 0 END AS {MATCH}"
        where = [f"{upd} >= :lower", f"{upd} <= :upper"]
        if s.filter and not flagged:
            where.append(f"({s.filter})")
        if cursor:
            where.append(f"({upd} > :cu OR ({upd} = :cu AND {key} > :ck))")
        sql = f"SELECT {select} FROM {quote(s.table.name)} WHERE {' AND '.join(where)} "
        sql += f"ORDER BY {upd}, {key}"
        if limit:
            sql += " LIMIT :n"
        return sql

    @cached_property
    def keyset(self) -> tuple[bool, bool]:
        """(keyset chunks possible, filter as a result column) for the updated window."""
        for flagged in (False, True) if self.spec.filter else (False,):
            sql = self._window_sql(cursor=True, limit=True, flagged=flagged)
            if self._limit_pushed(sql, {**_DUMMY, "cu": _DUMMY["lower"], "ck": self._key_sample()}):
                return True, flagged
        return False, False

    def updated(self, lower: str, upper: str, cursor: tuple[Any, Any] | None) -> Query:
        """The next chunk after ``cursor`` (keyset), or the whole window."""
        chunked, flagged = self.keyset
        params: dict[str, Any] = {"lower": lower, "upper": upper}
        if not chunked:
            return Query(
                self._window_sql(cursor=False, limit=False, flagged=False), params, False, None
            )
        if cursor is not None:
            params["cu"], params["ck"] = cursor
        params["n"] = self.chunk_size
        sql = self._window_sql(cursor=cursor is not None, limit=True, flagged=flagged)
        return Query(sql, params, flagged, self.chunk_size)

    # -- scans by key (snapshots, id sets) -------------------------------------------------

    def _scan_sql(self, *, columns: str, cursor: bool, limit: bool, flagged: bool) -> str:
        s = self.spec
        key = quote(s.key)
        select = columns
        where: list[str] = []
        if s.filter and flagged:
            select += f", CASE WHEN ({s.filter}) THEN 1 ELSE 0 END AS {MATCH}"
        elif s.filter:
            where.append(f"({s.filter})")
        if cursor:
            where.append(f"{key} > :ck")
        sql = f"SELECT {select} FROM {quote(s.table.name)}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {key}"
        if limit:
            sql += " LIMIT :n"
        return sql

    def _columns(self, keys_only: bool) -> str:
        if not keys_only:
            return "*"
        key, ident = self.spec.key, self.spec.id_field
        return quote(key) + (f", {quote(ident)}" if ident != key else "")

    def scan_keyset(self, keys_only: bool) -> tuple[bool, bool]:
        for flagged in (False, True) if self.spec.filter else (False,):
            sql = self._scan_sql(
                columns=self._columns(keys_only), cursor=True, limit=True, flagged=flagged
            )
            if self._limit_pushed(sql, {"ck": self._key_sample()}):
                return True, flagged
        return False, False

    def scan(self, cursor: Any | None, *, keys_only: bool) -> Query:
        chunked, flagged = self.scan_keyset(keys_only)
        columns = self._columns(keys_only)
        if not chunked:
            sql = self._scan_sql(columns=columns, cursor=False, limit=False, flagged=False)
            return Query(sql, {}, False, None)
        params: dict[str, Any] = {"n": self.chunk_size}
        if cursor is not None:
            params["ck"] = cursor
        sql = self._scan_sql(
            columns=columns, cursor=cursor is not None, limit=True, flagged=flagged
        )
        return Query(sql, params, flagged, self.chunk_size)

    # -- planning -------------------------------------------------------------------------

    def _key_sample(self) -> Any:
        column = self.spec.table.column(self.spec.key)
        return 1 if column.type == "INTEGER" else "a"

    def _limit_pushed(self, sql: str, params: dict[str, Any]) -> bool:
        from sagesql.engine.pipeline import prepare

        plan = prepare(self._connection, sql, {**params, "n": self.chunk_size})
        return bool(plan.scans) and plan.scans[0].limit is not None

    def explain(self, lower: str, upper: str) -> str:
        from sagesql.engine.pipeline import prepare

        query = self.updated(lower, upper, None)
        return prepare(self._connection, query.sql, query.params).explain()
