"""The dialect interface: conjuncts, sort and columns in; query parameters and verdicts out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import msgspec

from sagesql.connector.predicates import Comparison, Predicate, columns_of
from sagesql.schemas.catalog import Table


class SortKey(msgspec.Struct, frozen=True):
    column: str
    descending: bool = False
    nulls_first: bool | None = None  # None: the SQL default (SQLite: NULLs first ascending)


class Pushed(msgspec.Struct):
    """What one list request will ask of the API."""

    params: dict[str, str] = msgspec.field(default_factory=dict)
    # Indexes (into the conjuncts given) of those the API applies, and of those it applies
    # exactly (a subset of pushed).
    pushed: set[int] = msgspec.field(default_factory=set)
    exact: set[int] = msgspec.field(default_factory=set)
    # Whether the API returns rows in the requested order (ORDER BY fully pushed).
    sorted: bool = False
    # Human-readable notes for --explain (why something was not pushed).
    notes: list[str] = msgspec.field(default_factory=list)


class ProductFacts(Protocol):
    """What a dialect needs of its product (connector.products.SageProduct has it)."""

    @property
    def short_title(self) -> str: ...  # "Sage 200", in notes

    @property
    def time_quantum(self) -> timedelta: ...  # the precision of the API's date-times


class Dialect:
    """Base: pushes nothing, sorts nothing, asks for every field (always correct).

    A table's dialect comes from its product: ``products.for_table(t).dialect(t)``.
    """

    name = "none"

    def __init__(self, table: Table, product: ProductFacts) -> None:
        self.table = table
        self.product = product.short_title
        self.quantum = product.time_quantum

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
        out = Pushed(params=dict(self.table.fixed_parameters))
        if self.table.parent is not None:
            out.notes.append(f"{self.table.name} is read through {self.table.parent.table}")
            return out
        self.apply(conjuncts, order, columns, out)
        return out

    def apply(
        self,
        conjuncts: Sequence[Predicate],
        order: Sequence[SortKey],
        columns: Sequence[str] | None,
        out: Pushed,
    ) -> None:
        """Add to ``out`` what the API can do for this request (a dialect's own part)."""

    def key_values(self, conjuncts: Sequence[Predicate]) -> tuple[int, tuple[Any, ...]] | None:
        """(conjunct index, keys) when a conjunct is ``key = v`` or ``key IN (...)``."""
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


# -- helpers shared by the product dialects ---------------------------------------------------

# Types whose order is the same in SQLite (as stored, see engine/values.py) and in the APIs.
# Text is not among them: Sage 200 and CRM sort (and compare) it case-insensitively.
ORDERED_TYPES = frozenset({"INTEGER", "DECIMAL", "DATE", "DATETIME"})

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def never_null(table: Table, name: str) -> bool:
    """Whether a column is never NULL in practice: declared so, the key, the record's
    created and updated times, or a document's ``date``."""
    column = table.column(name)
    return not column.nullable or column.name in {
        table.key,
        table.created_column,
        table.updated_column,
        "date",
    }


def sort_refusal(table: Table, key: SortKey) -> str | None:
    """Why the API cannot return rows in SQLite's order for one ORDER BY key (None: it can).

    The orders agree only for ordered types (numbers, dates, times) on columns that are
    never NULL: text collates differently, and NULLs may be placed differently.
    """
    sort = table.pushdown.sort
    if sort is None:
        return "the API cannot sort this table"
    if not table.has_column(key.column):
        return f"unknown column {key.column}"
    column = table.column(key.column)
    if column.name not in sort.columns:
        return f"the API cannot sort by {column.name}"
    if column.type not in ORDERED_TYPES:
        return f"{column.name} is {column.type}: the API's order may differ from SQLite's"
    if not never_null(table, column.name):
        return f"{column.name} may be NULL: the API may place NULLs elsewhere"
    return None


def needed_fields(
    table: Table,
    columns: Sequence[str] | None,
    conjuncts: Sequence[Predicate] = (),
    order: Sequence[SortKey] = (),
) -> list[str] | None:
    """The top-level API fields (``path[0]``) a statement needs, in the table's order.

    The columns asked for, those of the conjuncts (re-checked locally) and of the ORDER
    BY, and the key. None when that is every field of the table (or ``columns`` is None).
    """
    if columns is None:
        return None
    names = {c.lower() for c in columns}
    for predicate in conjuncts:
        names |= {c.lower() for c in columns_of(predicate)}
    names |= {k.column.lower() for k in order}
    if table.key:
        names.add(table.key.lower())
    every: list[str] = []
    wanted: list[str] = []
    for column in table.columns:
        if not column.path:
            continue  # the engine's record column: the record itself, no field of its own
        top = column.path[0]
        if top not in every:
            every.append(top)
        if column.name.lower() in names and top not in wanted:
            wanted.append(top)
    return None if len(wanted) == len(every) else wanted


class LikePattern(msgspec.Struct, frozen=True):
    """A SQLite LIKE pattern (no ESCAPE clause) as the literal runs between its wildcards.

    ``%`` matches any run of characters, ``_`` one character; SQLite compares ASCII
    letters case-insensitively and every other character exactly.

    >>> p = LikePattern.parse("ab%c_d%")
    >>> p.runs, p.anchored_start, p.anchored_end, p.longest
    (('ab', 'c', 'd'), True, False, 'ab')
    """

    pattern: str
    runs: tuple[str, ...]
    anchored_start: bool  # the pattern starts with a literal character
    anchored_end: bool  # the pattern ends with a literal character

    @classmethod
    def parse(cls, pattern: str) -> LikePattern:
        runs: list[str] = []
        current: list[str] = []
        for ch in pattern:
            if ch in "%_":
                if current:
                    runs.append("".join(current))
                    current = []
            else:
                current.append(ch)
        if current:
            runs.append("".join(current))
        return cls(
            pattern,
            tuple(runs),
            bool(pattern) and pattern[0] not in "%_",
            bool(pattern) and pattern[-1] not in "%_",
        )

    @property
    def has_wildcards(self) -> bool:
        return any(ch in "%_" for ch in self.pattern)

    @property
    def longest(self) -> str:
        """The longest literal run (the first of equals); '' when there is none."""
        return max(self.runs, key=len, default="")


def floor_time(value: datetime, quantum: timedelta) -> datetime:
    """``value`` (aware) rounded down to a multiple of ``quantum`` since the epoch, in UTC."""
    micros = (value - _EPOCH) // _MICROSECOND
    step = quantum // _MICROSECOND
    return _EPOCH + timedelta(microseconds=micros - micros % step)


def time_bound(op: str, value: datetime, quantum: timedelta) -> tuple[str, datetime, bool] | None:
    """A comparison with a date-time, restated in the API's precision: (op, value, exact).

    The API's times (and SQLite's stored copies) are whole multiples of ``quantum``
    (a second for Accounting and CRM, a millisecond for Sage 200). A value between two
    such instants is replaced by the one below, choosing the operator so that the API
    keeps every row SQLite would keep whether SQLite compares with the value itself or
    with it truncated (as engine/values.py stores literals); exact when both agree.
    None for ``!=`` with such a value (no single comparison is a superset of both).
    """
    low = floor_time(value, quantum)
    if low == value:
        return op, value, True
    if op == ">":
        return ">", low, True  # x > v and x > low are the same for whole multiples
    if op == "<=":
        return "<=", low, True
    if op == ">=":
        return ">=", low, False
    if op == "<":
        return "<=", low, False
    if op == "=":
        return "=", low, False
    return None


def projection_parameter(
    table: Table,
    columns: Sequence[str] | None,
    conjuncts: Sequence[Predicate] = (),
    order: Sequence[SortKey] = (),
) -> tuple[str, str] | None:
    """(parameter, value) asking only for the fields the statement needs, or None.

    ``attributes=a,b`` / ``$select=a,b`` lists the top-level fields beyond those every
    record carries anyway (``projection.always``); when every field is needed, the
    definition's word for all (``attributes=all``) or nothing (Sage 200 sends all).
    """
    projection = table.pushdown.projection
    if projection is None:
        return None
    fields = needed_fields(table, columns, conjuncts, order)
    if fields is None:
        return (projection.parameter, projection.all) if projection.all else None
    extra = [f for f in fields if f not in projection.always]
    return (projection.parameter, ",".join(extra)) if extra else None
