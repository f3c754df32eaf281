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

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
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
