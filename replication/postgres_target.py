"""A replica in PostgreSQL (psycopg): typed tables, each page upserted in one transaction.

Types: INTEGER ``bigint``, DECIMAL ``numeric``, BOOLEAN ``boolean``, DATE ``date``,
DATETIME ``timestamptz``, JSON ``jsonb``, TEXT ``text``. The session's time zone is
UTC, so the engine's stored DATETIME text (UTC, no zone) is read as the instant it is.
A replica table named ``schema.table`` goes to that schema (created when missing).
psycopg is an optional dependency (``pip install 'sagesql[postgres]'``), imported when
a ``postgresql://`` URL is opened.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from sagesql.engine.replica import pg_dsn, pg_timeout
from sagesql.errors import ConfigurationError, OperationalError
from sagesql.replication.shapes import Shape
from sagesql.replication.state import STATE_COLUMNS, STATE_TABLE, SyncState

PG_TYPES = {
    "INTEGER": "bigint",
    "DECIMAL": "numeric",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "DATETIME": "timestamptz",
    "JSON": "jsonb",
}
# Text compares byte by byte, as in SQLite (which answers online): a database whose
# collation is a language's (en_US: 'apple' before 'Banana') would order it otherwise.
TEXT = 'text COLLATE "C"'
STATE_TYPES = {"INTEGER": "bigint"}
LOCK_ID = 0x5A6E5C  # pg_advisory_lock's key for "a sync writes this database"


def qualified(name: str) -> str:
    """``"schema"."table"`` or ``"table"``."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split(".", 1))


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _converter(sql_type: str) -> Any:
    if sql_type == "BOOLEAN":
        return lambda v: None if v is None else bool(v)
    if sql_type == "DECIMAL":
        return lambda v: None if v is None or isinstance(v, str) else Decimal(repr(v))
    return None


def _values(shape: Shape, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    converters = [_converter(shape.table.column(n).type) for n in shape.columns]
    if not any(converters):
        return list(rows)
    return [
        tuple(v if f is None else f(v) for f, v in zip(converters, row, strict=True))
        for row in rows
    ]


class PostgresBatch:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def upsert(self, shape: Shape, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        columns = shape.columns
        names = ", ".join(_q(c) for c in columns)
        holes = ", ".join("%s" for _ in columns)
        sql = f"INSERT INTO {qualified(shape.name)} ({names}) VALUES ({holes})"
        if shape.key:
            rest = [c for c in columns if c not in shape.key]
            sets = ", ".join(f"{_q(c)} = EXCLUDED.{_q(c)}" for c in rest)
            keys = ", ".join(_q(k) for k in shape.key)
            sql += f" ON CONFLICT ({keys}) DO " + (f"UPDATE SET {sets}" if sets else "NOTHING")
        with self.conn.cursor() as cursor:
            cursor.executemany(sql, _values(shape, rows))

    def delete(self, shape: Shape, column: str, values: Iterable[Any]) -> int:
        integer = shape.table.column(column).type == "INTEGER"
        values = [int(v) if integer else str(v) for v in values]
        if not values:
            return 0
        with self.conn.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {qualified(shape.name)} WHERE {_q(column)} = ANY(%s)",
                [values],
            )
            return max(cursor.rowcount, 0)

    def save(self, state: SyncState) -> None:
        row = state.as_row()
        names = list(STATE_COLUMNS)
        sets = ", ".join(f"{_q(c)} = EXCLUDED.{_q(c)}" for c in names[1:])
        with self.conn.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {_q(STATE_TABLE)} ({', '.join(_q(c) for c in names)}) "
                f"VALUES ({', '.join('%s' for _ in names)}) "
                f"ON CONFLICT (name) DO UPDATE SET {sets}",
                [row[c] for c in names],
            )


class PostgresTarget:
    """A PostgreSQL replica database."""

    def __init__(self, url: str, conn: Any) -> None:
        self.url = url
        self.conn = conn

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> PostgresTarget:
        try:
            import psycopg
        except ImportError:
            raise ConfigurationError(
                "a postgresql:// replica needs psycopg",
                hint="pip install 'sagesql[postgres]'",
            ) from None
        try:
            conn = psycopg.connect(
                pg_dsn(url), autocommit=True, options="-c TimeZone=UTC", **pg_timeout(url)
            )
        except psycopg.Error as exc:
            detail = " ".join(str(exc).split())
            raise OperationalError(
                f"the replica cannot be reached: {detail}",
                hint="check the postgresql:// URL, and that the server is running",
            ) from None
        target = cls(url, conn)
        if not create:
            return target  # --status only reads: nothing is created in the database
        columns = ", ".join(
            f"{_q(c)} {STATE_TYPES.get(t, 'text')}" + (" PRIMARY KEY" if c == "name" else "")
            for c, t in STATE_COLUMNS.items()
        )
        conn.execute(f"CREATE TABLE IF NOT EXISTS {_q(STATE_TABLE)} ({columns})")
        have = target._existing(STATE_TABLE) or set()
        for c, t in STATE_COLUMNS.items():  # a replica an earlier version made
            if c not in have:
                conn.execute(
                    f"ALTER TABLE {_q(STATE_TABLE)} ADD COLUMN IF NOT EXISTS "
                    f"{_q(c)} {STATE_TYPES.get(t, 'text')}"
                )
        return target

    def _existing(self, name: str) -> set[str] | None:
        schema, _, table = name.rpartition(".")
        rows = self.conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = coalesce(nullif(%s, ''), current_schema()) AND table_name = %s",
            [schema, table],
        ).fetchall()
        return {r[0].lower() for r in rows} if rows else None

    def ensure(self, shape: Shape) -> list[str]:
        types = {c.name: c.type for c in shape.table.columns}
        wanted = {n: PG_TYPES.get(types[n], TEXT) for n in shape.columns}
        have = self._existing(shape.name)
        table = qualified(shape.name)
        with self.conn.transaction():
            if have is None:
                if "." in shape.name:
                    self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(shape.name.split('.')[0])}")
                parts = [f"{_q(n)} {t}" for n, t in wanted.items()]
                if shape.key:
                    parts.append(f"PRIMARY KEY ({', '.join(_q(k) for k in shape.key)})")
                self.conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(parts)})")
                base = shape.name.replace(".", "_")
                for column in shape.indexed:
                    index = _q(f"{base}_{column}_idx"[:63])
                    self.conn.execute(
                        f"CREATE INDEX IF NOT EXISTS {index} ON {table} ({_q(column)})"
                    )
                return []
            added = [n for n in wanted if n.lower() not in have]
            for name in added:
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {_q(name)} {wanted[name]}")
        return added

    @contextmanager
    def transaction(self) -> Iterator[PostgresBatch]:
        import psycopg

        try:
            with self.conn.transaction():
                yield PostgresBatch(self.conn)
        except psycopg.Error as exc:
            detail = " ".join(str(exc).split())
            raise OperationalError(
                f"the replica could not be written: {detail}",
                hint="check the server, and that the replica's tables are sagesql's",
            ) from None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """A session advisory lock: one sync writes a database at a time."""
        (got,) = self.conn.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_ID]).fetchone()
        if not got:
            raise OperationalError(
                "another sync is writing this replica (a PostgreSQL advisory lock)",
                hint="wait for it to finish",
            )
        try:
            yield
        finally:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", [LOCK_ID])

    def _states(self, where: str = "", params: Sequence[Any] = ()) -> list[SyncState]:
        (present,) = self.conn.execute("SELECT to_regclass(%s)", [_q(STATE_TABLE)]).fetchone()
        if present is None:
            return []  # no sync has written this database
        cursor = self.conn.execute(f"SELECT * FROM {_q(STATE_TABLE)} {where} ORDER BY name", params)
        names = [d.name for d in cursor.description]
        return [SyncState.from_row(dict(zip(names, r, strict=True))) for r in cursor.fetchall()]

    def load(self, name: str) -> SyncState | None:
        found = self._states("WHERE name = %s", [name])
        return found[0] if found else None

    def states(self) -> list[SyncState]:
        return self._states()

    def keys(self, shape: Shape) -> Iterator[Any]:
        with self.conn.cursor() as cursor:
            cursor.execute(f"SELECT {_q(shape.key[0])} FROM {qualified(shape.name)}")
            yield from (r[0] for r in cursor)

    def count(self, shape: Shape) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {qualified(shape.name)}").fetchone()[0])

    def close(self) -> None:
        self.conn.close()
