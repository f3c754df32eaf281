"""The SQLite state store: one file holding watermarks, marks, snapshots and the outbox.

Tables (made with sqlite-utils)::

    poll_tables      (instance, name) -> watermarks, last cycle and result, counters
    poll_marks       (instance, name, kind, key, stamp): changes already emitted
    poll_snapshots   (instance, name, kind, key) -> content hash
    poll_messages    message_id -> instance, name, events (JSON), created
    poll_deliveries  seq (the order) -> message, sink, pending|dead, attempts, next try
    poll_lanes       (instance, name, sink) -> failing since, delivered count

The file is in WAL mode with ``synchronous=NORMAL``: a committed step survives the
process being killed at any moment (a power cut may lose the last steps, which are
then polled again: events are repeated with the same ids, never lost). Each thread
gets its own connection; a busy timeout lets ``poll status`` and ``poll replay`` read
and write while a poller runs.

The outbox holds records, so the file is created 0600 in folders created 0700 (its
``-wal`` and ``-shm`` files take its mode). Opening it fails at once, in one line, when
it is not a SQLite database (damaged, or another file), and when another process holds
its write lock (a stuck ``sqlite3`` session, a backup tool): after :data:`OPEN_WAIT`
seconds rather than the busy timeout, naming the process where the system can tell.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict
from pathlib import Path

import sqlite_utils

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
from sagesql.connector import files
from sagesql.errors import ConfigurationError

BUSY_TIMEOUT = 30.0  # seconds a write waits for another connection's transaction
OPEN_WAIT = 2.0  # seconds opening waits for the write lock (our transactions take ms)


_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 11, 26


def _code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code (Python 3.11+; None before)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def _is_busy(exc: sqlite3.Error) -> bool:
    code = _code(exc)
    if code is not None:
        return code in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


_INTEGER_FIELDS = ("cycles", "events", "compared_cycle")
_CHUNK = 400  # keys per IN (...) query


class SQLiteStateStore(StateStore):
    """The default state store, in one SQLite file (``:memory:`` for tests)."""

    def __init__(self, path: str | Path, *, write: bool = True) -> None:
        """Open (or create) the store; ``write=False`` only reads (``poll status``), which
        WAL allows while another process writes."""
        self.path = str(path)
        if self.path != ":memory:":
            try:
                files.create_private(self.path)
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot create the poll state {self.path}: {exc.strerror or exc}",
                    hint="set state to a writable path",
                ) from None
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        conn = self._conn()
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(OPEN_WAIT * 1000)}")
            if write:  # the write lock, or at once who keeps it
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            if write or not self._current(conn):
                self._schema(conn)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        except sqlite3.Error as exc:
            self.close()
            raise self._unusable(exc) from None

    def _unusable(self, exc: sqlite3.Error) -> ConfigurationError:
        if _is_busy(exc):
            return ConfigurationError(
                f"the poll state {self.path} is locked by another process "
                f"({files.held_by(self.path, self.path + '-wal', self.path + '-shm')})",
                hint="end that process (a sqlite3 session or tool holding a transaction on "
                "the file; a 'sagesql poll' on the same state says so itself), then run again",
            )
        if _code(exc) not in (None, _SQLITE_CORRUPT, _SQLITE_NOTADB) or (
            _code(exc) is None and "database" not in str(exc)
        ):  # cannot open, read-only, disk full, I/O: the file may be fine
            return ConfigurationError(
                f"cannot use the poll state {self.path}: {exc}",
                hint="set state to a SQLite file in a folder you can write",
            )
        return ConfigurationError(
            f"the poll state {self.path} is not a usable SQLite database ({exc})",
            hint=f"move it aside (mv {self.path} {self.path}.damaged) and run again: "
            "polling then starts over from the configured start, and events since then are "
            "sent again with the same ids",
        )

    @staticmethod
    def _current(conn: sqlite3.Connection) -> bool:
        """Whether the file already has this version's schema (nothing to write): a file
        an earlier sagesql wrote may lack state columns added since."""
        try:
            row = conn.execute("SELECT value FROM poll_meta WHERE name = 'format'").fetchone()
        except sqlite3.OperationalError:
            return False
        columns = {r[1] for r in conn.execute("PRAGMA table_info(poll_tables)")}
        return row is not None and columns >= set(STATE_FIELDS)

    # -- connections ----------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, isolation_level=None, timeout=BUSY_TIMEOUT, check_same_thread=False
                )
                with self._lock:
                    self._all.append(conn)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise self._unusable(exc) from None
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise self._unusable(exc) from None
            raise
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _schema(self, conn: sqlite3.Connection) -> None:
        db = sqlite_utils.Database(conn)
        state_columns: dict[str, type] = {"instance": str, "name": str}
        for name in STATE_FIELDS:
            state_columns[name] = int if name in _INTEGER_FIELDS else str
        db.table("poll_tables").create(state_columns, pk=("instance", "name"), if_not_exists=True)
        known = set(db.table("poll_tables").columns_dict)
        for name, kind in state_columns.items():
            if name not in known:  # a state file written by an earlier sagesql
                db.table("poll_tables").add_column(name, kind)
        db.table("poll_marks").create(
            {"instance": str, "name": str, "kind": str, "key": str, "stamp": str},
            pk=("instance", "name", "kind", "key", "stamp"),
            if_not_exists=True,
        )
        db.table("poll_snapshots").create(
            {"instance": str, "name": str, "kind": str, "key": str, "hash": str},
            pk=("instance", "name", "kind", "key"),
            if_not_exists=True,
        )
        db.table("poll_messages").create(
            {"message_id": str, "instance": str, "name": str, "created": float, "events": str},
            pk="message_id",
            if_not_exists=True,
        )
        db.table("poll_deliveries").create(
            {
                "seq": int,
                "message_id": str,
                "instance": str,
                "name": str,
                "sink": str,
                "state": str,
                "attempts": int,
                "next_at": float,
                "last_error": str,
                "created": float,
            },
            pk="seq",
            if_not_exists=True,
        )
        db.table("poll_lanes").create(
            {
                "instance": str,
                "name": str,
                "sink": str,
                "failing_since": float,
                "delivered": int,
                "last_delivered": float,
                "last_error": str,
            },
            pk=("instance", "name", "sink"),
            if_not_exists=True,
        )
        conn.execute(
            "CREATE INDEX IF NOT EXISTS poll_marks_stamp "
            "ON poll_marks (instance, name, kind, stamp)"
        )
        conn.execute(
            "CREATE INDEX IF NOT EXISTS poll_deliveries_lane "
            "ON poll_deliveries (instance, name, sink, state, seq)"
        )
        conn.execute(
            "CREATE INDEX IF NOT EXISTS poll_deliveries_message ON poll_deliveries (message_id)"
        )
        db.table("poll_meta").create({"name": str, "value": str}, pk="name", if_not_exists=True)
        conn.execute("INSERT OR IGNORE INTO poll_meta VALUES ('format', '1')")

    # -- tables ---------------------------------------------------------------------------

    def load(self, instance: str, table: str) -> TableState:
        row = (
            self._conn()
            .execute(
                f"SELECT {', '.join(STATE_FIELDS)} FROM poll_tables "
                "WHERE instance = ? AND name = ?",
                (instance, table),
            )
            .fetchone()
        )
        return state_from_row(table, row)

    @staticmethod
    def _save(conn: sqlite3.Connection, instance: str, state: TableState) -> None:
        values = asdict(state)
        name = values.pop("name")
        columns = ["instance", "name", *STATE_FIELDS]
        conn.execute(
            f"INSERT OR REPLACE INTO poll_tables ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})",
            [instance, name, *(values[f] for f in STATE_FIELDS)],
        )

    def save(self, instance: str, state: TableState) -> None:
        with self._tx() as conn:
            self._save(conn, instance, state)

    def unseen(self, instance: str, table: str, marks: Sequence[Mark]) -> set[Mark]:
        wanted = set(marks)
        if not wanted:
            return set()
        conn = self._conn()
        seen: set[Mark] = set()
        for kind, part in keys_by_kind(wanted, _CHUNK):
            rows = conn.execute(
                "SELECT key, stamp FROM poll_marks WHERE instance = ? AND name = ? "
                f"AND kind = ? AND key IN ({', '.join('?' for _ in part)})",
                [instance, table, kind, *part],
            ).fetchall()
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
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO poll_messages VALUES (?, ?, ?, ?, ?)",
                [(m.message_id, instance, table, now, dumps(list(m.events))) for m in messages],
            )
            conn.executemany(
                "INSERT INTO poll_deliveries "
                "(message_id, instance, name, sink, state, attempts, next_at, last_error, created) "
                "VALUES (?, ?, ?, ?, ?, 0, 0, NULL, ?)",
                [
                    (m.message_id, instance, table, sink, PENDING, now)
                    for m in messages
                    for sink in sinks
                ],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO poll_marks VALUES (?, ?, ?, ?, ?)",
                [(instance, table, m.kind, m.key, m.stamp) for m in marks],
            )
            if snapshot is not None:
                if snapshot.replace:
                    conn.execute(
                        "DELETE FROM poll_snapshots WHERE instance = ? AND name = ? AND kind = ?",
                        (instance, table, snapshot.kind),
                    )
                conn.executemany(
                    "DELETE FROM poll_snapshots WHERE instance = ? AND name = ? AND kind = ? "
                    "AND key = ?",
                    [(instance, table, snapshot.kind, key) for key in snapshot.drop],
                )
                conn.executemany(
                    "INSERT OR REPLACE INTO poll_snapshots VALUES (?, ?, ?, ?, ?)",
                    [(instance, table, snapshot.kind, k, h) for k, h in snapshot.put.items()],
                )
                if snapshot.taken:
                    # An empty snapshot still says "taken": a row that cannot be a key.
                    conn.execute(
                        "INSERT OR IGNORE INTO poll_snapshots VALUES (?, ?, ?, '', '')",
                        (instance, table, snapshot.kind),
                    )
            for kind, before in (forget or {}).items():
                conn.execute(
                    "DELETE FROM poll_marks WHERE instance = ? AND name = ? AND kind = ? "
                    "AND stamp < ?",
                    (instance, table, kind, before),
                )
            if state is not None:
                self._save(conn, instance, state)

    def snapshot(self, instance: str, table: str, kind: str) -> dict[str, str] | None:
        rows = (
            self._conn()
            .execute(
                "SELECT key, hash FROM poll_snapshots WHERE instance = ? AND name = ? AND kind = ?",
                (instance, table, kind),
            )
            .fetchall()
        )
        if not any(key == "" for key, _ in rows):
            return None  # never taken (keys put by updates alone do not make one)
        return {key: value for key, value in rows if key != ""}

    def reset(self, instance: str, table: str, since: str | None) -> None:
        with self._tx() as conn:
            state = rewound(self.load(instance, table), since)
            if since is None:
                conn.execute(
                    "DELETE FROM poll_marks WHERE instance = ? AND name = ?", (instance, table)
                )
            else:
                conn.execute(
                    "DELETE FROM poll_marks WHERE instance = ? AND name = ? AND stamp >= ?",
                    (instance, table, since[:19]),
                )
            conn.execute(
                "DELETE FROM poll_snapshots WHERE instance = ? AND name = ?", (instance, table)
            )
            self._save(conn, instance, state)

    # -- outbox ---------------------------------------------------------------------------

    def lanes(self, instance: str) -> list[Lane]:
        rows = self._conn().execute(lanes_query(), {"i": instance, "p": PENDING}).fetchall()
        return [Lane(*row) for row in rows]

    def _deliveries(
        self, where: str, params: Sequence[object], limit: int | None = None
    ) -> list[Delivery]:
        rows = self._conn().execute(deliveries_query(where, limit), list(params)).fetchall()
        return [delivery_from_row(row) for row in rows]

    def pending(self, instance: str, table: str, sink: str, limit: int) -> list[Delivery]:
        return self._deliveries(
            "d.instance = ? AND d.name = ? AND d.sink = ? AND d.state = ?",
            (instance, table, sink, PENDING),
            limit,
        )

    def lane(self, instance: str, table: str, sink: str) -> Lane:
        row = (
            self._conn()
            .execute(
                "SELECT failing_since, delivered, last_delivered, last_error FROM poll_lanes "
                "WHERE instance = ? AND name = ? AND sink = ?",
                (instance, table, sink),
            )
            .fetchone()
        )
        if row is None:
            return Lane(table, sink)
        return Lane(table, sink, row[0], row[1] or 0, row[2], row[3])

    def delivered(self, delivery: Delivery, now: float) -> None:
        with self._tx() as conn:
            instance = self._instance_of(conn, delivery)
            conn.execute("DELETE FROM poll_deliveries WHERE seq = ?", (delivery.seq,))
            conn.execute(
                "DELETE FROM poll_messages WHERE message_id = ? AND NOT EXISTS "
                "(SELECT 1 FROM poll_deliveries WHERE message_id = ?)",
                (delivery.message_id, delivery.message_id),
            )
            conn.execute(
                "INSERT INTO poll_lanes VALUES (?, ?, ?, NULL, 1, ?, NULL) "
                "ON CONFLICT (instance, name, sink) DO UPDATE SET failing_since = NULL, "
                "delivered = coalesce(delivered, 0) + 1, last_delivered = excluded.last_delivered",
                (instance, delivery.table, delivery.sink, now),
            )

    @staticmethod
    def _instance_of(conn: sqlite3.Connection, delivery: Delivery) -> str:
        row = conn.execute(
            "SELECT instance FROM poll_deliveries WHERE seq = ?", (delivery.seq,)
        ).fetchone()
        return str(row[0]) if row else ""

    def retry(
        self, delivery: Delivery, *, attempts: int, next_at: float, error: str, now: float
    ) -> None:
        with self._tx() as conn:
            instance = self._instance_of(conn, delivery)
            conn.execute(
                "UPDATE poll_deliveries SET attempts = ?, next_at = ?, last_error = ? "
                "WHERE seq = ?",
                (attempts, next_at, error[:500], delivery.seq),
            )
            self._failing(conn, instance, delivery, error, now)

    @staticmethod
    def _failing(
        conn: sqlite3.Connection, instance: str, delivery: Delivery, error: str, now: float
    ) -> None:
        conn.execute(
            "INSERT INTO poll_lanes VALUES (?, ?, ?, ?, 0, NULL, ?) "
            "ON CONFLICT (instance, name, sink) DO UPDATE SET "
            "failing_since = coalesce(failing_since, excluded.failing_since), "
            "last_error = excluded.last_error",
            (instance, delivery.table, delivery.sink, now, error[:500]),
        )

    def park(self, delivery: Delivery, *, attempts: int, error: str, now: float) -> None:
        with self._tx() as conn:
            instance = self._instance_of(conn, delivery)
            conn.execute(
                "UPDATE poll_deliveries SET state = ?, attempts = ?, last_error = ? WHERE seq = ?",
                (DEAD, attempts, error[:500], delivery.seq),
            )
            self._failing(conn, instance, delivery, error, now)

    def next_due(self, instance: str, skip: Collection[str] = ()) -> float | None:
        # The head of each lane decides when the lane moves.
        skipped = sorted(skip)
        row = (
            self._conn()
            .execute(
                "SELECT min(d.next_at) FROM poll_deliveries AS d WHERE d.instance = ? "
                "AND d.state = ? AND d.seq = (SELECT min(seq) FROM poll_deliveries AS e "
                "WHERE e.instance = d.instance AND e.name = d.name AND e.sink = d.sink "
                f"AND e.state = ?) AND d.sink NOT IN ({', '.join('?' for _ in skipped)})",
                (instance, PENDING, PENDING, *skipped),
            )
            .fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])

    def waiting(self, instance: str, sinks: Sequence[str]) -> int:
        row = (
            self._conn()
            .execute(
                "SELECT count(*) FROM poll_deliveries WHERE instance = ? AND state = ? "
                f"AND sink IN ({', '.join('?' for _ in sinks)})",
                (instance, PENDING, *sinks),
            )
            .fetchone()
        )
        return int(row[0]) if row else 0

    def replay(self, instance: str, table: str | None = None) -> int:
        with self._tx() as conn:
            where = "instance = ? AND state = ?" + (" AND name = ?" if table else "")
            params: list[object] = [instance, DEAD, *([table] if table else [])]
            cursor = conn.execute(
                f"UPDATE poll_deliveries SET state = '{PENDING}', attempts = 0, next_at = 0 "
                f"WHERE {where}",
                params,
            )
            conn.execute(
                "UPDATE poll_lanes SET failing_since = NULL WHERE instance = ?"
                + (" AND name = ?" if table else ""),
                [instance] + ([table] if table else []),
            )
            return int(cursor.rowcount)

    def dead_letters(self, instance: str, table: str | None = None) -> list[Delivery]:
        where = "d.instance = ? AND d.state = ?" + (" AND d.name = ?" if table else "")
        return self._deliveries(where, [instance, DEAD] + ([table] if table else []))

    # -- reporting ------------------------------------------------------------------------

    def status(self, instance: str, tables: Sequence[str]) -> list[TableStatus]:
        conn = self._conn()
        return table_statuses(
            tables,
            lambda sql: conn.execute(sql, {"i": instance}).fetchall(),
            lambda name: self.load(instance, name),
        )

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()
