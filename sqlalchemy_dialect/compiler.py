"""SQL that sagesql runs: SQLAlchemy's SQLite compiler, and no DDL at all.

sagesql's SQL is SQLite's (SQLite evaluates what the API does not), so SQLAlchemy's
SQLite statement compiler serves as it is, but for LIMIT: SQLite's compiler writes
``LIMIT ? OFFSET 0`` for a plain limit, and a LIMIT without OFFSET is what the planner
can send to the API. Sage's tables are the catalog's: CREATE, ALTER and DROP (as
``Table.create()`` or pandas' ``to_sql`` into a new table issue) are refused.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import sql
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler, SQLiteDDLCompiler

from sagesql.errors import NotSupportedError


class SageCompiler(SQLiteCompiler):
    def limit_clause(self, select: Any, **kw: Any) -> str:
        text = ""
        if select._limit_clause is not None:
            text += "\n LIMIT " + self.process(select._limit_clause, **kw)
        if select._offset_clause is not None:
            if select._limit_clause is None:
                text += "\n LIMIT " + self.process(sql.literal(-1), **kw)
            text += " OFFSET " + self.process(select._offset_clause, **kw)
        return text


class SageDDLCompiler(SQLiteDDLCompiler):
    """Refuses every DDL statement before anything is sent."""

    def __init__(self, dialect: Any, statement: Any, *args: Any, **kw: Any) -> None:
        what = type(statement).__name__
        target = getattr(getattr(statement, "element", None), "name", None)
        raise NotSupportedError(
            f"sagesql does not create, alter or drop tables ({what}"
            + (f" {target}" if target else "")
            + "): Sage's tables are fixed by its API",
            hint="write rows into an existing table with INSERT "
            "(pandas: to_sql(..., if_exists='append', index=False))",
        )
