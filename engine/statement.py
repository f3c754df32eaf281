"""Statements: SQL text parsed with sqlglot (one statement), and parameters bound.

Parameters are ``?`` (a sequence) or ``:name`` (a mapping). Bound values become
literals in the syntax tree, never text pasted into SQL, so a value cannot change
the statement's meaning. Parse errors name the line, column and the text there.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from sagesql.errors import ProgrammingError

READ_DIALECT = "sqlite"


class _NoCommandWarning(logging.Filter):
    """sqlglot warns when it reads a statement it does not know as a raw Command; sagesql
    refuses those in one line of its own, so the warning would only be noise on stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_NoCommandWarning())

Params = Sequence[Any] | Mapping[str, Any] | None


def position(node: exp.Expression | None) -> str:
    """'line L, column C' of a node when sqlglot kept it, else ''."""
    while node is not None:
        meta = getattr(node, "meta", None) or {}
        if "line" in meta:
            return f"line {meta['line']}, column {meta['col']}"
        inner = node.this if isinstance(node.this, exp.Expression) else None
        if inner is None:
            break
        node = inner
    return ""


def too_deep() -> ProgrammingError:
    """The error for a statement nested deeper than Python's recursion allows."""
    return ProgrammingError(
        "the statement is nested too deeply", hint="write it with fewer levels of brackets"
    )


def _one_line(text: str) -> str:
    """sqlglot quotes the statement in its messages: line breaks shown as \\n."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


# The parameter styles sagesql takes, for messages about the ones it does not.
PARAMSTYLES = "? with a sequence (paramstyle qmark) or :name with a mapping (named)"
# Placeholders of other drivers, outside quotes and comments: %s, %(name)s, $1, @name.
_QUOTED = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?\*/", re.S
)
_FOREIGN = re.compile(r"%\(\w+\)s|%s\b|(?<![\w$])\$\d+\b|(?<![\w@])@\w+")


def foreign_placeholder(sql: str) -> str | None:
    """The first placeholder of another paramstyle in the SQL (%s, %(name)s, $1, @name)."""
    found = _FOREIGN.search(_QUOTED.sub(" ", sql))
    return found.group(0) if found else None


def _paramstyle_error(placeholder: str) -> ProgrammingError:
    style = {"%": "format/pyformat", "$": "numeric", "@": "@name"}[placeholder[0]]
    return ProgrammingError(
        f"{placeholder} placeholders (paramstyle {style}) are not supported",
        hint=f"use {PARAMSTYLES}, e.g. WHERE id = ?",
    )


def parse(sql: str) -> exp.Expression:
    """The syntax tree of exactly one statement."""
    if not sql or not sql.strip().rstrip(";").strip():
        raise ProgrammingError(
            "empty statement", hint="give a SQL statement such as SELECT * FROM contacts LIMIT 10"
        )
    try:
        trees = [t for t in sqlglot.parse(sql, read=READ_DIALECT) if t is not None]
    except ParseError as exc:
        placeholder = foreign_placeholder(sql)
        if placeholder is not None and placeholder.startswith("%"):
            raise _paramstyle_error(placeholder) from None
        detail = exc.errors[0] if exc.errors else {}
        where = f" at line {detail['line']}, column {detail['col']}" if detail.get("line") else ""
        near = f" near {detail['highlight']!r}" if detail.get("highlight") else ""
        what = str(detail.get("description", "")).split(". Line")[0]
        what = what.split(" but got <Token")[0]
        raise ProgrammingError(
            f"SQL syntax error{where}{near}: {_one_line(what)}", hint="check the statement's syntax"
        ) from None
    except TokenError as exc:
        raise ProgrammingError(
            f"SQL syntax error: {_one_line(str(exc))}", hint="check quotes and brackets are closed"
        ) from None
    except RecursionError:  # sqlglot recurses once per level of nesting
        raise too_deep() from None
    if len(trees) != 1:
        raise ProgrammingError(f"{len(trees)} statements given", hint="run one at a time")
    tree = trees[0]
    if isinstance(tree, exp.Command):
        raise ProgrammingError(
            f"unsupported statement {tree.name.upper()!r}",
            hint="use SELECT, INSERT, UPDATE, DELETE or EXEC",
        )
    assert isinstance(tree, exp.Expression)
    return tree


def literal(value: Any) -> exp.Expression:
    """A bound value as a syntax-tree literal."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, (int, Decimal)):
        return exp.Literal.number(str(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ProgrammingError(
                f"parameter value {value} is not a finite number",
                hint="pass a finite number or NULL",
            )
        return exp.Literal.number(repr(value))
    if isinstance(value, datetime):
        return exp.Literal.string(value.isoformat())
    if isinstance(value, (date, time)):
        return exp.Literal.string(value.isoformat())
    if isinstance(value, str):
        return exp.Literal.string(value)
    raise ProgrammingError(
        f"unsupported parameter type {type(value).__name__}",
        hint="pass str, int, float, Decimal, bool, date, datetime or None",
    )


def _in_text_order(tree: exp.Expression, holders: list[exp.Placeholder]) -> list[exp.Placeholder]:
    """The ? placeholders in the order they stand in the SQL: a walk of the tree visits
    LIMIT before WHERE (and a CTE last), so each is named for a moment and found in the
    SQL the tree writes, which keeps the clauses in their textual order."""
    if len(holders) < 2:
        return holders
    for i, holder in enumerate(holders):
        holder.set("this", f"sagesql_q{i}_")
    text = tree.sql(READ_DIALECT)
    for holder in holders:
        holder.set("this", None)
    where = [text.index(f":sagesql_q{i}_") for i in range(len(holders))]
    return [h for _, h in sorted(zip(where, holders, strict=True), key=lambda p: p[0])]


def bind(tree: exp.Expression, params: Params) -> exp.Expression:
    """The tree with every placeholder replaced by its value."""
    holders = list(tree.find_all(exp.Placeholder))
    if not holders:
        if params:
            # (EXEC's own @Param = value is not a placeholder)
            placeholder = (
                None
                if isinstance(tree, exp.Execute)
                else foreign_placeholder(tree.sql(READ_DIALECT))
            )
            if placeholder is not None:
                raise _paramstyle_error(placeholder)
            raise ProgrammingError(
                f"{len(params)} parameters given but the statement has none",
                hint=f"mark where they go: {PARAMSTYLES}",
            )
        return tree
    named = [h for h in holders if h.this]
    if named and len(named) != len(holders):
        raise ProgrammingError("the statement mixes ? and :name parameters", hint="use one style")
    if named:
        if not isinstance(params, Mapping):
            raise ProgrammingError(
                "the statement has :name parameters", hint="pass a mapping of name to value"
            )
        missing = sorted({h.this for h in named} - set(params))
        if missing:
            raise ProgrammingError(
                f"no value for parameter(s) {', '.join(missing)}",
                hint="pass a value for every :name",
            )
        for holder in named:
            holder.replace(literal(params[holder.this]))
        return tree
    if params is None or isinstance(params, (Mapping, str)):
        raise ProgrammingError(
            f"the statement has {len(holders)} ? parameters", hint="pass a sequence of values"
        )
    values = list(params)
    holders = _in_text_order(tree, holders)
    if len(values) != len(holders):
        raise ProgrammingError(
            f"the statement has {len(holders)} ? parameters but {len(values)} values were given",
            hint="pass one value per ?",
        )
    for holder, value in zip(holders, values, strict=True):
        holder.replace(literal(value))
    return tree


def merged_insert(sql: str, param_sets: Sequence[Params]) -> str | None:
    """``INSERT ... VALUES (?, ...)`` run once per parameter set, as one multi-row INSERT
    whose row n is parameter set n (its rows then go out in parallel, as any multi-row
    INSERT's do); None for any other statement, which then runs once per set."""
    tree = parse(sql)
    values = tree.expression if isinstance(tree, exp.Insert) else None
    if not isinstance(values, exp.Values) or len(values.expressions) != 1:
        return None
    row = values.expressions[0]
    holders = list(tree.find_all(exp.Placeholder))
    if not holders or len(holders) != len(list(row.find_all(exp.Placeholder))):
        return None  # a parameter outside the row (a WITH, a RETURNING): set by set
    rows = []
    for params in param_sets:
        bound = bind(tree.copy(), params)
        rows.append(bound.expression.expressions[0])
    merged = tree.copy()
    merged.expression.set("expressions", rows)
    return merged.sql(READ_DIALECT)
