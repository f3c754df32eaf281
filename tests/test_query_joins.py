"""Equi-joins narrow the inner table to the outer side's values: fewer requests, same rows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from sagesql.connector.client import SageClient
from sagesql.connector.properties import validate
from sagesql.engine import pipeline, plan


def connect(sbx: Any, name: str) -> SageClient:
    props = {
        **sbx.connection_properties(),
        "OAuthSettingsLocation": f"memory://joins-{name}",
        "RateLimit": "0",
    }
    return SageClient(validate(props))


def rows(conn: SageClient, sql: str) -> list[tuple[Any, ...]]:
    result = pipeline.run(conn, sql)
    try:
        return list(result)
    finally:
        result.close()


def requests_to(sbx: Any, fragment: str) -> list[dict[str, Any]]:
    return [r for r in sbx.app.requests if fragment in r["path"]]


@pytest.fixture
def sage200(start_sandbox: Any) -> Iterator[tuple[Any, SageClient]]:
    sbx = start_sandbox("sage_200", rate_limit_per_minute=0)
    with connect(sbx, "s200") as conn:
        yield sbx, conn


def test_sage200_inner_table_is_filtered_by_the_outer_keys(sage200: Any) -> None:
    sbx, conn = sage200
    sql = (
        "SELECT o.id, c.name FROM sop_orders o JOIN customers c ON c.id = o.customer_id "
        "WHERE o.id < 6 ORDER BY o.id"
    )
    got = rows(conn, sql)
    orders = rows(conn, "SELECT id, customer_id FROM sop_orders WHERE id < 6 ORDER BY id")
    names = dict(rows(conn, "SELECT id, name FROM customers"))
    assert got == [(oid, names[cid]) for oid, cid in orders if cid in names]
    narrowed = [
        r
        for r in requests_to(sbx, "/customers")
        if "id+eq" in r["query"] or "id%20eq" in r["query"] or "id eq" in r["query"]
    ]
    assert narrowed, "the customers request carries the order's customer ids"


def test_explain_names_the_join_narrowing(sage200: Any) -> None:
    _, conn = sage200
    text = pipeline.explain(
        conn, "SELECT c.name FROM sop_orders o JOIN customers c ON c.id = o.customer_id"
    )
    assert "join: narrowed at run time to the o.customer_id values" in text


def test_left_join_keeps_unmatched_outer_rows(sage200: Any) -> None:
    _, conn = sage200
    sql = (
        "SELECT o.id, c.name FROM sop_orders o LEFT JOIN customers c "
        "ON c.id = o.customer_id + 100000 WHERE o.id < 4 ORDER BY o.id"
    )
    got = rows(conn, sql)
    assert got and all(name is None for _, name in got)


def test_empty_outer_side_fetches_nothing_of_the_inner_table(sage200: Any) -> None:
    sbx, conn = sage200
    sbx.app.requests.clear()
    got = rows(
        conn,
        "SELECT c.name FROM sop_orders o JOIN customers c ON c.id = o.customer_id WHERE o.id < 0",
    )
    assert got == []
    assert requests_to(sbx, "/customers") == []


def test_accounting_few_join_keys_become_gets_and_many_a_listing(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_accounting", rate_limit_per_minute=0)
    with connect(sbx, "acc") as conn:
        invoices = rows(conn, "SELECT id, contact_id FROM sales_invoices ORDER BY id")
        first = invoices[0]
        sbx.app.requests.clear()
        got = rows(
            conn,
            "SELECT i.id, c.name FROM sales_invoices i JOIN contacts c "
            f"ON c.id = i.contact_id WHERE i.id = '{first[0]}'",
        )
        assert len(got) == 1
        gets = [r for r in requests_to(sbx, "/contacts/")]
        assert [r["path"] for r in gets] == [f"/v3.1/contacts/{first[1]}"]
        assert not [r for r in requests_to(sbx, "/contacts") if r["path"] == "/v3.1/contacts"]
        # Many distinct contacts: a GET each would cost more than listing.
        sbx.app.requests.clear()
        everything = rows(
            conn,
            "SELECT i.id, c.name FROM sales_invoices i JOIN contacts c "
            "ON c.id = i.contact_id ORDER BY i.id",
        )
        assert len(everything) == len(invoices)
        assert len({cid for _, cid in invoices}) > plan.MAX_JOIN_LOOKUPS
        assert not requests_to(sbx, "/contacts/")


def test_crm_inner_table_gets_an_in_filter(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_crm", rate_limit_per_minute=0)
    with connect(sbx, "crm") as conn:
        got = rows(
            conn,
            "SELECT p.pers_personid, c.comp_name FROM person p JOIN company c "
            "ON c.comp_companyid = p.pers_companyid WHERE p.pers_personid <= 3 "
            "ORDER BY 1",
        )
        people = rows(
            conn,
            "SELECT pers_personid, pers_companyid FROM person WHERE pers_personid <= 3 ORDER BY 1",
        )
        names = dict(rows(conn, "SELECT comp_companyid, comp_name FROM company"))
        assert got == [(pid, names[cid]) for pid, cid in people if cid in names]
        assert any(
            "where=comp_companyid" in r["query"] and "in" in r["query"]
            for r in requests_to(sbx, "/Company")
        )


def test_the_filtered_side_of_an_inner_join_is_read_first(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_crm", rate_limit_per_minute=0)
    with connect(sbx, "crm-reverse") as conn:
        sector = rows(
            conn, "SELECT comp_sector FROM company WHERE comp_sector IS NOT NULL LIMIT 1"
        )[0][0]
        sbx.app.requests.clear()
        got = rows(
            conn,
            "SELECT p.pers_personid, c.comp_name FROM person p JOIN company c "
            f"ON c.comp_companyid = p.pers_companyid WHERE c.comp_sector = '{sector}' "
            "ORDER BY 1",
        )
        asked = [r["query"] for r in sbx.app.requests]
        assert asked[0].startswith("where=comp_sector"), "the filtered table first"
        assert "where=pers_companyid+in" in asked[1], "then the other side, narrowed"
        assert len(asked) == 2
        companies = dict(
            rows(
                conn,
                f"SELECT comp_companyid, comp_name FROM company WHERE comp_sector = '{sector}'",
            )
        )
        people = rows(conn, "SELECT pers_personid, pers_companyid FROM person ORDER BY 1")
        assert got == [(pid, companies[cid]) for pid, cid in people if cid in companies]


def test_more_join_values_than_one_filter_holds_are_read_in_chunks(start_sandbox: Any) -> None:
    """More outer values than one $filter holds (Sage 200 writes IN as ``id eq 1 or ...``,
    kept under max_filter_length): several filtered requests, each value in exactly one
    of them, not a listing of the whole inner table; the same rows."""
    sbx = start_sandbox("sage_200", rows=900, rate_limit_per_minute=0)
    with connect(sbx, "chunks") as conn:
        sql = (
            "SELECT o.id, c.name FROM sop_orders o JOIN customers c ON c.id = o.customer_id "
            "WHERE o.id <= 200 ORDER BY o.id"
        )
        sbx.app.requests.clear()
        got = rows(conn, sql)
        asked = [r["query"] for r in requests_to(sbx, "/customers")]
        orders = rows(conn, "SELECT id, customer_id FROM sop_orders WHERE id <= 200 ORDER BY id")
        names = dict(rows(conn, "SELECT id, name FROM customers"))
    assert got == [(oid, names[cid]) for oid, cid in orders if cid in names]
    assert 1 < len(asked) <= plan.MAX_JOIN_CHUNKS and all("%24filter=" in q for q in asked)
    from urllib.parse import parse_qs

    asked_ids = [
        int(v) for q in asked for v in re.findall(r"id eq (\d+)", parse_qs(q)["$filter"][0])
    ]
    assert sorted(asked_ids) == sorted({cid for _, cid in orders})
