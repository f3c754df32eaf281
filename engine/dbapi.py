"""DB-API 2.0 (PEP 249): connections and cursors over sagesql's statement runner.

::

    with connect("Product=SageCRM;URL=https://crm.example.com;User=me") as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT id, name FROM companies WHERE name LIKE ?", ["A%"])
        first = cursor.fetchmany(10)

Cursors stream: rows are pulled from the API as they are fetched, and ``fetchmany(n)``
reads no further than ``n`` rows. Parameters are ``?`` with a sequence (``paramstyle``
is ``qmark``) or ``:name`` with a mapping. Sage has no transactions: ``commit()`` does
nothing and ``rollback()`` raises NotSupportedError. Every exception is one of the
PEP 249 classes below (all rooted at :class:`Error`).

Values come as Python types: DATE columns as ``datetime.date``, DATETIME as a UTC-aware
``datetime.datetime``, DECIMAL as ``decimal.Decimal``, BOOLEAN as ``bool``, INTEGER as
``int``, TEXT and JSON as ``str`` (a value the API sent in a shape its type does not
allow stays the text it was). ``description[i][1]`` is the column's catalog type
("DATETIME", "DECIMAL"...), equal to the PEP 249 type object of those values
(``== dbapi.DATETIME``, ``NUMBER``, ``STRING``), or None for a computed column.
The command line and the activities keep the ISO text of dates and times.
"""

from __future__ import annotations

import datetime
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from itertools import islice
from typing import TYPE_CHECKING, Any

from sagesql.engine.isotime import parse_datetime
from sagesql.engine.result import Result, ResultColumn
from sagesql.errors import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,
)

if TYPE_CHECKING:  # the connector loads on first use: `import sagesql` stays cheap
    from sagesql.connector.seams import Client

__all__ = [
    "BINARY",
    "DATETIME",
    "NUMBER",
    "ROWID",
    "STRING",
    "Binary",
    "Connection",
    "Cursor",
    "DataError",
    "DatabaseError",
    "Date",
    "DateFromTicks",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "Time",
    "TimeFromTicks",
    "Timestamp",
    "TimestampFromTicks",
    "Warning",
    "apilevel",
    "connect",
    "paramstyle",
    "threadsafety",
]

apilevel = "2.0"
# Threads may share the module, not connections.
threadsafety = 1
# ``?`` with a sequence; ``:name`` with a mapping is accepted too.
paramstyle = "qmark"

Params = Sequence[Any] | Mapping[str, Any] | None
# sagesql.engine.pipeline.run's signature: (connection, sql, params, *, max_rows) -> Result.
Runner = Callable[..., Result]


class TypeObject:
    """A PEP 249 type object: equal to each catalog SQL type it stands for."""

    def __init__(self, name: str, *sql_types: str) -> None:
        self.name = name
        self.sql_types = frozenset(sql_types)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TypeObject):
            return self.sql_types == other.sql_types
        return isinstance(other, str) and other.upper() in self.sql_types

    def __hash__(self) -> int:
        return hash(self.sql_types)

    def __repr__(self) -> str:
        return self.name


# A description's type code is the column's catalog SQL type ("DECIMAL"), or None for
# a computed column; ``description[i][1] == NUMBER`` works as PEP 249 describes.
STRING = TypeObject("STRING", "TEXT", "JSON")
NUMBER = TypeObject("NUMBER", "INTEGER", "DECIMAL", "BOOLEAN")
DATETIME = TypeObject("DATETIME", "DATE", "DATETIME")
BINARY = TypeObject("BINARY")  # Sage's APIs have no binary columns
ROWID = TypeObject("ROWID")  # tables are keyed by their own ids, not row ids

Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime
Binary = bytes


# The constructors keep PEP 249's names.
def DateFromTicks(ticks: float) -> datetime.date:
    return Date(*time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> datetime.time:
    return Time(*time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> datetime.datetime:
    return Timestamp(*time.localtime(ticks)[:6])


def _default_run() -> Runner:
    from sagesql.engine.pipeline import run  # the engine loads only when a cursor runs SQL

    return run


class Connection:
    """A DB-API connection around a :class:`~sagesql.connector.client.SageClient`.

    ``run`` executes one statement (default: ``sagesql.engine.pipeline.run``); tests hand
    in their own. Closing this connection closes its cursors and the client it wraps.
    """

    # PEP 249's optional extension: the exceptions as connection attributes.
    Warning = Warning
    Error = Error
    InterfaceError = InterfaceError
    DatabaseError = DatabaseError
    DataError = DataError
    OperationalError = OperationalError
    IntegrityError = IntegrityError
    InternalError = InternalError
    ProgrammingError = ProgrammingError
    NotSupportedError = NotSupportedError

    def __init__(self, client: Client, *, run: Runner | None = None) -> None:
        self.client = client
        self._run = run
        self._cursors: weakref.WeakSet[Cursor] = weakref.WeakSet()
        self.closed = False

    def _check(self) -> None:
        if self.closed:
            raise InterfaceError("the connection is closed", hint="open a new connection")

    def run(self, sql: str, params: Params) -> Result:
        self._check()
        if self._run is None:
            self._run = _default_run()
        return self._run(self.client, sql, params)

    def cursor(self) -> Cursor:
        self._check()
        cursor = Cursor(self)
        self._cursors.add(cursor)
        return cursor

    def commit(self) -> None:
        """Nothing to do: Sage has no transactions, each write is applied when it runs."""
        self._check()

    def rollback(self) -> None:
        self._check()
        raise NotSupportedError(
            "Sage has no transactions, so nothing can be rolled back",
            hint="each write is applied when it runs",
        )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for cursor in list(self._cursors):
            cursor.close()
        close = getattr(self.client, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Cursor:
    """A streaming cursor: rows come from the API as they are fetched."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.arraysize = 1
        self.rowcount = -1
        self.description: tuple[tuple[Any, ...], ...] | None = None
        self.lastrowid: Any = None
        self.closed = False
        self._result: Result | None = None
        self._rows: Iterator[tuple[Any, ...]] | None = None
        self._read = 0

    # -- running --------------------------------------------------------------------

    def _check(self) -> None:
        if self.closed:
            raise InterfaceError("the cursor is closed", hint="open a new cursor")
        if self.connection.closed:
            raise InterfaceError("the connection is closed", hint="open a new connection")

    def _finish(self) -> None:
        """Close the current result (which stops its paging)."""
        result, self._result, self._rows = self._result, None, None
        if result is not None:
            result.close()

    def execute(self, operation: str, parameters: Params = None) -> Cursor:
        """Run a statement; a query's rows are fetched as they are read."""
        self._check()
        self._finish()
        self.description, self.rowcount = None, -1
        if not isinstance(operation, str):
            raise ProgrammingError("the statement must be a string of SQL")
        result = self.connection.run(operation, _parameters(parameters))
        rows = iter(result.rows)
        convert = _row_converter(result.columns)
        self._result, self._read = result, 0
        self._rows = rows if convert is None else map(convert, rows)
        self.rowcount = result.rowcount
        if result.columns:
            self.description = tuple(
                (c.name, c.sql_type, None, None, None, None, None) for c in result.columns
            )
        else:
            self._finish()  # a write: nothing to fetch
        return self

    def executemany(self, operation: str, seq_of_parameters: Sequence[Params]) -> Cursor:
        """Run a statement once per parameter set; rowcount is the total when known.

        ``INSERT ... VALUES (?, ...)`` runs as one multi-row INSERT (its rows written in
        parallel, as a multi-row INSERT's are); other statements run set by set. Sage has
        no transactions: when a set fails, the error says which were written.
        """
        self._check()
        sets = list(seq_of_parameters)
        if len(sets) > 1:
            from sagesql.engine.statement import merged_insert  # sqlglot: only to run SQL

            merged = merged_insert(operation, sets)
            if merged is not None:
                self.execute(merged)
                self._raise_for_failed_rows(len(sets), written_before=0)
                self._finish()
                self.description = None
                return self
        total = 0
        for number, parameters in enumerate(sets, 1):
            try:
                self.execute(operation, parameters)
            except Error as exc:
                if number == 1:
                    raise
                raise type(exc)(
                    f"parameter set {number} of {len(sets)}: {exc.message} (sets 1 to "
                    f"{number - 1} were run and their writes stay: Sage has no transactions)",
                    hint=exc.hint,
                ) from None
            self._raise_for_failed_rows(len(sets), written_before=number - 1, at=number)
            counted = self.rowcount
            self._finish()
            total = -1 if counted < 0 or total < 0 else total + counted
        self.rowcount, self.description = total, None
        return self

    def _raise_for_failed_rows(self, sets: int, *, written_before: int, at: int = 0) -> None:
        """An error naming the rows Sage refused and those it wrote, when any was refused
        (a write's per-row results are the rows executemany does not return)."""
        outcomes = getattr(self._result, "outcomes", None) or []
        failed = [o for o in outcomes if not o.ok]
        if not failed:
            return
        self._finish()
        ok = sum(1 for o in outcomes if o.ok)
        first = failed[0]
        where = f"parameter set {at}" if at else f"parameter set {first.index + 1}"
        numbers = ", ".join(str(o.index + 1) for o in failed[:10])
        more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        written = (
            f"sets 1 to {written_before} and {ok} row(s) of set {at} were written"
            if at
            else f"{ok} of {sets} parameter sets were written; sets {numbers}{more} failed"
        )
        detail = first.error.text() if first.error is not None else first.status
        raise OperationalError(
            f"executemany: {where} failed: {detail} ({written})",
            hint="the rows written stay written (Sage has no transactions): run only the "
            "failed parameter sets again",
        )

    def setinputsizes(self, sizes: Any) -> None:
        """Accepted and ignored (PEP 249 allows it)."""

    def setoutputsize(self, size: Any, column: int | None = None) -> None:
        """Accepted and ignored (PEP 249 allows it)."""

    # -- fetching -------------------------------------------------------------------

    def _source(self) -> Iterator[tuple[Any, ...]]:
        self._check()
        if self._rows is None:
            raise ProgrammingError(
                "there are no rows to fetch",
                hint="execute a SELECT first" if self.description is None else None,
            )
        return self._rows

    def _done(self) -> None:
        """All rows were read: the row count is now known; free the result."""
        if self.rowcount < 0:
            self.rowcount = self._read
        self._finish()
        self._rows = iter(())  # later fetches return nothing rather than fail

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self._source()
        row = next(rows, None)
        if row is None:
            self._done()
            return None
        self._read += 1
        return row

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        """Up to ``size`` rows (default ``arraysize``); reads no row beyond them."""
        rows = self._source()
        wanted = self.arraysize if size is None else size
        batch = list(islice(rows, max(wanted, 0)))
        self._read += len(batch)
        if len(batch) < wanted:
            self._done()
        return batch

    def fetchall(self) -> list[tuple[Any, ...]]:
        batch = list(self._source())
        self._read += len(batch)
        self._done()
        return batch

    def __iter__(self) -> Cursor:
        return self

    def __next__(self) -> tuple[Any, ...]:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    # -- closing --------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading (no more pages are requested) and make the cursor unusable."""
        if self.closed:
            return
        self.closed = True
        self._finish()

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _to_date(value: Any) -> Any:
    if value.__class__ is str:
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            return value  # not a date: the API's text, as it was
    return value


def _to_datetime(value: Any) -> Any:
    if value.__class__ is str:
        try:
            return parse_datetime(value)
        except ValueError:
            return value
    return value


def _to_decimal(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


def _to_bool(value: Any) -> Any:
    return bool(value) if value.__class__ is int else value


# The Python type a cursor returns for each catalog type whose stored value differs.
_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "DATE": _to_date,
    "DATETIME": _to_datetime,
    "DECIMAL": _to_decimal,
    "BOOLEAN": _to_bool,
}


def _row_converter(
    columns: Sequence[ResultColumn],
) -> Callable[[tuple[Any, ...]], tuple[Any, ...]] | None:
    """A function giving a result row the Python types of its columns' catalog types,
    or None when no column needs one."""
    typed = [
        (i, _CONVERTERS[c.sql_type]) for i, c in enumerate(columns) if c.sql_type in _CONVERTERS
    ]
    if not typed:
        return None

    def convert(row: tuple[Any, ...]) -> tuple[Any, ...]:
        out = list(row)
        for i, to in typed:
            if out[i] is not None:
                out[i] = to(out[i])
        return tuple(out)

    return convert


def _parameters(parameters: Any) -> Params:
    """Parameters as the runner takes them: None, a list (``?``) or a dict (``:name``)."""
    if parameters is None:
        return None
    if isinstance(parameters, Mapping):
        return dict(parameters)
    if isinstance(parameters, (str, bytes)) or not isinstance(parameters, Sequence):
        raise ProgrammingError(
            f"parameters must be a sequence (for ?) or a mapping (for :name), "
            f"not {type(parameters).__name__}",
            hint="write execute(sql, [value]) for one parameter",
        )
    return list(parameters)


def connect(
    connection_string: str | None = None, *, profile: str | None = None, **properties: Any
) -> Connection:
    """A DB-API connection from a connection string, a profile, the environment and keywords.

    ``connect("Product=Sage200;InitiateOAuth=GETANDREFRESH;OAuthClientId=...")`` or
    ``connect(profile="books")`` or ``connect(Product="SageCRM", URL=..., User=...)``.
    """
    # Imported here so that importing the DB-API module stays cheap.
    from sagesql.connector.client import open_client

    return Connection(open_client(connection_string, profile=profile, **properties))
