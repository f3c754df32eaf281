"""The frozen window: the queries a cycle sends, all through the same planner as ``sagesql query``.

For a table with an updated-date column, a cycle reads::

    SELECT *, sagesql_record FROM t
    WHERE updated >= :lower AND updated <= :upper [AND (filter)]
    ORDER BY updated, key

(``sagesql_record``: each row's record as the API returned it, which events carry.)

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
way: ``key > :ck ORDER BY key LIMIT :n`` chunks where possible, else one query. An
id-set comparison selects the key (and id) alone, so that the API sends only those
(Sage 200 ``$select=id``), in pages as large as the API allows (``id_chunk``).

The statements are built as sqlglot syntax trees: names are quoted identifiers, values
are bind parameters, and the configured filter is parsed as one condition, so nothing
is pasted into SQL text. Whether LIMIT reaches the API is the planner's own answer
(``Plan.pushes_limit``) for the statement of a chunk, asked once before any bound or
cursor is known: its placeholders are bound to stand-ins of their columns' types (a day
in 2000, a key 1 or 'a'), since the answer depends on the statement and the types of
its values, not on the values themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlglot import exp

from sagesql.activities.polling.tables import TableSpec, condition, planning_connection
from sagesql.engine.names import RECORD_COLUMN
from sagesql.engine.pipeline import prepare
from sagesql.engine.statement import READ_DIALECT
from sagesql.schemas.catalog import Catalog

MATCH = "sagesql_poll_match"
# Stand-ins bound to a chunk's placeholders when the planner is asked about it before
# the window's bounds and cursor are known: only their types matter to its answer.
_STAND_IN = {"lower": "2000-01-01T00:00:00Z", "upper": "2000-01-02T00:00:00Z"}


def _column(name: str) -> exp.Column:
    return exp.column(exp.to_identifier(name, quoted=True))


def _param(name: str) -> exp.Placeholder:
    return exp.Placeholder(this=name)


@dataclass(frozen=True)
class Query:
    """A query of the window (or a scan) with its bind parameters."""

    sql: str
    params: dict[str, Any]
    flagged: bool  # the filter is a result column (MATCH), not in the WHERE clause
    chunk: int | None  # rows per request when read in keyset chunks


class Window:
    """The queries of one table: chosen once, by asking the planner what it can push."""

    def __init__(
        self, spec: TableSpec, chunk: int, catalog: Catalog, *, id_chunk: int | None = None
    ) -> None:
        self.spec = spec
        self.chunk_size = max(1, chunk)
        # Keys alone are small: an id scan's pages need not be as small as the window's.
        self.id_chunk_size = max(1, id_chunk or chunk)
        self._connection = planning_connection(catalog, spec.product)
        self._filter = condition(spec.filter) if spec.filter else None
        self._scan_keyset: dict[bool, tuple[bool, bool]] = {}

    # -- building --------------------------------------------------------------------------

    def _select(
        self,
        columns: list[exp.Expr],
        bounds: list[exp.Expr],
        after: exp.Expr | None,
        *,
        flagged: bool,
    ) -> exp.Select:
        """``SELECT columns [, filter AS MATCH] FROM t WHERE bounds [AND (filter)] [AND after]``."""
        where = list(bounds)
        if self._filter is not None and flagged:
            match = exp.case().when(exp.paren(self._filter.copy()), exp.Literal.number(1))
            columns = [*columns, exp.alias_(match.else_(exp.Literal.number(0)), MATCH)]
        elif self._filter is not None:
            where.append(exp.paren(self._filter.copy()))
        if after is not None:
            where.append(after)
        select = exp.select(*columns).from_(
            exp.table_(exp.to_identifier(self.spec.table.name, quoted=True))
        )
        if where:
            select = select.where(exp.and_(*where, copy=False), copy=False)
        return select

    @staticmethod
    def _sql(select: exp.Select, *, limit: bool) -> str:
        if limit:
            select = select.limit(_param("n"), copy=False)
        return select.sql(READ_DIALECT)

    # -- the window of updated rows --------------------------------------------------------

    def _window(self, *, cursor: bool, flagged: bool) -> exp.Select:
        s = self.spec
        assert s.updated is not None
        upd, key = s.updated, s.key
        bounds: list[exp.Expr] = [
            exp.GTE(this=_column(upd), expression=_param("lower")),
            exp.LTE(this=_column(upd), expression=_param("upper")),
        ]
        after: exp.Expr | None = None
        if cursor:
            # (updated, key) > (:cu, :ck)
            after = exp.or_(
                exp.GT(this=_column(upd), expression=_param("cu")),
                exp.paren(
                    exp.and_(
                        exp.EQ(this=_column(upd), expression=_param("cu")),
                        exp.GT(this=_column(key), expression=_param("ck")),
                    )
                ),
            )
            after = exp.paren(after)
        select = self._select(self._columns(False), bounds, after, flagged=flagged)
        return select.order_by(_column(upd), _column(key), copy=False)

    @cached_property
    def keyset(self) -> tuple[bool, bool]:
        """(keyset chunks possible, filter as a result column) for the updated window."""
        stand_ins = {**_STAND_IN, "cu": _STAND_IN["lower"], "ck": self._key_stand_in()}
        for flagged in (False, True) if self._filter is not None else (False,):
            if self._pushes_limit(self._window(cursor=True, flagged=flagged), stand_ins):
                return True, flagged
        return False, False

    def updated(self, lower: str, upper: str, cursor: tuple[Any, Any] | None) -> Query:
        """The next chunk after ``cursor`` (keyset), or the whole window."""
        chunked, flagged = self.keyset
        params: dict[str, Any] = {"lower": lower, "upper": upper}
        if not chunked:
            sql = self._sql(self._window(cursor=False, flagged=False), limit=False)
            return Query(sql, params, False, None)
        if cursor is not None:
            params["cu"], params["ck"] = cursor
        params["n"] = self.chunk_size
        sql = self._sql(self._window(cursor=cursor is not None, flagged=flagged), limit=True)
        return Query(sql, params, flagged, self.chunk_size)

    # -- scans by key (snapshots, id sets) -------------------------------------------------

    def _scan(self, *, keys_only: bool, cursor: bool, flagged: bool) -> exp.Select:
        key = self.spec.key
        after = exp.GT(this=_column(key), expression=_param("ck")) if cursor else None
        select = self._select(self._columns(keys_only), [], after, flagged=flagged)
        return select.order_by(_column(key), copy=False)

    def _read(self) -> list[exp.Expr]:
        """Every column, or those an instance's projection (attributes=) names; and the
        record as the API returned it for them."""
        if self.spec.columns is None:
            return [exp.Star(), _column(RECORD_COLUMN)]
        return [*(_column(c) for c in self.spec.columns), _column(RECORD_COLUMN)]

    def _columns(self, keys_only: bool) -> list[exp.Expr]:
        if not keys_only:
            return self._read()
        key, ident = self.spec.key, self.spec.id_field
        columns: list[exp.Expr] = [_column(key)]
        return columns + ([_column(ident)] if ident != key else [])

    def scan_keyset(self, keys_only: bool) -> tuple[bool, bool]:
        """(keyset chunks possible, filter as a result column) for a scan by key."""
        found = self._scan_keyset.get(keys_only)
        if found is None:
            found = False, False
            for flagged in (False, True) if self._filter is not None else (False,):
                select = self._scan(keys_only=keys_only, cursor=True, flagged=flagged)
                if self._pushes_limit(select, {"ck": self._key_stand_in()}):
                    found = True, flagged
                    break
            self._scan_keyset[keys_only] = found
        return found

    def scan(self, cursor: Any | None, *, keys_only: bool) -> Query:
        chunked, flagged = self.scan_keyset(keys_only)
        if not chunked:
            select = self._scan(keys_only=keys_only, cursor=False, flagged=False)
            return Query(self._sql(select, limit=False), {}, False, None)
        size = self.id_chunk_size if keys_only else self.chunk_size
        params: dict[str, Any] = {"n": size}
        if cursor is not None:
            params["ck"] = cursor
        select = self._scan(keys_only=keys_only, cursor=cursor is not None, flagged=flagged)
        return Query(self._sql(select, limit=True), params, flagged, size)

    def first_key(self) -> Query:
        """``SELECT key FROM t LIMIT 1``: the smallest read (its answer tells the time)."""
        select = exp.select(_column(self.spec.key)).from_(
            exp.table_(exp.to_identifier(self.spec.table.name, quoted=True))
        )
        return Query(select.limit(1).sql(READ_DIALECT), {}, False, None)

    # -- planning -------------------------------------------------------------------------

    def _key_stand_in(self) -> Any:
        column = self.spec.table.column(self.spec.key)
        return 1 if column.type == "INTEGER" else "a"

    def _pushes_limit(self, select: exp.Select, stand_ins: dict[str, Any]) -> bool:
        """The planner's answer: would LIMIT reach the API for this chunk's statement?"""
        return prepare(self._connection, self._sql(select, limit=False), stand_ins).pushes_limit

    def explain(self, query: Query) -> str:
        """The planner's --explain of one of these queries (nothing is sent)."""
        return prepare(self._connection, query.sql, query.params).explain()
