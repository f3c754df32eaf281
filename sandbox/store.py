"""The sandbox's records: one SQLite table per product resource, records kept as JSON.

Every resource table has the same shape: ``seq`` (insertion order), ``scope`` (the
Accounting business, the Sage 200 company, or "crm"), ``key`` (the record id as
text), the ``created``/``updated``/``deleted`` times as fixed-width sortable UTC text,
and ``data``, the record as the API returns it. Deleted records stay as tombstones.
Lists are served from indexed queries so that a million rows stay fast. Product
emulators filter with SQL over ``json_extract(data, ...)``.

Demo data is made lazily: the first time a (scope, resource) is touched, the seeder
registered for the product fills it, deterministically from the seed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

# (store, scope, resource) -> records to insert; called once per (scope, resource).
Seeder = Callable[["Store", str, str], Iterable[dict[str, Any]]]


def field(name: str) -> str:
    """The SQL expression for a top-level field of a stored record."""
    escaped = name.replace('"', '\\"')
    return f"json_extract(data, '$.\"{escaped}\"')"


def path_expr(path: Sequence[str]) -> str:
    """The SQL expression for a nested field (path of keys) of a stored record."""
    keys = "".join('."' + k.replace('"', '\\"') + '"' for k in path)
    return f"json_extract(data, '${keys}')"


class Store:
    """Records of one product, in one SQLite database (a file or memory), shared by threads."""

    def __init__(self, product: str, path: str | Path | None = None) -> None:
        self.product = product
        self.path = str(path) if path else ":memory:"
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL" if path else "PRAGMA journal_mode=MEMORY")
        self._conn.execute("PRAGMA synchronous=OFF")
        self._db = sqlite_utils.Database(self._conn)
        self._lock = threading.RLock()
        self._seeders: dict[str, Seeder] = {}
        self._db.table("_seeded").create(
            {"scope": str, "resource": str}, pk=("scope", "resource"), if_not_exists=True
        )
        self._db.table("_meta").create({"name": str, "value": str}, pk="name", if_not_exists=True)

    # -- setup ---------------------------------------------------------------------------

    def set_seeder(self, seeder: Seeder) -> None:
        self._seeders[self.product] = seeder

    def meta(self, name: str) -> str | None:
        row = self._conn.execute("SELECT value FROM _meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_meta(self, name: str, value: str) -> None:
        with self._lock:
            self._db.table("_meta").upsert({"name": name, "value": value}, pk="name")

    @staticmethod
    def table_name(resource: str) -> str:
        return f"r_{resource}"

    def _create(self, resource: str) -> str:
        name = self.table_name(resource)
        if not self._db[name].exists():
            self._conn.executescript(
                f"""
                CREATE TABLE IF NOT EXISTS "{name}" (
                    seq INTEGER PRIMARY KEY,
                    scope TEXT NOT NULL,
                    key TEXT NOT NULL,
                    created TEXT,
                    updated TEXT,
                    deleted TEXT,
                    data TEXT NOT NULL
                );
                CREATE UNIQUE INDEX IF NOT EXISTS "{name}_key" ON "{name}" (scope, key);
                CREATE INDEX IF NOT EXISTS "{name}_updated" ON "{name}" (scope, updated, seq);
                CREATE INDEX IF NOT EXISTS "{name}_deleted" ON "{name}" (scope, deleted);
                """
            )
        return name

    def ensure(self, scope: str, resource: str) -> str:
        """The resource's table, seeded with demo data the first time (scope, resource) is used."""
        with self._lock:
            name = self._create(resource)
            done = self._conn.execute(
                "SELECT 1 FROM _seeded WHERE scope = ? AND resource = ?", (scope, resource)
            ).fetchone()
            if done:
                return name
            self._conn.execute("INSERT INTO _seeded VALUES (?, ?)", (scope, resource))
            seeder = self._seeders.get(self.product)
            if seeder is not None:
                with self.transaction():
                    self.insert_many(scope, resource, seeder(self, scope, resource))
            return name

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- writes --------------------------------------------------------------------------

    def insert_many(
        self,
        scope: str,
        resource: str,
        records: Iterable[dict[str, Any]],
        *,
        key: str = "id",
        created: str = "created",
        updated: str = "updated",
        batch: int = 5000,
    ) -> int:
        """Add records (each with the meta fields ``_key``/``_created``/``_updated`` set or not)."""
        name = self._create(resource)
        sql = (
            f'INSERT INTO "{name}" (scope, key, created, updated, deleted, data) '
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        count = 0
        rows: list[tuple[Any, ...]] = []
        with self._lock:
            for record in records:
                rows.append(self._row(scope, record, key, created, updated))
                if len(rows) >= batch:
                    self._conn.executemany(sql, rows)
                    count += len(rows)
                    rows = []
            if rows:
                self._conn.executemany(sql, rows)
                count += len(rows)
        return count

    @staticmethod
    def _row(
        scope: str, record: dict[str, Any], key: str, created: str, updated: str
    ) -> tuple[Any, ...]:
        # "_key" lets a seeder name the key of records whose id field is not ``key``.
        meta = {
            k: record.pop(k) for k in ("_key", "_created", "_updated", "_deleted") if k in record
        }
        return (
            scope,
            str(meta["_key"] if "_key" in meta else record[key]),
            meta.get("_created"),
            meta.get("_updated"),
            meta.get("_deleted"),
            json.dumps(record, separators=(",", ":"), ensure_ascii=False),
        )

    def insert(
        self,
        scope: str,
        resource: str,
        record: dict[str, Any],
        *,
        key: str = "id",
        created: str | None = None,
        updated: str | None = None,
    ) -> dict[str, Any]:
        stored = dict(record)
        stored["_created"], stored["_updated"] = created, updated
        self.ensure(scope, resource)
        self.insert_many(scope, resource, [stored], key=key)
        return record

    def replace(
        self,
        scope: str,
        resource: str,
        key: str,
        record: dict[str, Any],
        *,
        updated: str | None = None,
    ) -> None:
        name = self.ensure(scope, resource)
        with self._lock:
            self._conn.execute(
                f'UPDATE "{name}" SET data = ?, updated = coalesce(?, updated) '
                "WHERE scope = ? AND key = ?",
                (
                    json.dumps(record, separators=(",", ":"), ensure_ascii=False),
                    updated,
                    scope,
                    str(key),
                ),
            )

    def mark_deleted(
        self,
        scope: str,
        resource: str,
        key: str,
        deleted: str,
        record: dict[str, Any] | None = None,
    ) -> None:
        """Keep the record as a tombstone with its deletion time."""
        name = self.ensure(scope, resource)
        with self._lock:
            if record is None:
                self._conn.execute(
                    f'UPDATE "{name}" SET deleted = ? WHERE scope = ? AND key = ?',
                    (deleted, scope, str(key)),
                )
            else:
                self._conn.execute(
                    f'UPDATE "{name}" SET deleted = ?, data = ? WHERE scope = ? AND key = ?',
                    (deleted, json.dumps(record, separators=(",", ":")), scope, str(key)),
                )

    def remove(self, scope: str, resource: str, key: str) -> None:
        """Forget a record entirely (APIs that do not keep tombstones)."""
        name = self.ensure(scope, resource)
        with self._lock:
            self._conn.execute(
                f'DELETE FROM "{name}" WHERE scope = ? AND key = ?', (scope, str(key))
            )

    # -- reads ---------------------------------------------------------------------------

    def get(
        self, scope: str, resource: str, key: str | int, *, include_deleted: bool = False
    ) -> dict[str, Any] | None:
        name = self.ensure(scope, resource)
        extra = "" if include_deleted else " AND deleted IS NULL"
        with self._lock:
            row = self._conn.execute(
                f'SELECT data FROM "{name}" WHERE scope = ? AND key = ?{extra}', (scope, str(key))
            ).fetchone()
        return json.loads(row[0]) if row else None

    def select(
        self,
        scope: str,
        resource: str,
        *,
        where: str = "",
        params: Sequence[Any] = (),
        order: str = "seq",
        limit: int | None = None,
        offset: int = 0,
        deleted: bool = False,
        columns: str = "data",
    ) -> list[tuple[Any, ...]]:
        """Rows of the resource: ``where`` is SQL over data/created/updated/deleted/key."""
        name = self.ensure(scope, resource)
        clauses = ["scope = ?", "deleted IS NOT NULL" if deleted else "deleted IS NULL"]
        if where:
            clauses.append(f"({where})")
        sql = f'SELECT {columns} FROM "{name}" WHERE {" AND ".join(clauses)} ORDER BY {order}'
        args: list[Any] = [scope, *params]
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def records(self, scope: str, resource: str, **kwargs: Any) -> list[dict[str, Any]]:
        return [json.loads(row[0]) for row in self.select(scope, resource, **kwargs)]

    def count(
        self,
        scope: str,
        resource: str,
        *,
        where: str = "",
        params: Sequence[Any] = (),
        deleted: bool = False,
    ) -> int:
        name = self.ensure(scope, resource)
        clauses = ["scope = ?", "deleted IS NOT NULL" if deleted else "deleted IS NULL"]
        if where:
            clauses.append(f"({where})")
        with self._lock:
            (n,) = self._conn.execute(
                f'SELECT count(*) FROM "{name}" WHERE {" AND ".join(clauses)}', [scope, *params]
            ).fetchone()
        return int(n)

    def max_key(self, scope: str, resource: str) -> int:
        """The largest integer key so far (Sage 200 and CRM ids are integers)."""
        name = self.ensure(scope, resource)
        with self._lock:
            (n,) = self._conn.execute(
                f'SELECT max(CAST(key AS INTEGER)) FROM "{name}" WHERE scope = ?', (scope,)
            ).fetchone()
        return int(n or 0)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
