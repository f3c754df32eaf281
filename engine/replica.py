"""Answering SQL from a replica (``sagesql sync``'s copy): ``Offline=True`` and ``query --replica``.

The statement is read as the engine reads it for Sage: parsed, its parameters bound,
'now' folded, its tables and columns resolved against the catalog, and literals
compared with DATE, DATETIME and BOOLEAN columns rewritten into the stored form
(``conditions.normalize_literals``), so that ``updated_at >= '2025-01-01T10:00:00Z'``
means the same instant as online. The replica's database then runs it: SQLite as it
is (with sagesql's functions), PostgreSQL in its own dialect (sqlglot), read-only.
Result columns that are plain catalog columns come out as online (``values.from_storage``:
a DATETIME is the product's ISO 8601 text, a DECIMAL a Decimal, a BOOLEAN a bool).

A replica table whose name is not the catalog's (``REPLICATE owing SELECT id, name
FROM customers``, or ``crm.accounts``) is read as its catalog table, with the columns
the replica holds; ``_sagesql_sync`` names each table's source and the product.

Here, below the replication package, because the DB-API connection (``Offline=True``)
answers with it too; replication writes the replicas, this only reads them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec
from sqlglot import exp

from sagesql.connector.properties import is_postgres_url, shown_url
from sagesql.engine import local, values
from sagesql.engine.conditions import (
    COMPARISONS,
    column_map,
    expression_types,
    normalize_literals,
    passed_through,
)
from sagesql.engine.fold import fold
from sagesql.engine.names import resolve
from sagesql.engine.result import Result, ResultColumn
from sagesql.engine.statement import READ_DIALECT, Params, bind, parse
from sagesql.errors import ConfigurationError, OperationalError, ProgrammingError
from sagesql.schemas.catalog import Catalog, Table, default_catalog

STATE_TABLE = "_sagesql_sync"  # replication/state.py writes it
QUERIES = (exp.Select, exp.Union, exp.Intersect, exp.Except)


shown = shown_url  # the URL without its passwords


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative.sqlite`` or ``sqlite:////absolute/path.sqlite``."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.netloc or not path.startswith("/") or path == "/":
        raise ConfigurationError(
            f"the replica {url!r} names no file",
            hint="write sqlite:///copy.sqlite (relative) or sqlite:////abs/copy.sqlite",
        )
    return Path(path[1:])


is_postgres = is_postgres_url


def check_url(url: str) -> None:
    """A replica URL's scheme, checked (ConfigurationError naming the forms)."""
    if urlsplit(url).scheme.lower() != "sqlite" and not is_postgres(url):
        raise ConfigurationError(
            f"the replica {shown(url)!r} is not a sqlite:/// or postgresql:// URL",
            hint="write sqlite:///copy.sqlite or postgresql://user@host/db",
        )


class _ReplicaCatalog:
    """The catalog, plus the replica's own tables (read as their source with the
    columns the replica holds): what ``names.resolve`` asks of a catalog."""

    def __init__(self, catalog: Catalog, own: dict[str, Table]) -> None:
        self.catalog = catalog
        self.own = own

    def table(self, name: str, product: str | None = None) -> Table:
        found = self.own.get(name.lower())
        return found if found is not None else self.catalog.table(name, product)

    def product(self, name: str) -> Any:
        return self.catalog.product(name)


class _Reader:
    """One replica database, read-only: the rows of a statement, its tables' sources."""

    def __init__(self, url: str) -> None:
        check_url(url)
        self.url = url
        self.postgres = is_postgres(url)
        self.conn: Any
        # What the database raises for a statement's fault (psycopg is optional).
        self.errors: tuple[type[Exception], ...] = (sqlite3.Error,)
        if self.postgres:
            self.conn = _pg_connect(url)
            self.errors = (_pg_error(),)
        else:
            path = sqlite_path(url)
            if not path.exists():
                raise OperationalError(
                    f"the replica {shown(url)!r} does not exist",
                    hint="run 'sagesql sync --to URL' first",
                )
            if path.is_dir():
                raise ConfigurationError(
                    f"the replica {shown(url)!r} is a folder, not a SQLite file",
                    hint="name the file 'sagesql sync --to' wrote",
                )
            self.conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
            try:
                self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.DatabaseError as exc:
                self.conn.close()
                raise OperationalError(
                    f"the replica {shown(url)!r} is not a SQLite database ({exc})",
                    hint="name the file 'sagesql sync --to' wrote",
                ) from None
            local.register_functions(self.conn)

    def error(self, exc: Exception) -> ProgrammingError:
        return ProgrammingError(
            "the replica: " + " ".join(str(exc).split()), hint="check the statement"
        )

    def execute(self, sql: str) -> Any:
        try:
            return self.conn.execute(sql)
        except self.errors as exc:  # the statement's fault (a missing table, a typo)
            if self.postgres:
                self.conn.rollback()
            raise self.error(exc) from None

    def sources(self) -> list[tuple[str, str, str]]:
        """(replica table, catalog table, product) of each synced table."""
        try:
            rows = self.conn.execute(f'SELECT name, source, product FROM "{STATE_TABLE}"')
            return [tuple(r) for r in rows.fetchall()]
        except self.errors:  # no sync has written this database yet
            if self.postgres:
                self.conn.rollback()
            return []

    def scales(self) -> dict[str, dict[str, int]]:
        """{replica table (lower case): {DECIMAL column: decimal places}} that syncs noted
        (a replica made before they were noted has none: numbers as stored)."""
        found: dict[str, dict[str, int]] = {}
        try:
            rows = self.conn.execute(f'SELECT scales FROM "{STATE_TABLE}"').fetchall()
        except self.errors:
            if self.postgres:
                self.conn.rollback()
            return found
        for (text,) in rows:
            try:
                noted = json.loads(text) if text else {}
            except ValueError:
                continue
            if isinstance(noted, dict):
                for table, places in noted.items():
                    if isinstance(places, dict):
                        found[str(table).lower()] = places
        return found

    def columns(self, name: str) -> list[str]:
        if self.postgres:
            schema, _, table = name.rpartition(".")
            rows = self.conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                "coalesce(nullif(%s, ''), current_schema()) AND table_name = %s "
                "ORDER BY ordinal_position",
                [schema, table],
            ).fetchall()
            return [r[0] for r in rows]
        quoted = '"' + name.replace('"', '""') + '"'
        return [r[1] for r in self.conn.execute(f"PRAGMA table_info({quoted})")]

    def close(self) -> None:
        self.conn.close()


CONNECT_TIMEOUT = 10  # seconds: a server that accepts and never answers is not waited for


def pg_dsn(url: str) -> str:
    """The libpq URL of a ``postgresql://`` (or ``postgresql+psycopg://``) replica URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def pg_timeout(url: str) -> dict[str, Any]:
    """``connect_timeout`` unless the URL sets its own (libpq waits forever by default)."""
    return {} if "connect_timeout=" in urlsplit(url).query else {"connect_timeout": CONNECT_TIMEOUT}


def _pg_error() -> type[Exception]:
    import psycopg  # installed: the connection was made with it

    return psycopg.Error


def _pg_connect(url: str) -> Any:
    try:
        import psycopg  # optional: sagesql[postgres]
    except ImportError:
        raise ConfigurationError(
            "a postgresql:// replica needs psycopg", hint="pip install 'sagesql[postgres]'"
        ) from None
    try:
        # Read-only: the replica is Sage's copy, written by sync alone.
        return psycopg.connect(
            pg_dsn(url),
            options="-c TimeZone=UTC -c default_transaction_read_only=on",
            **pg_timeout(url),
        )
    except psycopg.Error as exc:
        raise OperationalError(
            f"the replica cannot be reached: {' '.join(str(exc).split())}",
            hint="check the postgresql:// URL, and that the server is running",
        ) from None


def _output(sql_type: str | None, product: str, postgres: bool) -> Callable[[Any], Any] | None:
    """A replica's value of a result column -> the value online would give."""
    if postgres and sql_type == "JSON":
        # jsonb comes parsed: its text, as online (jsonb keeps no key order of its own).
        return lambda v: v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
    if sql_type not in local.CONVERTED_TYPES:
        return None
    give = values.output_converter(sql_type, product)
    if postgres and sql_type == "DATETIME":
        # timestamptz comes as a datetime: its stored text first, then the API's form.
        return lambda v: give(values.stored_datetime(v) if isinstance(v, datetime) else v)
    if postgres and sql_type == "DECIMAL":
        return None  # numeric already comes as a Decimal
    return give


def _postgres_forms(tree: exp.Expression, columns: dict[int, Any]) -> None:
    """What the engine's SQLite reads one way and PostgreSQL another, made the same:
    a literal compared with a BOOLEAN column (stored 0/1: ``editable = 1``) is TRUE or
    FALSE (PostgreSQL has no boolean = integer), and LIKE is ILIKE (SQLite's LIKE, which
    answers online, ignores case)."""
    typed = expression_types(tree, columns)

    def boolean(value: exp.Expression, other: exp.Expression) -> None:
        found = typed(value)
        if (
            found is not None
            and found[0] == "BOOLEAN"
            and isinstance(other, exp.Literal)
            and not other.is_string
            and other.this in ("0", "1")
        ):
            other.replace(exp.Boolean(this=other.this == "1"))

    for node in list(tree.find_all(*COMPARISONS, exp.In)):
        if isinstance(node, exp.In):
            for item in list(node.expressions):
                boolean(node.this, item)
        else:
            boolean(node.this, node.expression)
            boolean(node.expression, node.this)
    for like in list(tree.find_all(exp.Like)):
        like.replace(exp.ILike(**like.args))  # NOT LIKE (negate) and ESCAPE kept


def _pg_value(sql_type: str | None, product: str) -> Callable[[Any], Any]:
    """A PostgreSQL value of a result column -> the value online gives: the engine reads
    with SQLite, where a date is text, a computed number a float, JSON text."""
    typed = _output(sql_type, product, True)
    give_datetime = values.output_converter("DATETIME", product)

    def value(v: Any) -> Any:
        if typed is not None:
            return typed(v)
        if isinstance(v, datetime):
            return give_datetime(values.stored_datetime(v))
        if isinstance(v, date):
            return v.isoformat()
        if isinstance(v, Decimal) and sql_type != "DECIMAL":
            # Online (SQLite, DECIMAL NUMERIC): a whole number is an INTEGER, else REAL.
            return int(v) if v == v.to_integral_value() else float(v)
        if isinstance(v, (dict, list)):
            return json.dumps(v, separators=(",", ":"))
        return v

    return value


def _mark_own(tree: exp.Expression, own: dict[str, Table]) -> None:
    """The replica's own tables named in the statement (``owing``, ``crm.accounts``)
    renamed to keys of ``own`` without a schema (names.resolve reads a schema as the
    product's), keeping the name the statement's columns qualify them with."""
    for i, (full, table) in enumerate(list(own.items())):
        for node in tree.find_all(exp.Table):
            db = node.args.get("db")
            if not isinstance(node.this, exp.Identifier):
                continue
            if (f"{db.name}.{node.name}" if db else node.name).lower() != full:
                continue
            if not node.alias:
                node.set("alias", exp.TableAlias(this=exp.to_identifier(node.name)))
            node.set("this", exp.to_identifier(f"__sagesql_replica{i}"))
            node.set("db", None)
            own[f"__sagesql_replica{i}"] = table


def _product_of(
    tree: exp.Expression, synced: list[tuple[str, str, str]], connection: str | None
) -> str:
    """The product of the replica's tables the statement names (a replica may hold
    several products' tables, in schemas of their own), else the connection's, else the
    replica's only product."""
    named = {
        ".".join(p.name for p in (t.args.get("db"), t.this) if p is not None).lower()
        for t in tree.find_all(exp.Table)
    }
    for name, _, product in synced:
        if name.lower() in named:
            return product
    if connection is not None:
        return connection
    products = {product for _, _, product in synced}
    return products.pop() if len(products) == 1 else "sage_accounting"


def _statement(
    reader: _Reader,
    sql: str,
    params: Params,
    product: str | None,
    catalog: Catalog,
    now: Callable[[], datetime] | None,
) -> tuple[str, local.Columns | None, str, list[int | None]]:
    """The SQL the replica runs for a query, its output columns' types, the product, and
    the decimal places of each output column that is a DECIMAL column (as online)."""
    tree = bind(parse(sql), params)
    if not isinstance(tree, QUERIES):
        raise ProgrammingError(
            "only a query can run on the replica",
            hint="write to Sage without Offline or --replica, then sync",
        )
    synced = reader.sources()
    # The replica's tables the statement names tell the product (a connection left at
    # the default Product reads a Sage 200 copy as such); else the connection's.
    product_id = _product_of(tree, synced, catalog.resolve_product(product) if product else None)
    own: dict[str, Table] = {}
    for name, source, table_product in synced:
        if table_product != product_id:
            continue
        table = catalog.table(source, product_id)
        if name.lower() == table.name.lower():
            continue
        held = {c.lower() for c in reader.columns(name)}
        kept = tuple(c for c in table.columns if c.name.lower() in held)
        own[name.lower()] = msgspec.structs.replace(
            table, name=name, columns=kept, _by_name={c.name.lower(): c for c in kept}
        )
    tree = fold(tree, now or (lambda: datetime.now(timezone.utc)))
    _mark_own(tree, own)
    qualified, refs = resolve(tree, _ReplicaCatalog(catalog, own), product_id)  # type: ignore[arg-type]
    columns = column_map(qualified, refs)
    every = {**columns, **passed_through(qualified, columns)}
    normalize_literals(qualified, every)
    if reader.postgres:
        _postgres_forms(qualified, every)
    tables: dict[str, local.Columns] = {
        r.local_name.lower(): [(c.name, c.type) for c in r.table.columns] for r in refs
    }
    typed = local.output_columns(qualified, tables)
    noted = reader.scales()
    sources = [
        local.LocalSource(
            r.local_name,
            [(c.name, c.type) for c in r.table.columns],
            iter(()),
            noted.get(r.table.name.lower(), {}),
        )
        for r in refs
    ]
    count = len(typed) if typed is not None else 0
    places = [
        (s[0].get(s[1]) if s is not None else None)
        for s in local._scales(qualified, sources, count)
    ]
    by_local = {r.local_name: r.table.name for r in refs}
    for r in refs:
        if not reader.columns(r.table.name):
            # A catalog table no sync has copied here: say which sync copies it.
            copied = r.table.parent.table if r.table.parent is not None else r.table.name
            raise ProgrammingError(
                f"the replica {shown(reader.url)} has no table {r.table.name}",
                hint=f"copy it first: sagesql sync --to {shown(reader.url)} {copied}",
            )
    for node in qualified.find_all(exp.Table):
        if node.name in by_local:
            # PostgreSQL: schema.table; SQLite has no schemas: the table is named
            # "schema.table" (so the same SQL reads both).
            full = by_local[node.name]
            schema, _, name = full.rpartition(".") if reader.postgres else ("", "", full)
            node.set("this", exp.to_identifier(name, quoted=True))
            if schema:
                node.set("db", exp.to_identifier(schema, quoted=True))
    if reader.postgres:
        for avg in list(qualified.find_all(exp.Avg)):
            # SQLite's avg() (online) is always REAL; PostgreSQL's numeric avg a numeric.
            avg.replace(exp.cast(avg.copy(), exp.DataType.build("double")))
    text = qualified.sql("postgres" if reader.postgres else READ_DIALECT)
    return text, typed, product_id, places


def explain(
    url: str,
    sql: str,
    params: Params = None,
    *,
    product: str | None = None,
    catalog: Catalog | None = None,
    now: Callable[[], datetime] | None = None,
) -> str:
    """What ``--explain`` shows for a query answered by the replica: the SQL it runs."""
    reader = _Reader(url)
    try:
        text, _, _, _ = _statement(reader, sql, params, product, catalog or default_catalog(), now)
    finally:
        reader.close()
    return f"the replica {shown(url)} (nothing is sent to Sage):\n  {text}"


def answer(
    url: str,
    sql: str,
    params: Params = None,
    *,
    product: str | None = None,
    catalog: Catalog | None = None,
    now: Callable[[], datetime] | None = None,
) -> Result:
    """The statement's rows from the replica at ``url`` (a query only: nothing is sent to
    Sage, and the replica is never written). ``product``: the connection's (default: the
    replica's own, else Sage Accounting)."""
    reader = _Reader(url)
    try:
        text, typed, product_id, places = _statement(
            reader, sql, params, product, catalog or default_catalog(), now
        )
        cursor = reader.execute(text)
    except BaseException:
        reader.close()
        raise
    names = [d[0] for d in cursor.description or ()]
    types = [t for _, t in typed] if typed is not None and len(typed) == len(names) else []
    result_columns = [ResultColumn(n, types[i] if types else None) for i, n in enumerate(names)]
    plan = [
        (i, f)
        for i, c in enumerate(result_columns)
        if (
            f := _pg_value(c.sql_type, product_id)
            if reader.postgres
            else _output(c.sql_type, product_id, False)
        )
        is not None
    ]

    scaled = (
        [(i, p) for i, p in enumerate(places) if p] if len(places) == len(result_columns) else []
    )

    def rows() -> Iterator[tuple[Any, ...]]:
        try:
            for row in cursor:
                if plan or scaled:
                    out = list(row)
                    for i, give in plan:
                        if out[i] is not None:
                            out[i] = give(out[i])
                    for i, p in scaled:
                        out[i] = local.with_scale(out[i], p)
                    row = tuple(out)
                yield tuple(row)
        except reader.errors as exc:
            raise reader.error(exc) from None
        finally:  # read to the end (or closed): the replica's connection is done
            reader.close()

    return Result(result_columns, rows(), on_close=[reader.close])
