"""DB-API 2.0 (PEP 249): module globals, connections, streaming cursors, pandas.read_sql.

The cursor is tested over a fake statement runner handed to the connection: it runs
the SQL in SQLite and counts the rows pulled, so streaming is observable.
"""

from __future__ import annotations

import datetime
import os
import sqlite3
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from sagesql import errors
from sagesql.engine import dbapi
from sagesql.engine.result import Result, ResultColumn

TYPES = {"id": "INTEGER", "name": "TEXT", "balance": "DECIMAL", "active": "BOOLEAN"}
TYPES |= {"created": "DATETIME"}


class FakeConnector:
    """Stands for a connector Connection: only closing matters here."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeRun:
    """A statement runner over SQLite with the signature of engine.pipeline.run."""

    def __init__(self, rows: int = 50) -> None:
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE TABLE customers (id, name, balance, active, created)")
        self.db.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?)",
            [
                (i, f"customer {i}", i * 1.25, i % 2, f"2025-01-{1 + i % 28:02d}T10:00:00Z")
                for i in range(1, rows + 1)
            ],
        )
        self.calls: list[tuple[Any, str, Any]] = []
        self.pulled = 0
        self.closed = 0

    def __call__(
        self, connection: Any, sql: str, params: Any = None, *, max_rows: int | None = None
    ) -> Result:
        self.calls.append((connection, sql, params))
        try:
            cursor = self.db.execute(sql, params if params is not None else ())
        except sqlite3.Error as exc:
            raise errors.ProgrammingError(str(exc)) from exc
        if cursor.description is None:  # a write
            return Result(columns=[], rows=iter(()), rowcount=cursor.rowcount)
        columns = [ResultColumn(d[0], TYPES.get(d[0])) for d in cursor.description]
        return Result(columns=columns, rows=self._rows(cursor), on_close=[self._close])

    def _rows(self, cursor: sqlite3.Cursor) -> Iterator[tuple[Any, ...]]:
        for row in cursor:
            self.pulled += 1
            yield row

    def _close(self) -> None:
        self.closed += 1


@pytest.fixture
def fake() -> FakeRun:
    return FakeRun()


@pytest.fixture
def conn(fake: FakeRun) -> Iterator[dbapi.Connection]:
    with dbapi.Connection(FakeConnector(), run=fake) as connection:
        yield connection


# -- module ------------------------------------------------------------------------------


def test_module_globals() -> None:
    assert (dbapi.apilevel, dbapi.threadsafety, dbapi.paramstyle) == ("2.0", 1, "qmark")


def test_exceptions_are_the_connector_ones_in_the_pep_249_tree() -> None:
    names = [
        "Warning",
        "Error",
        "InterfaceError",
        "DatabaseError",
        "DataError",
        "OperationalError",
        "IntegrityError",
        "InternalError",
        "ProgrammingError",
        "NotSupportedError",
    ]
    for name in names:
        assert getattr(dbapi, name) is getattr(errors, name)
        assert getattr(dbapi.Connection, name) is getattr(errors, name)
    assert issubclass(dbapi.Warning, Exception) and issubclass(dbapi.Error, Exception)
    assert issubclass(dbapi.InterfaceError, dbapi.Error)
    for name in names[3:]:
        assert issubclass(getattr(dbapi, name), dbapi.DatabaseError)


def test_type_objects_compare_with_the_sql_types() -> None:
    assert dbapi.STRING == "TEXT" and dbapi.STRING == "JSON"
    assert dbapi.NUMBER == "INTEGER" and dbapi.NUMBER == "DECIMAL" and dbapi.NUMBER == "BOOLEAN"
    assert dbapi.DATETIME == "DATE" and dbapi.DATETIME == "DATETIME"
    code = "DECIMAL"
    assert code == dbapi.NUMBER  # as code reading description[i][1] writes it
    assert dbapi.NUMBER != "TEXT" and dbapi.STRING != "DATE" and dbapi.NUMBER != None  # noqa: E711
    assert dbapi.BINARY != "TEXT" and dbapi.ROWID != "INTEGER"
    assert len({dbapi.STRING, dbapi.NUMBER, dbapi.DATETIME}) == 3


def test_constructors() -> None:
    assert dbapi.Date(2025, 1, 2) == datetime.date(2025, 1, 2)
    assert dbapi.Time(10, 30, 5) == datetime.time(10, 30, 5)
    assert dbapi.Timestamp(2025, 1, 2, 10, 30) == datetime.datetime(2025, 1, 2, 10, 30)
    ticks = time.mktime((2025, 3, 4, 5, 6, 7, 0, 0, -1))
    assert dbapi.DateFromTicks(ticks) == datetime.date(2025, 3, 4)
    assert dbapi.TimeFromTicks(ticks) == datetime.time(5, 6, 7)
    assert dbapi.TimestampFromTicks(ticks) == datetime.datetime(2025, 3, 4, 5, 6, 7)
    assert dbapi.Binary(b"\x00x") == b"\x00x"


def test_the_default_runner_is_the_engine() -> None:
    from sagesql.engine import pipeline

    assert dbapi._default_run() is pipeline.run


def test_connect_builds_a_connector_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("SAGESQL_")]:
        monkeypatch.delenv(name)
    conn = dbapi.connect("Product=SageCRM;URL=http://127.0.0.1:9", User="me", Password="pw")
    inner = conn.client
    assert inner.product.id == "sage_crm" and inner.settings.user == "me"
    assert not inner.closed  # nothing was sent: the transport is built on first use
    conn.close()
    assert inner.closed
    with pytest.raises(errors.ConfigurationError, match="SageCRM needs URL"):
        dbapi.connect(Product="SageCRM", User="me")


# -- connection --------------------------------------------------------------------------


def test_commit_does_nothing_and_rollback_is_not_supported(conn: dbapi.Connection) -> None:
    conn.commit()
    with pytest.raises(dbapi.NotSupportedError, match="no transactions"):
        conn.rollback()


def test_closing_the_connection_closes_its_cursors_and_the_connector(fake: FakeRun) -> None:
    inner = FakeConnector()
    with dbapi.Connection(inner, run=fake) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT id FROM customers")
        cursor.fetchone()
    assert conn.closed and inner.closed and cursor.closed
    assert fake.closed == 1  # the open result was closed: its paging stops
    for action in (conn.cursor, conn.commit, conn.rollback, cursor.fetchone):
        with pytest.raises(dbapi.InterfaceError, match="closed"):
            action()
    conn.close()  # twice is fine


# -- cursor ------------------------------------------------------------------------------


def test_execute_and_fetch(conn: dbapi.Connection, fake: FakeRun) -> None:
    cursor = conn.cursor()
    assert cursor.description is None and cursor.rowcount == -1 and cursor.arraysize == 1
    assert cursor.execute("SELECT id, name FROM customers WHERE id <= 5") is cursor
    assert cursor.fetchone() == (1, "customer 1")
    assert cursor.fetchmany() == [(2, "customer 2")]  # arraysize rows
    assert cursor.fetchmany(2) == [(3, "customer 3"), (4, "customer 4")]
    assert cursor.rowcount == -1  # not known until every row is read
    assert cursor.fetchall() == [(5, "customer 5")]
    assert cursor.rowcount == 5
    assert cursor.fetchone() is None and cursor.fetchall() == [] and cursor.fetchmany(3) == []


def test_description_has_seven_items_and_type_codes(conn: dbapi.Connection) -> None:
    cursor = conn.cursor()
    cursor.execute("SELECT id, name, balance, active, created, id * 2 AS twice FROM customers")
    assert cursor.description is not None
    assert all(len(d) == 7 for d in cursor.description)
    assert [d[0] for d in cursor.description] == [
        "id",
        "name",
        "balance",
        "active",
        "created",
        "twice",
    ]
    codes = [d[1] for d in cursor.description]
    assert codes[0] == dbapi.NUMBER and codes[1] == dbapi.STRING and codes[2] == dbapi.NUMBER
    assert codes[4] == dbapi.DATETIME and codes[5] is None


def test_fetching_streams_from_the_result(conn: dbapi.Connection, fake: FakeRun) -> None:
    cursor = conn.cursor()
    cursor.execute("SELECT id FROM customers")
    assert fake.pulled == 0
    cursor.arraysize = 7
    assert len(cursor.fetchmany()) == 7
    assert fake.pulled == 7  # fetchmany reads no row beyond the ones it returns
    assert cursor.fetchone() == (8,)
    assert fake.pulled == 8
    assert [next(cursor), next(cursor)] == [(9,), (10,)]
    cursor.close()
    assert fake.closed == 1 and fake.pulled == 10


def test_iteration(conn: dbapi.Connection) -> None:
    cursor = conn.cursor()
    cursor.execute("SELECT id FROM customers WHERE id > 47")
    assert list(cursor) == [(48,), (49,), (50,)]
    assert cursor.rowcount == 3


def test_a_new_execute_closes_the_previous_result(conn: dbapi.Connection, fake: FakeRun) -> None:
    cursor = conn.cursor()
    cursor.execute("SELECT id FROM customers")
    cursor.fetchone()
    cursor.execute("SELECT name FROM customers WHERE id = 3")
    assert fake.closed == 1
    assert cursor.fetchall() == [("customer 3",)]


def test_qmark_and_named_parameters(conn: dbapi.Connection, fake: FakeRun) -> None:
    cursor = conn.cursor()
    cursor.execute("SELECT id FROM customers WHERE id BETWEEN ? AND ?", (3, 4))
    assert cursor.fetchall() == [(3,), (4,)]
    assert fake.calls[-1][2] == [3, 4]
    cursor.execute("SELECT id FROM customers WHERE id = :key", {"key": 9})
    assert cursor.fetchall() == [(9,)]
    assert fake.calls[-1][2] == {"key": 9}
    cursor.execute("SELECT count(*) FROM customers")
    assert fake.calls[-1][2] is None
    assert fake.calls[-1][0] is conn.client


@pytest.mark.parametrize("bad", ["x", b"x", 5, {1, 2}])
def test_parameters_that_are_neither_sequence_nor_mapping(conn: dbapi.Connection, bad: Any) -> None:
    with pytest.raises(dbapi.ProgrammingError, match=r"sequence .* or a mapping"):
        conn.cursor().execute("SELECT id FROM customers WHERE id = ?", bad)


def test_errors_from_the_runner_pass_through(conn: dbapi.Connection) -> None:
    cursor = conn.cursor()
    with pytest.raises(dbapi.ProgrammingError):
        cursor.execute("SELECT nope FROM customers")
    assert cursor.description is None
    with pytest.raises(dbapi.ProgrammingError, match="no rows"):
        cursor.fetchone()


def test_writes_and_executemany(conn: dbapi.Connection) -> None:
    cursor = conn.cursor()
    cursor.execute("UPDATE customers SET name = 'x' WHERE id <= ?", [3])
    assert cursor.rowcount == 3 and cursor.description is None
    with pytest.raises(dbapi.ProgrammingError, match="no rows"):
        cursor.fetchall()
    cursor.executemany(
        "UPDATE customers SET name = ? WHERE id = ?", [("a", 1), ("b", 2), ("c", 99)]
    )
    assert cursor.rowcount == 2
    cursor.execute("SELECT name FROM customers WHERE id <= 2")
    assert cursor.fetchall() == [("a",), ("b",)]


def test_fetching_before_execute_is_an_error(conn: dbapi.Connection) -> None:
    with pytest.raises(dbapi.ProgrammingError, match="execute a SELECT first"):
        conn.cursor().fetchone()


def test_a_closed_cursor_refuses_everything(conn: dbapi.Connection, fake: FakeRun) -> None:
    with conn.cursor() as cursor:
        cursor.execute("SELECT id FROM customers")
    assert cursor.closed and fake.closed == 1
    actions = [
        lambda: cursor.execute("SELECT 1"),
        lambda: cursor.executemany("SELECT 1", [()]),
        cursor.fetchone,
        cursor.fetchmany,
        cursor.fetchall,
        lambda: next(cursor),
    ]
    for action in actions:
        with pytest.raises(dbapi.InterfaceError, match="cursor is closed"):
            action()
    cursor.close()


def test_size_hints_are_accepted(conn: dbapi.Connection) -> None:
    cursor = conn.cursor()
    cursor.setinputsizes([10, None])
    cursor.setoutputsize(100)
    cursor.setoutputsize(100, 2)


# -- pandas ------------------------------------------------------------------------------

# pandas warns that it only tests SQLAlchemy and sqlite3 connections; it then uses
# PEP 249 calls alone (cursor, execute, description, fetchall/fetchmany, close).
PANDAS_WARNING = "ignore:pandas only supports SQLAlchemy:UserWarning"


@pytest.mark.filterwarnings(PANDAS_WARNING)
def test_pandas_read_sql(conn: dbapi.Connection) -> None:
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_sql(
        "SELECT id, name, balance FROM customers WHERE id > ? AND id <= ?", conn, params=(2, 5)
    )
    assert list(frame.columns) == ["id", "name", "balance"]
    assert frame["id"].tolist() == [3, 4, 5]
    assert frame["balance"].tolist() == [3.75, 5.0, 6.25]
    named = pandas.read_sql("SELECT name FROM customers WHERE id = :k", conn, params={"k": 7})
    assert named["name"].tolist() == ["customer 7"]


@pytest.mark.filterwarnings(PANDAS_WARNING)
def test_pandas_read_sql_in_chunks_streams(conn: dbapi.Connection, fake: FakeRun) -> None:
    pandas = pytest.importorskip("pandas")
    chunks = pandas.read_sql("SELECT id FROM customers", conn, chunksize=20)
    first = next(chunks)
    assert first["id"].tolist() == list(range(1, 21))
    assert fake.pulled == 20
    assert [len(c) for c in chunks] == [20, 10]


@pytest.mark.filterwarnings(PANDAS_WARNING)
def test_pandas_reads_decimal_columns(fake: FakeRun) -> None:
    pandas = pytest.importorskip("pandas")

    def exact(connection: Any, sql: str, params: Any = None, **_: Any) -> Result:
        return Result(
            columns=[ResultColumn("total", "DECIMAL")],
            rows=iter([(Decimal("0.10"),), (Decimal("1234567.89"),)]),
        )

    with dbapi.Connection(FakeConnector(), run=exact) as conn:
        frame = pandas.read_sql("SELECT total FROM invoices", conn, coerce_float=False)
    assert frame["total"].tolist() == [Decimal("0.10"), Decimal("1234567.89")]


def test_qmark_values_bind_in_the_order_of_the_sql() -> None:
    """A tree walk meets LIMIT before WHERE and a CTE last; ? values follow the text."""
    from sagesql.engine.statement import bind, parse

    tree = parse(
        "WITH c AS (SELECT ? AS a) SELECT x FROM t WHERE a != ? AND b IN (SELECT ?)"
        " ORDER BY x LIMIT ? OFFSET ?"
    )
    assert bind(tree, [1, 2, 3, 4, 5]).sql("sqlite") == (
        "WITH c AS (SELECT 1 AS a) SELECT x FROM t WHERE a <> 2 AND b IN (SELECT 3)"
        " ORDER BY x LIMIT 4 OFFSET 5"
    )
