"""Running a statement: parse, bind, resolve, plan, fetch and evaluate, as one call.

``run`` returns a Result whose rows stream; ``explain`` returns the plan as text
without sending anything. Nothing is sent for a statement that fails validation:
every name, type and parameter is checked while planning, before the first request.
"""

from __future__ import annotations

import itertools
from typing import Any

from sqlglot import exp

from sagesql.connector.errors import NotSupportedError
from sagesql.engine import fetch, local, procedures
from sagesql.engine.names import resolve
from sagesql.engine.plan import Plan, plan
from sagesql.engine.result import Result
from sagesql.engine.statement import Params, bind, parse

QUERIES = (exp.Select, exp.Union, exp.Intersect, exp.Except)


def prepare(connection: Any, sql: str, params: Params = None) -> Plan:
    """The plan of a query (no request is made)."""
    tree = bind(parse(sql), params)
    if not isinstance(tree, QUERIES):
        kind = type(tree).__name__.upper()
        raise NotSupportedError(
            f"{kind} statements are not supported yet",
            hint="sagesql runs SELECT queries; writes and EXEC come with the activity API",
        )
    qualified, refs = resolve(tree, connection.catalog, connection.product.product)
    return plan(qualified, refs, connection.catalog)


def explain(connection: Any, sql: str, params: Params = None) -> str:
    if procedures.is_exec(sql):
        name, args = procedures.parse_exec(sql, params)
        table, procedure = procedures.find(connection, name)
        procedures.check_arguments(procedure, args, connection.product.product)
        request = procedure.request
        call = (
            f"built-in {request['builtin']}"
            if "builtin" in request
            else f"{request['method']} {request['path']}"
        )
        return f"EXEC {procedure.name}" + (f" (table {table})" if table else "") + f": {call}"
    return prepare(connection, sql, params).explain()


def run(connection: Any, sql: str, params: Params = None, *, max_rows: int | None = None) -> Result:
    """The result of a query; rows are fetched as they are read."""
    if procedures.is_exec(sql):
        return procedures.run(connection, sql, params)
    the_plan = prepare(connection, sql, params)
    settings = connection.settings
    transport = connection.transport if the_plan.scans else None
    sources = [
        local.LocalSource(
            scan.ref.local_name,
            [(name, scan.table.column(name).type) for name in scan.columns],
            fetch.rows(
                scan, transport, page_size=settings.pagesize, parallel=settings.max_concurrency > 1
            ),
        )
        for scan in the_plan.scans
    ]
    result = local.evaluate(the_plan.tree, sources, product=connection.product.product)
    cap = max_rows if max_rows is not None else settings.max_rows
    if cap is not None and cap >= 0:
        streamed = result.rows
        result.rows = itertools.islice(streamed, cap)
        result.on_close.insert(0, getattr(streamed, "close", lambda: None))
    result.plan = the_plan  # type: ignore[attr-defined]
    return result
