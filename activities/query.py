"""The Query activity: a source of records, from a SELECT or from table, fields and conditions.

::

    Query(connection, "SELECT id, name FROM contacts WHERE name LIKE ?", params=["A%"])
    Query(connection, table="contacts", fields=["id", "name"],
          conditions={"contact_type_id": "CUSTOMER"}, order_by=["-updated_at"],
          limit=100, offset=200)

Iterating yields one dict per row (column name -> typed value), fetched lazily. The
second form builds the statement with sqlglot's expression builders: names become
identifiers and values literals, never text pasted into SQL, so no value can change
the statement. ``conditions`` is a mapping (``column: value`` means ``=``, a list
means ``IN``, None means ``IS NULL``) or a list of ``(column, operator, value)`` with
the operators ``= != <> < <= > >= IN NOT IN LIKE NOT LIKE IS NULL IS NOT NULL``.
``order_by`` names columns, ``-name`` descending. ``sql()`` shows the statement.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlglot import exp

from sagesql.activities.clients import Connectable, client_of
from sagesql.engine import pipeline
from sagesql.engine.statement import READ_DIALECT, Params, bind, literal, parse
from sagesql.errors import ProgrammingError

Condition = tuple[str, str, Any]
BINARY: dict[str, type[exp.Expression]] = {
    "=": exp.EQ,
    "!=": exp.NEQ,
    "<>": exp.NEQ,
    "<": exp.LT,
    "<=": exp.LTE,
    ">": exp.GT,
    ">=": exp.GTE,
    "LIKE": exp.Like,
}
OPERATORS = (*BINARY, "NOT LIKE", "IN", "NOT IN", "IS NULL", "IS NOT NULL")
QUERIES = (exp.Select, exp.Union, exp.Intersect, exp.Except)


def _column(name: str) -> exp.Column:
    if not isinstance(name, str) or not name:
        raise ProgrammingError(f"bad column name {name!r}", hint="name a column of the table")
    return exp.column(exp.to_identifier(name))


def condition(column: str, operator: str, value: Any = None) -> exp.Expression:
    """One comparison as a syntax tree."""
    op = " ".join(str(operator).upper().split())
    node = _column(column)
    if op in ("IS NULL", "IS NOT NULL"):
        test: exp.Expression = exp.Is(this=node, expression=exp.Null())
        return exp.Not(this=test) if op == "IS NOT NULL" else test
    if op in ("IN", "NOT IN"):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | set | frozenset):
            raise ProgrammingError(f"{op} takes a list of values", hint=f"{column} IN [1, 2]")
        if not value:
            raise ProgrammingError(f"{op} needs at least one value", hint="give a non-empty list")
        test = exp.In(this=node, expressions=[literal(v) for v in value])
        return exp.Not(this=test) if op == "NOT IN" else test
    if op == "NOT LIKE":
        return exp.Not(this=exp.Like(this=node, expression=literal(value)))
    kind = BINARY.get(op)
    if kind is None:
        raise ProgrammingError(
            f"unknown operator {operator!r}", hint=f"use one of {', '.join(OPERATORS)}"
        )
    if value is None:
        raise ProgrammingError(
            f"{column} {op} NULL is never true", hint="use the operator IS NULL or IS NOT NULL"
        )
    return kind(this=node, expression=literal(value))


def conditions_tree(
    conditions: Mapping[str, Any] | Sequence[Condition] | None,
) -> exp.Expression | None:
    """The AND of every condition, or None."""
    if not conditions:
        return None
    items: list[exp.Expression] = []
    if isinstance(conditions, Mapping):
        for name, value in conditions.items():
            if value is None:
                items.append(condition(name, "IS NULL"))
            elif isinstance(value, (list, tuple, set, frozenset)):
                items.append(condition(name, "IN", list(value)))
            else:
                items.append(condition(name, "=", value))
    else:
        for item in conditions:
            if not isinstance(item, Sequence) or isinstance(item, str) or len(item) not in (2, 3):
                raise ProgrammingError(
                    f"bad condition {item!r}", hint="write (column, operator, value)"
                )
            items.append(condition(*item))
    return exp.and_(*items) if len(items) > 1 else items[0]  # type: ignore[return-value]


def build(
    table: str,
    *,
    fields: Sequence[str] | None = None,
    conditions: Mapping[str, Any] | Sequence[Condition] | None = None,
    order_by: Sequence[str] | str | None = None,
    limit: int | None = None,
    offset: int | None = None,
) -> exp.Select:
    """``SELECT fields FROM table WHERE conditions ORDER BY ... LIMIT ... OFFSET ...``."""
    if not isinstance(table, str) or not table:
        raise ProgrammingError("name a table", hint="table='contacts'")
    projection = [_column(f) for f in fields] if fields else [exp.Star()]
    select = exp.select(*projection).from_(exp.table_(exp.to_identifier(table)))
    where = conditions_tree(conditions)
    if where is not None:
        select = select.where(where)
    for item in [order_by] if isinstance(order_by, str) else order_by or []:
        descending = item.startswith("-")
        select = select.order_by(
            exp.Ordered(this=_column(item.lstrip("-")), desc=descending, nulls_first=None)
        )
    for name, value in (("limit", limit), ("offset", offset)):
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ProgrammingError(f"{name} must be a whole number >= 0, not {value!r}")
        select = select.limit(value) if name == "limit" else select.offset(value)
    return select


class Query:
    """A source of records: iterate it for one dict per row."""

    def __init__(
        self,
        connection: Connectable,
        statement: str | None = None,
        *,
        params: Params = None,
        table: str | None = None,
        fields: Sequence[str] | None = None,
        conditions: Mapping[str, Any] | Sequence[Condition] | None = None,
        order_by: Sequence[str] | str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> None:
        if (statement is None) == (table is None):
            raise ProgrammingError(
                "give a statement or a table (not both)",
                hint="Query(conn, 'SELECT ...') or Query(conn, table='contacts', ...)",
            )
        self.connection = client_of(connection)
        if statement is not None:
            if any(x is not None for x in (fields, conditions, order_by, limit, offset)):
                raise ProgrammingError(
                    "fields, conditions, order_by, limit and offset go with table=, not with "
                    "a statement",
                    hint="put them in the statement",
                )
            self.tree = bind(parse(statement), params)
            if not isinstance(self.tree, QUERIES):
                raise ProgrammingError(
                    "Query runs SELECT statements",
                    hint="use Create, Update, Delete or Execute for the others",
                )
        else:
            self.tree = build(
                str(table),
                fields=fields,
                conditions=conditions,
                order_by=order_by,
                limit=limit,
                offset=offset,
            )

    def sql(self) -> str:
        return self.tree.sql(READ_DIALECT)

    def records(self) -> Iterator[dict[str, Any]]:
        """The rows as dicts, fetched as they are read (stopping early stops the paging)."""
        result = pipeline.run_tree(self.connection, self.tree.copy())
        names = [c.name for c in result.columns]
        try:
            for row in result.rows:
                yield dict(zip(names, row, strict=True))
        finally:
            result.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.records()
