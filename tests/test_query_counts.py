"""SELECT count(*) answered by the API's own total: one request, the same number."""

from __future__ import annotations

from typing import Any

import pytest

from sagesql.connector.client import SageClient
from sagesql.connector.properties import validate
from sagesql.engine import pipeline

CASES = [
    ("sage_accounting", "customers", "updated_at >= '2025-03-01'"),
    ("sage_200", "customers", "balance > 1000"),
    ("sage_crm", "company", "comp_companyid > 20"),
]


def _count(conn: SageClient, sql: str) -> tuple[str, Any]:
    result = pipeline.run(conn, sql)
    try:
        (row,) = list(result)
        return result.columns[0].name, row[0]
    finally:
        result.close()


def _listed(sbx: Any) -> list[dict[str, Any]]:
    return [r for r in sbx.app.requests if r["path"].rsplit("/", 1)[-1] not in ("sites",)]


@pytest.mark.parametrize(("product", "table", "condition"), CASES)
def test_count_uses_the_api_total(
    start_sandbox: Any, product: str, table: str, condition: str
) -> None:
    sbx = start_sandbox(product, rate_limit_per_minute=0)
    props = {**sbx.connection_properties(), "OAuthSettingsLocation": f"memory://count-{product}"}
    with SageClient(validate(props)) as conn:
        every = len(list(pipeline.run(conn, f"SELECT * FROM {table}")))
        some = len(list(pipeline.run(conn, f"SELECT * FROM {table} WHERE {condition}")))
        for where, expected in (("", every), (f" WHERE {condition}", some)):
            sbx.app.requests.clear()
            name, value = _count(conn, f"SELECT count(*) AS n FROM {table}{where}")
            assert (name, value) == ("n", expected)
            assert len(_listed(sbx)) == 1, "one request answers the count"
        assert "the API's total answers it" in pipeline.explain(
            conn, f"SELECT count(*) FROM {table}"
        )


def test_a_filter_the_api_cannot_apply_exactly_counts_the_rows(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_accounting", rate_limit_per_minute=0)
    props = {**sbx.connection_properties(), "OAuthSettingsLocation": "memory://count-local"}
    with SageClient(validate(props)) as conn:
        expected = len(
            [
                r
                for r in pipeline.run(conn, "SELECT name FROM contacts")
                if "a" in (r[0] or "").lower()
            ]
        )
        assert "the API's total" not in pipeline.explain(
            conn, "SELECT count(*) FROM contacts WHERE name LIKE '%a%'"
        )
        assert _count(conn, "SELECT count(*) FROM contacts WHERE name LIKE '%a%'") == (
            "count(*)",
            expected,
        )


# -- where the total is not the answer ------------------------------------------------------

# (product, table, a text column, a low-cardinality column)
DERIVED = [
    ("sage_accounting", "customers", "name", "main_address_city"),
    ("sage_200", "customers", "name", "account_status_type"),
    ("sage_crm", "company", "comp_name", "comp_type"),
]


@pytest.mark.parametrize(("product", "table", "text", "group"), DERIVED)
def test_a_count_over_a_derived_table_or_cte_counts_its_rows(
    start_sandbox: Any, product: str, table: str, text: str, group: str
) -> None:
    """The shape BI tools, pandas and DB-API wrappers write (``SELECT count(*) FROM (<q>)
    AS t``) counts <q>'s rows: its LIMIT, DISTINCT, GROUP BY and the outer WHERE count,
    not the table's total; --explain does not claim the total answers it."""
    sbx = start_sandbox(product, rate_limit_per_minute=0)
    props = {**sbx.connection_properties(), "OAuthSettingsLocation": f"memory://derived-{product}"}
    with SageClient(validate(props)) as conn:
        every = list(pipeline.run(conn, f"SELECT {text}, {group} FROM {table}"))
        ltd = sum(1 for name, _ in every if "ltd" in (name or "").lower())
        groups = len({g for _, g in every})
        assert len(every) > 5 and 0 < ltd < len(every) and 0 < groups < len(every)
        like = f"{text} LIKE '%ltd%'"
        cases = [
            (f"SELECT count(*) FROM (SELECT {text} FROM {table} LIMIT 5)", 5),
            (f"SELECT count(*) FROM (SELECT {text} FROM {table} LIMIT 5 OFFSET 2) AS t", 5),
            (f"SELECT count(*) FROM (SELECT * FROM {table}) WHERE {text} LIKE '%ltd%'", ltd),
            (f"SELECT count(*) FROM (SELECT * FROM {table}) AS t WHERE t.{text} LIKE '%ltd%'", ltd),
            (f"WITH c AS (SELECT * FROM {table}) SELECT count(*) FROM c WHERE {like}", ltd),
            (f"WITH c AS (SELECT * FROM {table} LIMIT 3) SELECT count(*) FROM c", 3),
            (f"SELECT count(*) FROM (SELECT DISTINCT {group} FROM {table})", groups),
            (f"SELECT count(*) FROM (SELECT {group} FROM {table} GROUP BY {group}) AS t", groups),
            (
                f"SELECT count(*) FROM (SELECT * FROM {table} UNION ALL SELECT * FROM {table})",
                2 * len(every),
            ),
            (f"SELECT count(*) FROM {table} LIMIT 1", len(every)),
        ]
        for sql, expected in cases:
            assert _count(conn, sql)[1] == expected, sql
            assert "the API's total" not in pipeline.explain(conn, sql), sql
        # The bare count still is the one-request shortcut, and --max-rows keeps it so.
        sql = f"SELECT count(*) FROM {table}"
        assert "the API's total" in pipeline.explain(conn, sql)
        assert "the API's total" in pipeline.explain(conn, sql, max_rows=10)
        sbx.app.requests.clear()
        result = pipeline.run(conn, sql, max_rows=10)
        assert list(result) == [(len(every),)]
        assert len(_listed(sbx)) == 1


def test_limit_reaches_the_api_only_for_the_statement_s_own_rows(start_sandbox: Any) -> None:
    """LIMIT caps the records read only when each record is one result row: not under an
    aggregate SQLite knows by a name sqlglot does not (total(), group_concat), nor for a
    table inside a subquery, CTE or UNION branch."""
    sbx = start_sandbox("sage_accounting", rate_limit_per_minute=0)
    props = {**sbx.connection_properties(), "OAuthSettingsLocation": "memory://limit-scope"}
    with SageClient(validate(props)) as conn:
        exact = _count(conn, "SELECT sum(balance) FROM customers")[1]
        for sql in (
            "SELECT total(balance) FROM customers LIMIT 5",
            "SELECT total(balance) FROM customers LIMIT 1",
        ):
            assert "limit: stops after" not in pipeline.explain(conn, sql)
            assert _count(conn, sql)[1] == pytest.approx(float(exact)), sql
        names = sorted(r[0] for r in pipeline.run(conn, "SELECT name FROM customers"))
        for sql in (
            "SELECT name FROM (SELECT name FROM customers LIMIT 3) ORDER BY name",
            "WITH c AS (SELECT name FROM customers) SELECT name FROM c ORDER BY name LIMIT 3",
            "SELECT name FROM customers UNION SELECT name FROM customers ORDER BY name LIMIT 3",
        ):
            got = [r[0] for r in pipeline.run(conn, sql)]
            assert len(got) == 3 and set(got) <= set(names), sql
            if "ORDER BY name LIMIT 3" in sql:
                assert got == names[:3], sql


def test_a_correlated_join_in_a_subquery_does_not_narrow_the_outer_table(
    start_sandbox: Any,
) -> None:
    """``ON x.id = c.id`` inside an EXISTS names the outer table c, but filters only the
    subquery's rows: c keeps every row (join narrowing is for tables of one FROM)."""
    sbx = start_sandbox("sage_accounting", rate_limit_per_minute=0)
    props = {**sbx.connection_properties(), "OAuthSettingsLocation": "memory://correlated"}
    with SageClient(validate(props)) as conn:
        every = len(list(pipeline.run(conn, "SELECT id FROM customers")))
        sql = (
            "SELECT c.id, EXISTS (SELECT 1 FROM sales_invoices i JOIN contacts x "
            "ON x.id = c.id WHERE x.updated_at >= '2099-01-01') AS later FROM customers c"
        )
        got = list(pipeline.run(conn, sql))
        assert len(got) == every and {later for _, later in got} == {0}
        assert "join: narrowed" not in pipeline.explain(conn, sql).split("sales_invoices")[0]


def test_literals_compared_with_a_derived_table_s_columns_are_stored_forms(
    start_sandbox: Any,
) -> None:
    """'true' against a BOOLEAN and a date against a DATETIME mean the same through a
    derived table, a CTE or a UNION as against the table itself."""
    sbx = start_sandbox("sage_accounting", rate_limit_per_minute=0)
    props = {**sbx.connection_properties(), "OAuthSettingsLocation": "memory://derived-lit"}
    with SageClient(validate(props)) as conn:
        for condition in (
            "is_active = 'true'",
            "updated_at = '2025-03-13T23:32:05Z'",
            "updated_at > '2025-03-13'",
            "updated_at <= '2025-03-13T23:32:05+00:00'",
        ):
            direct = _count(conn, f"SELECT count(*) FROM customers WHERE {condition}")[1]
            assert direct > 0, condition
            for sql in (
                f"SELECT count(*) FROM (SELECT * FROM customers) AS t WHERE t.{condition}",
                f"WITH c AS (SELECT id, is_active, updated_at FROM customers) "
                f"SELECT count(*) FROM c WHERE {condition}",
                f"SELECT count(*) FROM (SELECT is_active, updated_at FROM customers UNION ALL "
                f"SELECT is_active, updated_at FROM customers) WHERE {condition}",
            ):
                expected = 2 * direct if "UNION" in sql else direct
                assert _count(conn, sql)[1] == expected, sql
