"""The Sage Accounting dialect: conjuncts as its own query parameters, sort= and attributes=.

Sage Accounting has no filter language: each list endpoint takes a few parameters,
which the table definition maps from (column, operator) in ``pushdown.parameters``
(``updated_at >=`` is ``updated_or_created_since``, ``date <=`` is ``to_date``,
``contact_id =`` is ``contact_id``, ``name LIKE`` is ``search``...). How conjuncts use them:

- equality parameters take ``col = v`` (and ``col IN (v)``); exact as the definition
  says. Two different values for one parameter: the first is pushed (the rows are
  re-checked locally, so the answer is still empty, as SQL says).
- range parameters are inclusive bounds. A strict bound on a date becomes the next or
  previous day (exact); on a date-time, the next or previous whole second (the API's
  precision). ``col = v`` uses both bounds when the column has them. Several bounds on
  one parameter: the tightest is sent; it implies the others.
- ``from_date``/``to_date`` are declared ``date-time`` (with the definition's example
  ``2015-10-27T16:24:52Z``) and filter a date column (``day_datetime``): bounds are whole
  days, sent as that day's midnight UTC in the same form as every other date-time
  parameter (``2025-01-31T00:00:00Z``), inclusive of that day at either end.
- ``search`` (``like_contains``) is a case-insensitive substring match over several
  columns: a LIKE pattern sends its longest literal run, ``col = v`` sends ``v``;
  never exact. One search per request: the longest wins.
- the definition's ``fixed_parameters`` are always sent (customers are the contacts
  with ``contact_type_id=CUSTOMER``); a conjunct cannot override them.
- ``sort=col:asc|desc``: one key, only when the API orders as SQLite does (see
  base.sort_refusal); otherwise SQLite sorts.
- ``attributes=``: the top-level fields the statement needs beyond the three every
  item carries, or ``all``.

Child tables (lines of documents) are read through their parent: nothing to push.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import msgspec

from sagesql.connector.dialects.base import (
    Dialect,
    LikePattern,
    Pushed,
    SortKey,
    projection_parameter,
    sort_refusal,
    time_bound,
)
from sagesql.connector.predicates import Comparison, Predicate
from sagesql.schemas.catalog import ParameterFilter

DAY = timedelta(days=1)
LOWER, UPPER = ">=", "<="

Refuse = Callable[[str], None]  # records why a conjunct is not pushed


class _Ask(msgspec.Struct):
    """One query parameter a conjunct asks for: kind eq | search | >= | <=."""

    index: int
    kind: str
    parameter: str
    value: Any  # the parameter's text (eq, search) or an inclusive bound (date, datetime)
    exact: bool
    value_format: str = "text"
    honoured: bool = False  # the request carries it (set when the parameters are chosen)


class AccountingDialect(Dialect):
    """Sage Accounting v3.1 list requests from the table definition's parameters."""

    name = "accounting"

    def apply(
        self,
        conjuncts: Sequence[Predicate],
        order: Sequence[SortKey],
        columns: Sequence[str] | None,
        out: Pushed,
    ) -> None:
        self._filters(conjuncts, out)
        self._sort(order, out)
        self._project(conjuncts, order, columns, out)

    # -- filters ---------------------------------------------------------------------------

    def _by_column(self) -> dict[str, dict[str, ParameterFilter]]:
        """column (lower case) -> operator -> the first parameter listed for it."""
        found: dict[str, dict[str, ParameterFilter]] = {}
        for f in self.table.pushdown.parameters:
            found.setdefault(f.column.lower(), {}).setdefault(f.operator, f)
        return found

    def _filters(self, conjuncts: Sequence[Predicate], out: Pushed) -> None:
        by_column = self._by_column()
        asks: list[_Ask] = []
        complete: dict[int, bool] = {}
        for i, conjunct in enumerate(conjuncts):
            made = self._asks(i, conjunct, by_column, out)
            if made is None:
                continue
            found, whole = made
            asks += found
            complete[i] = whole
        self._choose(asks, out)
        for i, whole in complete.items():
            mine = [a for a in asks if a.index == i]
            for ask in mine:
                if not ask.honoured:
                    out.notes.append(f"{conjuncts[i]}: {ask.parameter} already carries a value")
            if not any(a.honoured for a in mine):
                continue
            out.pushed.add(i)
            if whole and all(a.honoured and a.exact for a in mine):
                out.exact.add(i)

    def _asks(
        self,
        i: int,
        conjunct: Predicate,
        by_column: dict[str, dict[str, ParameterFilter]],
        out: Pushed,
    ) -> tuple[list[_Ask], bool] | None:
        """The parameters one conjunct asks for, and whether together they are all of it."""

        def refuse(reason: str) -> None:
            out.notes.append(f"{conjunct}: {reason}")

        if not isinstance(conjunct, Comparison):
            refuse("the API's parameters take single comparisons")
            return None
        if not self.table.has_column(conjunct.column):
            refuse("unknown column")
            return None
        column = self.table.column(conjunct.column)
        filters = by_column.get(column.name.lower(), {})
        op, value = conjunct.op, conjunct.value
        if op == "IN":
            values = list(dict.fromkeys(v for v in value if v is not None))
            if len(values) != 1:
                refuse("no query parameter takes several values")
                return None
            op, value = "=", values[0]
        if not filters:
            refuse(f"no query parameter filters {column.name}")
            return None
        if op in ("IS NULL", "IS NOT NULL", "!="):
            refuse(f"no query parameter for {op}")
            return None
        if value is None:
            refuse("a comparison with NULL keeps no row")
            return None
        if op == "LIKE":
            return self._like(i, value, filters, refuse)
        if op == "=" and "=" in filters:
            ask = self._equality(i, value, filters["="], refuse)
            return ([ask], True) if ask else None
        if op in ("=", ">", ">=", "<", "<=") and (filters.keys() & {">", ">=", "<", "<="}):
            return self._range(i, op, value, filters, refuse)
        if op == "=" and "LIKE" in filters:
            return self._search(i, str(value), filters["LIKE"], refuse)
        refuse(f"no query parameter for {op}")
        return None

    def _equality(self, i: int, value: Any, f: ParameterFilter, refuse: Refuse) -> _Ask | None:
        if f.parameter in self.table.fixed_parameters:
            refuse(f"{f.parameter} is fixed to {self.table.fixed_parameters[f.parameter]}")
            return None
        exact = f.exact
        if f.value_format == "boolean":
            if not isinstance(value, bool):
                refuse(f"{f.parameter} takes true or false")
                return None
            text = "true" if value else "false"
        elif f.value_format == "datetime" and isinstance(value, datetime):
            _, instant, aligned = time_bound("=", value, self.quantum) or ("=", value, False)
            text, exact = _datetime_text(instant), exact and aligned
        elif f.value_format in DATE_FORMATS and isinstance(value, date):
            if isinstance(value, datetime):
                refuse(f"{f.parameter} takes a date")
                return None
            text = _day_text(value, f.value_format)
        else:
            text = str(value)
        if text == "":
            refuse(f"the API ignores an empty {f.parameter}")
            return None
        return _Ask(i, "eq", f.parameter, text, exact)

    def _like(
        self, i: int, pattern: Any, filters: dict[str, ParameterFilter], refuse: Refuse
    ) -> tuple[list[_Ask], bool] | None:
        f = filters.get("LIKE")
        if f is None or f.value_format != "like_contains":
            refuse("no query parameter for LIKE")
            return None
        if not isinstance(pattern, str):
            refuse("LIKE with ESCAPE is applied locally")
            return None
        run = LikePattern.parse(pattern).longest
        if not run:
            refuse("the pattern has no literal text to search for")
            return None
        return self._search(i, run, f, refuse)

    def _search(
        self, i: int, text: str, f: ParameterFilter, refuse: Refuse
    ) -> tuple[list[_Ask], bool] | None:
        if f.parameter in self.table.fixed_parameters:
            refuse(f"{f.parameter} is fixed to {self.table.fixed_parameters[f.parameter]}")
            return None
        if not text:
            refuse(f"the API ignores an empty {f.parameter}")
            return None
        # A case-insensitive substring match, over more columns than this one: a superset.
        return [_Ask(i, "search", f.parameter, text, False)], True

    def _range(
        self,
        i: int,
        op: str,
        value: Any,
        filters: dict[str, ParameterFilter],
        refuse: Refuse,
    ) -> tuple[list[_Ask], bool] | None:
        sides = {">": (LOWER,), ">=": (LOWER,), "<": (UPPER,), "<=": (UPPER,), "=": (LOWER, UPPER)}
        asks: list[_Ask] = []
        whole = True
        for side in sides[op]:
            f = filters.get(side) or filters.get(side[0])
            if f is None:
                whole = False
                continue
            if f.parameter in self.table.fixed_parameters:
                refuse(f"{f.parameter} is fixed to {self.table.fixed_parameters[f.parameter]}")
                whole = False
                continue
            bound = _inclusive(side, op, value, f.value_format, self.quantum)
            if bound is None:
                refuse(f"{f.parameter} cannot take {value!r}")
                whole = False
                continue
            # The definition's exactness is that of the inclusive operator's own entry.
            exact = f.operator == side and f.exact and bound[1]
            asks.append(_Ask(i, side, f.parameter, bound[0], exact, f.value_format))
        if not asks:
            refuse(f"no query parameter for {op}")
            return None
        return asks, whole

    @staticmethod
    def _choose(asks: list[_Ask], out: Pushed) -> None:
        """Set the parameters from the asks, marking those the request honours."""
        by_parameter: dict[str, list[_Ask]] = {}
        for ask in asks:
            by_parameter.setdefault(ask.parameter, []).append(ask)
        for parameter, group in by_parameter.items():
            kinds = {a.kind for a in group}
            if len(kinds) > 1:
                # One parameter asked for in two ways (not in any definition): keep the first.
                group = [a for a in group if a.kind == group[0].kind]
            kind = group[0].kind
            if kind == "eq":
                chosen = group[0].value
                for ask in group:
                    ask.honoured = ask.value == chosen
                out.params[parameter] = chosen
            elif kind == "search":
                best = max(group, key=lambda a: len(a.value))
                best.honoured = True
                out.params[parameter] = best.value
            else:
                # The tightest bound implies the others: every ask is honoured.
                pick = max if kind == LOWER else min
                best = pick(group, key=lambda a: _sortable(a.value))
                for ask in group:
                    ask.honoured = True
                out.params[parameter] = _bound_text(best.value, best.value_format)

    # -- sort and projection ---------------------------------------------------------------

    def _sort(self, order: Sequence[SortKey], out: Pushed) -> None:
        if not order:
            return
        sort = self.table.pushdown.sort
        if sort is None:
            out.notes.append("ORDER BY: the API cannot sort this table; sorted locally")
            return
        if len(order) > 1 and not sort.multiple:
            out.notes.append("ORDER BY: the API sorts by one field only; sorted locally")
            return
        key = order[0]
        reason = sort_refusal(self.table, key)
        if reason:
            out.notes.append(f"ORDER BY {key.column}: {reason}; sorted locally")
            return
        name = self.table.column(key.column).name
        out.params[sort.parameter] = f"{name}:{'desc' if key.descending else 'asc'}"
        out.sorted = True

    def _project(
        self,
        conjuncts: Sequence[Predicate],
        order: Sequence[SortKey],
        columns: Sequence[str] | None,
        out: Pushed,
    ) -> None:
        found = projection_parameter(self.table, columns, conjuncts, order)
        if found is not None:
            out.params[found[0]] = found[1]


# A date column's parameter: "date" sends YYYY-MM-DD, "day_datetime" (declared date-time)
# sends the day's midnight UTC as a date-time.
DATE_FORMATS = ("date", "day_datetime")


def _day_text(value: date, value_format: str) -> str:
    if value_format == "day_datetime":
        return _datetime_text(_midnight(value))
    return value.isoformat()


def _datetime_text(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)


def _inclusive(
    side: str, op: str, value: Any, value_format: str, quantum: timedelta
) -> tuple[Any, bool] | None:
    """The inclusive bound (in the parameter's kind of value) that keeps every row of
    ``col op value`` on that side, and whether it keeps no other row."""
    lower = side == LOWER
    if value_format == "day_datetime":
        value_format = "date"  # whole days, only written as date-times
    if value_format == "datetime" and isinstance(value, datetime):
        restated = time_bound(op, value, quantum)
        if restated is None:
            return None
        op2, instant, exact = restated
        if op2 == ">":
            return instant + quantum, exact  # whole quanta: x > t is x >= t + 1 quantum
        if op2 == "<":
            return instant - quantum, exact
        return instant, exact
    if value_format == "datetime" and isinstance(value, date):
        # A date column against a date-time parameter: whole days, never exact.
        if lower:
            return _midnight(value + DAY if op == ">" else value), False
        return _midnight(value if op == "<" else value + DAY), False
    if value_format == "date" and isinstance(value, datetime):
        # A date-time against a date parameter: the days that hold the instants.
        day = value.astimezone(timezone.utc).date()
        if lower:
            return day, False
        at_midnight = value.astimezone(timezone.utc).time() == time()
        return (day if at_midnight else day + DAY), False
    if value_format == "date" and isinstance(value, date):
        step = {">": DAY, "<": -DAY}.get(op, timedelta(0))
        return value + step, True
    return None


def _sortable(value: Any) -> Any:
    """Dates and date-times compared as instants (a date is its midnight UTC)."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc)
    if isinstance(value, date):
        return _midnight(value)
    return value


def _bound_text(value: Any, value_format: str = "text") -> str:
    if isinstance(value, datetime):
        return _datetime_text(value)
    if isinstance(value, date):
        return _day_text(value, value_format)
    return str(value)
