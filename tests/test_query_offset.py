"""LIMIT n OFFSET m reads the page that holds those rows: one request, not every page before.

Sage 200 (``$skip``) and CRM (``startIndex``) start a page anywhere; Accounting's pages
start at multiples of their size (``page``, ``items_per_page``), so the size is chosen
to hold the rows in the fewest pages. The rows are those the whole listing gives.
"""

from __future__ import annotations

from typing import Any

import pytest

from sagesql.connector.client import SageClient
from sagesql.connector.paging import PageNumber
from sagesql.connector.properties import validate
from sagesql.engine import pipeline

CASES = [
    ("sage_accounting", "SELECT id, name FROM contacts", "/contacts"),
    ("sage_200", "SELECT id, name FROM customers ORDER BY id", "/customers"),
    (
        "sage_crm",
        "SELECT comp_companyid, comp_name FROM company ORDER BY comp_companyid",
        "/Company",
    ),
]


def _rows(conn: SageClient, sql: str) -> list[tuple[Any, ...]]:
    result = pipeline.run(conn, sql)
    try:
        return list(result)
    finally:
        result.close()


@pytest.mark.parametrize(("product", "sql", "path"), CASES)
@pytest.mark.parametrize(
    ("limit", "offset"), [(10, 1000), (7, 993), (250, 801), (5, 1195), (10, 1199)]
)
def test_the_rows_come_from_the_page_that_holds_them(
    start_sandbox: Any, product: str, sql: str, path: str, limit: int, offset: int
) -> None:
    sbx = start_sandbox(product, rows=1200, rate_limit_per_minute=0)
    props = {**sbx.client_properties(), "RateLimit": "0"}
    with SageClient(validate(props)) as conn:
        every = _rows(conn, sql)
        sbx.app.requests.clear()
        got = _rows(conn, f"{sql} LIMIT {limit} OFFSET {offset}")
        asked = [r for r in sbx.app.requests if r["path"].endswith(path)]
    assert got == every[offset : offset + limit]
    # Accounting's pages hold 200 records at most: 250 rows take two of them.
    pages = 2 if product == "sage_accounting" and limit > 200 else 1
    assert len(asked) == pages, [r["query"] for r in asked]


def test_explain_says_where_reading_starts(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_200", rows=20, rate_limit_per_minute=0)
    with SageClient(validate({**sbx.client_properties()})) as conn:
        text = pipeline.explain(conn, "SELECT id FROM customers ORDER BY id LIMIT 5 OFFSET 10")
    assert "offset: starts at record 11 (the page holding it)" in text
    assert "LIMIT 5" in text and "OFFSET" not in text.split("local (SQLite):")[1]


@pytest.mark.parametrize(
    ("offset", "limit", "size"), [(1000, 10, 10), (993, 7, 8), (995, 10, 14), (5, 200, 200)]
)
def test_accounting_pages_fit_the_rows_in_the_fewest_smallest_pages(offset, limit, size) -> None:
    chosen = PageNumber().start_size(200, offset, limit)
    assert chosen == size
    pages = (offset + limit - 1) // chosen - offset // chosen + 1
    assert pages == min((offset + limit - 1) // s - offset // s + 1 for s in range(1, 201))
