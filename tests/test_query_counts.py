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
