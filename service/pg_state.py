"""The PostgreSQL state store: every instance's poll state in one database, fenced by leases.

The same tables as :mod:`~sagesql.activities.polling.sqlite_state` (``poll_tables``,
``poll_marks``, ``poll_snapshots``, ``poll_messages``, ``poll_deliveries``,
``poll_lanes``; created by migrations.py), one set for every instance, and the same
rule: :meth:`PostgresStateStore.commit` writes the messages, their deliveries, the
marks (``INSERT ... ON CONFLICT DO NOTHING``), the snapshot changes and the watermarks
in ONE transaction.

Fencing: a worker polls and delivers an (instance, resource) only while it holds that
row of ``service_schedule`` (schedule.py). It runs the poller inside
:meth:`PostgresStateStore.claimed`, and every write of that resource then locks the
schedule row (``SELECT ... FOR UPDATE``) and checks, in the same transaction, that
the row is still this claim's (owner, fence) and its lease has not expired: a worker
that paused past its lease (GC, a partition, SIGSTOP) and was replaced cannot move a
watermark, add to the outbox or mark a delivery, it gets :class:`LeaseLost`. While a
claim is held, :meth:`lanes` lists only the claimed resource's lanes, so each lane
(resource, sink) is delivered by one worker at a time, in ``seq`` order.

Without a claim (the API: status, events, replay; ``poll`` tools) nothing is fenced.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from sagesql.activities.polling.events import Message, dumps
from sagesql.activities.polling.state import (
    DEAD,
    PENDING,
    STATE_FIELDS,
    Delivery,
    Lane,
    Mark,
    SnapshotChange,
    StateStore,
    TableState,
    TableStatus,
    deliveries_query,
    delivery_from_row,
    keys_by_kind,
    lanes_query,
    rewound,
    state_from_row,
    table_statuses,
)
from sagesql.errors import OperationalError
from sagesql.service.wakeups import DUE, notify

_CHUNK = 1000  # keys per = ANY(...) lookup


class LeaseLost(OperationalError):
    """This worker's claim of an (instance, resource) expired and was taken: nothing it
    would write now may count."""


@dataclass(frozen=True)
class Claim:
    """One worker's hold of an (instance, resource) row of the schedule."""

    instance: str
    resource: str
    owner: str
    fence: int


def _text(sql: str) -> sa.TextClause:
    return sa.text(sql)


class PostgresStateStore(StateStore):
    """The state store in the service's PostgreSQL database (a shared engine)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()

    # -- claims and fencing ---------------------------------------------------------------

    @contextmanager
    def claimed(self, claim: Claim) -> Iterator[None]:
        """Writes of ``claim.resource`` fenced by the claim; lanes limited to it."""
        previous = getattr(self._local, "claim", None)
        self._local.claim = claim
        try:
            yield
        finally:
            self._local.claim = previous

    @property
    def claim(self) -> Claim | None:
        return getattr(self._local, "claim", None)

    def _fence(self, conn: Connection, instance: str, table: str) -> None:
        claim = self.claim
        if claim is None or claim.instance != instance:
            return
        held = conn.execute(
            _text(
                "SELECT 1 FROM service_schedule WHERE instance = :i AND resource = :r "
                "AND owner = :o AND fence = :f AND lease_until > clock_timestamp() FOR UPDATE"
            ),
            {"i": instance, "r": table, "o": claim.owner, "f": claim.fence},
        ).first()
        if held is None:
            raise LeaseLost(
                f"instance {instance}, {table}: this worker's lease expired and another "
                "worker took it; nothing of this cycle was written",
                hint="the other worker polls it from the last commit",
            )

    @contextmanager
    def _tx(self, instance: str, table: str) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            self._fence(conn, instance, table)
            yield conn

    def _read(self) -> Connection:
        return self.engine.connect()

    # -- tables ---------------------------------------------------------------------------

    def load(self, instance: str, table: str) -> TableState:
        with self._read() as conn:
            row = conn.execute(
                _text(
                    f"SELECT {', '.join(STATE_FIELDS)} FROM poll_tables "
                    "WHERE instance = :i AND name = :n"
                ),
                {"i": instance, "n": table},
            ).first()
        return state_from_row(table, row)

    @staticmethod
    def _save(conn: Connection, instance: str, state: TableState) -> None:
        values = asdict(state)
        name = values.pop("name")
        columns = ["instance", "name", *STATE_FIELDS]
        updates = ", ".join(f"{f} = excluded.{f}" for f in STATE_FIELDS)
        conn.execute(
            _text(
                f"INSERT INTO poll_tables ({', '.join(columns)}) "
                f"VALUES ({', '.join(':' + c for c in columns)}) "
                f"ON CONFLICT (instance, name) DO UPDATE SET {updates}"
            ),
            {"instance": instance, "name": name, **{f: values[f] for f in STATE_FIELDS}},
        )

    def save(self, instance: str, state: TableState) -> None:
        with self._tx(instance, state.name) as conn:
            self._save(conn, instance, state)

    def unseen(self, instance: str, table: str, marks: Sequence[Mark]) -> set[Mark]:
        wanted = set(marks)
        if not wanted:
            return set()
        seen: set[Mark] = set()
        with self._read() as conn:
            for kind, part in keys_by_kind(wanted, _CHUNK):
                rows = conn.execute(
                    _text(
                        "SELECT key, stamp FROM poll_marks WHERE instance = :i AND name = :n "
                        "AND kind = :k AND key = ANY(:keys)"
                    ),
                    {"i": instance, "n": table, "k": kind, "keys": part},
                )
                seen.update(Mark(kind, key, stamp) for key, stamp in rows)
        return wanted - seen

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
        with self._tx(instance, table) as conn:
            if messages:
                conn.execute(
                    _text(
                        "INSERT INTO poll_messages VALUES (:m, :i, :n, :c, :e) "
                        "ON CONFLICT (message_id) DO NOTHING"
                    ),
                    [
                        {
                            "m": m.message_id,
                            "i": instance,
                            "n": table,
                            "c": now,
                            "e": dumps(list(m.events)),
                        }
                        for m in messages
                    ],
                )
                if sinks:
                    conn.execute(
                        _text(
                            "INSERT INTO poll_deliveries (message_id, instance, name, sink, state, "
                            "attempts, next_at, last_error, created) "
                            "VALUES (:m, :i, :n, :s, :state, 0, 0, NULL, :c)"
                        ),
                        [
                            {
                                "m": m.message_id,
                                "i": instance,
                                "n": table,
                                "s": sink,
                                "state": PENDING,
                                "c": now,
                            }
                            for m in messages
                            for sink in sinks
                        ],
                    )
            if marks:
                conn.execute(
                    _text(
                        "INSERT INTO poll_marks VALUES (:i, :n, :k, :key, :s) "
                        "ON CONFLICT DO NOTHING"
                    ),
                    [
                        {"i": instance, "n": table, "k": m.kind, "key": m.key, "s": m.stamp}
                        for m in marks
                    ],
                )
            if snapshot is not None:
                self._apply(conn, instance, table, snapshot)
            if forget:  # every kind's old marks in one statement (one per poll otherwise)
                conn.execute(
                    _text(
                        "DELETE FROM poll_marks AS p USING unnest(CAST(:k AS text[]), "
                        "CAST(:b AS text[])) AS f(kind, before) WHERE p.instance = :i "
                        "AND p.name = :n AND p.kind = f.kind AND p.stamp < f.before"
                    ),
                    {"i": instance, "n": table, "k": list(forget), "b": list(forget.values())},
                )
            if state is not None:
                self._save(conn, instance, state)

    @staticmethod
    def _apply(conn: Connection, instance: str, table: str, snapshot: SnapshotChange) -> None:
        where = {"i": instance, "n": table, "k": snapshot.kind}
        if snapshot.replace:
            conn.execute(
                _text("DELETE FROM poll_snapshots WHERE instance = :i AND name = :n AND kind = :k"),
                where,
            )
        if snapshot.drop:
            conn.execute(
                _text(
                    "DELETE FROM poll_snapshots WHERE instance = :i AND name = :n AND kind = :k "
                    "AND key = ANY(:keys)"
                ),
                {**where, "keys": list(snapshot.drop)},
            )
        if snapshot.put:
            conn.execute(
                _text(
                    "INSERT INTO poll_snapshots VALUES (:i, :n, :k, :key, :h) "
                    "ON CONFLICT (instance, name, kind, key) DO UPDATE SET hash = excluded.hash"
                ),
                [{**where, "key": k, "h": h} for k, h in snapshot.put.items()],
            )
        if snapshot.taken:  # an empty snapshot still says "taken": a row that cannot be a key
            conn.execute(
                _text(
                    "INSERT INTO poll_snapshots VALUES (:i, :n, :k, '', '') ON CONFLICT DO NOTHING"
                ),
                where,
            )

    def snapshot(self, instance: str, table: str, kind: str) -> dict[str, str] | None:
        with self._read() as conn:
            rows = list(
                conn.execute(
                    _text(
                        "SELECT key, hash FROM poll_snapshots "
                        "WHERE instance = :i AND name = :n AND kind = :k"
                    ),
                    {"i": instance, "n": table, "k": kind},
                )
            )
        if not any(key == "" for key, _ in rows):
            return None
        return {key: value for key, value in rows if key != ""}

    def reset(self, instance: str, table: str, since: str | None) -> None:
        with self._tx(instance, table) as conn:
            state = rewound(self.load(instance, table), since)
            where = {"i": instance, "n": table}
            if since is None:
                conn.execute(
                    _text("DELETE FROM poll_marks WHERE instance = :i AND name = :n"), where
                )
            else:
                conn.execute(
                    _text(
                        "DELETE FROM poll_marks WHERE instance = :i AND name = :n AND stamp >= :s"
                    ),
                    {**where, "s": since[:19]},
                )
            conn.execute(
                _text("DELETE FROM poll_snapshots WHERE instance = :i AND name = :n"), where
            )
            self._save(conn, instance, state)

    def forget(self, instance: str) -> None:
        """Every row of a deleted instance."""
        with self.engine.begin() as conn:
            for table in (
                "poll_tables",
                "poll_marks",
                "poll_snapshots",
                "poll_deliveries",
                "poll_messages",
                "poll_lanes",
            ):
                conn.execute(_text(f"DELETE FROM {table} WHERE instance = :i"), {"i": instance})

    # -- outbox ---------------------------------------------------------------------------

    def lanes(self, instance: str) -> list[Lane]:
        claim = self.claim
        only = claim.resource if claim is not None and claim.instance == instance else None
        with self._read() as conn:
            rows = conn.execute(
                _text(lanes_query(" AND (CAST(:only AS text) IS NULL OR name = :only)")),
                {"i": instance, "p": PENDING, "only": only},
            )
            return [Lane(*row) for row in rows]

    def _deliveries(
        self, where: str, params: dict[str, Any], limit: int | None = None
    ) -> list[Delivery]:
        with self._read() as conn:
            rows = list(conn.execute(_text(deliveries_query(where, limit)), params))
        return [delivery_from_row(row) for row in rows]

    def pending(self, instance: str, table: str, sink: str, limit: int) -> list[Delivery]:
        return self._deliveries(
            "d.instance = :i AND d.name = :n AND d.sink = :s AND d.state = :p",
            {"i": instance, "n": table, "s": sink, "p": PENDING},
            limit,
        )

    def _instance_of(self, delivery: Delivery) -> str:
        claim = self.claim
        if claim is not None and claim.resource == delivery.table:
            return claim.instance
        with self._read() as conn:
            found = conn.execute(
                _text("SELECT instance FROM poll_deliveries WHERE seq = :s"), {"s": delivery.seq}
            ).scalar()
        return str(found or "")

    def delivered(self, delivery: Delivery, now: float) -> None:
        instance = self._instance_of(delivery)
        with self._tx(instance, delivery.table) as conn:
            conn.execute(_text("DELETE FROM poll_deliveries WHERE seq = :s"), {"s": delivery.seq})
            conn.execute(
                _text(
                    "DELETE FROM poll_messages WHERE message_id = :m AND NOT EXISTS "
                    "(SELECT 1 FROM poll_deliveries WHERE message_id = :m)"
                ),
                {"m": delivery.message_id},
            )
            conn.execute(
                _text(
                    "INSERT INTO poll_lanes VALUES (:i, :n, :s, NULL, 1, :now, NULL) "
                    "ON CONFLICT (instance, name, sink) DO UPDATE SET failing_since = NULL, "
                    "delivered = poll_lanes.delivered + 1, last_delivered = excluded.last_delivered"
                ),
                {"i": instance, "n": delivery.table, "s": delivery.sink, "now": now},
            )

    @staticmethod
    def _failing(
        conn: Connection, instance: str, delivery: Delivery, error: str, now: float
    ) -> None:
        conn.execute(
            _text(
                "INSERT INTO poll_lanes VALUES (:i, :n, :s, :now, 0, NULL, :e) "
                "ON CONFLICT (instance, name, sink) DO UPDATE SET "
                "failing_since = coalesce(poll_lanes.failing_since, excluded.failing_since), "
                "last_error = excluded.last_error"
            ),
            {"i": instance, "n": delivery.table, "s": delivery.sink, "now": now, "e": error[:500]},
        )

    def retry(
        self, delivery: Delivery, *, attempts: int, next_at: float, error: str, now: float
    ) -> None:
        instance = self._instance_of(delivery)
        with self._tx(instance, delivery.table) as conn:
            conn.execute(
                _text(
                    "UPDATE poll_deliveries SET attempts = :a, next_at = :t, last_error = :e "
                    "WHERE seq = :s"
                ),
                {"a": attempts, "t": next_at, "e": error[:500], "s": delivery.seq},
            )
            self._failing(conn, instance, delivery, error, now)

    def park(self, delivery: Delivery, *, attempts: int, error: str, now: float) -> None:
        instance = self._instance_of(delivery)
        with self._tx(instance, delivery.table) as conn:
            conn.execute(
                _text(
                    "UPDATE poll_deliveries SET state = :d, attempts = :a, last_error = :e "
                    "WHERE seq = :s"
                ),
                {"d": DEAD, "a": attempts, "e": error[:500], "s": delivery.seq},
            )
            self._failing(conn, instance, delivery, error, now)

    def next_due(self, instance: str, skip: Collection[str] = ()) -> float | None:
        claim = self.claim
        only = claim.resource if claim is not None and claim.instance == instance else None
        with self._read() as conn:
            found = conn.execute(
                _text(
                    "SELECT min(d.next_at) FROM poll_deliveries AS d WHERE d.instance = :i "
                    "AND d.state = :p AND (CAST(:only AS text) IS NULL OR d.name = :only) "
                    "AND d.seq = (SELECT min(seq) FROM poll_deliveries AS e "
                    "WHERE e.instance = d.instance AND e.name = d.name AND e.sink = d.sink "
                    "AND e.state = :p) AND NOT (d.sink = ANY(:skip))"
                ),
                {"i": instance, "p": PENDING, "only": only, "skip": sorted(skip)},
            ).scalar()
        return None if found is None else float(found)

    def waiting(self, instance: str, sinks: Sequence[str]) -> int:
        with self._read() as conn:
            found = conn.execute(
                _text(
                    "SELECT count(*) FROM poll_deliveries WHERE instance = :i AND state = :p "
                    "AND sink = ANY(:sinks)"
                ),
                {"i": instance, "p": PENDING, "sinks": list(sinks)},
            ).scalar()
        return int(found or 0)

    def replay(self, instance: str, table: str | None = None) -> int:
        """Dead letters back to pending; their resources' schedule rows due now, so that
        whichever worker claims them next delivers them (in their original order)."""
        with self.engine.begin() as conn:
            params = {"i": instance, "d": DEAD, "p": PENDING, "n": table}
            done = conn.execute(
                _text(
                    "UPDATE poll_deliveries SET state = :p, attempts = 0, next_at = 0 "
                    "WHERE instance = :i AND state = :d AND (CAST(:n AS text) IS NULL OR name = :n)"
                ),
                params,
            )
            conn.execute(
                _text(
                    "UPDATE poll_lanes SET failing_since = NULL WHERE instance = :i "
                    "AND (CAST(:n AS text) IS NULL OR name = :n)"
                ),
                params,
            )
            conn.execute(
                _text(
                    "UPDATE service_schedule SET deliver_at = now(), due_at = now() "
                    "WHERE instance = :i AND (CAST(:n AS text) IS NULL OR resource = :n)"
                ),
                params,
            )
            notify(conn, DUE)
            return int(done.rowcount)

    def dead_letters(self, instance: str, table: str | None = None) -> list[Delivery]:
        return self._deliveries(
            "d.instance = :i AND d.state = :d AND (CAST(:n AS text) IS NULL OR d.name = :n)",
            {"i": instance, "d": DEAD, "n": table},
        )

    # -- reporting ------------------------------------------------------------------------

    def status(self, instance: str, tables: Sequence[str]) -> list[TableStatus]:
        with self._read() as conn:
            return table_statuses(
                tables,
                lambda sql: list(conn.execute(_text(sql), {"i": instance})),
                lambda name: self.load(instance, name),
            )

    def close(self) -> None:
        """Nothing to close: the engine is the service database's."""
