"""Conditions: the statement's comparisons read as typed predicates, and literals normalized.

``to_predicate`` reads one WHERE/ON conjunct on one table into engine.predicates (or
None when it is not a plain comparison of that table's columns with literals);
``normalize_literals`` rewrites literals compared with DATE, DATETIME and BOOLEAN
columns into their stored form (values.py), so that SQLite compares like with like:
columns of the catalog's tables, and of derived tables, CTEs and set operations that
pass one through (by name, ``MIN``/``MAX`` and ``COALESCE`` of one type included), and
the results of SQLite's date() and datetime(). Columns are mapped to tables through
sqlglot's scopes, so that the same alias in two subqueries cannot be confused.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope

from sagesql.connector.predicates import FLIPPED, And, Comparison, Not, Or, Predicate
from sagesql.engine.names import TableRef
from sagesql.engine.statement import READ_DIALECT
from sagesql.engine.values import comparison_value, literal_storage
from sagesql.errors import DataError
from sagesql.schemas.catalog import Column

COMPARISONS: dict[type[exp.Expression], str] = {
    exp.EQ: "=",
    exp.NEQ: "!=",
    exp.GT: ">",
    exp.GTE: ">=",
    exp.LT: "<",
    exp.LTE: "<=",
}

NOT_A_LITERAL = object()


def split_and(condition: exp.Expression | None) -> list[exp.Expression]:
    """The top-level AND items of a condition."""
    if condition is None:
        return []
    if isinstance(condition, exp.Paren):
        return split_and(condition.this)
    if isinstance(condition, exp.And):
        return split_and(condition.this) + split_and(condition.expression)
    return [condition]


def literal_value(node: exp.Expression) -> Any:
    """The Python value of a literal node, or NOT_A_LITERAL."""
    if isinstance(node, exp.Paren):
        return literal_value(node.this)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = node.this
        number = Decimal(text)
        return (
            int(number)
            if number == number.to_integral_value() and "." not in text and "e" not in text.lower()
            else number
        )
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Neg):
        inner = literal_value(node.this)
        if isinstance(inner, (int, Decimal)) and not isinstance(inner, bool):
            return -inner
    return NOT_A_LITERAL


def column_map(tree: exp.Expression, refs: list[TableRef]) -> dict[int, tuple[TableRef, Column]]:
    """id(column node) -> (its table reference, its catalog column), for every scope."""
    by_local = {ref.local_name: ref for ref in refs}
    found: dict[int, tuple[TableRef, Column]] = {}
    for scope in traverse_scope(tree):
        for column in scope.columns:
            source = scope.sources.get(column.table)
            if isinstance(source, exp.Table) and source.name in by_local:
                ref = by_local[source.name]
                if ref.table.has_column(column.name):
                    found[id(column)] = (ref, ref.table.column(column.name))
    return found


def passed_through(
    tree: exp.Expression, columns: dict[int, tuple[TableRef, Column]]
) -> dict[int, tuple[TableRef, Column]]:
    """id(column node) -> the catalog column it carries unchanged, for columns of derived
    tables and CTEs: ``t.updated_at`` of ``FROM (SELECT updated_at FROM customers) AS t``
    (a plain column, or one-argument MIN/MAX, through any depth; every branch of a set
    operation the same type). For literals only (normalize_literals): such a column
    holds the catalog column's stored values, but no API request filters on it."""
    found: dict[int, tuple[TableRef, Column]] = {}

    def origin(scope: Scope, name: str) -> tuple[TableRef, Column] | None:
        if scope.set_operation_scopes:
            arms = [origin(arm, name) for arm in scope.set_operation_scopes]
            if any(a is None for a in arms) or len({a[1].type for a in arms}) != 1:  # type: ignore[index]
                return None
            return arms[0]
        select = scope.expression
        if not isinstance(select, exp.Select):
            return None
        items = [e for e in select.expressions if e.alias_or_name.lower() == name.lower()]
        if len(items) != 1:
            return None
        node = items[0].unalias()
        while isinstance(node, exp.Paren) or (
            isinstance(node, (exp.Min, exp.Max)) and not node.expressions
        ):
            node = node.this
        if not isinstance(node, exp.Column):
            return None
        return columns.get(id(node)) or found.get(id(node))

    for scope in traverse_scope(tree):  # inner scopes first
        for column in scope.columns:
            if id(column) in columns:
                continue
            source = scope.sources.get(column.table)
            if isinstance(source, Scope):
                carried = origin(source, column.name)
                if carried is not None:
                    found[id(column)] = carried
    return found


def to_predicate(
    node: exp.Expression, ref: TableRef, columns: dict[int, tuple[TableRef, Column]]
) -> Predicate | None:
    """The predicate a conjunct states about ``ref``'s columns alone, or None."""
    product = ref.table.product

    def column_of(side: exp.Expression) -> Column | None:
        if isinstance(side, exp.Paren):
            return column_of(side.this)
        if isinstance(side, exp.Column):
            owner = columns.get(id(side))
            if owner is not None and owner[0] is ref and owner[1].type != "JSON":
                return owner[1]
        return None

    def value(column: Column, node: exp.Expression) -> Any:
        raw = literal_value(node)
        if raw is NOT_A_LITERAL:
            return NOT_A_LITERAL
        return comparison_value(column.type, raw, product, column=column.name)

    def compare(column: Column, op: str, v: Any) -> Predicate | None:
        if v is NOT_A_LITERAL or v is None:
            return None
        if column.type == "DATE" and isinstance(v, datetime):
            return _date_against_instant(column.name, op, v)
        return Comparison(column.name, op, v)

    def read(n: exp.Expression) -> Predicate | None:
        if isinstance(n, exp.Paren):
            return read(n.this)
        if isinstance(n, (exp.And, exp.Or)):
            left, right = read(n.this), read(n.expression)
            if left is None or right is None:
                return None
            kind = And if isinstance(n, exp.And) else Or
            items: list[Predicate] = []
            for part in (left, right):
                items.extend(part.items if isinstance(part, kind) else (part,))
            return kind(tuple(items))
        if isinstance(n, exp.Not):
            if isinstance(n.this, exp.Is) and isinstance(n.this.expression, exp.Null):
                column = column_of(n.this.this)
                return Comparison(column.name, "IS NOT NULL") if column else None
            inner = read(n.this)
            return Not(inner) if inner is not None else None
        if isinstance(n, exp.Is) and isinstance(n.expression, exp.Null):
            column = column_of(n.this)
            return Comparison(column.name, "IS NULL") if column else None
        op = COMPARISONS.get(type(n))
        if op is not None:
            left, right = n.this, n.expression
            column = column_of(left)
            if column is None:
                column, right, op = column_of(right), left, FLIPPED[op]
            if column is None:
                return None
            return compare(column, op, value(column, right))
        if isinstance(n, exp.Between):
            column = column_of(n.this)
            if column is None:
                return None
            low = compare(column, ">=", value(column, n.args["low"]))
            high = compare(column, "<=", value(column, n.args["high"]))
            if low is None or high is None:
                return None
            return And((low, high))
        if isinstance(n, exp.In) and not n.args.get("query") and not n.args.get("unnest"):
            column = column_of(n.this)
            if column is None or not n.expressions:
                return None
            values = tuple(value(column, e) for e in n.expressions)
            if any(v is NOT_A_LITERAL or v is None for v in values):
                return None
            if column.type == "DATE":
                # An instant that is not a midnight equals no date.
                values = tuple(v for v in values if not isinstance(v, datetime))
                if not values:
                    return None
            return Comparison(column.name, "IN", values)
        if isinstance(n, exp.Like):
            column = column_of(n.this)
            pattern = literal_value(n.expression)
            if column is None or column.type != "TEXT" or not isinstance(pattern, str):
                return None
            like = Comparison(column.name, "LIKE", pattern)
            # sqlglot reads ``x NOT LIKE p`` as one Like node with negate set.
            return Not(like) if n.args.get("negate") else like
        return None

    return read(node)


def _date_against_instant(column: str, op: str, instant: datetime) -> Predicate | None:
    """``date op instant`` for an instant that is no midnight (a date is its midnight UTC),
    as a comparison with a date: > and >= keep the days after the instant's, < and <=
    its day and those before. = and != are left to SQLite (no date equals it)."""
    day: date = instant.date()
    if op in (">", ">="):
        return Comparison(column, ">", day)
    if op in ("<", "<="):
        return Comparison(column, "<=", day)
    return None


Typer = Callable[[exp.Expression], "tuple[str, bool] | None"]


def expression_types(tree: exp.Expression, columns: dict[int, tuple[TableRef, Column]]) -> Typer:
    """A function giving an expression's (SQL type, strict) when it is a DATE, DATETIME or
    BOOLEAN value the statement stores: a catalog column, a derived table's or CTE's
    column passing one through (set operations whose branches agree), MIN/MAX or
    COALESCE of one type, SQLite's date() and datetime(). ``strict``: a column, whose
    literals must be of its type; literals a function is compared with are rewritten
    only when they read as dates."""
    scope_of: dict[int, Scope] = {}
    for scope in traverse_scope(tree):
        for column in scope.columns:
            scope_of[id(column)] = scope
    outputs: dict[int, list[tuple[str, str | None]]] = {}

    def source_of(scope: Scope | None, name: str) -> Any:
        while scope is not None:
            source = scope.sources.get(name)
            if source is not None:
                return source
            scope = scope.parent
        return None

    def scope_outputs(scope: Scope) -> list[tuple[str, str | None]]:
        if id(scope) in outputs:
            return outputs[id(scope)]
        outputs[id(scope)] = []  # a recursive CTE refers to itself: no type
        node = scope.expression
        out: list[tuple[str, str | None]] = []
        if isinstance(node, exp.SetOperation) and scope.set_operation_scopes:
            branches = [scope_outputs(s) for s in scope.set_operation_scopes]
            first = branches[0]
            same = all(len(b) == len(first) for b in branches)
            out = [
                (n, t if same and all(b[i][1] == t for b in branches) else None)
                for i, (n, t) in enumerate(first)
            ]
        elif isinstance(node, exp.Select):
            out = [(p.alias_or_name, type_of(p.unalias())) for p in node.expressions]
        parent = node.parent
        alias = parent.args.get("alias") if isinstance(parent, (exp.CTE, exp.Subquery)) else None
        renamed = [c.name for c in alias.columns] if alias is not None and alias.columns else []
        if renamed and len(renamed) == len(out):
            out = [(n, t) for n, (_, t) in zip(renamed, out, strict=True)]
        outputs[id(scope)] = out
        return out

    def column_type(node: exp.Column) -> str | None:
        owner = columns.get(id(node))
        if owner is not None:
            return owner[1].type
        scope = scope_of.get(id(node))
        if scope is None:
            return None
        if not node.table:  # an output column's alias (HAVING, ORDER BY)
            select = scope.expression
            for item in select.expressions if isinstance(select, exp.Select) else []:
                if isinstance(item, exp.Alias) and item.alias.lower() == node.name.lower():
                    return type_of(item.this)
            return None
        source = source_of(scope, node.table)
        if isinstance(source, Scope):
            found = {t for n, t in scope_outputs(source) if n.lower() == node.name.lower()}
            return found.pop() if len(found) == 1 else None
        return None

    def type_of(node: exp.Expression) -> str | None:
        found = typed(node)
        return found[0] if found is not None else None

    def typed(node: exp.Expression) -> tuple[str, bool] | None:
        while isinstance(node, exp.Paren):
            node = node.this
        kind: str | None = None
        if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
            kind = column_type(node)
            return (kind, True) if kind in ("DATE", "DATETIME", "BOOLEAN") else None
        if isinstance(node, (exp.Min, exp.Max)) and not node.expressions:
            return typed(node.this)
        if isinstance(node, exp.Coalesce):
            parts = [node.this, *node.expressions]
            kinds = {type_of(p) for p in parts if literal_value(p) is NOT_A_LITERAL}
            kind = kinds.pop() if len(kinds) == 1 else None
        elif isinstance(node, exp.Date):
            kind = "DATE"
        elif isinstance(node, exp.Anonymous) and node.name.lower() in ("date", "datetime"):
            kind = node.name.upper()
        return (kind, False) if kind in ("DATE", "DATETIME") else None

    return typed


def normalize_literals(tree: exp.Expression, columns: dict[int, tuple[TableRef, Column]]) -> None:
    """Literals compared with DATE, DATETIME and BOOLEAN values, in their stored form."""
    typed = expression_types(tree, columns)
    products = {ref.table.product for ref, _ in columns.values()}
    product = products.pop() if len(products) == 1 else ""

    def rewrite(value_node: exp.Expression, other: exp.Expression) -> None:
        found = typed(value_node)
        if found is None:
            return
        raw = literal_value(other)
        if raw is NOT_A_LITERAL or raw is None:
            return
        sql_type, strict = found
        owner = columns.get(id(value_node))
        name = owner[1].name if owner is not None else value_node.sql(READ_DIALECT)
        try:
            value = comparison_value(sql_type, raw, product, column=name)
        except DataError:
            if strict:
                raise
            return
        stored = literal_storage(sql_type, value, product)
        other.replace(
            exp.Literal.number(stored)
            if isinstance(stored, int)
            else exp.Literal.string(str(stored))
        )

    for node in list(tree.find_all(*COMPARISONS, exp.Between, exp.In, exp.Case)):
        if isinstance(node, exp.Case):  # CASE x WHEN v THEN ...: each v compared with x
            if node.this is not None:
                for branch in node.args.get("ifs") or []:
                    rewrite(node.this, branch.this)
        elif isinstance(node, exp.Between):
            rewrite(node.this, node.args["low"])
            rewrite(node.this, node.args["high"])
        elif isinstance(node, exp.In):
            for item in list(node.expressions):
                rewrite(node.this, item)
        else:
            rewrite(node.this, node.expression)
            rewrite(node.expression, node.this)
