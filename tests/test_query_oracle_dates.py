"""Oracle property test for dates and times: literals in every ISO form and constant date
functions, on DATE and DATETIME columns of the three products, agree with SQLite over
the full data in the stored form.

The worlds (sandbox, oracle database, connections) are those of test_query_oracle.py,
built again for this module. The oracle's data is the engine's stored form (values.py:
UTC 'YYYY-MM-DD HH:MM:SS', '.fff' when the fraction is not zero; dates 'YYYY-MM-DD'),
and the oracle's copy of every statement carries each literal already in that form,
computed here in Python from the instant the literal means:

- a DATETIME literal (any of: 'T' or space, with or without 'Z', an offset, a fraction
  of any length, '.000', a bare date) means its UTC instant ('2025-01-01' is midnight);
- against a DATE, an instant at midnight UTC is that date; any other instant stays a
  date-time, which sorts after its day's date and before the next (a date is its
  midnight);
- ``datetime(x)``, ``date(x)``, ``strftime(...)``, ``datetime('now', '-3 days')``,
  ``CURRENT_TIMESTAMP``, ``CURRENT_DATE``: what SQLite's function gives (cut to the
  second; a date), with 'now' the connection's clock, frozen here at NOW.

Nothing on the oracle side calls sagesql's normalisation or folding, so a literal left as
text, a wrong 'now', a date compared as text, or a pushdown the API applies differently
all fail. Statement shapes: the filters, ORDER BY/LIMIT, aggregates and joins of
test_query_oracle.py over the date columns; derived tables, CTEs and UNION ALL whose
columns come from date columns; HAVING on MIN/MAX (also by the output's alias); a LEFT
JOIN's ON; SQLite's date functions over columns (``date(col) = ...``,
``col > datetime(other, '+1 day')``, ``col = datetime(col)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from test_query_oracle import (  # noqa: F401 (worlds: the fixture, for this module)
    EXAMPLES,
    PRODUCTS,
    SETTINGS,
    Pair,
    Statement,
    TableData,
    World,
    aggregate,
    check,
    condition,
    join,
    parse_stored,
    quote,
    single_table,
    stored_instant,
    worlds,
)

from sagesql.engine.pipeline import explain, run
from sagesql.schemas.catalog import default_catalog

# The statement's 'now' (every connection's clock), inside the sandbox data's years.
NOW = datetime(2025, 6, 15, 12, 34, 56, 789000, tzinfo=timezone.utc)
DATE_TYPES = ("DATE", "DATETIME")
UTC = timezone.utc


# -- what a literal means, written both ways ------------------------------------------------


def oracle_text(instant: datetime, kind: str) -> str:
    """The stored form of an instant compared with a column of that kind."""
    instant = instant.astimezone(UTC)
    if kind == "DATE" and instant.time() == time(0):
        return instant.date().isoformat()
    return stored_instant(instant, "")


def second(instant: datetime) -> datetime:
    return instant.replace(microsecond=0)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def fraction(instant: datetime, digits: int) -> str:
    return ("." + f"{instant.microsecond:06d}"[:digits]) if digits else ""


def iso_forms(instant: datetime) -> list[str]:
    """Ways to write an instant (its microseconds kept where the form can)."""
    t = instant.astimezone(UTC)
    day, clock = t.strftime("%Y-%m-%d"), t.strftime("%H:%M:%S")
    digits = 6 if t.microsecond % 1000 else (3 if t.microsecond else 0)
    frac = fraction(t, digits)
    plus2 = t.astimezone(timezone(timedelta(hours=2)))
    minus530 = t.astimezone(timezone(-timedelta(hours=5, minutes=30)))
    forms = [
        f"{day}T{clock}{frac}Z",
        f"{day}T{clock}{frac}",
        f"{day} {clock}{frac}Z",
        f"{day} {clock}{frac}",
        f"{day}T{clock}{frac}+00:00",
        plus2.isoformat(),
        minus530.isoformat(),
    ]
    if not t.microsecond:
        forms += [f"{day}T{clock}.000Z", f"{day} {clock}.000000"]
        if t.time() == time(0):
            forms.append(day)
    elif digits == 3 and t.microsecond % 100_000 == 0:
        forms.append(f"{day}T{clock}.{t.microsecond // 100_000}Z")  # '.5'
    return forms


def function_forms(instant: datetime) -> list[tuple[str, datetime]]:
    """Constant date functions of an instant (the second it falls in), with what they mean."""
    s = second(instant)
    text = s.strftime("%Y-%m-%d %H:%M:%S")
    iso = s.astimezone(timezone(timedelta(hours=-3))).isoformat()
    return [
        (f"datetime({quote(text)})", s),
        (f"datetime({quote(iso)})", s),
        (f"datetime({quote(text)}, '+1 day')", s + timedelta(days=1)),
        (f"datetime({quote(iso)}, '-90 minutes')", s - timedelta(minutes=90)),
        (f"date({quote(iso)})", midnight(s.date())),
        (f"date({quote(text)}, '+1 day')", midnight(s.date() + timedelta(days=1))),
        (f"strftime('%Y-%m-%dT%H:%M:%SZ', {quote(text)})", s),
        (f"datetime(unixepoch({quote(text)}), 'unixepoch')", s),
        (f"TIMESTAMP {quote(text)}", s),
    ]


NOW_FORMS: list[tuple[str, datetime]] = [
    ("datetime('now')", second(NOW)),
    ("CURRENT_TIMESTAMP", second(NOW)),
    ("CURRENT_DATE", midnight(NOW.date())),
    ("date('now')", midnight(NOW.date())),
    ("date()", midnight(NOW.date())),
    ("datetime('now', '-1 day')", second(NOW) - timedelta(days=1)),
    ("datetime('now', '-30 days')", second(NOW) - timedelta(days=30)),
    ("datetime('NOW', '-400 days')", second(NOW) - timedelta(days=400)),
    ("date('now', '-7 days')", midnight(NOW.date() - timedelta(days=7))),
    ("date('now', 'start of month')", midnight(NOW.date().replace(day=1))),
    ("datetime('now', 'start of year', '+2 months')", datetime(2025, 3, 1, tzinfo=UTC)),
    ("strftime('%Y-%m-%d %H:%M:%S', 'now', '-12 hours')", second(NOW) - timedelta(hours=12)),
    ("datetime(julianday('now') - 90)", second(NOW) - timedelta(days=90)),
]


def instants(kind: str, values: list[Any], product: str) -> list[datetime]:
    """Instants from a column's data, its neighbours and days around it."""
    if kind == "DATE":
        days = [date.fromisoformat(v[:10]) for v in values]
        found = [midnight(d) for d in days]
    else:
        found = [parse_stored(v) for v in values]
    sample = found if len(found) <= 10 else [found[i * len(found) // 10] for i in range(10)]
    sample = sorted(set(sample + found[:1] + found[-1:]))
    quantum = timedelta(milliseconds=1) if product == "sage_200" else timedelta(seconds=1)
    out: list[datetime] = []
    for t in sample:
        out += [t, t + quantum, t - quantum, t + quantum / 2, t + timedelta(days=1)]
        out += [midnight(t.date()), midnight(t.date()) + timedelta(hours=10)]
        out += [midnight(t.date()) - timedelta(hours=2)]  # 22:00 the day before
    return sorted(set(out))


def date_literals(kind: str, values: list[Any], product: str) -> list[Pair]:
    """(sagesql's SQL, the oracle's SQL) for literals compared with a column of ``kind``."""
    out: list[Pair] = []
    for t in instants(kind, values, product):
        expected = quote(oracle_text(t, kind))
        out += [(quote(form), expected) for form in iso_forms(t)]
    for t in instants(kind, values, product)[::3]:
        out += [(sql, quote(oracle_text(at, kind))) for sql, at in function_forms(t)]
    out += [(sql, quote(oracle_text(at, kind))) for sql, at in NOW_FORMS]
    return list(dict.fromkeys(out))


# -- the worlds over date columns ----------------------------------------------------------------


def date_columns(world: World, data: TableData) -> list[str]:
    """The table's date columns the oracle holds values of: those of the spec, and its
    created and updated columns."""
    table = default_catalog().table(data.spec.name, world.product)
    names = [c for c in data.spec.columns if data.types[c] in DATE_TYPES]
    names += [c for c in (table.created_column, table.updated_column) if c]
    found = []
    for name in dict.fromkeys(names):
        (filled,) = world.oracle.execute(
            f'SELECT count("{name}") FROM "{data.spec.name}"'
        ).fetchone()
        if filled:
            found.append(name)
    return found


def date_world(world: World) -> World:
    """The world with each table's filter columns cut to its date columns (and key), their
    literals those of date_literals; every connection's clock frozen at NOW."""
    tables: dict[str, TableData] = {}
    for name, data in world.tables.items():
        columns = date_columns(world, data)
        if not columns:
            continue
        values = {}
        for column in columns:
            rows = world.oracle.execute(
                f'SELECT DISTINCT "{column}" FROM "{name}" WHERE "{column}" IS NOT NULL ORDER BY 1'
            ).fetchall()
            values[column] = [r[0] for r in rows]
        nullable = {
            c
            for c in columns
            if world.oracle.execute(f'SELECT 1 FROM "{name}" WHERE "{c}" IS NULL').fetchone()
        }
        spec = replace(data.spec, columns=(data.spec.key, *columns))
        item = TableData(
            spec,
            data.types,
            {**values, data.spec.key: data.values.get(data.spec.key, [])},
            nullable,
        )
        item.literals = {c: date_literals(data.types[c], values[c], world.product) for c in columns}
        if data.spec.key in data.literals:
            item.literals[data.spec.key] = data.literals[data.spec.key]
        item.scalars = data.scalars
        item.pushable = [c for c in data.pushable if c in spec.columns]
        item.sortable = [c for c in data.sortable if c in spec.columns]
        tables[name] = item
    joins = [j for j in world.joins if j.left in tables and j.right in tables]
    for connection in world.connections:
        connection.clock = lambda: NOW
    return replace(world, tables=tables, joins=joins)


@pytest.fixture(scope="module")
def date_worlds(worlds: dict[str, World]) -> Iterator[dict[str, World]]:  # noqa: F811
    built: dict[str, World] = {}

    class Lazy(dict):  # type: ignore[type-arg]
        def __missing__(self, product: str) -> World:
            built[product] = self[product] = date_world(worlds[product])
            return built[product]

        def __repr__(self) -> str:
            return f"date_worlds({', '.join(self)})"

    yield Lazy()


# -- statement shapes of their own ------------------------------------------------------------


def _date_tables(world: World) -> list[TableData]:
    return [world.tables[n] for n in sorted(world.tables)]


def one_column(data: TableData, column: str, as_name: str | None = None) -> TableData:
    """A table's data seen as one column (named ``as_name``): conditions on it alone."""
    name = as_name or column
    spec = replace(data.spec, columns=(name,))
    item = TableData(
        spec,
        {**data.types, name: data.types[column]},
        {name: data.values[column]},
        {name} if column in data.nullable else set(),
    )
    item.literals = {name: data.literals[column]}
    return item


@st.composite
def derived(draw: st.DrawFn, world: World) -> Statement:
    """Derived tables, CTEs and UNION ALL passing date columns through, filtered outside."""
    data = draw(st.sampled_from(_date_tables(world)))
    table, key = data.spec.name, data.spec.key
    columns = [c for c in data.spec.columns if c != key]
    column = draw(st.sampled_from(columns))
    shapes = ["subquery", "renamed", "cte", "cte_filtered", "union", "count"]
    shape = draw(st.sampled_from(shapes))
    inner_e = inner_o = ""
    if shape == "cte_filtered":
        inner_e, inner_o = draw(condition(data, depth=1))
        inner_e, inner_o = f" WHERE {inner_e}", f" WHERE {inner_o}"
    if shape == "union":
        kind = data.types[column]
        same = [c for c in columns if data.types[c] == kind]
        other = draw(st.sampled_from(same))
        view = one_column(data, column, "v")
        e, o = draw(condition(view, "u", depth=1))
        head = (
            f"SELECT u.v FROM (SELECT {column} AS v FROM {table} "
            f"UNION ALL SELECT {other} FROM {table}) u WHERE "
        )
        return Statement(head + e, head + o, "multiset")
    if shape == "renamed":
        view = one_column(data, column, "when_")
        e, o = draw(condition(view, "d", depth=2))
        head = f"SELECT d.k, d.when_ FROM (SELECT {key} AS k, {column} AS when_ FROM {table}) d"
        order = " ORDER BY d.when_, d.k" if draw(st.booleans()) else ""
        compare = "list" if order else "multiset"
        return Statement(f"{head} WHERE {e}{order}", f"{head} WHERE {o}{order}", compare)
    view = one_column(data, column)
    if shape == "count":  # the API's total must not answer it: the outer WHERE filters
        e, o = draw(condition(view, "d", depth=1))
        head = f"SELECT count(*) AS n FROM (SELECT {key}, {column} FROM {table}) d WHERE "
        return Statement(head + e, head + o, "multiset")
    alias = "d" if shape == "subquery" else "x"
    e, o = draw(condition(view, alias, depth=2))
    if shape == "subquery":
        source_e = f"(SELECT {key}, {column} FROM {table}) d"
        source_o = source_e
        prefix_e = prefix_o = ""
    else:
        source_e = source_o = "x"
        prefix_e = f"WITH x AS (SELECT {key}, {column} FROM {table}{inner_e}) "
        prefix_o = f"WITH x AS (SELECT {key}, {column} FROM {table}{inner_o}) "
    head_e = f"{prefix_e}SELECT {alias}.{key}, {alias}.{column} FROM {source_e} WHERE "
    head_o = f"{prefix_o}SELECT {alias}.{key}, {alias}.{column} FROM {source_o} WHERE "
    if draw(st.booleans()):
        tail = f" ORDER BY {alias}.{column}, {alias}.{key} LIMIT 20"
        return Statement(head_e + e + tail, head_o + o + tail, "list")
    return Statement(head_e + e, head_o + o, "multiset")


@st.composite
def having(draw: st.DrawFn, world: World) -> Statement:
    """MIN/MAX of a date column compared in HAVING (by the aggregate or by its alias)."""
    data = draw(st.sampled_from(_date_tables(world)))
    columns = [c for c in data.spec.columns if c != data.spec.key]
    column = draw(st.sampled_from(columns))
    function = draw(st.sampled_from(["min", "max"]))
    group = draw(st.sampled_from(data.spec.groups or (data.spec.key,)))
    op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
    e, o = draw(st.sampled_from(data.literals[column]))
    compared = draw(st.sampled_from([f"{function}({column})", "m"]))
    head = (
        f"SELECT {group}, {function}({column}) AS m, count(*) AS n FROM {data.spec.name} "
        f"GROUP BY {group} HAVING {compared} {op} "
    )
    return Statement(head + e, head + o, "multiset")


@st.composite
def functions_of_columns(draw: st.DrawFn, world: World) -> Statement:
    """SQLite's date functions over columns, compared with columns and literals."""
    data = draw(st.sampled_from(_date_tables(world)))
    table, key = data.spec.name, data.spec.key
    columns = [c for c in data.spec.columns if c != key]
    a, b = draw(st.sampled_from(columns)), draw(st.sampled_from(columns))
    op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
    shape = draw(
        st.sampled_from(
            ["date_literal", "datetime_literal", "shifted", "same", "days", "between", "case"]
        )
    )
    if shape == "date_literal":  # date(col) against any literal: a DATE comparison
        lit_e, lit_o = draw(st.sampled_from(date_literals("DATE", data.values[a], world.product)))
        cond_e, cond_o = f"date({a}) {op} {lit_e}", f"date({a}) {op} {lit_o}"
    elif shape == "datetime_literal":
        literals = date_literals("DATETIME", data.values[a], world.product)
        if data.types[a] == "DATE":
            literals = date_literals("DATETIME", [f"{v} 00:00:00" for v in data.values[a]], "")
        lit_e, lit_o = draw(st.sampled_from(literals))
        cond_e, cond_o = f"datetime({a}) {op} {lit_e}", f"datetime({a}) {op} {lit_o}"
    elif shape == "shifted":
        modifier = draw(st.sampled_from(["'+1 day'", "'-2 hours'", "'start of day'"]))
        cond_e = cond_o = f"{a} {op} datetime({b}, {modifier})"
    elif shape == "same":
        cond_e = cond_o = f"{a} {op} datetime({a})"
    elif shape == "days":
        cond_e = cond_o = f"julianday({a}) - julianday({b}) {op} 1.5"
    elif shape == "case":  # a simple CASE compares its operand with each WHEN value
        (l1e, l1o), (l2e, l2o) = (draw(st.sampled_from(data.literals[a])) for _ in range(2))
        head_e = f"SELECT {key}, CASE {a} WHEN {l1e} THEN 1 WHEN {l2e} THEN 2 ELSE 0 END AS hit"
        head_o = f"SELECT {key}, CASE {a} WHEN {l1o} THEN 1 WHEN {l2o} THEN 2 ELSE 0 END AS hit"
        return Statement(f"{head_e} FROM {table}", f"{head_o} FROM {table}", "multiset")
    else:
        (l1e, l1o), (l2e, l2o) = (draw(st.sampled_from(data.literals[a])) for _ in range(2))
        cond_e = f"{a} BETWEEN {l1e} AND {l2e} AND date({b}) <= date({a})"
        cond_o = f"{a} BETWEEN {l1o} AND {l2o} AND date({b}) <= date({a})"
    head = f"SELECT {key}, {a}, {b} FROM {table} WHERE "
    return Statement(head + cond_e, head + cond_o, "multiset")


@st.composite
def on_clause(draw: st.DrawFn, world: World) -> Statement:
    """A LEFT JOIN whose ON holds date conditions on the joined table (only they filter
    it), and an inner join's ON holding them on either side."""
    spec = draw(st.sampled_from(world.joins))
    left, right = world.tables[spec.left], world.tables[spec.right]
    kind = draw(st.sampled_from(["LEFT JOIN", "JOIN"]))
    side, alias = (right, "b") if kind == "LEFT JOIN" or draw(st.booleans()) else (left, "a")
    e, o = draw(condition(side, alias, depth=1))
    column = draw(st.sampled_from([c for c in right.spec.columns if c != right.spec.key]))
    head = (
        f"SELECT a.{left.spec.key} AS a_key, b.{right.spec.key} AS b_key, b.{column} AS b_value "
        f"FROM {spec.left} a {kind} {spec.right} b ON {spec.on} AND "
    )
    return Statement(head + e, head + o, "multiset")


# -- the properties ------------------------------------------------------------------------------


@pytest.mark.parametrize("product", PRODUCTS)
@settings(SETTINGS, max_examples=EXAMPLES // 2)
@given(data=st.data())
def test_date_filters_order_and_limits_agree_with_the_oracle(
    date_worlds: dict[str, World], product: str, data: st.DataObject
) -> None:
    world = date_worlds[product]
    statement = data.draw(single_table(world), label="statement")
    connection = data.draw(st.sampled_from(world.connections), label="connection")
    check(world, statement, connection)


@pytest.mark.parametrize("product", PRODUCTS)
@settings(SETTINGS, max_examples=EXAMPLES // 2)
@given(data=st.data())
def test_derived_tables_ctes_and_unions_of_dates_agree_with_the_oracle(
    date_worlds: dict[str, World], product: str, data: st.DataObject
) -> None:
    world = date_worlds[product]
    statement = data.draw(derived(world), label="statement")
    connection = data.draw(st.sampled_from(world.connections), label="connection")
    check(world, statement, connection)


@pytest.mark.parametrize("product", PRODUCTS)
@settings(SETTINGS, max_examples=EXAMPLES // 3)
@given(data=st.data())
def test_date_functions_over_columns_agree_with_the_oracle(
    date_worlds: dict[str, World], product: str, data: st.DataObject
) -> None:
    world = date_worlds[product]
    statement = data.draw(functions_of_columns(world), label="statement")
    check(world, statement, world.connections[0])


@pytest.mark.parametrize("product", PRODUCTS)
@settings(SETTINGS, max_examples=EXAMPLES // 3)
@given(data=st.data())
def test_date_aggregates_and_having_agree_with_the_oracle(
    date_worlds: dict[str, World], product: str, data: st.DataObject
) -> None:
    world = date_worlds[product]
    shape = data.draw(st.sampled_from([aggregate, having]), label="shape")
    check(world, data.draw(shape(world), label="statement"), world.connections[0])


@pytest.mark.parametrize("product", PRODUCTS)
@settings(SETTINGS, max_examples=EXAMPLES // 3)
@given(data=st.data())
def test_date_joins_and_on_clauses_agree_with_the_oracle(
    date_worlds: dict[str, World], product: str, data: st.DataObject
) -> None:
    world = date_worlds[product]
    shape = data.draw(st.sampled_from([join, on_clause]), label="shape")
    statement = data.draw(shape(world), label="statement")
    connection = data.draw(st.sampled_from(world.connections), label="connection")
    check(world, statement, connection)


# -- 'now' folded and pushed; what comes out -----------------------------------------------------

# (product, table, updated column, how the API is asked for it: None when it is not, as
# Sage CRM, which documents no date literal for where=, applies nothing of it)
PUSHED_NOW: dict[str, tuple[str, str, str | None]] = {
    "sage_accounting": ("contacts", "updated_at", "updated_or_created_since=2025-06-14T12:34:57Z"),
    "sage_200": ("customers", "date_time_updated", "date_time_updated gt 2025-06-14T12:34:56.000Z"),
    "sage_crm": ("company", "comp_updateddate", None),
}


@pytest.mark.parametrize("product", PRODUCTS)
def test_now_is_folded_pushed_and_shown_by_explain(
    date_worlds: dict[str, World], product: str
) -> None:
    world = date_worlds[product]
    table, column, pushed = PUSHED_NOW[product]
    sql = f"SELECT * FROM {table} WHERE {column} > datetime('now', '-1 day')"
    plan = explain(world.connections[0], sql)
    if pushed is None:
        assert "?where=" not in plan and "documents no date-time literals" in plan, plan
    else:
        assert pushed in requests.utils.unquote(plan), plan
    assert "2025-06-14 12:34:56'" in plan  # the local statement holds the folded value
    assert "now" not in plan.lower().split("local (sqlite):")[1]
    world.sandbox.app.requests.clear()
    result = run(world.connections[0], sql)
    rows = list(result.rows)
    result.close()
    sent = [str(r["query"]) for r in world.sandbox.app.requests if "/_sandbox" not in r["path"]]
    if pushed is not None:
        found = [requests.utils.unquote(q).replace("+", " ") for q in sent]
        assert any(pushed.split("=")[-1] in q for q in found)
    expected = world.oracle.execute(
        f"SELECT count(*) FROM {table} WHERE {column} > ?",
        [stored_instant(second(NOW) - timedelta(days=1), "")],
    ).fetchone()[0]
    assert len(rows) == expected


def test_every_now_of_a_statement_is_one_reading_of_the_clock(
    date_worlds: dict[str, World],
) -> None:
    world = date_worlds["sage_accounting"]
    connection = world.connections[0]
    readings: list[datetime] = []

    def clock() -> datetime:
        readings.append(NOW + timedelta(seconds=len(readings)))
        return readings[-1]

    connection.clock = clock
    try:
        sql = (
            "SELECT datetime('now') AS a, CURRENT_TIMESTAMP AS b, strftime('%s', 'now') AS c, "
            "date('now') AS d FROM contacts WHERE updated_at < datetime('now') LIMIT 1"
        )
        result = run(connection, sql)
        (row,) = list(result.rows)
        result.close()
    finally:
        connection.clock = lambda: NOW
    assert len(readings) == 1
    assert row == ("2025-06-15 12:34:56", "2025-06-15 12:34:56", "1749990896", "2025-06-15")


def test_constants_keep_their_names_and_other_functions_stay(
    date_worlds: dict[str, World],
) -> None:
    world = date_worlds["sage_accounting"]
    connection = world.connections[0]
    result = run(
        connection,
        "SELECT datetime('now', '-1 day'), random() IS NOT NULL AS r, name FROM contacts "
        "WHERE name IS NOT NULL ORDER BY date('now'), 1 LIMIT 1",
    )
    rows = list(result.rows)
    names = [c.name for c in result.columns]
    result.close()
    assert names == ["datetime('now', '-1 day')", "r", "name"]
    assert rows[0][:2] == ("2025-06-14 12:34:56", 1)
    plan = explain(connection, "SELECT id FROM contacts WHERE updated_at > random()")
    assert "RANDOM()" in plan


@pytest.mark.parametrize("product", PRODUCTS)
def test_datetime_columns_come_out_as_the_products_iso_8601(
    date_worlds: dict[str, World], product: str
) -> None:
    """Stored as 'YYYY-MM-DD HH:MM:SS[.fff]', returned as the API writes it: UTC with a Z,
    Sage 200 always to the millisecond."""
    import re

    world = date_worlds[product]
    table, column, _ = PUSHED_NOW[product]
    result = run(world.connections[0], f"SELECT {column}, max({column}) AS m FROM {table}")
    (value, top) = next(iter(result.rows))
    result.close()
    pattern = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d" + (r"\.\d{3}" if product == "sage_200" else "")
    assert re.fullmatch(pattern + "Z", value) and re.fullmatch(pattern + "Z", top)
    stored = world.oracle.execute(f'SELECT max("{column}") FROM "{table}"').fetchone()[0]
    assert " " in stored and "Z" not in stored and not stored.endswith(".000")
    assert parse_stored(stored) == datetime.fromisoformat(top.replace("Z", "+00:00"))


def test_a_count_over_a_filtered_derived_table_is_not_the_apis_total(
    date_worlds: dict[str, World],
) -> None:
    """--explain claims the API's total only when nothing outside the table filters it."""
    world = date_worlds["sage_accounting"]
    sql = (
        "SELECT count(*) FROM (SELECT updated_at AS u FROM contacts) d "
        "WHERE d.u > '2025-06-01T00:00:00+02:00'"
    )
    assert "count: the API's total" not in explain(world.connections[0], sql)
    result = run(world.connections[0], sql)
    got = list(result.rows)
    result.close()
    expected = world.oracle.execute(
        "SELECT count(*) FROM contacts WHERE updated_at > '2025-05-31 22:00:00'"
    ).fetchall()
    assert got == expected
