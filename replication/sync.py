"""A sync: each table's changes since its position, read through the poller's window.

Per table and run (the queries are the poller's, ``activities/polling/window.py``)::

    copy      the first run (or --full): every row, by key in keyset chunks (Sage 200,
              CRM) or in API pages addressed by offset (Accounting); each chunk is
              upserted with the position after it, in one transaction of the target
    window    rows with updated >= watermark - lookback, ORDER BY updated, key: keyset
              chunks after (updated, key) where the API can (Sage 200), pages by offset
              (Accounting), else one ordered read committed every chunk's worth of rows
              and resumed after its last (updated, key)
    deletes   Accounting: the tombstones of deleted_since (its own watermark, the same
              lookback); Sage 200 and CRM: one count against the replica's, and when
              they differ (or every compare_every) the ids, read alone in the API's
              largest pages, compared with the replica's keys (keys it lacks are read)

The window has no upper bound a row could slip past: a replica keeps every row's
latest state, so whatever the read meets is upserted; the watermark moves to the
server's time at the read's first answer (its ``Date``), less the delay, so that rows
changed while it ran are read again next time. The lookback re-reads what became
visible late; rows sharing a second are never split (``>=``, and keyset cursors on
(updated, key)).

A read paged by offset (Accounting) could skip a row when another is deleted from an
earlier page while it runs: after it, the tombstones since it began are read (the
deletions the run polls anyway); if one is that recent and the read took more than one
page, the read is done again (at most three times in a run, else the run is partial
and the next one reads again), as the poller holds its watermark.

A table's failure is recorded in its position and the run goes on with the next one;
an API that keeps answering 429 (the quota) ends the run: the positions committed so
far stay, and the next run continues from them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlglot import exp

from sagesql.activities.polling.clock import ServerClock
from sagesql.activities.polling.config import PollConfig, TableConfig
from sagesql.activities.polling.poller import PollingClient, id_page_size
from sagesql.activities.polling.tables import (
    TableSpec,
    condition,
    planning_connection,
    resolve,
)
from sagesql.activities.polling.timeparse import iso, parse_iso
from sagesql.activities.polling.window import MATCH, Window
from sagesql.engine.fetch import deleted, extract, flattener
from sagesql.engine.names import RECORD_COLUMN
from sagesql.engine.pipeline import prepare, run
from sagesql.engine.replica import shown
from sagesql.engine.statement import READ_DIALECT
from sagesql.engine.values import datetime_text, from_storage, to_storage
from sagesql.errors import ConfigurationError, Error, OperationalError, RetriableAPIError
from sagesql.replication.shapes import Shape, shape_of
from sagesql.replication.state import SyncState
from sagesql.replication.targets import Batch, Target
from sagesql.schemas.catalog import Catalog

log = logging.getLogger("sagesql.sync")

# The window's upper bound: none a row could reach (the watermark is what moves).
FAR = "9000-01-01T00:00:00Z"
DEFAULT_LOOKBACK = timedelta(minutes=2)
DEFAULT_DELAY = timedelta(seconds=0)
ATTEMPTS = 3  # reads of a paged window in one run before it is left for the next
PAUSE = timedelta(seconds=2)  # before a paged read not proven complete is read again
# Sage 200 / CRM: the ids are compared in full at least this often (else only when the
# API's count and the replica's differ: see Replicator._ids_needed).
COMPARE_EVERY = timedelta(hours=24)


@dataclass(frozen=True)
class Replicated:
    """A table to replicate: the catalog table, its name in the replica, its filter."""

    table: str
    name: str | None = None
    where: str | None = None
    columns: tuple[str, ...] | None = None


@dataclass
class TableOutcome:
    """What one table's sync did."""

    name: str
    copied: int = 0
    upserted: int = 0
    deleted: int = 0
    requests: int = 0
    rows: int = 0
    complete: bool = False
    error: str | None = None
    quota: bool = False  # stopped by the API's quota: the run goes no further
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.error:
            return f"{self.name}: stopped: {self.error}"
        parts = []
        if self.copied:
            parts.append(f"{self.copied} copied")
        parts.append(f"{self.upserted} changed" if self.upserted else "no changes")
        if self.deleted:
            parts.append(f"{self.deleted} deleted")
        text = f"{self.name}: {', '.join(parts)}; {self.rows} rows ({self.requests} requests)"
        return text + "".join(f"; {n}" for n in self.notes)


Progress = Callable[[str, str, int], None]  # (table, phase, rows so far)


@dataclass
class _Read:
    """One read under way: what its pages are written with."""

    spec: TableSpec
    state: SyncState
    shape: Shape
    children: list[Shape]
    outcome: TableOutcome
    cursor: dict[str, Any]
    copy: bool
    mode: str  # keyset | paged | ordered | newest
    mark: int
    columns: list[str] = field(default_factory=list)
    count: int = 0
    # A copy read from its first row in this run: the keys it met (the rest are gone).
    seen: set[str] | None = None

    def position(self, row: Sequence[Any]) -> tuple[Any, Any]:
        """(updated, key) of a row (updated None for a copy by key)."""
        at = {n: i for i, n in enumerate(self.columns)}
        updated = self.spec.updated if not self.copy else None
        return (row[at[updated]] if updated else None, row[at[self.spec.key]])


def _storer(shape: Shape, columns: list[str], product: str) -> Callable[[Sequence[Any]], tuple]:
    """A result row (Python values, as the engine returns them) -> the replica's row of
    ``shape.columns`` in the engine's stored form (values.py)."""
    at = {n: i for i, n in enumerate(columns)}
    plan: list[tuple[int, Callable[[Any], Any] | None]] = []
    for name in shape.columns:
        sql_type = shape.table.column(name).type
        convert: Callable[[Any], Any] | None = None
        if sql_type == "DATETIME":

            def convert(v: Any, _t: str = sql_type) -> Any:
                return to_storage(_t, v, product)

        elif sql_type == "DECIMAL":
            convert = float
        elif sql_type == "BOOLEAN":
            convert = int
        plan.append((at[name], convert))

    def store(row: Sequence[Any]) -> tuple:
        return tuple(row[i] if f is None or row[i] is None else f(row[i]) for i, f in plan)

    return store


def _note_scales(
    noted: dict[str, int], shape: Shape, columns: list[str], rows: Sequence[Sequence[Any]]
) -> None:
    """The most decimal places of each DECIMAL column's values (Decimals as the API
    wrote them), for the replica's reads to give them back alike (120.00, not 120.0)."""
    at = {n: i for i, n in enumerate(columns)}
    for name in shape.columns:
        if shape.table.column(name).type != "DECIMAL" or name not in at:
            continue
        i = at[name]
        for row in rows:
            value = row[i]
            if isinstance(value, Decimal) and value.is_finite():
                exponent = value.as_tuple().exponent
                if isinstance(exponent, int) and -exponent > noted.get(name, 0):
                    noted[name] = -exponent


def _merged_scales(text: str | None, new: dict[str, dict[str, int]]) -> str | None:
    """The state's scales (JSON) with those noted this run: the most places of each."""
    merged: dict[str, dict[str, int]] = json.loads(text) if text else {}
    for table, found in new.items():
        kept = merged.setdefault(table, {})
        for column, places in found.items():
            if places > kept.get(column, 0):
                kept[column] = places
    return json.dumps(merged, sort_keys=True) if merged else text


@dataclass
class Tombstones:
    """A read of deleted_since: the keys, the newest deletion, the next watermark."""

    keys: list[Any]
    newest: datetime | None
    watermark: str | None

    def proves(self, cursor: dict[str, Any]) -> bool:
        """A paged read is complete in one page, or when nothing was deleted since it
        began (a deletion on an earlier page shifts the later ones by a row)."""
        if int(cursor.get("pages", 0)) <= 1 or self.newest is None:
            return True
        return self.newest < parse_iso(cursor["began"]) - timedelta(seconds=1)


def is_quota(exc: Error) -> bool:
    return isinstance(exc, RetriableAPIError) and "429" in str(exc)


def specs_for(
    wanted: Sequence[Replicated],
    catalog: Catalog,
    product: str,
    *,
    lookback: timedelta = DEFAULT_LOOKBACK,
    delay: timedelta = DEFAULT_DELAY,
) -> list[TableSpec]:
    """Each table resolved and checked by the poller's own rules (tables.resolve)."""
    entries = tuple(
        TableConfig(
            origin=w.table,
            name=w.name or w.table,
            table=w.table,
            filter=w.where,
        )
        for w in wanted
    )
    config = PollConfig(
        source=None,
        instance_id="sync",
        instance_name="sync",
        state=Path("unused"),
        tables=entries,
        sinks=(),
        lookback=lookback,
        delay=delay,
    )
    try:
        specs = resolve(config, catalog, product)
    except ConfigurationError as exc:
        # resolve speaks of a poll configuration; here the tables were named to sync.
        problems = exc.message.removeprefix("the poll configuration has problems: ")
        raise ConfigurationError(f"cannot sync: {problems}") from None  # each has its fix
    return [
        replace(s, name=w.name or s.table.name, columns=_needed(s, w.columns))
        for s, w in zip(specs, wanted, strict=True)
    ]


def _needed(spec: TableSpec, columns: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The columns chosen, with those a sync needs (key, updated), in the table's order;
    each checked (UnknownColumnError names close matches)."""
    if columns is None:
        return None
    chosen = {spec.table.column(c).name for c in columns}
    chosen |= {c for c in (spec.key, spec.updated) if c}
    return tuple(c.name for c in spec.table.columns if c.name in chosen)


def default_tables(catalog: Catalog, product: str) -> list[Replicated]:
    """Every readable table with an updated-date column and a key."""
    found = []
    for summary in catalog.tables(product):
        table = catalog.table(summary.name, product)
        if (
            table.parent is None
            and "list" in table.operations
            and table.key
            and (table.updated_column)
        ):
            found.append(Replicated(table.name))
    return found


def _floor(value: datetime) -> datetime:
    return value.replace(microsecond=0)


def _column(name: str) -> exp.Column:
    return exp.column(exp.to_identifier(name, quoted=True))


class Replicator:
    """Syncs tables of one connection into one target."""

    def __init__(
        self,
        connection: PollingClient,
        target: Target,
        specs: Sequence[TableSpec],
        *,
        full: bool = False,
        since: datetime | None = None,
        progress: Progress | None = None,
        clock: ServerClock | None = None,
        sleep: Callable[[float], None] = time.sleep,
        compare_every: timedelta = COMPARE_EVERY,
    ) -> None:
        self.sleep = sleep
        self.compare_every = compare_every
        self.connection = connection
        self.transport = connection.transport
        self.target = target
        self.specs = list(specs)
        self.full = full
        self.since = since
        self.progress = progress or (lambda table, phase, rows: None)
        self.clock = clock or ServerClock()
        hooks = self.transport.session.hooks.setdefault("response", [])
        if self.clock.hook not in hooks:
            hooks.append(self.clock.hook)
        catalog = connection.catalog
        self.windows = {
            s.name: Window(s, self._chunk(s), catalog, id_chunk=self._id(s)) for s in specs
        }
        self._paged: dict[tuple[str, bool, bool], bool] = {}
        self._whole: dict[tuple[str, bool, bool], str] = {}
        self._counts: dict[str, str | None] = {}
        self._newest: dict[tuple[str, bool], str | None] = {}
        # A newest-first read this run: its pages, and the watermark before it.
        self._newest_pages: dict[str, tuple[int, str | None]] = {}
        # Per synced table, {replica table: {DECIMAL column: most decimal places seen}}.
        self._scales: dict[str, dict[str, dict[str, int]]] = {}

    # -- sizes ----------------------------------------------------------------------------

    def _chunk(self, spec: TableSpec) -> int:
        sizes = [spec.table.paging.max_page_size]
        if self.connection.settings.pagesize:
            sizes.append(self.connection.settings.pagesize)
        return min(sizes)

    def _id(self, spec: TableSpec) -> int:
        return id_page_size(spec, self.connection.settings.pagesize)

    # -- the run ----------------------------------------------------------------------------

    def _check_owners(self) -> None:
        """Each replica table this run writes holds what it copies: the same product's
        table (Sage Accounting and Sage 200 both have ``customers``), else nothing is
        written (a Sage 200 sync would upsert its rows into Accounting's table and delete
        Accounting's as gone)."""
        catalog = self.connection.catalog
        problems = []
        for spec in self.specs:
            held = self.target.load(spec.name)
            if held is None or (held.product, held.source) == (spec.product, spec.table.name):
                continue
            try:
                title = catalog.product(held.product).connection_name
            except Error:
                title = held.product
            mine = catalog.product(spec.product).connection_name
            problems.append(
                f"{spec.name} holds {title}'s {held.source}, not {mine}'s {spec.table.name}"
            )
        if problems:
            prefix = catalog.product(self.specs[0].product).connection_name.lower()
            raise ConfigurationError(
                f"the replica {shown(self.target.url)}: " + "; ".join(problems),
                hint="sync into another replica, or under another name "
                f"(REPLICATE {prefix}.{self.specs[0].table.name})",
            )

    def run(self) -> list[TableOutcome]:
        """Every table in turn; a quota exhaustion stops the run (the rest reported)."""
        self._check_owners()
        outcomes: list[TableOutcome] = []
        stopped: str | None = None
        for spec in self.specs:
            if stopped is not None:
                outcomes.append(TableOutcome(spec.name, error=f"not reached: {stopped}"))
                continue
            outcome = self.sync(spec)
            outcomes.append(outcome)
            if outcome.quota:
                stopped = "the API's quota ran out"
        return outcomes

    def shapes(self, spec: TableSpec) -> tuple[Shape, list[Shape]]:
        catalog = self.connection.catalog
        prefix = spec.name.rsplit(".", 1)[0] + "." if "." in spec.name else ""
        # A projection (REPLICATE t SELECT a, b) leaves the lines out.
        children = [
            shape_of(catalog.table(c, spec.product), prefix + c)
            for c in (spec.table.children if spec.columns is None else ())
        ]
        return shape_of(spec.table, spec.name, spec.columns), children

    def sync(self, spec: TableSpec) -> TableOutcome:
        outcome = TableOutcome(spec.name)
        sent = self.transport.sent
        state = SyncState(spec.name, spec.table.name, spec.product)
        try:
            shape, children = self.shapes(spec)
            grown = False
            for s in (shape, *children):
                added = self.target.ensure(s)
                if added:
                    grown = True
                    outcome.notes.append(f"{s.name}: columns added: {', '.join(added)}")
            held = self.target.load(spec.name)
            # Columns added (a later catalog, a REPLICATE naming more) are empty in the rows
            # already copied, and a changed WHERE keeps other rows: every row is read again.
            again = held is not None and (grown or (held.filter or None) != (spec.filter or None))
            if again and not self.full:
                outcome.notes.append("the columns or the WHERE changed: every row copied again")
            state = held or state
            state.filter = spec.filter
            state.columns = json.dumps(list(spec.columns)) if spec.columns else None
            self._start(spec, state, again=again)
            for attempt in range(ATTEMPTS):
                if attempt:
                    # Deletions stamped in the second before a read began could have
                    # happened during it: the next read begins after them.
                    self.sleep(PAUSE.total_seconds())
                if (state.position() or {}).get("phase") == "copy":
                    self._read(spec, state, shape, children, outcome, copy=True)
                    if (state.position() or {}).get("phase") == "copy":
                        continue  # not proven complete: read again
                if self._read(spec, state, shape, children, outcome, copy=False):
                    break
            else:
                raise OperationalError(
                    f"{spec.name}: rows kept being deleted while the pages were read",
                    hint="run sagesql sync again: it reads the window again",
                )
            if spec.deletes == "compare":
                self._compare(spec, state, shape, children, outcome)
            outcome.complete = True
            state.last_error = None
        except Error as exc:
            outcome.error = str(exc)
            # What is committed is the position: nothing read after it counts.
            state = self.target.load(spec.name) or state
            state.last_error = str(exc)[:500]
            outcome.quota = is_quota(exc)
        outcome.requests = self.transport.sent - sent
        try:
            outcome.rows = state.rows = self.target.count(shape_of(spec.table, spec.name))
            # (the count reads the table alone: its columns do not matter)
        except Exception:  # the table may not exist after an early failure
            outcome.rows = state.rows
        state.scales = _merged_scales(state.scales, self._scales.pop(spec.name, {}))
        state.last_sync = iso(_floor(datetime.now(timezone.utc)))
        state.requests = outcome.requests
        state.last_result = outcome.summary().split(": ", 1)[1]
        with self.target.transaction() as batch:
            batch.save(state)
        return outcome

    def _start(self, spec: TableSpec, state: SyncState, *, again: bool = False) -> None:
        """Where this run starts: a copy (first run, --full, ``again``: the replica table's
        columns or WHERE changed), --since, or the position."""
        if self.full or again:
            state.cursor = json.dumps({"phase": "copy"})
        elif spec.updated is None and state.cursor is None:
            state.cursor = json.dumps({"phase": "copy"})  # no dates: copied every run
        elif state.watermark is None and state.cursor is None:
            if self.since is not None:
                state.watermark = iso(_floor(self.since))
            else:
                state.cursor = json.dumps({"phase": "copy"})
        with self.target.transaction() as batch:
            batch.save(state)

    # -- reading --------------------------------------------------------------------------

    def _rows(self, sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        result = run(self.connection, sql, params)
        try:
            return [c.name for c in result.columns], list(result)
        finally:
            result.close()

    def _paged_sql(self, spec: TableSpec, lower: str | None, record: bool) -> tuple[str, bool]:
        """``SELECT * FROM t [WHERE updated >= :lower] LIMIT :n OFFSET :k``, and whether the
        API applies it exactly, offset included (else it is not used)."""
        columns: list[exp.Expr] = (
            [exp.Star()] if spec.columns is None else [_column(c) for c in spec.columns]
        )
        if record:
            columns.append(_column(RECORD_COLUMN))
        flagged = bool(spec.filter) and lower is not None
        if flagged:
            # The window reads the rows that stopped meeting the filter too (flagged, not
            # kept): they leave the replica, which the SELECT defines.
            match = exp.Case().when(exp.paren(condition(str(spec.filter))), exp.Literal.number(1))
            columns.append(exp.alias_(match.else_(exp.Literal.number(0)), MATCH))
        select = exp.select(*columns).from_(
            exp.table_(exp.to_identifier(spec.table.name, quoted=True))
        )
        where: list[exp.Expression] = []
        if lower is not None and spec.updated:
            where.append(
                exp.GTE(this=_column(spec.updated), expression=exp.Placeholder(this="lower"))
            )
        if spec.filter and not flagged:
            where.append(exp.paren(condition(spec.filter)))
        if where:
            select = select.where(exp.and_(*where), copy=False)
        whole = select.sql(READ_DIALECT)
        select = select.limit(exp.Placeholder(this="n")).offset(exp.Placeholder(this="k"))
        sql = select.sql(READ_DIALECT)
        self._whole[(spec.name, lower is not None, record)] = whole
        key = (spec.name, lower is not None, record)
        if key not in self._paged:
            stand_in = {"lower": "2000-01-01T00:00:00Z", "n": 10, "k": 10}
            plan = prepare(
                planning_connection(self.connection.catalog, spec.product), sql, stand_in
            )
            self._paged[key] = plan.pushes_limit and "offset: starts at" in plan.explain()
        return sql, self._paged[key]

    def _newest_sql(self, spec: TableSpec, record: bool) -> str | None:
        """``SELECT * FROM t [WHERE filter] ORDER BY updated DESC, key DESC LIMIT :n
        OFFSET :k`` when the API sorts, limits and offsets it (one request a page)."""
        cached = (spec.name, record)
        if cached not in self._newest:
            found: str | None = None
            if spec.updated and spec.key:
                columns: list[exp.Expression] = (
                    [exp.Star()] if spec.columns is None else [_column(c) for c in spec.columns]
                )
                if record:
                    columns.append(_column(RECORD_COLUMN))
                select = exp.select(*columns).from_(
                    exp.table_(exp.to_identifier(spec.table.name, quoted=True))
                )
                if spec.filter:
                    select = select.where(exp.paren(condition(spec.filter)), copy=False)
                select = select.order_by(
                    exp.Ordered(this=_column(spec.updated), desc=True),
                    exp.Ordered(this=_column(spec.key), desc=True),
                    copy=False,
                )
                select = select.limit(exp.Placeholder(this="n")).offset(exp.Placeholder(this="k"))
                sql = select.sql(READ_DIALECT)
                planning = planning_connection(self.connection.catalog, spec.product)
                plan = prepare(planning, sql, {"n": 10, "k": 10})
                explained = plan.explain()
                if (
                    plan.pushes_limit
                    and "offset: starts at" in explained
                    and "sorted by the API" in explained
                ):
                    found = sql
            self._newest[cached] = found
        return self._newest[cached]

    def _read(
        self,
        spec: TableSpec,
        state: SyncState,
        shape: Shape,
        children: list[Shape],
        outcome: TableOutcome,
        *,
        copy: bool,
    ) -> bool:
        """The copy or the window, committed page by page with the position after each;
        False when a paged read was not proven complete (it is to be read again).

        A statement with a LIMIT reads one page (the engine may hold a limited statement's
        rows until its end); a paged read from the start is one statement whose pages
        stream in (fetched in parallel), a page's worth of rows committed as it arrives.
        Either way a crash loses at most the page being read."""
        window = self.windows[spec.name]
        page = self._chunk(spec)
        phase = "copy" if copy else "window"
        cursor = state.position() or {}
        if cursor.get("phase") != phase:
            cursor = {"phase": phase}
        if not copy and spec.updated is None:
            return True  # no window: a table without an updated column is copied every run
        if not copy and "lower" not in cursor:
            assert state.watermark is not None
            cursor["lower"] = iso(parse_iso(state.watermark) - spec.lookback)
        keyset, _ = window.scan_keyset(keys_only=False) if copy else window.keyset
        paged_sql, paged = self._paged_sql(spec, None if copy else cursor["lower"], bool(children))
        mode = "keyset" if keyset else "paged" if paged else "ordered"
        newest_sql = self._newest_sql(spec, bool(children)) if mode == "ordered" else None
        if not copy and newest_sql is not None:
            # The API cannot filter on the date (Sage CRM's documented where=) but sorts
            # and pages: newest first, until a row older than the window's lower bound.
            mode = "newest"
        lower = parse_iso(cursor["lower"]) if mode == "newest" else None
        newest_offset = 0
        watermark_before = state.watermark
        read = _Read(spec, state, shape, children, outcome, cursor, copy, mode, self.clock.mark())
        if copy and "ck" not in cursor and "offset" not in cursor:
            read.seen = set()
        while True:
            limit: int | None
            if mode == "keyset":
                if copy:
                    query = window.scan(cursor.get("ck"), keys_only=False)
                else:
                    after = (cursor["cu"], cursor["ck"]) if "cu" in cursor else None
                    query = window.updated(cursor["lower"], FAR, after)
                sql, params, limit = query.sql, query.params, query.chunk
            elif mode == "newest":
                assert newest_sql is not None
                limit = page
                sql, params = newest_sql, {"n": page, "k": newest_offset}
                newest_offset += page
            elif mode == "paged":
                offset = int(cursor.get("offset", 0))
                if offset:  # resumed: from the page after the last committed one
                    limit = page
                    sql, params = paged_sql, {"n": limit, "k": offset}
                else:  # from the start: one statement, its pages fetched in parallel
                    limit = None
                    sql, params = self._whole[(spec.name, not copy, bool(children))], {}
                if not copy:
                    params["lower"] = cursor["lower"]
            else:  # one ordered read, resumed after the last committed (updated, key)
                query = (
                    window.scan(None, keys_only=False)
                    if copy
                    else window.updated(cursor["lower"], FAR, None)
                )
                sql, params, limit = query.sql, query.params, None
            skip = (
                (cursor.get("cu"), cursor["ck"]) if mode == "ordered" and "ck" in cursor else None
            )
            result = run(self.connection, sql, params)
            columns = [c.name for c in result.columns]
            read.columns = columns
            seen = 0
            older = False
            pending: list[tuple[Any, ...]] = []
            try:
                for row in result:
                    seen += 1
                    if skip is not None and _le(read.position(row), skip):
                        continue
                    if lower is not None and _older(read.position(row)[0], lower):
                        older = True  # the rest of the page, and the pages after, are older
                        continue
                    pending.append(row)
                    if len(pending) >= page:
                        self._commit_page(read, pending, last=False)
                        pending = []
            finally:
                result.close()
            last = limit is None or seen < limit or older
            self._commit_page(read, pending, last=last)
            if last:
                break
        if copy:
            outcome.copied += read.count
            if read.seen is not None and state.cursor is None:
                self._forget_unseen(spec, state, shape, read.seen, outcome)
        else:
            outcome.upserted += read.count
        if mode == "newest":
            self._newest_pages[spec.name] = (newest_offset // page, watermark_before)
        if mode != "paged" and not copy and spec.deletes == "api":
            found = self._tombstones(spec, state, None)
            with self.target.transaction() as batch:
                self._apply(batch, spec, state, found, outcome)
                batch.save(state)
        position = state.position()
        return position is None or position.get("phase") != phase

    def _commit_page(self, read: _Read, rows: list[tuple[Any, ...]], *, last: bool) -> None:
        """A page's rows, the position after them (and at the end of the read the new
        watermark, and for a paged read the tombstones that prove it), in one transaction."""
        spec, state, cursor = read.spec, read.state, read.cursor
        if not rows and not last:
            return
        if rows and read.seen is not None:
            key_at = read.columns.index(spec.key)
            match = read.columns.index(MATCH) if MATCH in read.columns else None
            read.seen.update(str(r[key_at]) for r in rows if match is None or r[match])
        if rows:
            if read.mode == "paged":
                cursor["offset"] = int(cursor.get("offset", 0)) + len(rows)
            elif read.mode == "newest":
                pass  # resumed from the newest row again: offsets shift as rows change
            else:
                cursor["cu"], cursor["ck"] = read.position(rows[-1])
                if cursor["cu"] is None:
                    del cursor["cu"]
            read.count += len(rows)
        cursor["began"] = cursor.get("began") or self._began(read.mark)
        cursor["pages"] = int(cursor.get("pages", 0)) + 1
        tombstones = (
            self._tombstones(spec, state, cursor) if last and read.mode == "paged" else None
        )
        if last:
            before = state.watermark
            self._finish(spec, state, cursor, read.copy)
            if tombstones is not None and not tombstones.proves(cursor):
                if not read.copy:
                    state.watermark = before
                state.cursor = json.dumps({"phase": cursor["phase"]})
                read.outcome.notes.append(
                    f"rows were deleted during the paged {cursor['phase']}: read again"
                )
        else:
            state.cursor = json.dumps(cursor, default=str)
        with self.target.transaction() as batch:
            read.outcome.deleted += self._write(
                batch, spec, read.shape, read.children, read.columns, rows
            )
            if tombstones is not None:
                self._apply(batch, spec, state, tombstones, read.outcome)
            batch.save(state)
        self.progress(
            spec.name,
            cursor["phase"],
            read.count + (read.outcome.copied if read.copy else read.outcome.upserted),
        )

    def _forget_unseen(
        self, spec: TableSpec, state: SyncState, shape: Shape, seen: set[str], outcome: TableOutcome
    ) -> None:
        """After a whole copy, rows of the replica it did not meet are gone from Sage (or
        no longer meet the filter): deleted, with their lines."""
        gone = [k for k in self.target.keys(shape) if str(k) not in seen]
        # A whole copy met every id: as good as a comparison of the ids, as of its start.
        state.compared = state.copied
        with self.target.transaction() as batch:
            self._delete(batch, spec, gone, outcome)
            batch.save(state)

    def _began(self, mark: int) -> str:
        first = self.clock.first_since(mark)
        if first is None:
            first = self.clock.now()
        assert first is not None, "an answer came without the clock seeing it"
        return iso(_floor(first))

    def _finish(
        self, spec: TableSpec, state: SyncState, cursor: dict[str, Any], copy: bool
    ) -> None:
        """A read reached its end: the watermark moves to its first answer's time less the
        delay (a copy's too: the window then reads what changed while it ran)."""
        began = cursor.get("began")
        if copy:
            state.copied = began
        if began is not None:
            moved = parse_iso(began) - spec.delay
            old = parse_iso(state.watermark) if state.watermark and not copy else None
            state.watermark = iso(max(moved, old) if old else moved)
        state.cursor = None

    # -- writing --------------------------------------------------------------------------

    def _write(
        self,
        batch: Batch,
        spec: TableSpec,
        shape: Shape,
        children: list[Shape],
        columns: list[str],
        rows: Sequence[tuple[Any, ...]],
    ) -> int:
        """Rows upserted by key (in the engine's stored form); each parent's lines
        replaced by those of its record. The rows removed (they stopped meeting the
        filter)."""
        removed = 0
        if MATCH in columns:  # the filter as a column: rows failing it are not kept
            match = columns.index(MATCH)
            failing = [r[columns.index(spec.key)] for r in rows if not r[match]]
            if failing:  # no longer meeting it: out of the replica, with their lines
                for child in children:
                    assert child.parent_key is not None
                    batch.delete(child, child.parent_key, failing)
                removed = batch.delete(shape, spec.key, failing)
            rows = [r for r in rows if r[match]]
        if not rows:
            return removed
        noted = self._scales.setdefault(spec.name, {})
        _note_scales(noted.setdefault(shape.name, {}), shape, columns, rows)
        stored = _storer(shape, columns, spec.product)
        flat = [stored(r) for r in rows]
        batch.upsert(shape, flat)
        if not children:
            return removed
        raw_at = columns.index(RECORD_COLUMN)
        records = [json.loads(r[raw_at]) if isinstance(r[raw_at], str) else {} for r in rows]
        key_at = shape.columns.index(spec.key)
        keys = [row[key_at] for row in flat]
        for child in children:
            assert child.table.parent is not None and child.parent_key is not None
            batch.delete(child, child.parent_key, [k for k in keys if k is not None])
            lines_flatten = flattener(child.table, child.columns, noted.setdefault(child.name, {}))
            lines = []
            for record in records:
                found = extract(record, child.table.parent.path)
                for line in found if isinstance(found, list) else []:
                    if isinstance(line, dict):
                        lines.append(lines_flatten(line, record))
            batch.upsert(child, lines)
        return removed

    def _delete(
        self, batch: Batch, spec: TableSpec, keys: Sequence[Any], outcome: TableOutcome
    ) -> None:
        if not keys:
            return
        shape, children = self.shapes(spec)
        for child in children:
            assert child.parent_key is not None
            batch.delete(child, child.parent_key, keys)
        outcome.deleted += batch.delete(shape, spec.key, keys)

    # -- deletions ------------------------------------------------------------------------

    def _tombstones(
        self, spec: TableSpec, state: SyncState, cursor: dict[str, Any] | None
    ) -> Tombstones:
        """The tombstones since the deleted watermark (less the lookback), and since the
        paged read ``cursor`` describes began: they tell whether it is complete."""
        table = spec.table
        deletions = table.deletions
        began = parse_iso(cursor["began"]) if cursor and cursor.get("began") else None
        found = Tombstones([], None, None)
        if spec.deletes != "api" or deletions is None:
            return found
        start_text = state.deleted_watermark or (iso(began) if began else state.watermark)
        assert start_text is not None
        start = parse_iso(start_text)
        since = (min(start, began) if began is not None else start) - spec.lookback
        if not deletions.inclusive:
            since -= timedelta(seconds=1)  # deleted_since is exclusive: the second itself too
        mark = self.clock.mark()
        column_type = table.column(deletions.column).type
        for (key, when), _record in deleted(
            table,
            [spec.key, deletions.column],
            self.transport,
            datetime_text(since, spec.product),
            page_size=self._chunk(spec),
        ):
            if key is None:
                continue
            found.keys.append(key)
            stamp = parse_iso(str(from_storage(column_type, when, spec.product))) if when else None
            if stamp is None or found.newest is None or stamp > found.newest:
                found.newest = (
                    stamp if stamp is not None else datetime.max.replace(tzinfo=timezone.utc)
                )
        first = self.clock.first_since(mark)
        if first is not None:
            found.watermark = iso(max(start, _floor(first) - spec.delay))
        return found

    def _apply(
        self,
        batch: Batch,
        spec: TableSpec,
        state: SyncState,
        found: Tombstones,
        outcome: TableOutcome,
    ) -> None:
        self._delete(batch, spec, found.keys, outcome)
        if found.watermark is not None:
            state.deleted_watermark = found.watermark

    def _compare(
        self,
        spec: TableSpec,
        state: SyncState,
        shape: Shape,
        children: list[Shape],
        outcome: TableOutcome,
    ) -> None:
        """The API's ids (keys alone, largest pages) against the replica's keys: keys the
        API no longer has are deleted, keys the replica lacks are read and written."""
        window = self.windows[spec.name]
        possible, _ = window.scan_keyset(keys_only=True)
        if not possible:
            # The API cannot list the ids in order (Accounting's sales_quotes): when the
            # count differs (or at least every compare_every), a whole copy instead, whose
            # end forgets the rows it did not meet. Deleted rows stayed forever.
            if state.copied is not None and self._ids_needed(spec, state, shape):
                state.cursor = json.dumps({"phase": "copy"})
                self._read(spec, state, shape, children, outcome, copy=True)
                outcome.notes.append("deletions looked for by a whole copy")
            return
        if not self._ids_needed(spec, state, shape):
            return
        mark = self.clock.mark()
        api: dict[str, Any] = {}
        cursor: Any = None
        while True:
            query = window.scan(cursor, keys_only=True)
            columns, rows = self._rows(query.sql, query.params)
            at = columns.index(spec.key)
            match = columns.index(MATCH) if query.flagged else None
            for r in rows:
                if match is None or r[match]:
                    api[str(r[at])] = r[at]
            if query.chunk is None or len(rows) < query.chunk:
                break
            cursor = rows[-1][at]
        have = {str(k): k for k in self.target.keys(shape)}
        gone = [have[k] for k in have.keys() - api.keys()]
        missing = [api[k] for k in api.keys() - have.keys()]
        state.compared = self._began(mark)
        pages, before = self._newest_pages.pop(spec.name, (0, None))
        if gone and pages > 1:
            # A deletion while the newest-first pages were read shifts the later ones
            # up a row, past the read: the next run reads the window again.
            state.watermark = before
            outcome.notes.append("rows were deleted during the window's pages: read again")
        with self.target.transaction() as batch:
            self._delete(batch, spec, gone, outcome)
            batch.save(state)
        if state.copied is None:
            return  # started --since: the replica holds the rows changed since then only
        for start in range(0, len(missing), 50):
            self._fetch_keys(spec, shape, children, missing[start : start + 50], outcome)

    def _ids_needed(self, spec: TableSpec, state: SyncState, shape: Shape) -> bool:
        """Whether this run compares the ids in full (pages of ids), or one count shows
        there is nothing to find.

        After the window, the replica holds every row the API has (its changes and new
        rows were read), plus the deleted ones: the API's count (one request: Sage 200's
        $count, CRM's total) equal to the replica's says nothing was deleted, unless as
        many rows became visible later than the lookback as were deleted, which the full
        comparison at least every ``compare_every`` (and every --full copy) catches. A
        count that differs, a filter the API cannot count, a replica started --since (it
        holds recent rows only) or no recent comparison: the ids are compared."""
        if state.copied is None or state.compared is None:
            return True
        now = self.clock.now()
        if now is None or parse_iso(state.compared) + self.compare_every <= now:
            return True
        sql = self._count_sql(spec)
        if sql is None:
            return True
        _, rows = self._rows(sql, {})
        return int(rows[0][0]) != self.target.count(shape)

    def _count_sql(self, spec: TableSpec) -> str | None:
        """``SELECT count(*) FROM t [WHERE filter]`` when the API's own total answers it
        (one request), else None."""
        if spec.name not in self._counts:
            select = exp.select("count(*)").from_(
                exp.table_(exp.to_identifier(spec.table.name, quoted=True))
            )
            if spec.filter:
                select = select.where(exp.paren(condition(spec.filter)), copy=False)
            sql = select.sql(READ_DIALECT)
            plan = prepare(planning_connection(self.connection.catalog, spec.product), sql)
            self._counts[spec.name] = sql if plan.count_only else None
        return self._counts[spec.name]

    def _fetch_keys(
        self,
        spec: TableSpec,
        shape: Shape,
        children: list[Shape],
        keys: Sequence[Any],
        outcome: TableOutcome,
    ) -> None:
        """Rows the id set has and the replica lacks (late-visible beyond the lookback)."""
        values = [exp.Placeholder(this=f"k{i}") for i in range(len(keys))]
        select = (
            exp.select(exp.Star(), _column(RECORD_COLUMN))
            .from_(exp.table_(exp.to_identifier(spec.table.name, quoted=True)))
            .where(exp.In(this=_column(spec.key), expressions=values))
        )
        params = {f"k{i}": k for i, k in enumerate(keys)}
        columns, rows = self._rows(select.sql(READ_DIALECT), params)
        with self.target.transaction() as batch:
            outcome.deleted += self._write(batch, spec, shape, children, columns, rows)
        outcome.upserted += len(rows)


def _older(updated: Any, lower: datetime) -> bool:
    """A row's updated value (the engine's ISO text) before the window's lower bound."""
    return updated is not None and parse_iso(str(updated)) < lower


def _le(a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
    """(updated, key) a at or before b (None updated: key order alone)."""
    if a[0] is not None and b[0] is not None and a[0] != b[0]:
        return str(a[0]) < str(b[0])
    ka, kb = a[1], b[1]
    if isinstance(ka, int) and isinstance(kb, int):
        return ka <= kb
    return str(ka) <= str(kb)
