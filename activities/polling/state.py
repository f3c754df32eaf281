"""The poller's state store: watermarks, marks, snapshots and the outbox, behind one interface.

Everything a poller must not forget lives here, scoped by instance (one configured
poller) and table name:

- per table, the watermarks (updated and deleted), the last cycle and its result;
- the marks of changes already emitted, ``(kind, key, stamp)``, kept while they can
  still be read again (the lookback), so a row re-read is never emitted twice;
- snapshots (key -> content hash, or keys only) of tables compared by snapshot;
- the outbox: messages, and one delivery per (message, sink) that is pending,
  waiting for a retry, or parked as a dead letter; lanes (table, sink) remember
  when their current run of failures began.

The one rule the implementations keep: :meth:`StateStore.commit` writes the events'
messages, their marks, the snapshot changes and the new watermarks in ONE
transaction, so a crash leaves either all of a cycle's step or none of it. The
SQLite implementation (:mod:`sqlite_state`) is the default; a server database can
take its place for many instances polled from several machines (ARCHITECTURE.md,
"Polling").
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sagesql.activities.polling.events import Message

PENDING, DEAD = "pending", "dead"


@dataclass
class TableState:
    """What a poller knows of one table between cycles."""

    name: str
    watermark: str | None = None  # rows updated before this were all emitted (UTC ISO)
    deleted_watermark: str | None = None  # the same for deletions
    # Polling began here (the first cycle's upper bound, when it starts at the server's
    # now): changes at or before it are never emitted, though the lookback reads them.
    baseline: str | None = None
    held_upper: str | None = None  # an upper bound read once by an unproven window
    cursor: str | None = None  # a keyset window read in part: {"upper", "updated", "key"}
    compared_at: str | None = None  # server time of the last id-set comparison
    compared_cycle: int | None = None  # the cycle (``cycles``) of that comparison
    last_cycle: str | None = None  # local UTC time the last cycle of the table ended
    last_server_now: str | None = None  # the server's time then
    last_result: str | None = None
    last_error: str | None = None
    cycles: int = 0
    events: int = 0


@dataclass(frozen=True)
class Mark:
    """A change already emitted: its kind of watermark, the row's key and its time/hash."""

    kind: str
    key: str
    stamp: str


@dataclass(frozen=True)
class SnapshotChange:
    """Rows (key -> hash) to store or drop in a table's snapshot of one kind."""

    kind: str  # "rows" (content hashes) or "keys" (id sets)
    put: Mapping[str, str] = field(default_factory=dict)
    drop: Sequence[str] = ()
    replace: bool = False  # drop every other key of the snapshot first
    taken: bool = True  # a full scan: the snapshot exists from now on (else only updates)


@dataclass(frozen=True)
class Delivery:
    """One message to one sink, as the deliverer sees it."""

    seq: int
    message_id: str
    table: str
    sink: str
    state: str
    attempts: int
    next_at: float
    events: list[dict[str, Any]]
    last_error: str | None = None


@dataclass(frozen=True)
class Lane:
    """The deliveries of one table to one sink: in order, one at a time."""

    table: str
    sink: str
    failing_since: float | None = None
    delivered: int = 0
    last_delivered: float | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class TableStatus:
    """What ``sagesql poll status`` shows for one table."""

    state: TableState
    pending: int
    dead: int
    oldest_pending: float | None  # local time the oldest pending message was written
    delivered: int
    last_delivery_error: str | None


# -- what the stores share: rows to and from these records -------------------------------

STATE_FIELDS = [f for f in TableState.__dataclass_fields__ if f != "name"]  # poll_tables


def state_from_row(table: str, row: Sequence[Any] | None) -> TableState:
    """A table's state from its ``poll_tables`` columns (:data:`STATE_FIELDS`, in that
    order); None: never stored."""
    if row is None:
        return TableState(table)
    values = dict(zip(STATE_FIELDS, row, strict=True))
    values["cycles"] = values["cycles"] or 0
    values["events"] = values["events"] or 0
    return TableState(table, **values)


def rewound(state: TableState, since: str | None) -> TableState:
    """The table's state after a reset to ``since``: watermarks there, everything read
    since forgotten. No baseline: rewound on purpose, what changed since then is wanted."""
    return replace(
        state,
        watermark=since,
        deleted_watermark=since,
        held_upper=None,
        cursor=None,
        compared_at=None,
        compared_cycle=None,
        baseline=None,
        last_result=f"reset to {since}" if since else "reset",
        last_error=None,
    )


def keys_by_kind(marks: Collection[Mark], chunk: int) -> Iterator[tuple[str, list[str]]]:
    """The marks' keys per kind, unique and sorted, at most ``chunk`` at a time: one
    lookup of ``poll_marks`` each."""
    by_kind: dict[str, set[str]] = {}
    for mark in marks:
        by_kind.setdefault(mark.kind, set()).add(mark.key)
    for kind, keys in by_kind.items():
        unique = sorted(keys)
        for start in range(0, len(unique), chunk):
            yield kind, unique[start : start + chunk]


def deliveries_query(where: str, limit: int | None = None) -> str:
    """The deliveries matching ``where`` (over ``d``, poll_deliveries), with their
    messages' events, in order: rows for :func:`delivery_from_row`."""
    sql = (
        "SELECT d.seq, d.message_id, d.name, d.sink, d.state, d.attempts, d.next_at, "
        "m.events, d.last_error FROM poll_deliveries AS d "
        "JOIN poll_messages AS m ON m.message_id = d.message_id "
        f"WHERE {where} ORDER BY d.seq"
    )
    return sql if limit is None else f"{sql} LIMIT {int(limit)}"


def delivery_from_row(row: Sequence[Any]) -> Delivery:
    seq, mid, name, sink, state, attempts, next_at, events, error = row
    return Delivery(seq, mid, name, sink, state, attempts, next_at, json.loads(events), error)


def lanes_query(where: str = "") -> str:
    """The lanes with pending deliveries of instance ``:i`` (``:p`` is PENDING), with
    their counters; ``where`` narrows the deliveries (``AND ...``)."""
    return (
        "SELECT d.name, d.sink, l.failing_since, coalesce(l.delivered, 0), "
        "l.last_delivered, l.last_error FROM "
        "(SELECT DISTINCT name, sink FROM poll_deliveries "
        f" WHERE instance = :i AND state = :p{where}) AS d "
        "LEFT JOIN poll_lanes AS l "
        "ON l.instance = :i AND l.name = d.name AND l.sink = d.sink "
        "ORDER BY d.name, d.sink"
    )


def table_statuses(
    tables: Sequence[str],
    run: Callable[[str], Iterable[Sequence[Any]]],
    load: Callable[[str], TableState],
) -> list[TableStatus]:
    """``status``: ``run`` answers a query about instance ``:i`` (in one transaction),
    ``load`` a table's state; ``tables`` (the configured ones) first, then the others
    the store knows."""
    counts: dict[tuple[str, str], tuple[int, float | None]] = {}
    for name, state, count, oldest in run(
        "SELECT name, state, count(*), min(created) FROM poll_deliveries "
        "WHERE instance = :i GROUP BY name, state"
    ):
        counts[(name, state)] = (int(count), oldest)
    lanes: dict[str, tuple[int, str | None]] = {}
    for name, delivered, error, failing in run(
        "SELECT name, sum(coalesce(delivered, 0)), max(last_error), max(failing_since) "
        "FROM poll_lanes WHERE instance = :i GROUP BY name"
    ):
        lanes[name] = (int(delivered or 0), error if failing is not None else None)
    known = [r[0] for r in run("SELECT name FROM poll_tables WHERE instance = :i ORDER BY name")]
    out = []
    for name in dict.fromkeys([*tables, *known]):
        pending, oldest = counts.get((name, PENDING), (0, None))
        dead, _ = counts.get((name, DEAD), (0, None))
        delivered, error = lanes.get(name, (0, None))
        out.append(TableStatus(load(name), pending, dead, oldest, delivered, error))
    return out


class StateStore(ABC):
    """The interface a poller and its deliverer use; every method is one transaction."""

    # -- tables ---------------------------------------------------------------------------

    @abstractmethod
    def load(self, instance: str, table: str) -> TableState: ...

    @abstractmethod
    def save(self, instance: str, state: TableState) -> None:
        """Store a table's state alone (a failed cycle's error, a reset)."""

    @abstractmethod
    def unseen(self, instance: str, table: str, marks: Sequence[Mark]) -> set[Mark]:
        """Those of ``marks`` not emitted yet."""

    @abstractmethod
    def commit(
        self,
        instance: str,
        table: str,
        *,
        messages: Sequence[Message],
        marks: Sequence[Mark],
        sinks: Sequence[str],
        now: float,
        state: TableState | None = None,
        forget: Mapping[str, str] | None = None,
        snapshot: SnapshotChange | None = None,
    ) -> None:
        """One step of a cycle, atomically.

        Writes ``messages`` to the outbox (one pending delivery per sink), records
        ``marks``, applies ``snapshot``, stores ``state`` (the advanced watermarks)
        and forgets the marks of each kind older than ``forget[kind]``.
        """

    @abstractmethod
    def snapshot(self, instance: str, table: str, kind: str) -> dict[str, str] | None:
        """The stored snapshot (None when none was taken yet)."""

    @abstractmethod
    def reset(self, instance: str, table: str, since: str | None) -> None:
        """Rewind a table: watermarks to ``since``, marks after it and snapshots forgotten."""

    # -- outbox ---------------------------------------------------------------------------

    @abstractmethod
    def lanes(self, instance: str) -> list[Lane]:
        """Lanes with pending deliveries."""

    @abstractmethod
    def pending(self, instance: str, table: str, sink: str, limit: int) -> list[Delivery]:
        """The first pending deliveries of a lane, in order."""

    @abstractmethod
    def delivered(self, delivery: Delivery, now: float) -> None: ...

    @abstractmethod
    def retry(
        self, delivery: Delivery, *, attempts: int, next_at: float, error: str, now: float
    ) -> None:
        """A failed attempt: try again at ``next_at``; its lane fails since ``now`` or earlier."""

    @abstractmethod
    def park(self, delivery: Delivery, *, attempts: int, error: str, now: float) -> None:
        """Give up on a delivery: it becomes a dead letter, kept for replay."""

    @abstractmethod
    def next_due(self, instance: str, skip: Collection[str] = ()) -> float | None:
        """When the earliest pending delivery may be tried (None: nothing pending), the
        lanes of the sinks in ``skip`` aside."""

    @abstractmethod
    def waiting(self, instance: str, sinks: Sequence[str]) -> int:
        """How many deliveries to these sinks are pending (not sent yet, or to retry)."""

    @abstractmethod
    def replay(self, instance: str, table: str | None = None) -> int:
        """Dead letters back to pending, to be sent again in their original order."""

    @abstractmethod
    def dead_letters(self, instance: str, table: str | None = None) -> list[Delivery]: ...

    # -- reporting ------------------------------------------------------------------------

    @abstractmethod
    def status(self, instance: str, tables: Sequence[str]) -> list[TableStatus]: ...

    @abstractmethod
    def close(self) -> None: ...
