"""SageDialect: SQLAlchemy's view of a sagesql connection (reflection, transactions).

Reflection reads the catalog of the connection's product; nothing is sent to Sage.
Tables with a condition of their own on their rows (Accounting's ``customers`` and
``suppliers``, contacts of one type) are views; ``has_table`` finds both, by name or
alias. There is one schema, ``main`` (SQLite's name: the SQL is SQLite's). Sage has no
transactions: every statement is applied when it runs, so the isolation level is
AUTOCOMMIT and ROLLBACK does nothing (SQLAlchemy rolls back on every return to the pool).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from sqlalchemy import FetchedValue, exc
from sqlalchemy.dialects.sqlite.base import SQLiteDialect, SQLiteExecutionContext
from sqlalchemy.engine import URL, default, reflection
from sqlalchemy.engine.interfaces import (
    IsolationLevel,
    ReflectedColumn,
    ReflectedPrimaryKeyConstraint,
    ReflectedTableComment,
)

from sagesql.engine import dbapi
from sagesql.schemas.catalog import Catalog, Table
from sagesql.sqlalchemy_dialect import outcomes
from sagesql.sqlalchemy_dialect.compiler import SageCompiler, SageDDLCompiler
from sagesql.sqlalchemy_dialect.types import COLSPECS, column_type
from sagesql.sqlalchemy_dialect.url import connect_arguments

SCHEMA = "main"


class SageExecutionContext(SQLiteExecutionContext):
    def post_exec(self) -> None:
        super().post_exec()
        # A compiled insert()/update()/delete(): failed rows raise; SQLAlchemy sees the
        # RETURNING columns only (executemany is checked in do_executemany).
        dml = (self.isinsert or self.isupdate or self.isdelete) and not self.executemany
        if dml and outcomes.is_outcome(self.cursor.description):
            self.cursor = outcomes.ReturningCursor(self.cursor)  # type: ignore[assignment]


class SageDialect(SQLiteDialect):
    name = "sagesql"
    driver = "sagesql"
    supports_statement_cache = True
    statement_compiler = SageCompiler
    ddl_compiler = SageDDLCompiler
    execution_ctx_cls = SageExecutionContext
    colspecs = COLSPECS
    # The cursor hands back bool and Decimal already (and takes them as parameters).
    supports_native_boolean = True
    supports_native_decimal = True
    # One INSERT per row (a POST each); keys are Sage's own, never a rowid.
    use_insertmanyvalues = False
    postfetch_lastrowid = False
    supports_sane_multi_rowcount = False
    supports_alter = False
    supports_comments = True

    def __init__(self, **kwargs: Any) -> None:
        # SQLite's __init__ reads sqlite3's version off the DB-API module, which this is not.
        json_serializer = kwargs.pop("json_serializer", None)
        json_deserializer = kwargs.pop("json_deserializer", None)
        kwargs.pop("native_datetime", None)
        default.DefaultDialect.__init__(self, **kwargs)
        self._json_serializer = json_serializer
        self._json_deserializer = json_deserializer
        self.native_datetime = True
        self._split: dict[str, tuple[list[str], list[str]]] = {}

    @classmethod
    def import_dbapi(cls) -> ModuleType:
        return dbapi

    def create_connect_args(self, url: URL) -> tuple[list[Any], dict[str, Any]]:
        return [], connect_arguments(url)

    def _get_server_version_info(self, connection: Any) -> tuple[int, ...]:
        return sqlite3.sqlite_version_info  # SQLite evaluates the statements

    def _get_default_schema_name(self, connection: Any) -> str:
        return SCHEMA

    # -- transactions: none ------------------------------------------------------------

    def get_isolation_level_values(self, dbapi_connection: Any) -> Sequence[IsolationLevel]:
        return ["AUTOCOMMIT"]

    def get_isolation_level(self, dbapi_connection: Any) -> Any:
        return "AUTOCOMMIT"

    def get_default_isolation_level(self, dbapi_connection: Any) -> Any:
        return "AUTOCOMMIT"

    def set_isolation_level(self, dbapi_connection: Any, level: Any) -> None:
        """Only AUTOCOMMIT exists (SQLAlchemy checks the name against the values)."""

    def do_rollback(self, dbapi_connection: Any) -> None:
        """Nothing to roll back: each write was applied when it ran."""

    def do_executemany(
        self, cursor: Any, statement: str, parameters: Any, context: Any = None
    ) -> None:
        """Each parameter set in turn, every row's outcome kept: a failed row raises once
        all were sent (the DB-API's executemany only counts them)."""
        rows: list[tuple[Any, ...]] = []
        written = 0
        for n, params in enumerate(parameters, 1):
            cursor.execute(statement, params)
            if outcomes.is_outcome(cursor.description):
                # Each execute is "row 1" of its own: number the rows as the caller did.
                rows.extend((n, *row[1:]) for row in cursor.fetchall())
            written += max(cursor.rowcount, 0)
        cursor.rowcount = written
        outcomes.check(rows, written)

    # -- reflection from the catalog ---------------------------------------------------

    @staticmethod
    def _catalog(connection: Any) -> tuple[Catalog, str]:
        client = connection.connection.dbapi_connection.client
        return client.catalog, client.product.id

    @staticmethod
    def _schema_ok(schema: str | None) -> bool:
        return schema is None or schema == SCHEMA

    def _table(self, connection: Any, name: str, schema: str | None) -> Table:
        catalog, product = self._catalog(connection)
        if not self._schema_ok(schema) or not catalog.find(name, product):
            raise exc.NoSuchTableError(name if schema is None else f"{schema}.{name}")
        return catalog.table(name, product)

    def _tables_and_views(self, connection: Any) -> tuple[list[str], list[str]]:
        catalog, product = self._catalog(connection)
        if product not in self._split:
            tables: list[str] = []
            views: list[str] = []
            for summary in catalog.tables(product):
                table = catalog.table(summary.name, product)
                (views if table.fixed_parameters or table.fixed_values else tables).append(
                    table.name
                )
            self._split[product] = (tables, views)
        return self._split[product]

    def get_schema_names(self, connection: Any, **kw: Any) -> list[str]:
        return [SCHEMA]

    @reflection.cache
    def get_table_names(
        self,
        connection: Any,
        schema: str | None = None,
        sqlite_include_internal: bool = False,
        **kw: Any,
    ) -> list[str]:
        return list(self._tables_and_views(connection)[0]) if self._schema_ok(schema) else []

    @reflection.cache
    def get_view_names(
        self,
        connection: Any,
        schema: str | None = None,
        sqlite_include_internal: bool = False,
        **kw: Any,
    ) -> list[str]:
        return list(self._tables_and_views(connection)[1]) if self._schema_ok(schema) else []

    # (SQLite's and the interface's signatures differ: both are met by *args.)
    def get_temp_table_names(self, connection: Any, *args: Any, **kw: Any) -> list[str]:
        return []

    def get_temp_view_names(self, connection: Any, *args: Any, **kw: Any) -> list[str]:
        return []

    def has_table(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> bool:
        catalog, product = self._catalog(connection)
        return self._schema_ok(schema) and bool(catalog.find(table_name, product))

    def get_columns(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> list[ReflectedColumn]:
        # Not cached: each reflected key gets a FetchedValue of its own.
        table = self._table(connection, table_name, schema)
        return [
            {
                "name": c.name,
                "type": column_type(c),
                "nullable": c.nullable and c.name != table.key,
                # A key Sage assigns: generated by the server, so an INSERT may leave it
                # out and SQLAlchemy reads it back with RETURNING (inserted_primary_key).
                # Reflection takes a FetchedValue as it is, though the TypedDict says str.
                "default": FetchedValue() if c.name == table.key and c.read_only else None,  # type: ignore[typeddict-item]
                "autoincrement": False,
                "comment": c.description or None,
            }
            for c in table.columns
        ]

    @reflection.cache
    def get_pk_constraint(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> ReflectedPrimaryKeyConstraint:
        table = self._table(connection, table_name, schema)
        return {"constrained_columns": [table.key] if table.key else [], "name": None}

    @reflection.cache
    def get_table_comment(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> ReflectedTableComment:
        return {"text": self._table(connection, table_name, schema).description or None}

    def get_view_definition(
        self, connection: Any, view_name: str, schema: str | None = None, **kw: Any
    ) -> str:
        table = self._table(connection, view_name, schema)
        # The condition is the API's (fixed query parameters), not SQL: say it as a comment.
        condition = ", ".join(f"{k}={v}" for k, v in table.fixed_parameters.items())
        return f"-- {table.name}: {table.description} ({condition or 'no condition'})"

    def get_table_options(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> dict[str, Any]:
        self._table(connection, table_name, schema)
        return {}

    def get_foreign_keys(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> list[Any]:
        self._table(connection, table_name, schema)
        return []

    def get_indexes(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> list[Any]:
        self._table(connection, table_name, schema)
        return []

    def get_unique_constraints(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> list[Any]:
        self._table(connection, table_name, schema)
        return []

    def get_check_constraints(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> list[Any]:
        self._table(connection, table_name, schema)
        return []


dialect = SageDialect
