"""SQL writes end to end against the sandboxes: INSERT, UPDATE, DELETE for every product.

Each test checks what reached the API (the sandbox's request log, bodies included),
what the statement answered per row, and what a later SELECT sees. After each test
every body sent is validated against Sage's published definitions
(test_write_conformance.assert_bodies_conform).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from conftest import write_connection

from sagesql import DataError, NotSupportedError, ProgrammingError
from sagesql.connector.client import SageClient
from sagesql.engine import dbapi, pipeline
from sagesql.engine.writes import WriteResult
from sagesql.sandbox.config import Faults


def connect(sbx: Any, **extra: str) -> SageClient:
    return write_connection(sbx, "writes", **extra)


def sent(sbx: Any, *methods: str) -> list[dict[str, Any]]:
    return [
        e
        for e in sbx.app.requests
        if not e["path"].startswith(("/_sandbox", "/oauth"))
        and (not methods or e["method"] in methods)
    ]


def run(conn: SageClient, sql: str, params: Any = None) -> tuple[WriteResult, list[dict[str, Any]]]:
    result = pipeline.run(conn, sql, params)
    assert isinstance(result, WriteResult)
    names = [c.name for c in result.columns]
    return result, [dict(zip(names, row, strict=True)) for row in result]


def column(conn: SageClient, sql: str) -> list[Any]:
    return [row[0] for row in pipeline.run(conn, sql)]


@pytest.fixture
def books(write_sandbox: Callable[..., Any]) -> Iterator[tuple[Any, SageClient]]:
    sbx = write_sandbox("sage_accounting")
    with connect(sbx) as conn:
        yield sbx, conn


# -- INSERT --------------------------------------------------------------------------------


def test_insert_values_sends_one_create_per_row_and_returns_the_records(books: Any) -> None:
    sbx, conn = books
    result, rows = run(
        conn,
        "INSERT INTO contacts (name, contact_types, reference, credit_limit, main_address_city)"
        " VALUES ('Acme Widgets', '[\"CUSTOMER\"]', 'ACW1', 1500.50, 'Leeds'),"
        " (?, '[\"VENDOR\"]', 'BOL1', NULL, NULL), ('Cogs & Co', '[\"CUSTOMER\", \"VENDOR\"]',"
        " 'COG1', 0, 'York') RETURNING id, displayed_as, balance, credit_limit",
        ["Bolt O'Brien"],
    )
    posts = sent(sbx, "POST")
    assert [p["path"] for p in posts] == ["/v3.1/contacts"] * 3
    assert posts[0]["body"] == {
        "contact": {
            "name": "Acme Widgets",
            "contact_type_ids": ["CUSTOMER"],
            "reference": "ACW1",
            "credit_limit": 1500.5,
            "main_address": {"city": "Leeds"},
        }
    }
    # NULL in a new row is no value: the member is not sent at all.
    assert posts[1]["body"] == {
        "contact": {"name": "Bolt O'Brien", "contact_type_ids": ["VENDOR"], "reference": "BOL1"}
    }
    assert [r["row"] for r in rows] == [1, 2, 3]
    assert [r["status"] for r in rows] == ["created"] * 3 and result.rowcount == 3
    assert all(r["error"] is None and r["key"] == r["id"] for r in rows)
    assert [r["displayed_as"] for r in rows] == [
        "Acme Widgets (ACW1)",
        "Bolt O'Brien (BOL1)",
        "Cogs & Co (COG1)",
    ]
    assert rows[0]["credit_limit"] == pytest.approx(1500.5) and rows[1]["credit_limit"] is None
    stored = pipeline.run(conn, "SELECT id, name FROM contacts WHERE reference IN ('ACW1', 'COG1')")
    assert {r[0]: r[1] for r in stored} == {
        rows[0]["id"]: "Acme Widgets",
        rows[2]["id"]: "Cogs & Co",
    }


def test_insert_document_with_json_lines_returns_the_server_totals(books: Any) -> None:
    sbx, conn = books
    contact = column(conn, "SELECT id FROM contacts LIMIT 1")[0]
    ledger = column(conn, "SELECT id FROM ledger_accounts LIMIT 1")[0]
    rate, percent = next(
        (r[0], r[1]) for r in pipeline.run(conn, "SELECT id, percentage FROM tax_rates") if r[1]
    )
    lines = [
        {"description": "Widget", "ledger_account_id": ledger, "quantity": 3, "unit_price": "10.00",
         "tax_rate_id": rate},
        # A line as SELECT returns it: links as objects, read-only members, are accepted.
        {"description": "Fitting", "ledger_account": {"id": ledger, "displayed_as": "Sales"},
         "quantity": 1, "unit_price": 5, "tax_rate": {"id": rate}, "displayed_as": "Fitting"},
    ]  # fmt: skip
    _, rows = run(
        conn,
        "INSERT INTO sales_invoices (contact_id, date, invoice_lines) VALUES (?, '2025-06-30', ?)"
        " RETURNING id, net_amount, tax_amount, total_amount, invoice_number",
        [contact, json.dumps(lines)],
    )
    (row,) = rows
    assert row["status"] == "created" and row["key"] == row["id"]
    cent = Decimal("0.01")
    tax = (30 * percent / 100).quantize(cent) + (5 * percent / 100).quantize(cent)
    assert (row["net_amount"], row["tax_amount"]) == (35, tax)
    assert row["total_amount"] == 35 + tax and row["invoice_number"].startswith("SI-")
    body_lines = sent(sbx, "POST")[0]["body"]["sales_invoice"]["invoice_lines"]
    assert body_lines[1] == {
        "description": "Fitting",
        "ledger_account_id": ledger,
        "quantity": 1,
        "unit_price": 5,
        "tax_rate_id": rate,
    }
    # The lines are there to read back through the line table.
    read = pipeline.run(
        conn, "SELECT description, quantity FROM sales_invoice_lines WHERE sales_invoice_id = ?",
        [row["id"]],
    )  # fmt: skip
    assert sorted(r[0] for r in read) == ["Fitting", "Widget"]


def test_one_row_with_an_unknown_link_fails_alone(books: Any) -> None:
    sbx, conn = books
    result, rows = run(
        conn,
        "INSERT INTO contacts (name, contact_types, default_sales_ledger_account_id) VALUES"
        " ('Good One', '[\"CUSTOMER\"]', NULL), ('Bad Link', '[\"CUSTOMER\"]', 'no-such-ledger'),"
        " ('Good Two', '[\"CUSTOMER\"]', NULL)",
    )
    assert [r["status"] for r in rows] == ["created", "failed", "created"]
    assert result.rowcount == 2 and result.failed == 1
    assert result.summary() == "2 created, 1 failed"
    bad = result.outcomes[1]
    assert rows[1]["key"] is None and bad.error is not None and bad.error.status == 422
    assert bad.error.errors == (
        ("contact.default_sales_ledger_account_id", "ledger account no-such-ledger does not exist"),
    )
    assert "contact.default_sales_ledger_account_id" in rows[1]["error"]
    assert len(sent(sbx, "POST")) == 3  # each row its own request, the bad one too
    names = column(
        conn, "SELECT name FROM contacts WHERE name IN ('Good One', 'Bad Link', 'Good Two')"
    )
    assert sorted(names) == ["Good One", "Good Two"]


def test_every_problem_is_listed_in_one_error_and_nothing_is_sent(books: Any) -> None:
    sbx, conn = books
    with pytest.raises(ProgrammingError) as info:
        pipeline.run(
            conn,
            "INSERT INTO contacts (name, balance, nmae, credit_limit, reference, credit_terms,"
            " contact_types) VALUES"
            " ('A', 1, 2, 'lots', 'R1', 'immediate_invoice', '[\"CUSTOMER\"]'),"
            " (NULL, 1, 2, 3, 'MUCH-TOO-LONG', 'soon', 'not json'),"
            " ('C', 1, 2)",
        )
    message = info.value.message
    for expected in (
        "nothing was sent",
        "column balance is read-only",
        "unknown column 'nmae' in contacts (did you mean name?)",
        "row 1: 'lots' is not a number (for credit_limit)",
        "row 2: name is required",
        "row 2: reference is longer than 10 characters (13)",
        "row 2: credit_terms must be one of",
        "row 2: contact_types is not valid JSON",
        "row 3: 3 values for 7 columns",
    ):
        assert expected in message, (expected, message)
    assert sent(sbx) == []
    # Values alone wrong: a DataError; a required column left out: named too.
    with pytest.raises(
        DataError, match=r"row 2: '2025-13-01' is not a date.*row 2: invoice_lines is required"
    ):
        pipeline.run(
            conn,
            "INSERT INTO sales_invoices (contact_id, date, invoice_lines) VALUES"
            ' (\'c\', \'2025-01-01\', \'[{"description": "x", "ledger_account_id": "l",'
            " \"unit_price\": 1}]'), ('c', '2025-13-01', '[]')",
        )
    with pytest.raises(ProgrammingError, match="column contact_types is required to create"):
        pipeline.run(conn, "INSERT INTO contacts (name) VALUES ('x')")
    with pytest.raises(DataError, match=r"invoice_lines\[0\]: unit_price required"):
        pipeline.run(
            conn,
            "INSERT INTO sales_invoices (contact_id, date, invoice_lines) VALUES ('c',"
            ' \'2025-01-01\', \'[{"description": "x", "ledger_account_id": "l"}]\')',
        )
    assert sent(sbx) == []


def test_insert_select_copies_rows_through_the_query_engine(books: Any) -> None:
    sbx, conn = books
    source = list(
        pipeline.run(conn, "SELECT name, contact_types FROM contacts ORDER BY name LIMIT 2")
    )
    sbx.app.requests.clear()
    result, rows = run(
        conn,
        "INSERT INTO contacts (name, contact_types) SELECT substr('Copy of ' || name, 1, 100),"
        " contact_types FROM (SELECT * FROM contacts ORDER BY name LIMIT 2) RETURNING name",
    )
    assert [r["name"] for r in rows] == [f"Copy of {name}" for name, _ in source]
    posts = sent(sbx, "POST")
    # contact_types comes back from SELECT as link objects; the body takes their ids.
    assert [p["body"]["contact"]["contact_type_ids"] for p in posts] == [
        [link["id"] for link in json.loads(types)] for _, types in source
    ]
    assert result.rowcount == 2 and sent(sbx, "GET")  # the SELECT ran first


# -- UPDATE and DELETE -----------------------------------------------------------------------


def test_update_by_key_goes_straight_to_put_with_only_the_columns_set(books: Any) -> None:
    sbx, conn = books
    first, second = column(conn, "SELECT id FROM contacts LIMIT 2")
    sbx.app.requests.clear()
    result, rows = run(
        conn,
        "UPDATE contacts SET notes = 'VIP', credit_limit = 2500 WHERE id IN (?, ?, 'missing')"
        " RETURNING notes, credit_limit",
        [first, second],
    )
    assert [(e["method"], e["path"]) for e in sent(sbx)] == [
        ("PUT", f"/v3.1/contacts/{first}"),
        ("PUT", f"/v3.1/contacts/{second}"),
        ("PUT", "/v3.1/contacts/missing"),
    ]  # no SELECT first: the keys are given
    assert all(e["body"] == {"contact": {"notes": "VIP", "credit_limit": 2500}} for e in sent(sbx))
    assert [(r["key"], r["status"], r["notes"]) for r in rows[:2]] == [
        (first, "updated", "VIP"),
        (second, "updated", "VIP"),
    ]
    assert rows[2]["status"] == "failed" and "404" in rows[2]["error"]
    assert result.rowcount == 2
    assert column(conn, f"SELECT notes FROM contacts WHERE id = '{first}'") == ["VIP"]


def test_update_by_other_predicate_finds_the_keys_with_a_select_first(books: Any) -> None:
    sbx, conn = books
    targets = dict(pipeline.run(conn, "SELECT id, credit_limit FROM contacts WHERE name LIKE 'A%'"))
    assert targets, "the demo data has contacts named A..."
    statement = (
        "UPDATE contacts SET credit_limit = coalesce(credit_limit, 0) + 100 WHERE name LIKE 'A%'"
    )
    plan = pipeline.explain(conn, statement)
    assert "rows found by a SELECT first" in plan and "GET /contacts?search=A" in plan
    assert "PUT /contacts/{key} per row found" in plan
    sbx.app.requests.clear()
    _, rows = run(conn, statement)
    log = sent(sbx)
    assert log[0]["method"] == "GET" and {e["method"] for e in log[1:]} == {"PUT"}
    assert {r["key"] for r in rows} == set(targets) and {r["status"] for r in rows} == {"updated"}
    for entry in log[1:]:
        key = entry["path"].rsplit("/", 1)[1]
        assert entry["body"] == {"contact": {"credit_limit": float((targets[key] or 0) + 100)}}
    after = dict(pipeline.run(conn, "SELECT id, credit_limit FROM contacts WHERE name LIKE 'A%'"))
    assert after == {k: (v or 0) + 100 for k, v in targets.items()}
    # A SET value that is wrong for some rows: every such row named, no PUT sent.
    sbx.app.requests.clear()
    with pytest.raises(DataError) as info:
        pipeline.run(conn, "UPDATE contacts SET credit_days = name WHERE name LIKE 'A%'")
    assert info.value.message.count("is not a whole number (for credit_days)") == len(targets)
    assert "row 1:" in info.value.message and sent(sbx, "PUT") == []


def test_delete_by_key_and_by_predicate(books: Any) -> None:
    sbx, conn = books
    run(conn, "INSERT INTO contacts (name, contact_types) VALUES ('Temp 1', '[\"VENDOR\"]'),"
        " ('Temp 2', '[\"VENDOR\"]'), ('Temp 3', '[\"VENDOR\"]')")  # fmt: skip
    one, two, three = column(conn, "SELECT id FROM contacts WHERE name LIKE 'Temp %' ORDER BY name")
    sbx.app.requests.clear()
    _, rows = run(conn, "DELETE FROM contacts WHERE id = ?", [one])
    assert [(e["method"], e["path"], e["status"]) for e in sent(sbx)] == [
        ("DELETE", f"/v3.1/contacts/{one}", 204)
    ]
    assert rows == [{"row": 1, "key": one, "status": "deleted", "error": None}]
    result, rows = run(conn, "DELETE FROM contacts WHERE name IN ('Temp 2', 'Temp 3')")
    assert sorted(r["key"] for r in rows) == sorted([two, three]) and result.rowcount == 2
    assert column(conn, "SELECT id FROM contacts WHERE name LIKE 'Temp %'") == []


def test_statements_the_table_does_not_support_fail_before_sending(books: Any) -> None:
    sbx, conn = books
    cases = {
        "UPDATE journals SET reference = 'x' WHERE id = 'a'": "ReissueJournal",
        "DELETE FROM ledger_accounts WHERE id = 'a'": "supports SELECT, INSERT, UPDATE",
        "INSERT INTO sales_invoice_lines (description) VALUES ('x')": "invoice_lines",
        "UPDATE transactions SET reference = 'x' WHERE id = 'a'": "transactions supports SELECT",
    }
    for sql, hint in cases.items():
        with pytest.raises(NotSupportedError) as info:
            pipeline.run(conn, sql)
        assert hint in str(info.value), (sql, str(info.value))
    with pytest.raises(NotSupportedError, match="INSERT OR"):
        pipeline.run(conn, "INSERT OR REPLACE INTO contacts (name) VALUES ('x')")
    with pytest.raises(ProgrammingError, match="needs its column list"):
        pipeline.run(conn, "INSERT INTO contacts VALUES ('x')")
    assert sent(sbx) == []


def test_delete_of_a_sales_invoice_deletes_drafts_and_points_to_void_for_others(books: Any) -> None:
    sbx, conn = books
    contact = column(conn, "SELECT id FROM contacts LIMIT 1")[0]
    ledger = column(conn, "SELECT id FROM ledger_accounts LIMIT 1")[0]
    line = {"description": "x", "ledger_account_id": ledger, "quantity": 1, "unit_price": 9}
    _, created = run(
        conn,
        "INSERT INTO sales_invoices (contact_id, date, status_id, invoice_lines) VALUES"
        " (?, '2025-07-01', 'DRAFT', ?) RETURNING status_id",
        [contact, json.dumps([line])],
    )
    draft = created[0]["key"]
    assert created[0]["status_id"] == "DRAFT"
    invoices = dict(pipeline.run(conn, "SELECT id, status_id FROM sales_invoices"))
    issued = next(k for k, s in invoices.items() if s not in ("DRAFT", "VOID"))
    sbx.app.requests.clear()
    with pytest.raises(NotSupportedError) as info:
        pipeline.run(conn, "DELETE FROM sales_invoices WHERE id IN (?, ?)", [draft, issued])
    text = str(info.value)
    assert "1 of the rows are not drafts" in text and "nothing was sent" in text
    assert f"EXEC VoidSalesInvoice @Id = '{issued}', @VoidReason = '...'" in text
    assert sent(sbx, "DELETE") == []  # the draft was not deleted either
    _, rows = run(conn, "DELETE FROM sales_invoices WHERE id IN (?, 'no-such-invoice')", [draft])
    assert [(r["key"], r["status"]) for r in rows] == [
        (draft, "deleted"),
        ("no-such-invoice", "failed"),
    ]
    assert column(conn, f"SELECT id FROM sales_invoices WHERE id = '{draft}'") == []
    # The way the error names works.
    voided = next(
        iter(pipeline.run(conn, f"EXEC VoidSalesInvoice @Id = '{issued}', @VoidReason = 'dup'"))
    )
    assert voided[0] in (True, 1)
    assert column(conn, f"SELECT status_id FROM sales_invoices WHERE id = '{issued}'") == ["VOID"]


def test_a_dropped_connection_on_a_create_is_reported_unknown_and_not_retried(books: Any) -> None:
    sbx, conn = books
    sbx.app.faults.reconfigure(Faults(drop=1.0))
    sbx.app.requests.clear()
    result, rows = run(
        conn, "INSERT INTO contacts (name, contact_types) VALUES ('Once', '[\"VENDOR\"]')"
    )
    assert [(e["method"], e["fault"]) for e in sent(sbx)] == [("POST", "drop")]  # sent once
    assert rows[0]["status"] == "unknown" and result.rowcount == 0 and result.failed == 1
    assert "not retried" in rows[0]["error"] and "check whether it took effect" in rows[0]["error"]
    # A server error answering a create is as uncertain; an update is retried (idempotent).
    sbx.app.faults.reconfigure(Faults(errors=1.0, error_statuses=(500,)))
    sbx.app.requests.clear()
    _, rows = run(
        conn, "INSERT INTO contacts (name, contact_types) VALUES ('Twice', '[\"VENDOR\"]')"
    )
    assert rows[0]["status"] == "unknown" and len(sent(sbx)) == 1
    sbx.app.faults.reconfigure(Faults())


def test_rows_keep_their_order_with_max_concurrency(write_sandbox: Callable[..., Any]) -> None:
    sbx = write_sandbox("sage_accounting", faults=Faults(latency_ms=5))
    with connect(sbx, MaxConcurrency="8") as conn:
        values = ", ".join(
            f"('Par {n:02d}', '[\"CUSTOMER\"]', {'NULL' if n % 7 else repr('bad-ledger')})"
            for n in range(24)
        )
        _, rows = run(
            conn,
            "INSERT INTO contacts (name, contact_types, default_sales_ledger_account_id) VALUES "
            + values
            + " RETURNING name",
        )
    assert [r["row"] for r in rows] == list(range(1, 25))
    assert [r["status"] == "failed" for r in rows] == [n % 7 == 0 for n in range(24)]
    assert [r["name"] for r in rows if r["status"] == "created"] == [
        f"Par {n:02d}" for n in range(24) if n % 7
    ]
    posts = sent(sbx, "POST")
    assert len(posts) == 24 and len({p["body"]["contact"]["name"] for p in posts}) == 24


def test_dbapi_cursor_runs_writes_with_rowcount_and_results(books: Any) -> None:
    _, conn = books
    with dbapi.Connection(conn) as db:
        cursor = db.cursor()
        cursor.execute(
            "INSERT INTO contacts (name, contact_types) VALUES (?, ?), (?, ?)",
            ["Db One", '["CUSTOMER"]', "Db Two", '["VENDOR"]'],
        )
        assert cursor.rowcount == 2
        assert [d[0] for d in cursor.description][:4] == ["row", "key", "status", "error"]
        assert [row[2] for row in cursor.fetchall()] == ["created", "created"]
        cursor.execute("UPDATE contacts SET notes = :n WHERE name LIKE 'Db %'", {"n": "via db-api"})
        assert cursor.rowcount == 2
        cursor.execute("SELECT count(*) FROM contacts WHERE notes = 'via db-api'")
        assert cursor.fetchone() == (2,)


# -- Sage 200 and CRM -------------------------------------------------------------------------


def test_sage200_insert_update_delete_and_insert_only_postings(
    write_sandbox: Callable[..., Any],
) -> None:
    sbx = write_sandbox("sage_200")
    with connect(sbx) as conn:
        _, rows = run(
            conn,
            "INSERT INTO customers (reference, name, credit_limit, account_opened) VALUES"
            " ('NEW001', 'New One', 1500.25, '2025-02-01'), ('NEW002', 'New Two', 5, NULL)"
            " RETURNING id, reference, balance",
        )
        assert [r["status"] for r in rows] == ["created", "created"]
        assert [r["reference"] for r in rows] == ["NEW001", "NEW002"]
        assert all(isinstance(r["id"], int) and r["key"] == str(r["id"]) for r in rows)
        post = sent(sbx, "POST")[0]["body"]
        assert post == {
            "reference": "NEW001",
            "name": "New One",
            "credit_limit": 1500.25,
            "account_opened": "2025-02-01T00:00:00.000Z",
        }  # bare JSON, no envelope; DATETIME as Sage 200 writes it
        _, changed = run(
            conn,
            "UPDATE customers SET credit_limit = credit_limit * 2 WHERE reference LIKE 'NEW%'"
            " RETURNING credit_limit",
        )
        assert sorted(r["credit_limit"] for r in changed) == [10, pytest.approx(3000.5)]
        assert {e["method"] for e in sent(sbx, "PUT")} == {"PUT"}
        _, gone = run(conn, "DELETE FROM customers WHERE id = ?", [rows[1]["id"]])
        assert gone[0]["status"] == "deleted"
        assert column(conn, "SELECT reference FROM customers WHERE reference LIKE 'NEW%'") == [
            "NEW001"
        ]
        # Insert-only: the answer is the posting's URN; a bad customer fails that row alone.
        customer = rows[0]["id"]
        result, posted = run(
            conn,
            "INSERT INTO sales_invoices (customer_id, transaction_date, reference,"
            " document_goods_value, document_tax_value) VALUES (?, '2025-03-01', 'INV-X', 100, 20),"
            " (999999, '2025-03-01', 'INV-Y', 1, 0)",
            [customer],
        )
        assert [r["status"] for r in posted] == ["created", "failed"] and result.rowcount == 1
        assert "customer_id" in posted[1]["error"] and "400" in posted[1]["error"]
        urn = posted[0]["key"]
        found = list(
            pipeline.run(
                conn,
                "SELECT urn, reference FROM sales_posted_transactions WHERE customer_id = ?",
                [customer],
            )
        )
        assert [(str(u), r) for u, r in found] == [(urn, "INV-X")]
        for sql, hint in {
            "SELECT * FROM sales_invoices": "only accepts new records",
            "UPDATE sales_invoices SET reference = 'x' WHERE reference = 'y'": "supports INSERT",
            "DELETE FROM sales_posted_transactions WHERE id = 1": "supports SELECT, UPDATE",
        }.items():
            before = len(sent(sbx))
            with pytest.raises(NotSupportedError, match=hint):
                pipeline.run(conn, sql)
            assert len(sent(sbx)) == before


def test_sage200_insert_only_returning_gives_what_sage_answers_or_refuses_before_sending(
    write_sandbox: Callable[..., Any],
) -> None:
    sbx = write_sandbox("sage_200")
    with connect(sbx) as conn:
        customer = column(conn, "SELECT id FROM customers ORDER BY id LIMIT 1")[0]
        insert = (
            "INSERT INTO sales_invoices (customer_id, reference, document_goods_value,"
            " document_tax_value) VALUES (?, 'INV-R', 100, 20) RETURNING "
        )
        # The definition's 200 answer is {"urn": ...}: RETURNING * is that, not NULLs.
        result, rows = run(conn, insert + "*", [customer])
        assert [c.name for c in result.columns][4:] == ["urn"]
        assert rows[0]["status"] == "created" and rows[0]["urn"] == rows[0]["key"]
        assert sent(sbx, "POST")[-1]["path"].endswith("/sales_invoices")
        _, rows = run(conn, insert + "urn", [customer])
        assert rows[0]["urn"] == rows[0]["key"]
        before = len(sent(sbx))
        with pytest.raises(ProgrammingError) as caught:
            run(conn, insert + "urn, customer_id, reference", [customer])
        text = str(caught.value)
        assert "nothing was sent" in text and "2 problems" in text
        assert (
            "RETURNING customer_id: Sage answers a POST to sales_invoices with {urn} only;"
            " read it back from sales_posted_transactions"
        ) in text
        assert len(sent(sbx)) == before


def test_crm_insert_update_delete(write_sandbox: Callable[..., Any]) -> None:
    sbx = write_sandbox("sage_crm")
    with connect(sbx) as conn:
        _, rows = run(
            conn,
            "INSERT INTO company (comp_name, comp_type, comp_website) VALUES"
            " ('Zeta Ltd', 'Customer', 'zeta.example'), ('Eta Ltd', 'Prospect', NULL)"
            " RETURNING comp_companyid, comp_name, comp_createddate",
        )
        assert [r["status"] for r in rows] == ["created", "created"]
        assert [r["comp_name"] for r in rows] == ["Zeta Ltd", "Eta Ltd"]
        assert rows[0]["key"] == str(rows[0]["comp_companyid"])
        assert sent(sbx, "POST")[1]["body"] == {"comp_name": "Eta Ltd", "comp_type": "Prospect"}
        key = rows[0]["comp_companyid"]
        _, changed = run(
            conn, "UPDATE company SET comp_status = 'Active' WHERE comp_companyid = ?", [key]
        )
        assert changed[0]["status"] == "updated"
        patch = sent(sbx, "PATCH")[0]
        assert patch["path"].endswith(f"/Company('{key}')") and patch["body"] == {
            "comp_status": "Active"
        }
        _, gone = run(conn, "DELETE FROM company WHERE comp_name IN ('Zeta Ltd', 'Eta Ltd')")
        assert sorted(r["status"] for r in gone) == ["deleted", "deleted"]
        assert column(conn, "SELECT comp_name FROM company WHERE comp_name LIKE '%eta Ltd'") == []


def test_update_or_delete_without_where_is_refused_when_every_row_is_not_allowed(
    books: Any,
) -> None:
    sbx, conn = books
    sbx.app.requests.clear()
    for sql in ("UPDATE contacts SET notes = 'all'", "delete from contacts"):
        kind = sql.split()[0].upper()
        with pytest.raises(ProgrammingError) as caught:
            pipeline.run(conn, sql, allow_all_rows=False)
        assert caught.value.message == f"{kind} without WHERE acts on every row of contacts"
        assert "--all" in str(caught.value.hint) and "allow_all_rows" in str(caught.value.hint)
    assert sent(sbx) == []  # refused before planning: nothing read, nothing written
    # A WHERE (even one no row matches), an INSERT, a SELECT and an EXEC are not concerned.
    result = pipeline.run(
        conn, "UPDATE contacts SET notes = 'x' WHERE name = 'nobody'", allow_all_rows=False
    )
    assert isinstance(result, WriteResult) and list(result) == []
    assert pipeline.run(conn, "SELECT count(*) FROM contacts", allow_all_rows=False).rows
    # Allowed by default (the DB-API's behaviour): every row is updated.
    _, rows = run(conn, "UPDATE contacts SET notes = 'every one'")
    assert rows and {r["status"] for r in rows} == {"updated"}
    assert column(conn, "SELECT DISTINCT notes FROM contacts") == ["every one"]


def test_explain_of_writes_sends_nothing(books: Any) -> None:
    sbx, conn = books
    plan = pipeline.explain(
        conn,
        "INSERT INTO contacts (name, contact_types) SELECT name, contact_types FROM contacts"
        " WHERE name LIKE 'B%'",
    )
    assert "rows from the SELECT" in plan and 'POST /contacts per row, body {"contact"' in plan
    plan = pipeline.explain(conn, "DELETE FROM contacts WHERE id = 'abc'")
    assert "DELETE /contacts/abc" in plan and "SELECT" not in plan
    assert sent(sbx) == []


def test_refused_credentials_stop_the_run_after_one_request(books: Any) -> None:
    sbx, _ = books
    with connect(sbx, InitiateOAuth="OFF", OAuthAccessToken="not-a-token") as conn:
        sbx.app.requests.clear()
        result, rows = run(
            conn,
            "INSERT INTO contacts (name, contact_types) VALUES ('A1', '[\"VENDOR\"]'),"
            " ('A2', '[\"VENDOR\"]'), ('A3', '[\"VENDOR\"]')",
        )
    assert [r["status"] for r in rows] == ["failed", "skipped", "skipped"]
    assert rows[1]["error"].startswith("not sent: POST /contacts") and result.rowcount == 0
    assert [(e["method"], e["status"]) for e in sent(sbx)] == [("POST", 401)]


def test_insert_through_a_view_supplies_its_type_and_writes_the_contact_person(
    books: Any,
) -> None:
    """customers/suppliers give contact_types; email/telephone go in main_contact_person."""
    sbx, conn = books
    _, rows = run(
        conn,
        "INSERT INTO customers (name, email, telephone) VALUES"
        " ('Ada Ltd', 'ada@example.com', '0113 496 0000') RETURNING id, email, telephone",
    )
    post = sent(sbx, "POST")[-1]
    assert post["body"] == {
        "contact": {
            "name": "Ada Ltd",
            "contact_type_ids": ["CUSTOMER"],
            "main_contact_person": {"email": "ada@example.com", "telephone": "0113 496 0000"},
        }
    }
    assert rows[0]["email"] == "ada@example.com" and rows[0]["telephone"] == "0113 496 0000"
    key = rows[0]["id"]
    assert column(conn, f"SELECT contact_types FROM customers WHERE id = '{key}'") != []
    # contact_types takes one id as well as a JSON array.
    run(conn, "INSERT INTO contacts (name, contact_types, mobile) VALUES ('Bo', 'VENDOR', '07')")
    assert sent(sbx, "POST")[-1]["body"]["contact"]["contact_type_ids"] == ["VENDOR"]
    run(conn, "INSERT INTO suppliers (name) VALUES ('Cy')")
    assert sent(sbx, "POST")[-1]["body"]["contact"]["contact_type_ids"] == ["VENDOR"]


def test_a_view_checks_its_own_condition_on_write(books: Any) -> None:
    """WITH CHECK OPTION: a VENDOR through customers is refused before anything is sent."""
    sbx, conn = books
    before = len(sent(sbx))
    for sql in (
        "INSERT INTO customers (name, contact_types) VALUES ('V', 'VENDOR')",
        "INSERT INTO customers (name, contact_types) VALUES ('V', '[\"VENDOR\"]')",
        "INSERT INTO suppliers (name, contact_types) VALUES ('C', '[\"CUSTOMER\"]')",
    ):
        with pytest.raises(DataError, match="view's condition") as info:
            pipeline.run(conn, sql)
        assert "write it through contacts" in info.value.message
    assert len(sent(sbx)) == before
    # Both types: still a customer, accepted.
    run(
        conn,
        "INSERT INTO customers (name, contact_types) VALUES ('B', '[\"CUSTOMER\", \"VENDOR\"]')",
    )
