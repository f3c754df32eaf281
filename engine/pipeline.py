"""Running a statement: parse, bind, then the query, write or EXEC path, as one call.

``run`` returns a Result whose rows stream; ``explain`` returns the plan as text
without sending anything. Nothing is sent for a statement that fails validation:
every name, type and parameter is checked while planning, before the first request.
"""

from __future__ import annotations

import itertools
import logging
import time

from sqlglot import exp

from sagesql.connector.seams import Client
from sagesql.engine import procedures, replica, writes
from sagesql.engine.query import QUERIES, capped, folded, prepare, prepare_tree, run_tree
from sagesql.engine.result import Result
from sagesql.engine.statement import Params, bind, parse, too_deep
from sagesql.errors import NotSupportedError, ProgrammingError

__all__ = ["explain", "prepare", "prepare_tree", "run", "run_tree"]

log = logging.getLogger("sagesql")


def _statement(connection: Client, sql: str, params: Params) -> exp.Expression:
    tree = folded(connection, bind(parse(sql), params))
    if not isinstance(tree, QUERIES) and not writes.is_write(tree):
        kind = type(tree).__name__.upper()
        raise NotSupportedError(
            f"{kind} statements are not supported",
            hint="sagesql runs SELECT, INSERT, UPDATE, DELETE and EXEC",
        )
    return tree


def explain(
    connection: Client, sql: str, params: Params = None, *, max_rows: int | None = None
) -> str:
    """The plan as text; nothing is sent. ``max_rows`` as for run: the plan run would use."""
    try:
        return _explain(connection, sql, params, max_rows)
    except RecursionError:  # parsing and planning recurse once per level of nesting
        raise too_deep() from None


def _explain(connection: Client, sql: str, params: Params, max_rows: int | None = None) -> str:
    if procedures.is_exec(sql):
        name, args = procedures.parse_exec(sql, params)
        table, procedure = procedures.find(connection, name)
        procedures.check_arguments(procedure, args, connection.product.id)
        request = procedure.request
        call = (
            f"built-in {request['builtin']}"
            if "builtin" in request
            else f"{request['method']} {request['path']}"
        )
        return f"EXEC {procedure.name}" + (f" (table {table})" if table else "") + f": {call}"
    settings = connection.settings
    if getattr(settings, "offline", False):
        assert settings.replica is not None  # properties.validate requires it
        return replica.explain(
            settings.replica,
            sql,
            params,
            product=settings.product,
            catalog=connection.catalog,
            now=getattr(connection, "clock", None),
        )
    tree = _statement(connection, sql, params)
    if writes.is_write(tree):
        return writes.explain(connection, tree)
    cap = max_rows if max_rows is not None else connection.settings.max_rows
    return prepare_tree(connection, capped(tree, cap)).explain()


def run(
    connection: Client,
    sql: str,
    params: Params = None,
    *,
    max_rows: int | None = None,
    allow_all_rows: bool = True,
) -> Result:
    """The result of a statement: a query's rows are fetched as they are read; a write
    (INSERT, UPDATE, DELETE) is carried out now and answers one row per input row.

    ``allow_all_rows=False`` refuses an UPDATE or DELETE without WHERE (ProgrammingError,
    before anything is planned or sent), as ``sagesql query`` does unless ``--all``.
    """
    started = time.monotonic()
    log.info("statement: %s", " ".join(sql.split()))
    try:
        result = _run(connection, sql, params, max_rows=max_rows, allow_all_rows=allow_all_rows)
    except RecursionError:  # parsing and planning recurse once per level of nesting
        raise too_deep() from None
    result.on_close.append(
        lambda: log.info("statement done in %.0f ms", (time.monotonic() - started) * 1000)
    )
    return result


def _run(
    connection: Client, sql: str, params: Params, *, max_rows: int | None, allow_all_rows: bool
) -> Result:
    if getattr(connection.settings, "offline", False):  # a test's stand-in may lack it
        return _offline(connection, sql, params, max_rows)
    if procedures.is_exec(sql):
        return procedures.run(connection, sql, params)
    tree = _statement(connection, sql, params)
    if writes.is_write(tree):
        if not allow_all_rows and writes.affects_every_row(tree):
            raise ProgrammingError(
                f"{type(tree).__name__.upper()} without WHERE acts on every row of "
                f"{tree.this.name}",
                hint="add a WHERE clause, or pass --all (allow_all_rows=True) if every row "
                "is meant",
            )
        return writes.run(connection, tree)
    return run_tree(connection, tree, max_rows=max_rows)


def _offline(connection: Client, sql: str, params: Params, max_rows: int | None) -> Result:
    """Offline=True: the Replica answers (a query only), nothing is sent to Sage."""
    settings = connection.settings
    if procedures.is_exec(sql):
        raise ProgrammingError(
            "EXEC runs in Sage: the connection is Offline",
            hint="connect without Offline=True to run procedures",
        )
    assert settings.replica is not None  # properties.validate requires it
    result = replica.answer(
        settings.replica,
        sql,
        params,
        product=settings.product,
        catalog=connection.catalog,
        now=getattr(connection, "clock", None),
    )
    cap = max_rows if max_rows is not None else settings.max_rows
    if cap is not None and cap >= 0:
        rows = result.rows
        result.rows = itertools.islice(rows, cap)
        result.on_close.insert(0, getattr(rows, "close", lambda: None))
    return result
