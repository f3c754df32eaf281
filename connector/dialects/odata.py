"""The Sage 200 dialect: conjuncts as one OData ``$filter``, with ``$orderby`` and ``$select``.

Also home of :class:`FilterDialect`, the walk shared with Sage CRM's SData ``where``
(sdata.py): both APIs evaluate a filter expression with ``and``, ``or``, ``not`` and
comparisons, so a dialect only says how to write fields, values and calls.

What each predicate becomes, and when the API applies it exactly (the superset rule
of connector/dialects):

- a comparison is pushed when its column and operator are in
  ``pushdown.expression.columns``. Text compares case-insensitively on Sage 200 (and
  CRM): ``=``, ``IN`` and ``LIKE`` on text are supersets, never exact; ``!=``, ``<``,
  ``>``... on text are not pushed (the API would drop rows SQLite keeps). Numbers,
  dates and times are exact, except ``!=`` on a nullable column (OData's ``ne`` keeps
  NULLs, SQLite does not). Date-times are written in the API's precision (base.time_bound).
- ``IN`` is ``(f eq a or f eq b)``; NULLs in the list are dropped (they match nothing).
- ``LIKE`` (SQLite: ``%`` any run, ``_`` one character, ASCII case-insensitive) becomes
  ``eq`` without wildcards, else ``startswith`` for the leading literal run,
  ``endswith`` for the trailing one and ``contains`` for the others, ANDed: a superset.
  A pattern of wildcards only is not pushed.
- ``AND`` pushes the parts it can (a superset of the whole; exact only if all parts
  are), ``OR`` only if every part can, ``NOT`` only around an exact part and then not
  exact (``not`` keeps NULLs, SQLite's NOT does not).
- ``$orderby=f asc, g desc`` when the API orders as SQLite does (base.sort_refusal),
  with the key last so that pages are disjoint; ``$select`` lists the top-level
  fields the statement needs. ``$top``/``$skip`` belong to the paginator.
- a conjunct that would make the filter longer than ``max_filter_length`` (URL-encoded)
  is left to SQLite: a long ``IN`` list must not turn into a 414 from the server.

Values can never change a filter's meaning: strings are single-quoted with quotes
doubled, and nothing else is special inside them; numbers, dates and booleans are
written by the dialect, never from text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import msgspec

from sagesql.connector.dialects.base import (
    Dialect,
    LikePattern,
    Pushed,
    SortKey,
    never_null,
    projection_parameter,
    sort_refusal,
    time_bound,
)
from sagesql.connector.predicates import And, Comparison, Not, Or, Predicate
from sagesql.schemas.catalog import Column

WORDS = {"=": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
INT64 = 2**63


class Filter(msgspec.Struct, frozen=True):
    """Filter text for one predicate; ``exact`` when the API keeps exactly its rows."""

    text: str
    exact: bool
    joiner: str = ""  # "and" or "or" when the text is such a chain at its top level


class FilterDialect(Dialect):
    """A dialect whose API evaluates a filter expression: the walk over the predicates."""

    # The longest filter sent, URL-encoded: both APIs run on IIS, whose default limit for
    # a whole query string is 2048 bytes. A conjunct that does not fit is applied locally.
    max_filter_length = 1800

    def apply(
        self,
        conjuncts: Sequence[Predicate],
        order: Sequence[SortKey],
        columns: Sequence[str] | None,
        out: Pushed,
    ) -> None:
        table = self.table
        expression = table.pushdown.expression
        pieces: list[Filter] = []
        for indexes, conjunct in self.group(conjuncts):
            why: list[str] = []
            piece = self.translate(conjunct, why) if expression else None
            if piece is None:
                reason = "; ".join(why) or f"{self.product} cannot filter this table"
                out.notes.append(f"{conjunct}: {reason}")
                continue
            if expression and self.encoded_length(expression.parameter, [*pieces, piece]) > (
                self.max_filter_length
            ):
                out.notes.append(f"{conjunct}: left out, the filter would be too long for a URL")
                continue
            if why:
                out.notes.append(f"{conjunct}: applied in part ({'; '.join(why)})")
            pieces.append(piece)
            out.pushed.update(indexes)
            if piece.exact:
                out.exact.update(indexes)
        if expression and pieces:
            out.params[expression.parameter] = self.join("and", pieces).text
        self._sort(order, out)
        found = projection_parameter(table, columns, conjuncts, order)
        if found is not None:
            out.params[found[0]] = found[1]

    # -- the walk ----------------------------------------------------------------------------

    def group(self, conjuncts: Sequence[Predicate]) -> list[tuple[tuple[int, ...], Predicate]]:
        """The conjuncts as filtered together: (their indexes, the predicate); one each here
        (sdata.py pairs the two ends of a range into one ``between``)."""
        return [((i,), c) for i, c in enumerate(conjuncts)]

    def refusal(self, form: str) -> str | None:
        """Why the API must not be sent a form (``ne``, ``lt``, ``le``, ``not``, ``date``,
        ``datetime``), or None when it takes it: OData takes them all."""
        return None

    def translate(self, predicate: Predicate, why: list[str]) -> Filter | None:
        """The filter for a predicate (None: not pushable; reasons appended to ``why``)."""
        expression = self.table.pushdown.expression
        logical = expression.logical if expression else frozenset()
        if isinstance(predicate, Comparison):
            return self.comparison(predicate, why)
        if isinstance(predicate, Not):
            if "NOT" not in logical:
                why.append(f"{self.product} has no NOT")
                return None
            refused = self.refusal("not")
            if refused is not None:
                why.append(refused)
                return None
            inner = self.translate(predicate.item, why)
            if inner is None:
                return None
            if not inner.exact:
                why.append(f"NOT over a part {self.product} applies only approximately")
                return None
            # not keeps the rows where the part is NULL: a superset, not exact.
            return Filter(f"not ({inner.text})", exact=False)
        if isinstance(predicate, And):
            if "AND" not in logical:
                why.append(f"{self.product} has no AND")
                return None
            parts = [self.translate(p, why) for p in predicate.items]
            kept = [p for p in parts if p is not None]
            if not kept:
                return None
            return self.join("and", kept, exact=len(kept) == len(parts))
        if isinstance(predicate, Or):
            if "OR" not in logical:
                why.append(f"{self.product} has no OR")
                return None
            ors = [self.translate(p, why) for p in predicate.items]
            if any(p is None for p in ors):
                return None
            return self.join("or", [p for p in ors if p is not None])
        why.append(f"unknown predicate {predicate!r}")
        return None

    def encoded_length(self, parameter: str, pieces: Sequence[Filter]) -> int:
        return len(urlencode({parameter: self.join("and", pieces).text}))

    @staticmethod
    def join(joiner: str, pieces: Sequence[Filter], *, exact: bool = True) -> Filter:
        if len(pieces) == 1:
            only = pieces[0]
            return Filter(only.text, only.exact and exact, only.joiner)
        texts = [f"({p.text})" if p.joiner and p.joiner != joiner else p.text for p in pieces]
        return Filter(f" {joiner} ".join(texts), exact and all(p.exact for p in pieces), joiner)

    def comparison(self, c: Comparison, why: list[str]) -> Filter | None:
        expression = self.table.pushdown.expression
        if expression is None or not self.table.has_column(c.column):
            why.append(f"{self.product} cannot filter on {c.column}")
            return None
        column = self.table.column(c.column)
        if c.op not in expression.operators(column.name):
            why.append(f"{self.product} cannot filter {column.name} with {c.op}")
            return None
        field = self.field(column)
        if field is None:
            why.append(f"{column.name} has no name in {self.product}'s filter syntax")
            return None
        if c.op in ("IS NULL", "IS NOT NULL"):
            return self.null_test(field, c.op, why)
        if c.op == "IN":
            # NULL in a list matches nothing; a value listed twice is asked for once.
            values = list(dict.fromkeys(v for v in c.value if v is not None))
            if not values:
                why.append("IN holds only NULL")
                return None
            found = [self.literal(column, "=", v, why) for v in values]
            if any(f is None for f in found):
                return None
            literals = [f for f in found if f is not None]
            return self.in_list(
                field, [lit for _, lit, _ in literals], all(e for *_, e in literals)
            )
        if c.value is None:
            why.append("a comparison with NULL keeps no row")
            return None
        if c.op == "LIKE":
            if not isinstance(c.value, str):
                why.append("LIKE with ESCAPE is applied locally")
                return None
            return self.like(field, c.value, why)
        restated = self.literal(column, c.op, c.value, why)
        if restated is None:
            return None
        op, literal, exact = restated
        refused = self.refusal(WORDS[op]) if op != "=" else None
        if refused is not None:
            why.append(refused)
            return None
        return Filter(f"{field} {WORDS[op]} {literal}", exact)

    def literal(
        self, column: Column, op: str, value: Any, why: list[str]
    ) -> tuple[str, str, bool] | None:
        """(operator, literal, exact) for ``column op value`` in this syntax."""
        kind = column.type
        exact = True
        if kind == "TEXT":
            if op != "=":
                why.append(f"{self.product} compares text case-insensitively: {op} would drop rows")
                return None
            if not isinstance(value, str):
                why.append(f"{column.name} is text")
                return None
            return op, self.string_literal(value), False
        if kind == "BOOLEAN":
            text = (
                self.boolean_literal(value)
                if isinstance(value, bool) and op in ("=", "!=")
                else None
            )
            if text is None:
                why.append(f"{self.product} cannot filter on booleans this way")
                return None
        elif kind in ("INTEGER", "DECIMAL"):
            text = _number(value)
            if text is None:
                why.append(f"{value!r} is not a number {self.product} takes")
                return None
        elif kind in ("DATE", "DATETIME") and (refused := self.refusal(kind.lower())):
            why.append(refused)
            return None
        elif kind == "DATETIME" and isinstance(value, datetime):
            restated = time_bound(op, value, self.quantum)
            if restated is None:
                why.append(f"{value.isoformat()} is finer than {self.product}'s precision")
                return None
            op, value, exact = restated
            text = self.datetime_literal(value.astimezone(timezone.utc))
        elif kind == "DATE" and isinstance(value, date) and not isinstance(value, datetime):
            text = self.date_literal(value)
        else:
            why.append(f"{self.product} cannot filter on {kind} values")
            return None
        if op == "!=" and not never_null(self.table, column.name):
            exact = False  # ne keeps the NULLs, which SQLite's != does not
        return op, text, exact

    # -- the syntax (OData; sdata.py overrides) ---------------------------------------------

    def field(self, column: Column) -> str | None:
        """The field as the filter names it (``main_address/city``), or None."""
        if all(NAME.match(part) for part in column.path):
            return "/".join(column.path)
        return None

    @staticmethod
    def string_literal(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    @staticmethod
    def boolean_literal(value: bool) -> str | None:
        return "true" if value else "false"

    @staticmethod
    def datetime_literal(value: datetime) -> str:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"

    @staticmethod
    def date_literal(value: date) -> str:
        return value.isoformat()

    def null_test(self, field: str, op: str, why: list[str]) -> Filter | None:
        return Filter(f"{field} {'eq' if op == 'IS NULL' else 'ne'} null", exact=True)

    def in_list(self, field: str, literals: Sequence[str], exact: bool) -> Filter:
        if len(literals) == 1:
            return Filter(f"{field} eq {literals[0]}", exact)
        return Filter("(" + " or ".join(f"{field} eq {lit}" for lit in literals) + ")", exact)

    def like(self, field: str, pattern: str, why: list[str]) -> Filter | None:
        parsed = LikePattern.parse(pattern)
        if not parsed.has_wildcards:
            return Filter(f"{field} eq {self.string_literal(pattern)}", exact=False)
        runs = list(parsed.runs)
        if not runs:
            why.append("the pattern matches any text")
            return None
        calls = []
        if parsed.anchored_start:
            calls.append(f"startswith({field},{self.string_literal(runs.pop(0))})")
        last = runs.pop() if parsed.anchored_end and runs else None
        calls += [f"contains({field},{self.string_literal(run)})" for run in runs]
        if last is not None:
            calls.append(f"endswith({field},{self.string_literal(last)})")
        return Filter(" and ".join(calls), exact=False, joiner="and" if len(calls) > 1 else "")

    def sort_term(self, field: str, descending: bool) -> str:
        return f"{field} {'desc' if descending else 'asc'}"

    # -- ORDER BY -----------------------------------------------------------------------------

    def _sort(self, order: Sequence[SortKey], out: Pushed) -> None:
        if not order:
            return
        sort = self.table.pushdown.sort
        if sort is None:
            out.notes.append(f"ORDER BY: {self.product} cannot sort this table; sorted locally")
            return
        if len(order) > 1 and not sort.multiple:
            out.notes.append(f"ORDER BY: {self.product} sorts by one field; sorted locally")
            return
        terms = []
        named: set[str] = set()
        for key in order:
            reason = sort_refusal(self.table, key)
            column = self.table.column(key.column) if reason is None else None
            field = self.field(column) if column is not None else None
            if column is None or field is None:
                out.notes.append(
                    f"ORDER BY {key.column}: {reason or 'no field name'}; sorted locally"
                )
                return
            terms.append(self.sort_term(field, key.descending))
            named.add(column.name)
        key_name = self.table.key
        if sort.multiple and key_name and key_name not in named and key_name in sort.columns:
            # Ties broken by the key: the API's pages are then disjoint (still SQLite's order).
            key_field = self.field(self.table.column(key_name))
            if key_field is not None:
                terms.append(self.sort_term(key_field, False))
        out.params[sort.parameter] = ", ".join(terms)
        out.sorted = True


class ODataDialect(FilterDialect):
    """Sage 200's OData: ``$filter``, ``$orderby``, ``$select``."""

    name = "odata"


def _number(value: Any) -> str | None:
    """A number as a plain literal (no exponent), or None if it cannot be one."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value) if -INT64 <= value < INT64 else None
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, Decimal) and value.is_finite():
        text = format(value, "f")
        return "0" if text in ("-0", "0") else text
    return None
