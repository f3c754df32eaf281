"""Predicates: a WHERE clause's conditions on one table as typed comparisons and their logic.

The planner turns sqlglot conditions into these small immutable trees; product dialects
(connector/dialects) turn them into API filters. Values are Python values already
coerced to the column's type: str (TEXT), int (INTEGER), Decimal (DECIMAL), bool
(BOOLEAN), date (DATE), aware UTC datetime (DATETIME).
"""

from __future__ import annotations

from typing import Any

import msgspec

OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "IN", "LIKE", "IS NULL", "IS NOT NULL")
# What an operator becomes when the two sides of a comparison are swapped.
FLIPPED = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


class Comparison(msgspec.Struct, frozen=True):
    """``column op value``; IN takes a tuple of values, IS [NOT] NULL takes none."""

    column: str
    op: str
    value: Any = None

    def __str__(self) -> str:
        if self.op in ("IS NULL", "IS NOT NULL"):
            return f"{self.column} {self.op}"
        if self.op == "IN":
            return f"{self.column} IN ({', '.join(_show(v) for v in self.value)})"
        return f"{self.column} {self.op} {_show(self.value)}"


class And(msgspec.Struct, frozen=True):
    items: tuple[Predicate, ...]

    def __str__(self) -> str:
        return " AND ".join(_wrap(i) for i in self.items)


class Or(msgspec.Struct, frozen=True):
    items: tuple[Predicate, ...]

    def __str__(self) -> str:
        return " OR ".join(_wrap(i) for i in self.items)


class Not(msgspec.Struct, frozen=True):
    item: Predicate

    def __str__(self) -> str:
        return f"NOT {_wrap(self.item)}"


Predicate = Comparison | And | Or | Not


def columns_of(predicate: Predicate) -> set[str]:
    if isinstance(predicate, Comparison):
        return {predicate.column}
    if isinstance(predicate, Not):
        return columns_of(predicate.item)
    return set().union(*(columns_of(i) for i in predicate.items))


def _show(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if hasattr(value, "isoformat"):
        return "'" + value.isoformat() + "'"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return str(value)


def _wrap(p: Predicate) -> str:
    return f"({p})" if isinstance(p, (And, Or)) else str(p)
