"""Local evaluation: SQLite runs statements over source rows, streamed when it can be."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlglot

from sagesql.engine import local, values
from sagesql.engine.local import (
    CONVERTED_TYPES,
    LocalResult,
    LocalSource,
    evaluate,
    why_not_streaming,
)
from sagesql.errors import DataError, OperationalError, ProgrammingError

PRODUCT = "sage_accounting"

CUSTOMERS = [
    ("id", "INTEGER"),
    ("name", "TEXT"),
    ("balance", "DECIMAL"),
    ("active", "BOOLEAN"),
    ("created", "DATETIME"),
    ("opened", "DATE"),
    ("attrs", "JSON"),
    ("country", "TEXT"),
]
# As the API sends them: money as strings, times with their zones, JSON objects.
CUSTOMER_RECORDS: list[tuple[Any, ...]] = [
    (1, "Acme", "1234567.89", True, "2025-01-01T10:00:00+02:00", "2020-05-01",
     {"tier": "gold", "tags": ["a", "b"]}, "GB"),
    (2, "Bolt", "0.10", False, "2025-01-01T09:00:00Z", "2021-06-30",
     {"tier": "silver", "tags": []}, "GB"),
    (3, "Crane", "-5.00", True, "2024-12-31T23:30:00-01:00", None, {"tier": "gold"}, "FR"),
    (4, "Delta", None, None, None, "2019-01-01", None, "FR"),
    (5, "Echo", "99999999999.99", True, "2025-03-01T00:00:00.000Z", "2022-02-02",
     {"tier": "bronze", "tags": ["c"]}, None),
    (6, "O'Neil & Co", "42", False, "2025-01-01T08:00:00Z", "2023-03-03", {}, "IE"),
]  # fmt: skip
INVOICES = [("id", "INTEGER"), ("customer_id", "INTEGER"), ("total", "DECIMAL")]
INVOICE_RECORDS = [(100 + i, 1 + i % 4, f"{10 * i}.{i:02d}") for i in range(12)]


def stored(columns: list[tuple[str, str]], records: Iterable[tuple[Any, ...]]) -> list[tuple]:
    """Rows in the stored form the fetcher hands over."""
    return [
        tuple(values.to_storage(t, v, PRODUCT) for (_, t), v in zip(columns, r, strict=True))
        for r in records
    ]


class Rows:
    """A source iterator that counts the rows pulled from it and notices close()."""

    def __init__(self, rows: Iterable[tuple[Any, ...]]) -> None:
        self._rows = iter(rows)
        self.pulled = 0
        self.closed = False

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self

    def __next__(self) -> tuple[Any, ...]:
        assert not self.closed, "a row was pulled after close()"
        row = next(self._rows)
        self.pulled += 1
        return row

    def close(self) -> None:
        self.closed = True


def customers(name: str = "t0") -> LocalSource:
    return LocalSource(name, CUSTOMERS, Rows(stored(CUSTOMERS, CUSTOMER_RECORDS)))


def invoices(name: str = "t1") -> LocalSource:
    return LocalSource(name, INVOICES, Rows(stored(INVOICES, INVOICE_RECORDS)))


def numbers(count: int, name: str = "t0") -> LocalSource:
    return LocalSource(name, [("id", "INTEGER"), ("label", "TEXT")], Rows(generate(count)))


def generate(count: int) -> Iterator[tuple[int, str]]:
    for i in range(count):
        yield (i, f"row {i}")


def run(sql: str, *sources: LocalSource, **options: Any) -> LocalResult:
    return evaluate(sqlglot.parse_one(sql, read="sqlite"), list(sources), **options)


def rows_of(sql: str, *sources: LocalSource) -> list[tuple]:
    result = run(sql, *sources)
    try:
        return list(result)
    finally:
        result.close()


def pulled(source: LocalSource) -> int:
    assert isinstance(source.rows, Rows)
    return source.rows.pulled


def reference(sql: str) -> list[tuple]:
    """What plain SQLite returns over the same stored rows (bool and Decimal as stored)."""
    db = sqlite3.connect(":memory:")
    local.register_functions(db)  # the same SQL functions on both sides
    for name, columns, records in (
        ("t0", CUSTOMERS, CUSTOMER_RECORDS),
        ("t1", INVOICES, INVOICE_RECORDS),
    ):
        db.execute(
            f"CREATE TABLE {name} ("
            + ", ".join(f"{c} {values.SQLITE_TYPES[t]}" for c, t in columns)
            + ")"
        )
        db.executemany(
            f"INSERT INTO {name} VALUES ({', '.join('?' * len(columns))})",
            stored(columns, records),
        )
    return db.execute(sql).fetchall()


def plain(rows: list[tuple]) -> list[tuple]:
    return [
        tuple(
            int(v) if isinstance(v, bool) else float(v) if isinstance(v, Decimal) else v
            for v in row
        )
        for row in rows
    ]


# -- streaming -------------------------------------------------------------------------


def test_a_limit_pulls_exactly_the_rows_it_needs() -> None:
    source = numbers(10_000)
    result = run("SELECT id FROM t0 LIMIT 10", source)
    assert result.evaluation.streaming and result.evaluation.reason is None
    assert list(result) == [(i,) for i in range(10)]
    assert pulled(source) == 10
    assert source.rows.closed  # type: ignore[attr-defined]


def test_offset_and_limit_with_a_filter_every_row_passes() -> None:
    source = numbers(10_000)
    assert rows_of("SELECT id FROM t0 WHERE id >= 0 LIMIT 5 OFFSET 3", source) == [
        (i,) for i in range(3, 8)
    ]
    assert pulled(source) == 8


def test_a_selective_filter_grows_the_batches_and_stops_at_the_limit() -> None:
    source = numbers(100_000)
    result = run("SELECT id, label FROM t0 WHERE id % 100 = 0 LIMIT 3 OFFSET 1", source)
    assert list(result) == [(100, "row 100"), (200, "row 200"), (300, "row 300")]
    # The batches double from 4 rows: never row by row, never far past row 300.
    assert 301 <= pulled(source) <= 2 * 301
    assert result.evaluation.batches < 10


def test_without_a_limit_every_row_streams_through_small_batches() -> None:
    source = numbers(7_500)
    result = run("SELECT id * 2 AS twice FROM t0 WHERE label LIKE 'row 1%'", source)
    out = list(result)
    assert out == [(i * 2,) for i in range(7_500) if str(i).startswith("1")]
    assert result.evaluation.streaming
    assert result.evaluation.rows_loaded == 7_500
    assert result.evaluation.batches > 3  # 100, 200, ... 2,000 rows at a time


def test_streaming_reads_the_source_only_as_rows_are_read() -> None:
    source = numbers(50_000)
    result = run("SELECT id FROM t0", source)
    assert pulled(source) == 0  # nothing before the first row is asked for
    assert next(iter(result)) == (0,)
    first = pulled(source)
    assert first <= 100
    result.close()
    assert source.rows.closed  # type: ignore[attr-defined]
    assert pulled(source) == first


def test_limit_zero_and_negative_limit() -> None:
    source = numbers(100)
    assert rows_of("SELECT id FROM t0 LIMIT 0", source) == []
    assert pulled(source) == 0
    assert len(rows_of("SELECT id FROM t0 LIMIT -1 OFFSET 95", numbers(100))) == 5


def test_a_limit_expression_is_evaluated() -> None:
    source = numbers(100)
    assert rows_of("SELECT id FROM t0 LIMIT 2 + 1", source) == [(0,), (1,), (2,)]
    assert pulled(source) == 3


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT id FROM t0 WHERE id > 1 LIMIT 3", None),
        ("SELECT upper(name), CASE WHEN active THEN 1 END FROM t0", None),
        ("SELECT max(balance, 0) FROM t0", None),  # two-argument MAX is scalar
        ("SELECT id FROM t0 ORDER BY id", "ORDER BY"),
        ("SELECT country FROM t0 GROUP BY country", "GROUP BY"),
        ("SELECT count(*) FROM t0", "aggregate"),
        ("SELECT total(balance) FROM t0", "aggregate"),
        ("SELECT DISTINCT country FROM t0", "DISTINCT"),
        ("SELECT row_number() OVER () FROM t0", "window"),
        ("SELECT id FROM t0 WHERE id IN (SELECT id FROM t0)", "subquery"),
        ("SELECT id FROM t0 UNION SELECT id FROM t0", "set operation"),
        ("WITH c AS (SELECT id FROM t0) SELECT id FROM c", "CTE"),
        ("SELECT a.id FROM t0 a JOIN t0 b ON a.id = b.id", "join"),
        ("SELECT a.id FROM t0 a, t0 b", "join"),
        ("SELECT id FROM (SELECT id FROM t0)", "FROM"),
        ("SELECT rowid, id FROM t0", "rowid"),
    ],
)
def test_which_statements_stream(sql: str, reason: str | None) -> None:
    found = why_not_streaming(sqlglot.parse_one(sql, read="sqlite"), [customers()])
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


def test_two_sources_never_stream() -> None:
    found = why_not_streaming(sqlglot.parse_one("SELECT 1 FROM t0, t1"), [customers(), invoices()])
    assert found == "2 tables"
    # --explain asks with the names alone.
    assert why_not_streaming(sqlglot.parse_one("SELECT id FROM t0 LIMIT 1"), ["t0"]) is None


def test_a_limit_that_is_not_a_number_is_left_to_sqlite() -> None:
    source = numbers(10)
    with pytest.raises(DataError, match="datatype mismatch"):
        run("SELECT id FROM t0 LIMIT 1.5", source)
    assert source.rows.closed  # type: ignore[attr-defined]


# -- statements SQLite evaluates whole ------------------------------------------------

STATEMENTS = [
    # joins of two sources
    "SELECT c.name, i.id, i.total FROM t0 AS c JOIN t1 AS i ON i.customer_id = c.id ORDER BY i.id",
    "SELECT c.name, count(i.id) FROM t0 c LEFT JOIN t1 i ON i.customer_id = c.id "
    "GROUP BY c.name ORDER BY c.name",
    # GROUP BY / HAVING
    "SELECT customer_id, count(*) AS n, sum(total) FROM t1 GROUP BY customer_id "
    "HAVING count(*) >= 3 ORDER BY customer_id",
    # window functions
    "SELECT id, customer_id, row_number() OVER (PARTITION BY customer_id ORDER BY id DESC), "
    "sum(total) OVER (ORDER BY id) FROM t1 ORDER BY id",
    # CTE, subqueries
    "WITH big AS (SELECT customer_id, max(total) AS top FROM t1 GROUP BY customer_id) "
    "SELECT c.name, big.top FROM big JOIN t0 c ON c.id = big.customer_id ORDER BY c.name",
    "SELECT name FROM t0 WHERE id IN (SELECT customer_id FROM t1 WHERE total > 50) ORDER BY 1",
    "SELECT name, (SELECT count(*) FROM t1 WHERE t1.customer_id = t0.id) FROM t0 ORDER BY id",
    # UNION
    "SELECT id FROM t0 WHERE country = 'GB' UNION SELECT customer_id FROM t1 ORDER BY 1",
    "SELECT name FROM t0 UNION ALL SELECT name FROM t0 WHERE active ORDER BY 1",
    # CASE and scalar functions
    "SELECT id, CASE WHEN balance > 1000 THEN 'big' WHEN balance > 0 THEN 'small' "
    "ELSE 'none' END, upper(substr(name, 1, 3)), coalesce(country, '?') FROM t0 ORDER BY id",
    "SELECT strftime('%Y-%m', created), date(created), length(name) FROM t0 ORDER BY id",
    # JSON
    "SELECT id, json_extract(attrs, '$.tier'), json_array_length(attrs, '$.tags') FROM t0 "
    "WHERE json_extract(attrs, '$.tier') = 'gold' ORDER BY id",
    "SELECT t0.id, j.value FROM t0, json_each(t0.attrs, '$.tags') AS j ORDER BY 1, 2",
    # DISTINCT, NULL handling, ordering of NULLs
    "SELECT DISTINCT country FROM t0 ORDER BY country",
    "SELECT id FROM t0 WHERE balance IS NULL OR active IS NULL ORDER BY id",
    "SELECT count(balance), count(*), count(opened) FROM t0",
    "SELECT id, active FROM t0 ORDER BY active, id",
]


@pytest.mark.parametrize("sql", STATEMENTS)
def test_sqlite_semantics(sql: str) -> None:
    result = run(sql, customers(), invoices())
    try:
        assert plain(list(result)) == reference(sql)
    finally:
        result.close()


def test_a_join_returns_typed_columns() -> None:
    result = run(
        "SELECT c.name AS customer, i.total FROM t0 AS c JOIN t1 AS i ON i.customer_id = c.id "
        "WHERE c.id = 1 ORDER BY i.id",
        customers(),
        invoices(),
    )
    assert [(c.name, c.sql_type) for c in result.columns] == [
        ("customer", "TEXT"),
        ("total", "DECIMAL"),
    ]
    assert list(result) == [
        ("Acme", Decimal("0")),
        ("Acme", Decimal("40.04")),
        ("Acme", Decimal("80.08")),
    ]
    assert result.evaluation.reason == "2 tables" and result.evaluation.rows_loaded == 18


def test_group_by_having_returns_exact_min_and_max() -> None:
    out = rows_of(
        "SELECT customer_id, min(total), max(total) FROM t1 GROUP BY customer_id "
        "HAVING max(total) > 100 ORDER BY customer_id",
        invoices(),
    )
    assert out == [
        (3, Decimal("20.02"), Decimal("100.1")),
        (4, Decimal("30.03"), Decimal("110.11")),
    ]
    assert all(isinstance(v, Decimal) for row in out for v in row[1:])


def test_regexp_works_as_in_the_sqlite_shell() -> None:
    assert rows_of("SELECT name FROM t0 WHERE name REGEXP '^[AB]' ORDER BY 1", customers()) == [
        ("Acme",),
        ("Bolt",),
    ]


# -- types -----------------------------------------------------------------------------


def test_decimal_keeps_its_digits_through_star_aliases_and_ctes() -> None:
    expected = [
        Decimal("1234567.89"),
        Decimal("0.1"),
        Decimal("-5"),
        None,
        Decimal("99999999999.99"),
        Decimal("42"),
    ]
    for sql in (
        "SELECT balance FROM t0",
        "SELECT c.balance AS money FROM t0 AS c",
        "SELECT (balance) FROM t0 ORDER BY id",
        "WITH x AS (SELECT id, balance FROM t0) SELECT x.balance FROM x ORDER BY id",
        "SELECT b FROM (SELECT balance AS b, id FROM t0) ORDER BY id",
    ):
        assert [r[0] for r in rows_of(sql, customers())] == expected, sql
    star = rows_of("SELECT * FROM t0", customers())
    assert [r[2] for r in star] == expected
    assert rows_of("SELECT t0.* FROM t0", customers()) == star


def test_a_computed_decimal_is_a_plain_number() -> None:
    result = run("SELECT balance * 2, sum(balance) FROM t0 WHERE id = 2", customers())
    assert [c.sql_type for c in result.columns] == [None, None]
    assert list(result) == [(0.2, 0.1)]


def test_booleans_come_back_as_bool() -> None:
    assert rows_of("SELECT id, active FROM t0 WHERE active ORDER BY id", customers()) == [
        (1, True),
        (3, True),
        (5, True),
    ]
    assert rows_of("SELECT id, active FROM t0 WHERE NOT active", customers()) == [
        (2, False),
        (6, False),
    ]
    # A literal in stored form, as the planner rewrites `active = TRUE`.
    assert [r[0] for r in rows_of("SELECT id FROM t0 WHERE active = 1", customers())] == [1, 3, 5]


def test_datetimes_compare_in_utc() -> None:
    # '2025-01-01T10:30:00+02:00' is 08:30 UTC; the planner hands over the stored form.
    literal = values.literal_storage(
        "DATETIME", values.coerce("DATETIME", "2025-01-01T10:30:00+02:00", PRODUCT), PRODUCT
    )
    assert literal == "2025-01-01 08:30:00"
    out = rows_of(
        f"SELECT id, created FROM t0 WHERE created > '{literal}' ORDER BY id", customers()
    )
    assert out == [(2, "2025-01-01T09:00:00Z"), (5, "2025-03-01T00:00:00Z")]
    # Acme's 10:00+02:00 is 08:00 UTC, the same instant as O'Neil's 08:00Z.
    same = rows_of("SELECT id FROM t0 WHERE created = '2025-01-01 08:00:00'", customers())
    assert same == [(1,), (6,)]
    ordered = rows_of("SELECT id FROM t0 WHERE created IS NOT NULL ORDER BY created", customers())
    assert ordered == [(3,), (1,), (6,), (2,), (5,)]  # Crane's 23:30-01:00 is 00:30 UTC


def test_nulls() -> None:
    out = rows_of("SELECT * FROM t0 WHERE id = 4", customers())
    assert out == [(4, "Delta", None, None, None, "2019-01-01", None, "FR")]
    assert rows_of("SELECT id FROM t0 WHERE active IS NULL", customers()) == [(4,)]
    assert rows_of("SELECT count(*) FROM t0 WHERE balance = NULL", customers()) == [(0,)]
    assert rows_of("SELECT coalesce(balance, 0) FROM t0 WHERE id = 4", customers()) == [(0,)]


def test_json_columns_are_json_text() -> None:
    out = rows_of(
        "SELECT attrs, json_extract(attrs, '$.tags[1]') FROM t0 WHERE id = 1", customers()
    )
    assert out == [('{"tier":"gold","tags":["a","b"]}', "b")]
    result = run("SELECT attrs ->> '$.tier' AS tier FROM t0 WHERE id = 2", customers())
    assert list(result) == [("silver",)]
    assert result.columns[0].sql_type is None


def test_result_columns_of_star_over_a_using_join() -> None:
    result = run("SELECT * FROM t0 JOIN t1 USING (id)", customers(), invoices())
    assert [c.name for c in result.columns] == [n for n, _ in CUSTOMERS] + ["customer_id", "total"]
    assert [c.sql_type for c in result.columns] == [t for _, t in CUSTOMERS] + [
        "INTEGER",
        "DECIMAL",
    ]
    result.close()


def test_union_branches_that_disagree_lose_the_type() -> None:
    result = run(
        "SELECT balance, name FROM t0 UNION ALL SELECT total, id FROM t1", customers(), invoices()
    )
    assert [c.sql_type for c in result.columns] == ["DECIMAL", None]
    result.close()


def test_column_names_with_quotes_and_keywords() -> None:
    source = LocalSource(
        "t0",
        [("order", "INTEGER"), ('say "hi"', "TEXT"), ("Mixed Case", "BOOLEAN")],
        Rows([(1, "a", 1), (2, "b", 0)]),
    )
    result = run('SELECT "order", "say ""hi""", "Mixed Case" FROM t0 WHERE "order" = 2', source)
    assert [c.name for c in result.columns] == ["order", 'say "hi"', "Mixed Case"]
    assert list(result) == [(2, "b", False)]


# -- memory, temp file, closing --------------------------------------------------------


def test_a_large_load_moves_to_a_temporary_file() -> None:
    source = numbers(3_000)
    result = run(
        "SELECT id FROM t0 ORDER BY id DESC LIMIT 3", source, memory_rows=1_000, memory_bytes=10**9
    )
    assert result.evaluation.storage == "file"
    path = result.evaluation.temp_file
    assert path is not None and os.path.exists(path)
    assert list(result) == [(2_999,), (2_998,), (2_997,)]
    assert not os.path.exists(path)  # deleted once the rows are read


def test_a_load_too_big_in_bytes_moves_to_a_temporary_file() -> None:
    wide = LocalSource("t0", [("id", "INTEGER"), ("text", "TEXT")], Rows(
        (i, "x" * 1_000) for i in range(500)
    ))  # fmt: skip
    result = run("SELECT count(*), sum(length(text)) FROM t0", wide, memory_bytes=100_000)
    assert result.evaluation.storage == "file"
    path = result.evaluation.temp_file
    assert path is not None
    result.close()  # closed before reading
    assert not os.path.exists(path)


def test_small_loads_stay_in_memory() -> None:
    result = run("SELECT count(*) FROM t0", numbers(3_000))
    assert result.evaluation.storage == "memory" and result.evaluation.temp_file is None
    assert list(result) == [(3_000,)]


def test_closing_an_unread_result_closes_every_source() -> None:
    first, second = customers(), invoices()
    result = run("SELECT * FROM t0, t1", first, second)
    result.close()
    assert first.rows.closed and second.rows.closed  # type: ignore[attr-defined]
    result.close()  # twice is fine


def test_closing_a_stream_midway_stops_the_source() -> None:
    source = numbers(100_000)
    result = run("SELECT id FROM t0 WHERE id % 2 = 1", source)
    rows = iter(result)
    assert [next(rows) for _ in range(150)][-1] == (299,)
    count = pulled(source)
    result.close()
    assert source.rows.closed  # type: ignore[attr-defined]
    assert pulled(source) == count < 1_000
    with pytest.raises(StopIteration):
        next(rows)


def test_sql_errors_are_programming_errors_and_free_everything() -> None:
    source = numbers(10)
    with pytest.raises(ProgrammingError, match=r"(?i)no such function: nope"):
        run("SELECT nope(id) FROM t0", source)
    assert source.rows.closed  # type: ignore[attr-defined]
    with pytest.raises(ProgrammingError, match="malformed JSON"):
        rows_of("SELECT json_extract(label, '$.a') FROM t0 ORDER BY id", numbers(3))


def test_a_source_failing_midway_passes_its_error_through() -> None:
    def failing() -> Iterator[tuple[int, str]]:
        yield (1, "a")
        raise OperationalError("Sage went away")

    other = invoices()
    broken = LocalSource("t0", [("id", "INTEGER"), ("label", "TEXT")], failing())
    with pytest.raises(OperationalError, match="Sage went away"):
        run("SELECT * FROM t0 JOIN t1 ON t1.id = t0.id", broken, other)
    assert other.rows.closed  # type: ignore[attr-defined]
    streaming = run("SELECT * FROM t0", LocalSource("t0", broken.columns, failing()))
    with pytest.raises(OperationalError):
        list(streaming)


def test_only_decimal_boolean_and_datetime_values_change_on_the_way_out() -> None:
    """local skips values.from_storage for the other types: keep that true."""
    samples = {
        "TEXT": "x",
        "INTEGER": 12,
        "DATE": "2025-01-02",
        "JSON": '{"a":1}',
    }
    assert set(samples) | CONVERTED_TYPES == set(values.SQLITE_TYPES)
    for sql_type, value in samples.items():
        assert values.from_storage(sql_type, value) is value
    assert values.from_storage("DECIMAL", 0.1) == Decimal("0.1")
    assert values.from_storage("BOOLEAN", 1) is True
    # DATETIME: stored 'YYYY-MM-DD HH:MM:SS[.fff]', returned as the product's ISO 8601.
    assert values.from_storage("DATETIME", "2025-01-02 03:04:05") == "2025-01-02T03:04:05Z"
    stored = "2025-01-02 03:04:05"
    assert values.from_storage("DATETIME", stored, "sage_200") == "2025-01-02T03:04:05.000Z"
    stored = "2025-01-02 03:04:05.120"
    assert values.from_storage("DATETIME", stored, "sage_200") == "2025-01-02T03:04:05.120Z"
    assert values.from_storage("DATETIME", "not a time") == "not a time"
