"""Answering SQL from a replica: ``sagesql query --replica URL "SELECT ..."``, nothing sent to Sage.

The statement is the one ``sagesql query`` takes (SQLite's dialect, ``?`` and ``:name``
parameters bound as literals by the engine's own ``bind``), written for the replica's
database: SQLite runs it as it is; for PostgreSQL sqlglot writes it in PostgreSQL's
dialect. The replica's tables carry the catalog's names, so the same SQL reads them.
Values are the replica's: DATETIME in SQLite is the engine's stored form (UTC
``'YYYY-MM-DD HH:MM:SS'``, what SQLite's ``datetime()`` writes).
"""

from __future__ import annotations

import sqlite3

from sqlglot import exp

from sagesql.engine.result import Result, ResultColumn
from sagesql.engine.statement import READ_DIALECT, Params, bind, parse
from sagesql.errors import OperationalError, ProgrammingError
from sagesql.replication.postgres_target import PostgresTarget
from sagesql.replication.sqlite_target import path_of
from sagesql.replication.targets import open_target, shown


def answer(url: str, sql: str, params: Params = None) -> Result:
    """The statement's rows from the replica (a query only: the replica is Sage's copy)."""
    tree = bind(parse(sql), params)
    if not isinstance(tree, (exp.Select, exp.Union, exp.Intersect, exp.Except)):
        raise ProgrammingError(
            "only a query can run on the replica",
            hint="write to Sage without --replica, then sync",
        )
    if url.lower().startswith("sqlite:"):
        path = path_of(url)
        if not path.exists():
            raise OperationalError(
                f"the replica {shown(url)!r} does not exist",
                hint="run 'sagesql sync --to URL' first",
            )
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            cursor = conn.execute(tree.sql(READ_DIALECT))
        except sqlite3.Error as exc:
            conn.close()
            raise ProgrammingError(f"the replica: {exc}", hint="check the statement") from None
        columns = [ResultColumn(d[0], None) for d in cursor.description]
        return Result(columns, iter(cursor), on_close=[conn.close])
    if not url.lower().startswith("postgres"):
        open_target(url)  # the error naming the URLs a replica may have
    import psycopg  # the target opened: psycopg is installed

    target = PostgresTarget.open(url)
    try:
        cursor = target.conn.execute(tree.sql("postgres"))
        columns = [ResultColumn(d.name, None) for d in cursor.description or ()]
        rows = cursor.fetchall()
    except psycopg.Error as exc:
        raise ProgrammingError(
            "the replica: " + " ".join(str(exc).split()), hint="check the statement"
        ) from None
    finally:
        target.close()
    return Result(columns, iter(rows))
