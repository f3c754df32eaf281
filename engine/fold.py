"""Folding: constant date and time expressions evaluated into literals before planning.

``datetime('now', '-1 day')``, ``date('now', 'start of month')``, ``CURRENT_TIMESTAMP``,
``julianday('now') - 7``, ``strftime('%Y-%m-%d', 'now')``, ``datetime('2025-01-16
12:00:00')``, ``TIMESTAMP '2025-01-16 12:00:00'``: made of literals, arithmetic and
SQLite's date and time functions only, they are constants. Folded into literals before
names are resolved, they are planned like any literal: normalised into the stored form
(values.py), pushed to the API (``updated_or_created_since``, ``$filter``, ``where=``),
and shown by ``--explain`` as the values they are.

SQLite computes them itself (one ``SELECT`` on an in-memory database), so a folded value
is exactly what SQLite would compute at run time, with one difference: ``'now'`` is one
instant per statement, taken from the connection's clock, so that every ``'now'`` (and
``CURRENT_TIMESTAMP``...) of a statement agrees, and tests can freeze it. Anything else
(``random()``, a column, a subquery, a function not listed here) is left to SQLite, and
so is an expression SQLite refuses (it reports the error when the statement runs). A
constant that is a whole ORDER BY or GROUP BY term stays as written (an integer there
would name a column).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlglot import exp

from sagesql.engine.statement import READ_DIALECT

Clock = Callable[[], datetime]

# SQLite's date and time functions, by the name sqlglot keeps for them (Anonymous calls).
DATE_FUNCTIONS = frozenset({"date", "time", "datetime", "julianday", "unixepoch", "strftime"})
DATE_FUNCTIONS |= {"timediff"}
# The argument positions that are time values ('now' there is the clock's instant).
_TIME_ARGUMENTS = {"strftime": (1,), "timediff": (0, 1)}
_CURRENT: dict[type, str] = {
    exp.CurrentTimestamp: "DATETIME",
    exp.CurrentDate: "DATE",
    exp.CurrentTime: "TIME",
}
_OPERATORS = (exp.Paren, exp.Neg, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.DPipe)
_CAST_TO_TIME = {exp.DataType.Type.DATE, exp.DataType.Type.DATETIME, exp.DataType.Type.TIMESTAMP}


def utc_now() -> datetime:
    """The machine's clock in UTC: what SQLite's 'now' reads."""
    return datetime.now(timezone.utc)


def fold(tree: exp.Expression, now: Clock | None = None) -> exp.Expression:
    """The tree with every constant date and time expression replaced by its value.

    ``now`` is called at most once: the statement's one 'now'."""
    found = [node for node in _constants(tree) if _is_date_expression(node)]
    if not found:
        return tree
    instant = _now_text((now or utc_now)())
    values = _evaluate([_with_now(node, instant).sql(READ_DIALECT) for node in found])
    for node, value in zip(found, values, strict=True):
        literal: exp.Expr | None = _literal(value)
        if literal is None:
            continue
        name = _output_name(tree, node)
        if name is not None:
            literal = exp.alias_(literal, name, quoted=True)
        node.replace(literal)
    return tree


def _constants(tree: exp.Expression) -> list[exp.Expression]:
    """The largest constant subexpressions (literals alone excluded), outermost first."""
    constant: dict[int, bool] = {}
    # Post-order: a node is constant when it is an allowed kind and its children are.
    for node in _post_order(tree):
        constant[id(node)] = _allowed(node) and all(
            constant.get(id(child), False) for child in node.iter_expressions()
        )
    out: list[exp.Expression] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if constant.get(id(node)) and isinstance(node.parent, (exp.Ordered, exp.Group)):
            continue  # a sort or group term: an integer there would name a column
        if constant.get(id(node)) and not isinstance(
            node, (exp.Literal, exp.Null, exp.Boolean, exp.DataType)
        ):
            out.append(node)
            continue
        stack.extend(reversed(list(node.iter_expressions())))
    return out


def _post_order(tree: exp.Expression) -> list[exp.Expression]:
    order: list[exp.Expression] = []
    stack: list[tuple[exp.Expression, bool]] = [(tree, False)]
    while stack:
        node, visited = stack.pop()
        if visited:
            order.append(node)
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in node.iter_expressions())
    return order


def _allowed(node: exp.Expression) -> bool:
    if isinstance(node, (exp.Literal, exp.Null, exp.Boolean)):
        return True
    if isinstance(node, exp.DataType):
        return isinstance(node.parent, exp.Cast)
    if isinstance(node, (*_OPERATORS, exp.Cast)):
        return True
    return _is_date_function(node)


def _is_date_function(node: exp.Expr) -> bool:
    if isinstance(node, exp.Anonymous):
        return node.name.lower() in DATE_FUNCTIONS
    if isinstance(node, (exp.Date, exp.TimeToStr, *_CURRENT)):
        return True
    if isinstance(node, exp.TsOrDsToTimestamp):  # strftime's time value, inside TimeToStr
        return isinstance(node.parent, exp.TimeToStr)
    return False


def _is_date_expression(node: exp.Expression) -> bool:
    """Whether a constant holds a date or time function (other constants stay as written)."""
    return any(
        _is_date_function(n) or (isinstance(n, exp.Cast) and n.to.this in _CAST_TO_TIME)
        for n in node.walk()
    )


def _now_text(instant: datetime) -> str:
    """An instant as SQLite reads a time value: UTC, to the millisecond as its 'now'."""
    instant = instant.astimezone(timezone.utc) if instant.tzinfo else instant
    return instant.strftime("%Y-%m-%d %H:%M:%S.") + f"{instant.microsecond // 1000:03d}"


def _is_now(node: exp.Expression | None) -> bool:
    return isinstance(node, exp.Literal) and node.is_string and node.this.lower() == "now"


def _with_now(node: exp.Expression, instant: str) -> exp.Expression:
    """A copy of the expression whose 'now' (and CURRENT_*) is the instant."""
    holder = exp.Paren(this=node.copy())  # so that the expression itself can be replaced
    now = exp.Literal.string(instant)
    for n in list(holder.this.walk()):
        current = _CURRENT.get(type(n))
        if current is not None:
            n.replace(exp.Anonymous(this=current, expressions=[now.copy()]))
        elif isinstance(n, exp.Anonymous) and n.name.lower() in DATE_FUNCTIONS:
            name = n.name.lower()
            args = n.expressions
            positions = _TIME_ARGUMENTS.get(name, (0,))
            if len(args) == positions[0]:  # date(), strftime('%s'): 'now'
                n.set("expressions", [*args, now.copy()])
                continue
            for position in positions:
                if position < len(args) and _is_now(args[position]):
                    args[position].replace(now.copy())
        elif isinstance(n, exp.Date):
            if n.this is None:
                n.set("this", now.copy())
            elif _is_now(n.this):
                n.this.replace(now.copy())
        elif isinstance(n, exp.TsOrDsToTimestamp) and _is_now(n.this):
            n.this.replace(now.copy())
    return holder.this


def _evaluate(sql: list[str]) -> list[Any]:
    """Each expression's value as SQLite computes it; ``_UNFOLDED`` where SQLite refuses."""
    connection = sqlite3.connect(":memory:")
    try:
        try:
            return list(connection.execute("SELECT " + ", ".join(sql)).fetchone())
        except sqlite3.Error:
            pass
        values: list[Any] = []
        for text in sql:
            try:
                values.append(connection.execute("SELECT " + text).fetchone()[0])
            except sqlite3.Error:
                values.append(_UNFOLDED)
        return values
    finally:
        connection.close()


_UNFOLDED = object()


def _literal(value: Any) -> exp.Expr | None:
    """A value as a literal node; None when it is left unfolded."""
    if value is None:
        return exp.Null()
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, int):
        return exp.Literal.number(str(value))
    if isinstance(value, float) and math.isfinite(value):
        return exp.Literal.number(repr(value))
    return None


def _output_name(tree: exp.Expression, node: exp.Expression) -> str | None:
    """The name an unnamed result column had before folding (a literal is named by its
    value): the statement's own columns by their text (as names.py names them), those
    of subqueries and set operations as the qualifier names expressions, _col_<i>."""
    select = node.parent
    if not isinstance(select, exp.Select):
        return None
    for i, item in enumerate(select.expressions):
        if item is node:
            return node.sql(READ_DIALECT) if select is tree else f"_col_{i}"
    return None
