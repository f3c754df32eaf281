"""A replica in a SQLite file: tables made and grown by sqlite-utils, a page per transaction.

Values are kept in the engine's stored form (engine/values.py): DATETIME as UTC
``'YYYY-MM-DD HH:MM:SS'``, DECIMAL as a number (NUMERIC: a whole one an INTEGER), BOOLEAN
as 0/1, JSON as text, so that the same SQL compares them the same way over the replica
as over Sage. The file is
opened in WAL mode (readers never wait for a sync) and every page is one
``BEGIN IMMEDIATE`` ... ``COMMIT``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from sagesql.connector.files import create_private, held
from sagesql.engine.replica import sqlite_path
from sagesql.errors import ConfigurationError, OperationalError
from sagesql.replication.shapes import Shape
from sagesql.replication.state import STATE_COLUMNS, STATE_TABLE, SyncState

# DECIMAL is NUMERIC, as in the engine's own SQLite (engine/local.py): a whole number is
# kept as an INTEGER, so sum() and arithmetic answer as online (9325, not 9325.0).
SQLITE_TYPES = {"INTEGER": "INTEGER", "DECIMAL": "NUMERIC", "BOOLEAN": "INTEGER"}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def path_of(url: str) -> Path:
    """``sqlite:///relative.sqlite`` or ``sqlite:////absolute/path.sqlite``."""
    return sqlite_path(url)


def _failed(url: str, exc: sqlite3.Error) -> OperationalError:
    return OperationalError(
        f"the replica {url!r} could not be written: {exc}",
        hint="check the disk and that no other program holds the file",
    )


class SQLiteBatch:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def upsert(self, shape: Shape, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        columns = shape.columns
        names = ", ".join(_q(c) for c in columns)
        holes = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {_q(shape.name)} ({names}) VALUES ({holes})"
        if shape.key:
            keys = ", ".join(_q(k) for k in shape.key)
            rest = [c for c in columns if c not in shape.key]
            sets = ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in rest)
            sql += f" ON CONFLICT ({keys}) DO " + (f"UPDATE SET {sets}" if sets else "NOTHING")
        self.conn.executemany(sql, rows)

    def delete(self, shape: Shape, column: str, values: Iterable[Any]) -> int:
        values = list(values)
        gone = 0
        for start in range(0, len(values), 500):
            part = values[start : start + 500]
            holes = ", ".join("?" for _ in part)
            cursor = self.conn.execute(
                f"DELETE FROM {_q(shape.name)} WHERE {_q(column)} IN ({holes})", part
            )
            gone += max(cursor.rowcount, 0)
        return gone

    def save(self, state: SyncState) -> None:
        row = state.as_row()
        names = list(STATE_COLUMNS)
        sets = ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in names[1:])
        self.conn.execute(
            f"INSERT INTO {_q(STATE_TABLE)} ({', '.join(_q(c) for c in names)}) "
            f"VALUES ({', '.join('?' for _ in names)}) ON CONFLICT (name) DO UPDATE SET {sets}",
            [row[c] for c in names],
        )


class SQLiteTarget:
    """A SQLite replica file."""

    def __init__(self, url: str, conn: sqlite3.Connection, path: Path | None = None) -> None:
        self.url = url
        self.conn = conn
        self.path = path
        self.db = sqlite_utils.Database(conn)

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> SQLiteTarget:
        path = path_of(url)
        if not create and not path.exists():
            raise ConfigurationError(
                f"the replica {url!r} does not exist", hint="run 'sagesql sync --to URL' first"
            )
        if path.parent != Path("") and not path.parent.exists():
            raise ConfigurationError(
                f"the replica's folder {str(path.parent)!r} does not exist", hint="create it"
            )
        if path.is_dir():
            raise ConfigurationError(
                f"the replica {url!r} is a folder, not a SQLite file",
                hint="name a file in it, e.g. sqlite:///" + str(path / "copy.sqlite"),
            )
        try:
            # Customer data: a new replica is readable by its owner only (SQLite gives
            # its -wal and -shm files the database's mode).
            create_private(path)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the replica {url!r}: {exc.strerror or exc}",
                hint="name a path you may write to",
            ) from None
        try:
            conn = sqlite3.connect(str(path), isolation_level=None, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            readonly = "readonly" in str(exc) or "read-only" in str(exc)
            raise OperationalError(
                f"the replica {url!r} cannot be opened: {exc}",
                hint="make the file and its folder writable, or name another"
                if readonly
                else "name a SQLite file sagesql sync wrote, or a new one",
            ) from None
        target = cls(url, conn, path)
        if create and STATE_TABLE not in target.db.table_names():
            target.db[STATE_TABLE].create(  # type: ignore[union-attr]
                dict(STATE_COLUMNS), pk="name", if_not_exists=True
            )
        elif create:
            # A replica an earlier version made: the state columns added since.
            state = target.db.table(STATE_TABLE)
            have = {c.lower() for c in state.columns_dict}
            for name, sql_type in STATE_COLUMNS.items():
                if name not in have:
                    state.add_column(name, sql_type)
        return target

    def ensure(self, shape: Shape) -> list[str]:
        types = {c.name: c.type for c in shape.table.columns}
        wanted = {n: SQLITE_TYPES.get(types[n], "TEXT") for n in shape.columns}
        table = self.db.table(shape.name)
        if not table.exists():
            # Plain SQL: sqlite-utils knows no NUMERIC columns.
            parts = [f"{_q(n)} {t}" for n, t in wanted.items()]
            if shape.key:
                parts.append(f"PRIMARY KEY ({', '.join(_q(k) for k in shape.key)})")
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {_q(shape.name)} ({', '.join(parts)})")
            for column in shape.indexed:
                table.create_index([column], if_not_exists=True)
            return []
        have = {c.lower() for c in table.columns_dict}
        added = [name for name in wanted if name.lower() not in have]
        for name in added:
            self.conn.execute(f"ALTER TABLE {_q(shape.name)} ADD COLUMN {_q(name)} {wanted[name]}")
        return added

    @contextmanager
    def transaction(self) -> Iterator[SQLiteBatch]:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _failed(self.url, exc) from None
        try:
            yield SQLiteBatch(self.conn)
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self.conn.execute("ROLLBACK")
            raise _failed(self.url, exc) from None
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    @contextmanager
    def lock(self) -> Iterator[None]:
        assert self.path is not None
        lock_path = self.path.with_name(self.path.name + ".sync.lock")

        def busy(who: str) -> OperationalError:
            return OperationalError(
                f"another sync is writing {self.url} ({who})", hint="wait for it to finish"
            )

        with held(lock_path, timeout=2.0, busy=busy, what="replica's lock file"):
            yield

    def _state_rows(self, where: str = "", params: Sequence[Any] = ()) -> list[SyncState]:
        if STATE_TABLE not in self.db.table_names():
            return []
        cursor = self.conn.execute(f"SELECT * FROM {_q(STATE_TABLE)} {where} ORDER BY name", params)
        names = [d[0] for d in cursor.description]
        return [SyncState.from_row(dict(zip(names, r, strict=True))) for r in cursor]

    def load(self, name: str) -> SyncState | None:
        found = self._state_rows("WHERE name = ?", [name])
        return found[0] if found else None

    def states(self) -> list[SyncState]:
        return self._state_rows()

    def keys(self, shape: Shape) -> Iterator[Any]:
        column = shape.key[0]
        for (value,) in self.conn.execute(f"SELECT {_q(column)} FROM {_q(shape.name)}"):
            yield value

    def count(self, shape: Shape) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {_q(shape.name)}").fetchone()[0])

    def close(self) -> None:
        self.conn.close()
