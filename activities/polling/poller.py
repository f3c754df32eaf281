"""A poll cycle: for each table, the changes since its watermark become events in the outbox.

Per table and cycle (window.py has the queries)::

    upper  = server now - delay          frozen when the table's turn starts
    lower  = watermark - lookback        rows that became visible late are read again
    rows   = the window, ORDER BY updated, key (each with its record as the API sent it)
    events = rows whose (key, updated) was not emitted yet; CREATED or UPDATED
    commit = the events' messages, their marks and the new watermark, in one transaction

A table's first cycle without a configured ``start`` reads nothing: it sets the
watermark, and the baseline, to the server's now (minus the delay). The lookback
of later cycles reaches behind the baseline, but a change at or before it is never
emitted: it happened before polling began.

The watermark then moves to ``upper`` (never past the server's time as the first
answer of the read gave it, minus the delay: a server whose clock was set back cannot
push it into its future). A crash before the commit leaves the old watermark and no
messages: the next run reads the same rows again. Keyset chunks commit their events
and marks as they go and the watermark with the last one.

A window read in one query paged by the API (Sage Accounting) is complete only if no
row left it while the pages were read: a row deleted from an earlier page shifts the
later ones, and one is skipped at the page boundary. If the read took one request,
or the table reports deletions and none happened since the read began, the window is
complete. Otherwise the watermark only moves to the previous cycle's upper bound:
every window is then read by two cycles before the watermark passes it (the marks
keep the second read from repeating events).

Deletions: where the API reports them (``deleted_since``, exclusive) a second
watermark reads the tombstones the same way (lookback, marks, frozen upper bound)
and yields DELETED events. Elsewhere (``deletes = "compare"``) the ids are scanned
every third cycle (or every ``compare_every``), keys only and in the largest pages
the API allows, and ids that vanished since the last scan (or since they were
emitted) become DELETED. Tables without an updated-date column are compared by
snapshot: every row read, hashed and compared with the last cycle's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Protocol

import requests

from sagesql.activities.polling.clock import ServerClock
from sagesql.activities.polling.config import COMPARE_EVERY_CYCLES, PollConfig
from sagesql.activities.polling.events import (
    CREATED,
    DELETED,
    MARK_DELETE,
    MARK_SNAPSHOT,
    MARK_UPDATE,
    UPDATED,
    Event,
    batch,
    classify,
    json_value,
    make_event,
)
from sagesql.activities.polling.state import Mark, SnapshotChange, StateStore, TableState
from sagesql.activities.polling.tables import SNAPSHOT, TableSpec
from sagesql.activities.polling.timeparse import iso, parse_iso
from sagesql.activities.polling.window import MATCH, Query, Window
from sagesql.connector.seams import Client, Transport
from sagesql.engine.fetch import deleted
from sagesql.engine.names import RECORD_COLUMN
from sagesql.engine.pipeline import run
from sagesql.engine.values import datetime_text, from_storage
from sagesql.errors import Error, OperationalError

log = logging.getLogger("sagesql.poll")

KEYS, ROWS = "keys", "rows"
# How far the server's time may be ahead of the estimate before a window is read again.
STALE = timedelta(seconds=2)


class PollingTransport(Transport, Protocol):
    """The transport as the poller also uses it: the requests it sent (each table's share
    is reported), and its session, whose response hook gives the clock every Date header."""

    sent: int
    session: requests.Session


class PollingClient(Client, Protocol):
    """A client the poller can own: a PollingTransport, and closed with the session."""

    @property
    def transport(self) -> PollingTransport: ...

    def close(self) -> None: ...


@dataclass
class TableResult:
    """What one table's turn in a cycle did."""

    name: str
    kinds: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    watermark: str | None = None
    note: str = ""
    error: str | None = None
    paused: bool = False  # the chunk budget ran out mid-window: it resumes at its cursor

    @property
    def events(self) -> int:
        return sum(self.kinds.values())

    def summary(self) -> str:
        if self.error:
            return f"{self.name}: failed: {self.error}"
        counts = ", ".join(f"{n} {k}" for k, n in sorted(self.kinds.items())) or "no events"
        extra = f"; {self.note}" if self.note else ""
        return f"{self.name}: {counts} ({self.requests} requests){extra}"


@dataclass
class _Read:
    """A read of the updated window."""

    events: list[Event]  # new events not committed yet (the last chunk's, or all)
    committed: Counter[str]  # kinds of the events already committed chunk by chunk
    safe: datetime  # how far the read covers the window
    began: datetime | None  # the server's time at the read's first answer
    requests: int
    chunked: bool


@dataclass
class _Deletions:
    """A read of the tombstones."""

    found: list[Event]  # every tombstone in the window
    fresh: list[Event]  # those not emitted yet
    watermark: datetime


def _floor(value: datetime) -> datetime:
    return value.replace(microsecond=0)


def id_page_size(spec: TableSpec, pagesize: int | None) -> int:
    """Rows per request of an id scan: the API's largest page (the connection's
    Pagesize may cap it; a table's page_size is for whole records)."""
    largest = spec.table.paging.max_page_size
    return min(largest, pagesize) if pagesize else largest


def compare_due(spec: TableSpec, state: TableState, now: datetime) -> bool:
    """Whether this cycle compares the table's id set: the first cycle does, then every
    COMPARE_EVERY_CYCLES cycles, or every ``compare_every`` when that is set."""
    if spec.compare_every is not None:
        return not state.compared_at or now - parse_iso(state.compared_at) >= spec.compare_every
    if state.compared_cycle is None:
        return True
    return state.cycles - state.compared_cycle >= COMPARE_EVERY_CYCLES


def cycles_to_compare(state: TableState | None) -> int:
    """Which coming cycle compares the id set when compared every few cycles (1: the
    next one)."""
    if state is None or state.compared_cycle is None:
        return 1
    return max(1, state.compared_cycle + COMPARE_EVERY_CYCLES - state.cycles)


class _Paused(Exception):
    """The chunk budget of this turn is spent; the window's cursor is committed."""


class Poller:
    """Polls the configured tables of one instance through one connection.

    ``chunk_budget`` bounds the keyset chunks one :meth:`poll` of a table reads (None:
    the whole window): a table mid-backfill then stops at a committed cursor and the
    next poll resumes there, so one huge table cannot hold a worker for long.
    """

    chunk_budget: int | None = None

    def __init__(
        self,
        config: PollConfig,
        specs: Sequence[TableSpec],
        connection: PollingClient,
        store: StateStore,
        *,
        sinks: Sequence[str],
        clock: ServerClock | None = None,
        local_time: Any = time.time,
    ) -> None:
        self.config = config
        self.instance = config.instance_id
        self.specs = list(specs)
        self.connection = connection
        self.store = store
        self.sinks = list(sinks)
        self.clock = clock or ServerClock()
        self._local_time = local_time
        self.transport = connection.transport
        hooks = self.transport.session.hooks.setdefault("response", [])
        if self.clock.hook not in hooks:
            hooks.append(self.clock.hook)
        self.windows = {
            s.name: Window(s, self._chunk(s), connection.catalog, id_chunk=self._id_chunk(s))
            for s in self.specs
        }
        self._json_columns: dict[str, set[str]] = {}
        self.compare: dict[str, bool] = {}
        for spec in self.specs:
            if spec.deletes == "compare":
                possible, _ = self.windows[spec.name].scan_keyset(keys_only=True)
                if not possible:
                    log.warning(
                        "%s: %s cannot be scanned by key in order: deletions are not "
                        "detected (the API reports none)",
                        spec.origin,
                        spec.table.name,
                    )
                self.compare[spec.name] = possible

    def _chunk(self, spec: TableSpec) -> int:
        sizes = [spec.table.paging.max_page_size]
        pagesize = self.connection.settings.pagesize
        if pagesize:
            sizes.append(pagesize)
        if spec.page_size:
            sizes.append(spec.page_size)
        return min(sizes)

    def _id_chunk(self, spec: TableSpec) -> int:
        return id_page_size(spec, self.connection.settings.pagesize)

    # -- the cycle ------------------------------------------------------------------------

    def cycle(self) -> list[TableResult]:
        """One pass over every table; a table that fails is reported and retried next time."""
        results = []
        for spec in self.specs:
            results.append(self.poll(spec))
        return results

    def poll(self, spec: TableSpec) -> TableResult:
        result = TableResult(spec.name)
        sent = self._sent = self.transport.sent
        try:
            self._ensure_time(spec)
            state = self.store.load(self.instance, spec.name)
            if spec.mode == SNAPSHOT:
                self._snapshot(spec, state, result)
            else:
                self._window(spec, state, result)
                if self.compare.get(spec.name):
                    self._compare(spec, state, result)
        except _Paused:
            result.paused = True
            result.note = "chunk budget spent mid-window: the next poll resumes at the cursor"
        except Error as exc:
            result.error = str(exc)
            state = self.store.load(self.instance, spec.name)
            state.last_error = str(exc)[:500]
            state.last_result = "failed"
            state.last_cycle = iso(_floor(datetime.fromtimestamp(self._local_time(), timezone.utc)))
            state.cycles += 1
            self.store.save(self.instance, state)
            log.warning("%s", result.summary())
        result.requests = self.transport.sent - sent
        if result.error is None:
            # A table with events says so; an idle one only when asked (-v).
            log.log(logging.INFO if result.events else logging.DEBUG, "%s", result.summary())
        return result

    def _ensure_time(self, spec: TableSpec) -> None:
        """Learn the server's time with one small request when no answer was seen yet."""
        if self.clock.known:
            return
        query = self.windows[spec.name].first_key()
        result = run(self.connection, query.sql, query.params)
        try:
            list(result)
        finally:
            result.close()
        if not self.clock.known:
            raise OperationalError(
                "the server sent no Date header: the poller cannot tell the server's time",
                hint="polling by the local clock alone would lose changes; check proxies "
                "that strip the Date header",
            )

    def _server_now(self) -> datetime:
        now = self.clock.now()
        assert now is not None
        return now

    def _finish(self, state: TableState, result: TableResult, now: datetime) -> None:
        result.requests = self.transport.sent - self._sent
        state.cycles += 1
        state.last_cycle = iso(_floor(datetime.fromtimestamp(self._local_time(), timezone.utc)))
        state.last_server_now = iso(_floor(now))
        state.last_error = None
        state.last_result = result.summary().split(": ", 1)[1]
        state.events += result.events
        result.watermark = state.watermark

    def _commit(
        self,
        spec: TableSpec,
        events: Sequence[Event],
        *,
        state: TableState | None = None,
        forget: dict[str, str] | None = None,
        snapshot: SnapshotChange | None = None,
        marks: bool = True,
    ) -> None:
        messages = batch(self.instance, spec.name, events, self.config.delivery.events_per_message)
        if snapshot is None and self.compare.get(spec.name):
            # Rows emitted join the id set, so that a row created and deleted between
            # two comparisons is still reported deleted.
            seen = {e.key: e.object_id for e in events if e.mark == MARK_UPDATE}
            if seen:
                snapshot = SnapshotChange(KEYS, put=seen, taken=False)
        self.store.commit(
            self.instance,
            spec.name,
            messages=messages,
            marks=[Mark(e.mark, e.key, e.stamp) for e in events] if marks else [],
            sinks=self.sinks,
            now=self._local_time(),
            state=state,
            forget=forget,
            snapshot=snapshot,
        )

    def _stamp(self, spec: TableSpec, value: datetime) -> str:
        """An instant in the product's stored form (the marks' stamps compare as text)."""
        return datetime_text(value, spec.product)

    # -- rows -----------------------------------------------------------------------------

    def _rows(self, query: Query) -> tuple[list[str], list[tuple[Any, ...]]]:
        result = run(self.connection, query.sql, query.params)
        try:
            rows = list(result)
        finally:
            result.close()
        return [c.name for c in result.columns], rows

    def _record(
        self, spec: TableSpec, columns: Sequence[str], row: Sequence[Any]
    ) -> dict[str, Any]:
        """A row as JSON values: JSON columns parsed, Decimal as numbers. Snapshots hash
        it rather than the API's record, which may change while the row does not (CRM's
        ``$url`` names the host it was read through)."""
        json_columns = self._json_columns.get(spec.name)
        if json_columns is None:
            json_columns = {c.name for c in spec.table.columns if c.type == "JSON"}
            self._json_columns[spec.name] = json_columns
        record: dict[str, Any] = {}
        for name, value in zip(columns, row, strict=True):
            if name in (MATCH, RECORD_COLUMN):
                continue
            if isinstance(value, str):
                if name in json_columns:
                    with contextlib.suppress(ValueError):
                        value = json.loads(value)
            elif isinstance(value, Decimal):
                value = json_value(value)
            record[name] = value
        return record

    @staticmethod
    def _raw(text: Any) -> dict[str, Any]:
        """A row's record as the API returned it, from the record column's JSON text."""
        raw = json.loads(text) if isinstance(text, str) else None
        return raw if isinstance(raw, dict) else {}

    @staticmethod
    def _key_record(spec: TableSpec, key: str, object_id: str | None = None) -> dict[str, Any]:
        """The key (and id, when known) as the API spells them (``{"id": 12}``): all
        that is left of a record found gone by comparing ids or snapshots."""
        record: dict[str, Any] = {}
        fields = [(spec.key, key)]
        if object_id is not None and spec.id_field != spec.key:
            fields.append((spec.id_field, object_id))
        for name, text in fields:
            column = spec.table.column(name)
            value: Any = text
            if column.type == "INTEGER":
                with contextlib.suppress(ValueError):
                    value = int(text)
            node = record
            for part in column.path[:-1]:
                node = node.setdefault(part, {})
            node[column.path[-1]] = value
        return record

    def _row_events(
        self,
        spec: TableSpec,
        columns: list[str],
        rows: Sequence[Sequence[Any]],
        flagged: bool,
        baseline: datetime | None,
    ) -> list[Event]:
        at = {name: i for i, name in enumerate(columns)}
        upd, key, oid = at[spec.updated or ""], at[spec.key], at[spec.id_field]
        raw = at[RECORD_COLUMN]
        created = at.get(spec.created) if spec.created else None
        match = at.get(MATCH) if flagged else None
        events = []
        for row in rows:
            if match is not None and not row[match]:
                continue
            stamp = row[upd]
            if stamp is None:
                continue
            updated_at = parse_iso(str(stamp))
            if baseline is not None and updated_at <= baseline:
                continue  # changed before polling began
            created_at = (
                parse_iso(str(row[created])) if created is not None and row[created] else None
            )
            events.append(
                make_event(
                    self.instance,
                    spec.name,
                    classify(created_at, updated_at, spec.tolerance),
                    object_id=row[oid],
                    key=row[key],
                    mark=MARK_UPDATE,
                    stamp=str(stamp),
                    date=str(stamp),
                    raw=self._raw(row[raw]),
                )
            )
        return events

    def _fresh(self, spec: TableSpec, events: list[Event]) -> list[Event]:
        """The events not emitted before, in order (and each (key, stamp) once)."""
        if not events:
            return []
        unseen = self.store.unseen(
            self.instance, spec.name, [Mark(e.mark, e.key, e.stamp) for e in events]
        )
        out: list[Event] = []
        for e in events:
            mark = Mark(e.mark, e.key, e.stamp)
            if mark in unseen:
                unseen.discard(mark)
                out.append(e)
        return out

    # -- the window of updated rows --------------------------------------------------------

    def _window(self, spec: TableSpec, state: TableState, result: TableResult) -> None:
        now = self._server_now()
        upper = _floor(now) - spec.delay
        if state.watermark is None:
            start = self.config.start
            begin = _floor(start) if start is not None else upper
            state.watermark = state.deleted_watermark = iso(begin)
            if start is None:
                state.baseline = iso(begin)
                result.note = f"started at {iso(begin)}"
                self._finish(state, result, now)
                self._commit(spec, [], state=state)
                return
        watermark = parse_iso(state.watermark)
        resume = json.loads(state.cursor) if state.cursor else None
        if resume is not None:
            # A window a failure interrupted: go on from its last committed row.
            upper = parse_iso(resume["upper"])
        for attempt in range(2):
            # Read even when our estimate of the server's time has not passed the
            # watermark (its clock was set back, or ours ran slow): the answer's Date
            # corrects the estimate.
            upper = max(upper, watermark)
            updates = self._read_updates(
                spec, state, self._lower(spec, state, watermark), upper, resume
            )
            resume = None
            began = updates.began
            if attempt or began is None or _floor(began) - spec.delay <= upper + STALE:
                break
            # The server's clock is well ahead of the estimate that froze the window (it
            # jumped, or we had not heard from it for long): read again up to its time.
            self._commit(spec, updates.events)
            result.kinds.update(e.kind for e in updates.events)
            result.kinds.update(updates.committed)
            now = self._server_now()
            upper = _floor(now) - spec.delay
        deletions = self._read_deletions(spec, state, upper)
        proven = updates.chunked or updates.requests <= 1
        if not proven and deletions is not None and updates.began is not None:
            # A paged read is complete if nothing left the window while it ran: rows
            # only leave it by changing (they are then after ``upper``) or by deletion.
            began = updates.began - timedelta(seconds=1)
            proven = not any(parse_iso(e.stamp) >= began for e in deletions.found)
        self._advance(state, watermark, updates.safe, proven)
        if not proven:
            result.note = "the paged read is not proven complete: read again next cycle"
        events = updates.events + (deletions.fresh if deletions else [])
        forget = self._forget(spec, state.watermark, MARK_UPDATE)
        if deletions is not None:
            state.deleted_watermark = iso(deletions.watermark)
            forget.update(self._forget(spec, state.deleted_watermark, MARK_DELETE))
        result.kinds.update(e.kind for e in events)
        result.kinds.update(updates.committed)
        self._finish(state, result, now)
        self._commit(spec, events, state=state, forget=forget)

    @staticmethod
    def _lower(spec: TableSpec, state: TableState, watermark: datetime) -> datetime:
        """The window's lower bound: the lookback behind the watermark, never before the
        baseline (what changed before polling began is not read, let alone emitted)."""
        lower = watermark - spec.lookback
        return max(lower, parse_iso(state.baseline)) if state.baseline else lower

    def _read_updates(
        self,
        spec: TableSpec,
        state: TableState,
        lower: datetime,
        upper: datetime,
        resume: dict[str, Any] | None,
    ) -> _Read:
        """The window's new events; keyset chunks commit as they go (with the cursor)."""
        window = self.windows[spec.name]
        chunked, _ = window.keyset
        mark = self.clock.mark()
        sent = self.transport.sent
        lower_text, upper_text = iso(lower), iso(upper)
        committed: Counter[str] = Counter()
        baseline = parse_iso(state.baseline) if state.baseline else None
        cursor: tuple[Any, Any] | None = None
        if resume is not None and chunked:
            cursor = (resume["updated"], resume["key"])
        chunks = 0
        while True:
            query = window.updated(lower_text, upper_text, cursor)
            columns, rows = self._rows(query)
            events = self._row_events(spec, columns, rows, query.flagged, baseline)
            fresh = self._fresh(spec, events)
            if query.chunk is None or len(rows) < query.chunk:
                break
            at = {name: i for i, name in enumerate(columns)}
            cursor = (rows[-1][at[spec.updated or ""]], rows[-1][at[spec.key]])
            # The chunk's events and the cursor after it, together: a failure later in
            # the window resumes here, and never emits these again.
            state.cursor = json.dumps(
                {"upper": upper_text, "updated": cursor[0], "key": cursor[1]}, default=str
            )
            self._commit(spec, fresh, state=state)
            committed.update(e.kind for e in fresh)
            chunks += 1
            if self.chunk_budget is not None and chunks >= self.chunk_budget:
                raise _Paused
        state.cursor = None
        began = self.clock.first_since(mark)
        # Never past the server's time at the read's first answer (minus the delay).
        safe = upper if began is None else min(upper, _floor(began) - spec.delay)
        return _Read(fresh, committed, safe, began, self.transport.sent - sent, chunked)

    def _advance(
        self, state: TableState, watermark: datetime, safe: datetime, proven: bool
    ) -> None:
        """Move the watermark to ``safe``; after an unproven read, to the previous one's."""
        if proven:
            state.watermark = iso(max(watermark, safe))
            state.held_upper = None
            return
        previous = parse_iso(state.held_upper) if state.held_upper else watermark
        state.watermark = iso(max(watermark, min(previous, safe)))
        state.held_upper = iso(max(safe, watermark))

    def _forget(self, spec: TableSpec, watermark: str | None, kind: str) -> dict[str, str]:
        """Marks older than the next window's lower bound (a second's margin) can go."""
        if watermark is None:
            return {}
        before = parse_iso(watermark) - spec.lookback - timedelta(seconds=1)
        return {kind: self._stamp(spec, before)}

    # -- deletions the API reports ----------------------------------------------------------

    def _read_deletions(
        self, spec: TableSpec, state: TableState, upper: datetime
    ) -> _Deletions | None:
        """DELETED events from ``deleted_since`` (None when not polled that way)."""
        table = spec.table
        deletions = table.deletions
        if spec.deletes != "api" or deletions is None:
            return None
        start = parse_iso(state.deleted_watermark or state.watermark or iso(upper))
        since = start - spec.lookback
        baseline = parse_iso(state.baseline) if state.baseline else None
        if baseline is not None:
            since = max(since, baseline)  # deletions before polling began are not wanted
        if deletions.inclusive:
            since += timedelta(seconds=1)
        mark = self.clock.mark()
        deletions_type = table.column(deletions.column).type
        found: list[Event] = []
        tombstones = deleted(
            table,
            [spec.key, deletions.column, spec.id_field],
            self.transport,
            datetime_text(since, spec.product),
            page_size=self._chunk(spec),
        )
        for (key, deleted_text, object_id), record in tombstones:
            if key is None:
                continue
            if deleted_text:
                # The stored form back as the product writes it, like every stamp.
                stamp = str(from_storage(deletions_type, deleted_text, spec.product))
                if parse_iso(stamp) > upper:
                    continue  # the next cycle's
                if baseline is not None and parse_iso(stamp) <= baseline:
                    continue
            else:
                stamp = self._stamp(spec, upper)  # a tombstone that does not say when
            found.append(
                make_event(
                    self.instance,
                    spec.name,
                    DELETED,
                    object_id=object_id if object_id is not None else key,
                    key=key,
                    mark=MARK_DELETE,
                    stamp=stamp,
                    date=stamp,
                    raw=record,
                )
            )
        found.sort(key=lambda e: (e.stamp, e.key))
        first = self.clock.first_since(mark)
        safe = upper if first is None else min(upper, _floor(first) - spec.delay)
        return _Deletions(found, self._fresh(spec, found), max(start, safe))

    # -- id sets (tables whose API reports no deletions) ------------------------------------

    def _scan(self, spec: TableSpec, *, keys_only: bool) -> tuple[list[str], list[tuple[Any, ...]]]:
        window = self.windows[spec.name]
        cursor: Any = None
        all_rows: list[tuple[Any, ...]] = []
        columns: list[str] = []
        while True:
            query = window.scan(cursor, keys_only=keys_only)
            columns, rows = self._rows(query)
            if query.flagged:
                match = columns.index(MATCH)
                all_rows.extend(r for r in rows if r[match])
            else:
                all_rows.extend(rows)
            if query.chunk is None or len(rows) < query.chunk:
                return columns, all_rows
            cursor = rows[-1][columns.index(spec.key)]

    def _compare(self, spec: TableSpec, state: TableState, result: TableResult) -> None:
        now = self._server_now()
        if not compare_due(spec, state, now):
            return
        columns, rows = self._scan(spec, keys_only=True)
        at, ident = columns.index(spec.key), columns.index(spec.id_field)
        current = {str(r[at]): str(r[ident]) for r in rows}
        previous = self.store.snapshot(self.instance, spec.name, KEYS)
        state.compared_at = iso(_floor(now))
        state.compared_cycle = state.cycles
        events: list[Event] = []
        if previous is not None:
            stamp = self._stamp(spec, _floor(now))
            for key in sorted(set(previous) - set(current)):
                events.append(
                    make_event(
                        self.instance,
                        spec.name,
                        DELETED,
                        object_id=previous[key],
                        key=key,
                        mark=MARK_DELETE,
                        stamp=stamp,
                        date=stamp,
                        raw=self._key_record(spec, key, previous[key]),
                    )
                )
        result.kinds.update(e.kind for e in events)
        state.events += len(events)
        self._commit(
            spec,
            events,
            state=state,
            snapshot=SnapshotChange(KEYS, put=current, replace=True),
            marks=False,
        )

    # -- snapshots (tables without an updated-date column) ----------------------------------

    def _snapshot(self, spec: TableSpec, state: TableState, result: TableResult) -> None:
        now = self._server_now()
        columns, rows = self._scan(spec, keys_only=False)
        at = {name: i for i, name in enumerate(columns)}
        key_at, id_at, raw_at = at[spec.key], at[spec.id_field], at[RECORD_COLUMN]
        current: dict[str, str] = {}
        records: dict[str, tuple[Any, dict[str, Any]]] = {}
        for row in rows:
            record = self._record(spec, columns, row)
            digest = hashlib.sha256(
                json.dumps(record, sort_keys=True, default=str).encode("utf-8")
            ).hexdigest()[:32]
            key = str(row[key_at])
            current[key] = digest
            records[key] = (row[id_at], self._raw(row[raw_at]))
        previous = self.store.snapshot(self.instance, spec.name, ROWS)
        date = self._stamp(spec, _floor(now))
        events: list[Event] = []
        if previous is None and self.config.start is None:
            result.note = f"snapshot of {len(current)} rows taken"
        else:
            previous = previous or {}
            for key, digest in current.items():
                old = previous.get(key)
                if old == digest:
                    continue
                object_id, raw = records[key]
                events.append(
                    make_event(
                        self.instance,
                        spec.name,
                        CREATED if old is None else UPDATED,
                        object_id=object_id,
                        key=key,
                        mark=MARK_SNAPSHOT,
                        stamp=digest,
                        date=date,
                        raw=raw,
                    )
                )
            for key in sorted(set(previous) - set(current)):
                events.append(
                    make_event(
                        self.instance,
                        spec.name,
                        DELETED,
                        object_id=key,
                        key=key,
                        mark=MARK_DELETE,
                        stamp=previous[key],
                        date=date,
                        raw=self._key_record(spec, key),
                    )
                )
        result.kinds.update(e.kind for e in events)
        result.note = (result.note + "; " if result.note else "") + (
            f"snapshot comparison read {len(rows)} rows"
        )
        self._finish(state, result, now)
        state.watermark = state.last_server_now
        self._commit(
            spec,
            events,
            state=state,
            snapshot=SnapshotChange(ROWS, put=current, replace=True),
            marks=False,
        )
