"""The dialect interface: conjuncts, sort and columns in; query parameters and verdicts out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sagesql.connector.catalog import Table
from sagesql.engine.predicates import Predicate


@dataclass(frozen=True)
class SortKey:
    column: str
    descending: bool = False
    nulls_first: bool | None = None  # None: the SQL default (SQLite: NULLs first ascending)


@dataclass
class Pushed:
    """What one list request will ask of the API."""

    params: dict[str, str] = field(default_factory=dict)
    # Indexes (into the conjuncts given) of those the API applies, and of those it applies
    # exactly (a subset of pushed).
    pushed: set[int] = field(default_factory=set)
    exact: set[int] = field(default_factory=set)
    # Whether the API returns rows in the requested order (ORDER BY fully pushed).
    sorted: bool = False
    # Human-readable notes for --explain (why something was not pushed).
    notes: list[str] = field(default_factory=list)


class Dialect:
    """Base: pushes nothing, sorts nothing, asks for every field (always correct)."""

    name = "none"

    def __init__(self, table: Table) -> None:
        self.table = table

    def push(
        self,
        conjuncts: Sequence[Predicate],
        *,
        order: Sequence[SortKey] = (),
        columns: Sequence[str] | None = None,
    ) -> Pushed:
        """The query parameters for a list request of ``self.table``.

        ``conjuncts`` are the WHERE clause's top-level AND items that concern only this
        table; ``order`` the ORDER BY (pushed only when the API can sort by all of it);
        ``columns`` the columns the statement needs (None: all), for projection.
        """
        return Pushed(params=dict(self.table.fixed_parameters))

    def key_values(self, conjuncts: Sequence[Predicate]) -> tuple[int, tuple[Any, ...]] | None:
        """(conjunct index, keys) when a conjunct is ``key = v`` or ``key IN (...)``."""
        from sagesql.engine.predicates import Comparison

        key = self.table.key
        if key is None or "get" not in self.table.operations:
            return None
        for i, c in enumerate(conjuncts):
            if isinstance(c, Comparison) and c.column == key:
                if c.op == "=":
                    return i, (c.value,)
                if c.op == "IN":
                    return i, tuple(c.value)
        return None


def for_table(table: Table) -> Dialect:
    """The dialect of a table, from its pushdown definition."""
    expression = table.pushdown.expression
    if expression is not None and expression.syntax == "odata":
        from sagesql.connector.dialects.odata import ODataDialect

        return ODataDialect(table)
    if expression is not None and expression.syntax == "sdata":
        from sagesql.connector.dialects.sdata import SDataDialect

        return SDataDialect(table)
    if table.product == "sage_accounting":
        from sagesql.connector.dialects.accounting import AccountingDialect

        return AccountingDialect(table)
    return Dialect(table)
