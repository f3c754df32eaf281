"""Running a statement: parse, bind, then the query, write or EXEC path, as one call.

``run`` returns a Result whose rows stream; ``explain`` returns the plan as text
without sending anything. Nothing is sent for a statement that fails validation:
every name, type and parameter is checked while planning, before the first request.
"""

from __future__ import annotations

import logging
import time

from sqlglot import exp

from sagesql.connector.seams import Client
from sagesql.engine import procedures, writes
from sagesql.engine.query import QUERIES, folded, prepare, prepare_tree, run_tree
from sagesql.engine.result import Result
from sagesql.engine.statement import Params, bind, parse, too_deep
from sagesql.errors import NotSupportedError

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


def explain(connection: Client, sql: str, params: Params = None) -> str:
    """The plan as text; nothing is sent."""
    try:
        return _explain(connection, sql, params)
    except RecursionError:  # parsing and planning recurse once per level of nesting
        raise too_deep() from None


def _explain(connection: Client, sql: str, params: Params) -> str:
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
    tree = _statement(connection, sql, params)
    if writes.is_write(tree):
        return writes.explain(connection, tree)
    return prepare_tree(connection, tree).explain()


def run(
    connection: Client, sql: str, params: Params = None, *, max_rows: int | None = None
) -> Result:
    """The result of a statement: a query's rows are fetched as they are read; a write
    (INSERT, UPDATE, DELETE) is carried out now and answers one row per input row."""
    started = time.monotonic()
    log.info("statement: %s", " ".join(sql.split()))
    try:
        result = _run(connection, sql, params, max_rows=max_rows)
    except RecursionError:  # parsing and planning recurse once per level of nesting
        raise too_deep() from None
    result.on_close.append(
        lambda: log.info("statement done in %.0f ms", (time.monotonic() - started) * 1000)
    )
    return result


def _run(connection: Client, sql: str, params: Params, *, max_rows: int | None) -> Result:
    if procedures.is_exec(sql):
        return procedures.run(connection, sql, params)
    tree = _statement(connection, sql, params)
    if writes.is_write(tree):
        return writes.run(connection, tree)
    return run_tree(connection, tree, max_rows=max_rows)
