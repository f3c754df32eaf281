"""The Sage CRM dialect: conjuncts as one SData ``where=``, with ``orderBy``.

The walk is odata.FilterDialect's (``and``, ``or``, ``not`` with the same exactness
rules); what differs is the syntax Sage CRM takes, and which of it sagesql may send.

What Sage documents for sagecrm2 ``where`` (developer.sage.com/crm, REST API reference,
"Operators to filter retrieved records"): ``and``, ``or``, ``eq``, ``gt``, ``ge``,
``like`` and ``between ... and``; Sage's own examples also use ``f in ('a', 'b')``.
Strings are single-quoted (quotes doubled), numbers plain. That is all sagesql sends by
default (``CRMFilterOperators=documented``):

- ``=`` is ``eq``, ``>`` ``gt``, ``>=`` ``ge``; ``IN`` is ``in (...)`` (``eq`` for one
  value); ``LIKE`` is ``like``: SQLite's ``_`` (one character) and ``[`` (a character
  class on SQL Server, a plain character in SQLite) are sent as ``%``, which matches
  them too: a superset.
- a range ``a >= x AND a <= y`` (SQL's ``BETWEEN``, or two conjuncts) is
  ``a between x and y``.
- ``!=``, ``<``, ``<=`` (no ``ne``, ``lt``, ``le``) and ``NOT`` (no ``not``) are not
  documented: applied locally, and ``--explain`` says so.
- dates and date-times: the reference cited above gives no literal form for them. The
  ``@2025-01-31@`` form is SData 1.x's (the sandbox's docstring, sandbox/sdata.py, is the
  repository's only other source) and a date-time's ``Z`` designator is an assumption;
  neither is documented for sagecrm2, so conditions on DATE and DATETIME columns are
  applied locally (correctness first: a form the server reads differently, e.g. in its
  own time zone, would drop rows).

``CRMFilterOperators=extended`` (a CRM version that documents more) also sends ``ne lt
le``, ``not (...)`` and date literals ``@2025-01-31@`` and ``@2025-01-31T10:00:00Z@``
(explicit UTC, whole seconds: CRM's precision), as sagesql did before.

In both: booleans and NULLs cannot be filtered (Sage documents neither): such
predicates stay local. Text compares case-insensitively, as on SQL Server: never exact,
and only ``=``/``IN``/``LIKE``. ``orderBy=a desc, b``: several keys, when the API orders
as SQLite does. No projection: CRM returns whole records.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sagesql.connector.dialects.base import ProductFacts
from sagesql.connector.dialects.odata import NAME, Filter, FilterDialect
from sagesql.connector.predicates import And, Comparison, Predicate
from sagesql.schemas.catalog import Column, Table

# The where= forms Sage does not document for sagecrm2, sent only when extended.
UNDOCUMENTED = {
    "ne": "ne (!=)",
    "lt": "lt (<)",
    "le": "le (<=)",
    "not": "not (...)",
    "date": "date literals (@2025-01-31@)",
    "datetime": "date-time literals (@2025-01-31T10:00:00Z@)",
}


class SDataDialect(FilterDialect):
    """Sage CRM's SData 2.0: ``where`` and ``orderBy``."""

    name = "sdata"

    def __init__(self, table: Table, product: ProductFacts, *, extended: bool = False) -> None:
        super().__init__(table, product)
        self.extended = extended  # CRMFilterOperators=extended

    def refusal(self, form: str) -> str | None:
        if self.extended or form not in UNDOCUMENTED:
            return None
        return (
            f"{self.product} documents no {UNDOCUMENTED[form]} in where=: applied locally "
            "(CRMFilterOperators=extended sends it)"
        )

    # -- ranges as between ------------------------------------------------------------

    def group(self, conjuncts: Sequence[Predicate]) -> list[tuple[tuple[int, ...], Predicate]]:
        """One ``between`` for each column with both a ``>=`` and a ``<=`` conjunct."""
        if self.extended:
            return super().group(conjuncts)
        low: dict[str, int] = {}
        high: dict[str, int] = {}
        for i, c in enumerate(conjuncts):
            if isinstance(c, Comparison) and c.value is not None:
                ends = low if c.op == ">=" else high if c.op == "<=" else None
                if ends is not None:
                    ends.setdefault(c.column.lower(), i)
        partner: dict[int, int] = {}
        for name, i in low.items():
            j = high.get(name)
            if j is not None and self.between((conjuncts[i], conjuncts[j]), []) is not None:
                partner[i], partner[j] = j, i
        groups: list[tuple[tuple[int, ...], Predicate]] = []
        for i, c in enumerate(conjuncts):
            if i not in partner:
                groups.append(((i,), c))
            elif i < partner[i]:
                first, second = conjuncts[i], conjuncts[partner[i]]
                groups.append(((i, partner[i]), And((first, second))))
        return groups

    def between(self, items: Sequence[Predicate], why: list[str]) -> Filter | None:
        """``f between x and y`` for ``f >= x AND f <= y`` (either order), else None."""
        if len(items) != 2 or not all(isinstance(p, Comparison) for p in items):
            return None
        ends = {p.op: p for p in items if isinstance(p, Comparison)}
        low, high = ends.get(">="), ends.get("<=")
        if low is None or high is None or low.column.lower() != high.column.lower():
            return None
        expression = self.table.pushdown.expression
        if expression is None or not self.table.has_column(low.column):
            return None
        column = self.table.column(low.column)
        if not {">=", "<="} <= expression.operators(column.name):
            return None
        field = self.field(column)
        if field is None or low.value is None or high.value is None:
            return None
        found = [
            self.literal(column, ">=", low.value, []),
            self.literal(column, "<=", high.value, []),
        ]
        if found[0] is None or found[1] is None or (found[0][0], found[1][0]) != (">=", "<="):
            return None
        (_, a, exact_a), (_, b, exact_b) = found[0], found[1]
        return Filter(f"{field} between {a} and {b}", exact_a and exact_b)

    def translate(self, predicate: Predicate, why: list[str]) -> Filter | None:
        if isinstance(predicate, And) and not self.extended:
            found = self.between(predicate.items, why)
            if found is not None:
                return found
            groups = self.group(predicate.items)
            if len(groups) < len(predicate.items):
                predicate = And(tuple(p for _, p in groups))
        return super().translate(predicate, why)

    def field(self, column: Column) -> str | None:
        if len(column.path) == 1 and NAME.match(column.path[0]):
            return column.path[0]
        return None

    @staticmethod
    def boolean_literal(value: bool) -> str | None:
        return None  # Sage CRM cannot filter on booleans

    @staticmethod
    def datetime_literal(value: datetime) -> str:
        return "@" + value.strftime("%Y-%m-%dT%H:%M:%S") + "Z@"

    @staticmethod
    def date_literal(value: date) -> str:
        return f"@{value.isoformat()}@"

    def null_test(self, field: str, op: str, why: list[str]) -> Filter | None:
        why.append(f"{self.product} cannot filter on NULL")
        return None

    def in_list(self, field: str, literals: Sequence[str], exact: bool) -> Filter:
        if len(literals) == 1:
            return Filter(f"{field} eq {literals[0]}", exact)
        return Filter(f"{field} in ({', '.join(literals)})", exact)

    def like(self, field: str, pattern: str, why: list[str]) -> Filter | None:
        chars: list[str] = []
        for ch in pattern:
            wide = "%" if ch in "_[" else ch
            if not (wide == "%" and chars and chars[-1] == "%"):
                chars.append(wide)
        return Filter(f"{field} like {self.string_literal(''.join(chars))}", exact=False)

    def sort_term(self, field: str, descending: bool) -> str:
        return f"{field} desc" if descending else field
