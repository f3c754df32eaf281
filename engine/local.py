"""Local evaluation: SQLite runs the statement over the rows fetched from the API.

The planner hands over a statement whose table references name the sources (``t0``,
``t1``...) and whose literals are already in the stored forms of ``values``. Each
source becomes one SQLite table (columns typed by ``values.SQLITE_TYPES``), and SQLite
runs the statement, so everything SQLite supports works: joins, subqueries, CTEs,
UNION, window functions, GROUP BY/HAVING, CASE, scalar and JSON functions.

Two ways to evaluate, chosen by :func:`why_not_streaming`:

* **streaming** - one source and a statement that looks at one row at a time (no ORDER
  BY, GROUP BY, aggregate, DISTINCT, window, HAVING, subquery, set operation, CTE or
  join): rows go through a one-batch table (insert a batch, run the statement without
  its LIMIT/OFFSET, yield the matches, delete the batch). OFFSET and LIMIT are applied
  here, and the source is never pulled past the last row the LIMIT can need, so that
  paging stops. Memory stays constant.
* **materialized** - every source is loaded, then SQLite runs the whole statement. The
  database lives in memory until it holds more than ``memory_rows`` rows or
  ``memory_bytes`` bytes, then moves to a temporary file so that memory stays bounded.

The :class:`LocalResult` tells which way was taken (``evaluation``). Rows are read
lazily from the SQLite cursor; closing the result frees SQLite (and the temporary
file) and closes the source iterators, which stops their paging.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from itertools import islice
from typing import Any

import msgspec
from sqlglot import exp

from sagesql.engine import values
from sagesql.engine.result import Result, ResultColumn
from sagesql.errors import (
    DatabaseError,
    DataError,
    InternalError,
    OperationalError,
    ProgrammingError,
)

# Rows per streaming batch: large enough that SQLite's per-statement cost vanishes,
# small enough that a batch is a few megabytes at most.
BATCH_ROWS = 2_000
# The first streaming batch without a LIMIT: the first rows come out after one page.
FIRST_BATCH_ROWS = 100
# Rows per INSERT transaction when loading a source whole.
LOAD_BATCH_ROWS = 5_000
# Beyond either, the materialized database moves from memory to a temporary file.
MEMORY_ROWS = 200_000
MEMORY_BYTES = 64 * 2**20
# The types whose stored values values.from_storage changes (the others come out as
# stored); skipping the rest halves the cost of a wide SELECT *. A test keeps this true.
CONVERTED_TYPES = frozenset({"DECIMAL", "BOOLEAN", "DATETIME"})
# SQLite's page cache for a database in a temporary file (negative: KiB).
FILE_CACHE_KIB = 16 * 1024

# Aggregates SQLite knows that sqlglot parses as plain (anonymous) functions.
SQLITE_AGGREGATES = frozenset(
    {
        "avg",
        "count",
        "group_concat",
        "json_group_array",
        "json_group_object",
        "jsonb_group_array",
        "jsonb_group_object",
        "max",
        "min",
        "string_agg",
        "sum",
        "total",
    }
)

# Select clauses a streaming statement may use; any other one needs every row at once.
STREAMING_CLAUSES = frozenset({"expressions", "from_", "where", "limit", "offset", "hint"})
CLAUSE_NAMES = {
    "order": "ORDER BY",
    "group": "GROUP BY",
    "having": "HAVING",
    "distinct": "DISTINCT",
    "with_": "a CTE (WITH)",
    "joins": "a join",
    "windows": "a WINDOW clause",
    "laterals": "a lateral join",
}

# SQLite's names for a table's row number.
ROWID_NAMES = frozenset({"rowid", "oid", "_rowid_"})

Columns = list[tuple[str, str | None]]  # (name, catalog SQL type or None)


class LocalSource(msgspec.Struct):
    """One table's rows for the local database: ``name`` is the SQLite table to create.

    Rows are tuples in the columns' order, each value already in its stored form
    (``values.to_storage``). ``rows`` is pulled lazily and closed (when it has a
    ``close()``, as generators do) when the result is closed.
    """

    name: str
    columns: Sequence[tuple[str, str]]  # (column name, catalog SQL type)
    rows: Iterator[tuple[Any, ...]]
    # DECIMAL column -> decimal places the API wrote, filled while rows are read
    # (fetch.flattener): a result column that is such a column keeps that scale.
    scales: Mapping[str, int] = msgspec.field(default_factory=dict)
    # The product the rows come from: how DATETIME values are written on the way out.
    product: str | None = None


class Evaluation(msgspec.Struct):
    """How a statement was evaluated: for tests, ``--explain`` and progress reports."""

    streaming: bool = False
    reason: str | None = None  # why it could not stream (None when it streams)
    storage: str = "memory"  # "memory", or "file" once the database moved to a temp file
    temp_file: str | None = None  # that file (deleted when the result closes)
    rows_loaded: int = 0  # source rows put into SQLite so far
    batches: int = 0  # streaming batches run so far


class LocalResult(Result):
    """A :class:`Result` that also tells how SQLite evaluated it."""

    evaluation: Evaluation = msgspec.field(default_factory=Evaluation)


def why_not_streaming(select: exp.Expression, sources: Sequence[LocalSource | str]) -> str | None:
    """Why the statement needs every row at once, or None when it can stream.

    A statement streams when its answer for a batch of rows never depends on other
    rows: one source, read once, and nothing that sorts, groups or compares rows.
    ``sources`` may be the sources' names (for ``--explain``, before any row exists).
    """
    names = [s if isinstance(s, str) else s.name for s in sources]
    if len(names) != 1:
        return f"{len(names)} tables" if names else "no table"
    if not isinstance(select, exp.Select):
        return (
            "a set operation (UNION, INTERSECT, EXCEPT)"
            if isinstance(select, exp.SetOperation)
            else f"a {select.key} statement"
        )
    for clause, value in select.args.items():
        if value and clause not in STREAMING_CLAUSES:
            return CLAUSE_NAMES.get(clause, clause.rstrip("_").upper())
    source = select.args.get("from_")
    table = source.this if source is not None else None
    if not (
        isinstance(table, exp.Table)
        and isinstance(table.this, exp.Identifier)
        and not table.args.get("db")
        and table.name.lower() == names[0].lower()
    ):
        return "a FROM that is not the table itself"
    for node in select.walk():
        if node is select:
            continue
        if isinstance(node, (exp.Select, exp.Subquery, exp.SetOperation)):
            return "a subquery"
        if isinstance(node, exp.Window):
            return "a window function"
        if _is_aggregate(node):
            return f"an aggregate ({_function_name(node)})"
        if isinstance(node, exp.Table) and node is not table:
            return "a second reference to the table"
        if isinstance(node, exp.Column) and node.name.lower() in ROWID_NAMES:
            return "the rowid"  # each batch numbers its rows from 1 again
    return None


def evaluate(
    select: exp.Expression,
    sources: list[LocalSource],
    *,
    batch_rows: int = BATCH_ROWS,
    memory_rows: int = MEMORY_ROWS,
    memory_bytes: int = MEMORY_BYTES,
) -> LocalResult:
    """The statement's result over the sources' rows, streamed when it can be.

    The rows and literals arrive in their stored forms (values.py). SQL errors raise
    ProgrammingError (DataError for a value SQLite refuses); errors from the sources
    pass through unchanged.
    """
    database = _Database()
    state = _Closer(database, sources)
    product = next((s.product for s in sources if s.product), None)
    evaluation = Evaluation(reason=why_not_streaming(select, sources))
    try:
        for source in sources:
            database.create(source)
        window = _window(database, select) if evaluation.reason is None else None
        if evaluation.reason is None and window is None:
            evaluation.reason = "a LIMIT or OFFSET that is not a whole number"
        if evaluation.reason is None and window is not None:
            evaluation.streaming = True
            statement = select.copy()
            statement.set("limit", None)
            statement.set("offset", None)
            sql = statement.sql(dialect="sqlite")
            cursor = database.run(sql)  # over the empty table: names and SQL errors now
            columns = _result_columns(select, sources, cursor.description)
            cursor.close()
            rows: Iterator[tuple[Any, ...]] = _stream(
                database,
                sources[0],
                sql,
                window,
                _converter(columns, _scales(select, sources, len(columns)), product),
                evaluation,
                state,
                batch_rows,
                _projector(statement, sources[0]),
            )
        else:
            sql = select.sql(dialect="sqlite")
            # Over the empty tables first: SQLite's errors come before any row is fetched.
            database.run(sql).close()
            for source in sources:
                _load(database, source, evaluation, memory_rows, memory_bytes)
            cursor = database.run(sql)
            columns = _result_columns(select, sources, cursor.description)
            scales = _scales(select, sources, len(columns))
            rows = _read(cursor, _converter(columns, scales, product), state)
    except BaseException:
        state.close()
        raise
    return LocalResult(columns=columns, rows=rows, on_close=[state.close], evaluation=evaluation)


# -- the SQLite database ---------------------------------------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _regexp(pattern: str | None, value: Any) -> int | None:
    """SQLite's ``X REGEXP Y`` calls regexp(Y, X); the sqlite3 shell has it, Python's not."""
    if pattern is None or value is None:
        return None
    return 1 if re.search(pattern, str(value)) else 0


def _sqlite_error(exc: sqlite3.Error) -> DatabaseError:
    message = str(exc)
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError)):
        return DataError(f"SQLite refused a value: {message}", hint="check the values in the SQL")
    if any(word in message for word in ("disk", "full", "I/O", "memory")):
        return OperationalError(
            f"the local database failed: {message}", hint="free disk space in the temp directory"
        )
    return ProgrammingError(f"SQLite could not run the statement: {message}", hint="fix the SQL")


def _as_decimal(value: Any) -> tuple[Decimal, bool]:
    """(the value as the decimal it prints as, whether SQLite would count it as REAL)."""
    if isinstance(value, int):
        return Decimal(value), False
    if isinstance(value, float):
        return Decimal(repr(value)), True
    try:  # SQLite reads text and blobs as numbers where it can, else as 0
        return Decimal(repr(float(value))), True
    except (TypeError, ValueError):
        return Decimal(0), True


class _ExactSum:
    """sum() as SQLite defines it, adding REAL values as the decimals they print as, so that
    money (DECIMAL columns, kept as REAL) adds up without binary noise: 0.1 + 0.2 = 0.3."""

    empty_result: Any = None

    def __init__(self) -> None:
        self.total = Decimal(0)
        self.count = 0
        self.real = False

    def step(self, value: Any) -> None:
        if value is None:
            return
        number, real = _as_decimal(value)
        self.total += number
        self.count += 1
        self.real = self.real or real

    def inverse(self, value: Any) -> None:
        if value is None:
            return
        self.total -= _as_decimal(value)[0]
        self.count -= 1

    def value(self) -> Any:
        if self.count == 0:
            return self.empty_result
        return float(self.total) if self.real else int(self.total)

    finalize = value


class _ExactTotal(_ExactSum):
    """total(): like sum() but always REAL, and 0.0 over no rows."""

    empty_result = 0.0

    def value(self) -> Any:
        return float(self.total) if self.count else 0.0

    finalize = value


class _ExactAvg(_ExactSum):
    def value(self) -> Any:
        return float(self.total / self.count) if self.count else None

    finalize = value


def register_functions(connection: sqlite3.Connection) -> None:
    """The functions sagesql adds to SQLite: regexp(), and exact sum/total/avg.

    Tests that use SQLite as the oracle register them too, so that both sides compute
    the same SQL.
    """
    connection.create_function("regexp", 2, _regexp, deterministic=True)
    # Window-capable registration needs Python 3.11; on 3.10 SQLite's own sum() stays.
    register = getattr(connection, "create_window_function", None)
    if register is None:
        return
    for name, kind in (("sum", _ExactSum), ("total", _ExactTotal), ("avg", _ExactAvg)):
        register(name, 1, kind)


class _Database:
    """The SQLite connection, in memory until :meth:`spill` moves it to a temporary file."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.connection = self._open(":memory:")

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        # Autocommit: transactions are explicit; any thread may read the result.
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        register_functions(connection)
        return connection

    def create(self, source: LocalSource) -> None:
        columns = ", ".join(
            f"{_quote(name)} {values.SQLITE_TYPES.get(sql_type, '')}".rstrip()
            for name, sql_type in source.columns
        )
        self.connection.execute(f"CREATE TABLE {_quote(source.name)} ({columns})")

    def insert(self, source: LocalSource, rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * len(source.columns))
        self.connection.execute("BEGIN")
        try:
            self.connection.executemany(f"INSERT INTO {_quote(source.name)} VALUES ({marks})", rows)
        except sqlite3.Error as exc:
            self.connection.execute("ROLLBACK")
            raise InternalError(
                f"a row of {source.name} does not fit its table: {exc}",
                hint="this is a bug in sagesql; please report it",
            ) from exc
        self.connection.execute("COMMIT")

    def run(self, sql: str) -> sqlite3.Cursor:
        try:
            return self.connection.execute(sql)
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc

    def size(self) -> int:
        pages = self.connection.execute("PRAGMA page_count").fetchone()[0]
        return int(pages) * int(self.connection.execute("PRAGMA page_size").fetchone()[0])

    def spill(self) -> None:
        """Move the database to a temporary file (deleted on close)."""
        descriptor, path = tempfile.mkstemp(prefix="sagesql-", suffix=".sqlite3")
        os.close(descriptor)
        self.path = path
        target = self._open(path)
        # Nothing to recover after a crash: the file is scratch space.
        target.execute("PRAGMA journal_mode=OFF")
        target.execute("PRAGMA synchronous=OFF")
        target.execute(f"PRAGMA cache_size=-{FILE_CACHE_KIB}")
        self.connection.backup(target)
        self.connection.close()
        self.connection = target

    def close(self) -> None:
        self.connection.close()
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


class _Closer:
    """Frees the database and closes the sources, once, whoever gets there first."""

    def __init__(self, database: _Database, sources: Sequence[LocalSource]) -> None:
        self.database = database
        self.sources = sources
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.database.close()
        finally:
            for source in self.sources:
                close = getattr(source.rows, "close", None)
                if close is not None:
                    close()


def _load(
    database: _Database,
    source: LocalSource,
    evaluation: Evaluation,
    memory_rows: int,
    memory_bytes: int,
) -> None:
    while batch := list(islice(source.rows, LOAD_BATCH_ROWS)):
        database.insert(source, batch)
        evaluation.rows_loaded += len(batch)
        if database.path is None and (
            evaluation.rows_loaded > memory_rows or database.size() > memory_bytes
        ):
            database.spill()
            evaluation.storage, evaluation.temp_file = "file", database.path


def _window(database: _Database, select: exp.Expression) -> tuple[int, int | None] | None:
    """(OFFSET, LIMIT or None) as numbers, or None when they are not whole numbers."""
    numbers: list[int | None] = []
    for clause in ("offset", "limit"):
        node = select.args.get(clause)
        if node is None:
            numbers.append(None)
            continue
        try:
            value = database.connection.execute(
                "SELECT " + node.expression.sql(dialect="sqlite")
            ).fetchone()[0]
        except sqlite3.Error:
            return None
        if not isinstance(value, int):
            return None
        numbers.append(value)
    offset, limit = numbers
    # SQLite: a negative LIMIT means none, a negative OFFSET means zero.
    return max(offset or 0, 0), (limit if limit is not None and limit >= 0 else None)


# -- rows out ---------------------------------------------------------------------------


def _converter(
    columns: list[ResultColumn],
    scales: Sequence[tuple[Mapping[str, int], str] | None] = (),
    product: str | None = None,
) -> Callable[[tuple[Any, ...]], tuple[Any, ...]] | None:
    """A function giving a stored row its Python values, or None when nothing changes.

    ``scales[i]``: where the decimal places of DECIMAL column i are noted (its source's
    scales and column name); its Decimals get those places ("7800.00", not "7800").
    """
    typed = [(i, c.sql_type) for i, c in enumerate(columns) if c.sql_type in CONVERTED_TYPES]
    if not typed:
        return None
    namespace: dict[str, Any] = {"_scaled": with_scale}
    steps: dict[int, str] = {}
    for i, sql_type in typed:
        namespace[f"o{i}"] = values.output_converter(sql_type, product)
        steps[i] = f"None if a{i} is None else o{i}(a{i})"
    for i, scale in enumerate(scales):
        if scale is None or i >= len(columns):
            continue
        namespace[f"s{i}"] = scale[0].get
        namespace[f"k{i}"] = scale[1]
        value = f"({steps[i]})" if i in steps else f"a{i}"
        steps[i] = f"_scaled({value}, p) if (p := s{i}(k{i})) else {value}"
    # One function per result, its steps inline: the rows are unpacked once and only
    # the converted columns cost more than a name (a wide SELECT * went out at a third
    # of the cost of a list per row and a loop over its columns).
    width = len(columns)
    names = "".join(f"a{i}, " for i in range(width))
    body = "".join(f"({steps[i]}), " if i in steps else f"a{i}, " for i in range(width))
    code = f"def convert(row):\n    ({names}) = row\n    return ({body})\n"
    exec(compile(code, "<sagesql output>", "exec"), namespace)  # names and indexes only
    convert: Callable[[tuple[Any, ...]], tuple[Any, ...]] = namespace["convert"]
    return convert


def with_scale(value: Any, places: int) -> Any:
    """A Decimal with at least ``places`` decimal places (only zeros added: the same number)."""
    if not isinstance(value, Decimal) or not value.is_finite():
        return value
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or exponent <= -places:
        return value
    try:
        return value.quantize(Decimal(1).scaleb(-places))
    except ArithmeticError:  # more digits than the decimal context holds
        return value


def _scales(
    select: exp.Expression, sources: Sequence[LocalSource], count: int
) -> list[tuple[Mapping[str, int], str] | None]:
    """For each result column that is a source's DECIMAL column (through aliases, CTEs,
    subqueries, MIN/MAX, branches that agree): that source's scales and the column."""
    by_name = {s.name.lower(): s for s in sources}
    tagged = {
        s.name.lower(): [
            (name, f"{s.name.lower()}\0{name}" if sql_type == "DECIMAL" else None)
            for name, sql_type in s.columns
        ]
        for s in sources
    }
    found = output_columns(select, tagged)
    if found is None or len(found) != count:
        return []
    out: list[tuple[Mapping[str, int], str] | None] = []
    for _, tag in found:
        if tag is None or "\0" not in tag:
            out.append(None)
            continue
        source, name = tag.split("\0", 1)
        out.append((by_name[source].scales, name) if source in by_name else None)
    return out


def _read(
    cursor: sqlite3.Cursor,
    convert: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None,
    state: _Closer,
) -> Iterator[tuple[Any, ...]]:
    try:
        if convert is None:
            yield from cursor
        else:
            for row in cursor:
                yield convert(row)
    except sqlite3.Error as exc:
        raise _sqlite_error(exc) from exc
    finally:
        state.close()


def _stream(
    database: _Database,
    source: LocalSource,
    sql: str,
    window: tuple[int, int | None],
    convert: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None,
    evaluation: Evaluation,
    state: _Closer,
    batch_rows: int,
    project: Projector | None = None,
) -> Iterator[tuple[Any, ...]]:
    """Batch by batch through a one-batch table; OFFSET and LIMIT applied here.

    A source row yields at most one result row, so while ``wanted`` rows are still
    needed, a batch of ``wanted`` rows cannot overshoot: with a LIMIT whose rows all
    match, the source is pulled exactly as far as the LIMIT needs. Batches double after
    one that matched too few, so a selective filter does not run row by row.
    """
    offset, limit = window
    wanted = None if limit is None else offset + limit  # matches to produce, skipped included
    matched = 0
    size = 0
    delete = f"DELETE FROM {_quote(source.name)}"
    try:
        while wanted is None or matched < wanted:
            floor = FIRST_BATCH_ROWS if wanted is None else wanted - matched
            size = min(batch_rows, max(floor, 2 * size))
            batch = list(islice(source.rows, size))
            if not batch:
                break
            evaluation.rows_loaded += len(batch)
            evaluation.batches += 1
            projected = project(batch) if project is not None else None
            cursor: sqlite3.Cursor | None = None
            if projected is None:
                database.insert(source, batch)
                cursor = database.connection.execute(sql)
            found: Iterable[tuple[Any, ...]] = projected if projected is not None else cursor or ()
            try:
                if wanted is None and matched >= offset:  # no window left to apply
                    yield from found if convert is None else map(convert, found)
                else:
                    for row in found:
                        matched += 1
                        if matched > offset:
                            yield row if convert is None else convert(row)
                        if wanted is not None and matched >= wanted:
                            break
            finally:
                if cursor is not None:
                    cursor.close()
                    database.connection.execute(delete)
            if len(batch) < size:
                break  # the source is exhausted; do not ask it again
    except sqlite3.Error as exc:
        raise _sqlite_error(exc) from exc
    finally:
        state.close()


Projector = Callable[[list[tuple[Any, ...]]], "list[tuple[Any, ...]] | None"]
# Integers SQLite keeps as they are in an INTEGER or NUMERIC column (well inside int64).
_SAFE_INT = 2**62


def _projector(select: exp.Expression, source: LocalSource) -> Projector | None:
    """For a streaming SELECT of plain columns without WHERE: each batch's result rows
    as SQLite would return them, computed without SQLite (a third of a million rows a
    second more). SQLite's column affinity is applied as SQLite does: stored text stays
    text; a whole REAL in a NUMERIC (DECIMAL) column becomes an INTEGER. A batch holding
    any other value a numeric column would convert (text, NaN, a huge number) goes
    through SQLite (the projector answers None). None when the statement does more."""
    if not isinstance(select, exp.Select) or select.args.get("where") is not None:
        return None
    names = [name.lower() for name, _ in source.columns]
    index: list[int] = []
    for item in select.expressions:
        node = item.this if isinstance(item, exp.Alias) else item
        if not isinstance(node, exp.Column) or not isinstance(node.this, exp.Identifier):
            return None
        if names.count(node.name.lower()) != 1:
            return None  # the rowid, say: SQLite knows
        index.append(names.index(node.name.lower()))
    affinity = {i: values.SQLITE_TYPES.get(source.columns[i][1] or "", "") for i in index}
    if any(a not in ("TEXT", "INTEGER", "NUMERIC") for a in affinity.values()):
        return None
    # Stored values of TEXT-affinity types are text, and a BOOLEAN's 0, 1 or NULL
    # (values.to_storage): nothing to do.
    integers = [
        i
        for i in dict.fromkeys(index)
        if affinity[i] == "INTEGER" and source.columns[i][1] != "BOOLEAN"
    ]
    numerics = [i for i in dict.fromkeys(index) if affinity[i] == "NUMERIC"]
    fixed = [(position, i) for position, i in enumerate(index) if affinity[i] == "NUMERIC"]
    identity = index == list(range(len(source.columns)))  # SELECT *: the rows as they are

    def project(batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]] | None:
        for i in integers:
            for v in [row[i] for row in batch]:
                if v is not None and not (v.__class__ is int and -_SAFE_INT < v < _SAFE_INT):
                    return None
        for i in numerics:
            for v in [row[i] for row in batch]:
                if v is not None and not (v.__class__ is float and -_SAFE_INT < v < _SAFE_INT):
                    return None  # text, an int, NaN, infinities: SQLite decides
        out = batch if identity else [tuple([row[i] for i in index]) for row in batch]
        if fixed:
            for n, row in enumerate(out):
                if any(row[p] is not None and row[p].is_integer() for p, _ in fixed):
                    changed = list(row)
                    for p, _ in fixed:
                        v = changed[p]
                        if v is not None and v.is_integer():
                            changed[p] = int(v)
                    out[n] = tuple(changed)
        return out

    return project


# -- result column types -----------------------------------------------------------------


def _result_columns(
    select: exp.Expression, sources: Sequence[LocalSource], description: Any
) -> list[ResultColumn]:
    """SQLite's column names; catalog types where a column is a plain source column."""
    names = [d[0] for d in description or ()]
    tables: dict[str, Columns] = {s.name.lower(): list(s.columns) for s in sources}
    typed = output_columns(select, tables)
    types = [t for _, t in typed] if typed is not None and len(typed) == len(names) else []
    return [ResultColumn(n, types[i] if types else None) for i, n in enumerate(names)]


def output_columns(
    query: exp.Expression,
    tables: Mapping[str, Columns],
    ctes: Mapping[str, Columns | None] | None = None,
) -> Columns | None:
    """A query's output columns with their catalog types (None: not a plain column).

    Types follow plain column references through aliases, ``*``, ``t.*``, CTEs,
    subqueries in FROM, MIN/MAX and set operations whose branches agree. Returns None
    when the number of columns cannot be told (``*`` over a table function).
    """
    scope_ctes: dict[str, Columns | None] = dict(ctes or {})
    with_ = query.args.get("with_")
    if with_ is not None:
        for cte in with_.expressions:
            columns = output_columns(cte.this, tables, scope_ctes)
            renamed = [c.name for c in cte.args["alias"].columns] if cte.args.get("alias") else []
            if columns is not None and renamed and len(renamed) == len(columns):
                columns = [(n, t) for n, (_, t) in zip(renamed, columns, strict=True)]
            scope_ctes[cte.alias.lower()] = columns
    if isinstance(query, exp.Subquery):
        return output_columns(query.this, tables, scope_ctes)
    if isinstance(query, exp.SetOperation):
        left = output_columns(query.this, tables, scope_ctes)
        right = output_columns(query.expression, tables, scope_ctes)
        if left is None:
            return None
        if right is None or len(right) != len(left):
            return [(n, None) for n, _ in left]
        return [(n, t if t == u else None) for (n, t), (_, u) in zip(left, right, strict=True)]
    if not isinstance(query, exp.Select):
        return None
    scope = _scope(query, tables, scope_ctes)
    out: Columns = []
    for projection in query.expressions:
        if isinstance(projection, exp.Star):
            for _, columns, hidden in scope:
                if columns is None:
                    return None
                out.extend(c for c in columns if c[0].lower() not in hidden)
        elif isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star):
            found = [c for alias, c, _ in scope if alias == projection.table.lower()]
            if not found or found[0] is None:
                return None
            out.extend(found[0])
        else:
            out.append((projection.alias_or_name, _type_of(projection.unalias(), scope)))
    return out


Scope = list[tuple[str, Columns | None, set[str]]]  # (alias, columns, hidden from *)


def _scope(select: exp.Select, tables: Mapping[str, Columns], ctes: Mapping[str, Any]) -> Scope:
    """The relations in a SELECT's FROM and joins, in SQLite's ``*`` order."""
    scope: Scope = []
    source = select.args.get("from_")
    items = [(source.this, None)] if source is not None else []
    items += [(join.this, join) for join in select.args.get("joins") or []]
    for item, join in items:
        alias, columns = _relation(item, tables, ctes)
        hidden: set[str] = set()
        if join is not None:
            # SQLite's * shows a USING or NATURAL join's shared columns once.
            hidden = {i.name.lower() for i in join.args.get("using") or []}
            if join.args.get("method") == "NATURAL" and columns is not None:
                earlier = {n.lower() for _, cs, _ in scope for n, _ in cs or []}
                hidden |= {n.lower() for n, _ in columns} & earlier
        scope.append((alias, columns, hidden))
    return scope


def _relation(
    item: exp.Expression, tables: Mapping[str, Columns], ctes: Mapping[str, Any]
) -> tuple[str, Columns | None]:
    if isinstance(item, exp.Table) and isinstance(item.this, exp.Identifier):
        name = item.name.lower()
        columns = ctes[name] if name in ctes else tables.get(name)
        return item.alias_or_name.lower(), columns
    if isinstance(item, exp.Subquery):
        return item.alias.lower(), output_columns(item.this, tables, ctes)
    return item.alias_or_name.lower(), None


def _type_of(expression: exp.Expression, scope: Scope) -> str | None:
    while isinstance(expression, exp.Paren):
        expression = expression.this
    if isinstance(expression, (exp.Min, exp.Max)) and not expression.expressions:
        return _type_of(expression.this, scope)  # one-argument MIN/MAX keep the type
    if not isinstance(expression, exp.Column) or isinstance(expression.this, exp.Star):
        return None
    name, qualifier = expression.name.lower(), expression.table.lower()
    found = {
        sql_type
        for alias, columns, _ in scope
        if columns is not None and (not qualifier or alias == qualifier)
        for column, sql_type in columns
        if column.lower() == name
    }
    return found.pop() if len(found) == 1 else None


def _is_aggregate(node: exp.Expr) -> bool:
    if isinstance(node, (exp.Min, exp.Max)) and node.expressions:
        return False  # SQLite's two-argument MIN/MAX are scalar
    if isinstance(node, exp.AggFunc):
        return True
    return isinstance(node, exp.Anonymous) and node.name.lower() in SQLITE_AGGREGATES


def _function_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return node.name.upper()
    return node.sql_names()[0] if isinstance(node, exp.Func) else node.key.upper()
