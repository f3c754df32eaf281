"""The activity API (sagesql.activities) against the sandboxes: Query, Create, Update,
Delete, Execute, their JSON Schemas, and several threads sharing one connection."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import pytest
from conftest import write_connection

import sagesql
from sagesql import InterfaceError, NotSupportedError, ProgrammingError, UnknownColumnError
from sagesql.activities import (
    ActivityResult,
    Create,
    Delete,
    Execute,
    Query,
    Update,
    input_schema,
    output_schema,
)
from sagesql.activities.clients import client_of, connected
from sagesql.activities.jsontext import to_json
from sagesql.activities.schema import procedure_schemas
from sagesql.connector.client import SageClient
from sagesql.engine import validation
from sagesql.sandbox.config import Faults
from sagesql.schemas.catalog import default_catalog


def connect(sbx: Any, **extra: str) -> SageClient:
    return write_connection(sbx, "activities", **extra)


@pytest.fixture
def books(write_sandbox: Callable[..., Any]) -> Iterator[tuple[Any, SageClient]]:
    sbx = write_sandbox("sage_accounting")
    with connect(sbx) as conn:
        yield sbx, conn


def dbapi_connect(sbx: Any) -> sagesql.engine.dbapi.Connection:
    """``sagesql.connect()`` to the sandbox, with write_connection's settings."""
    return sagesql.connect(
        **sbx.connection_properties(),
        OAuthSettingsLocation=f"memory://dbapi-{sbx.server.port}",
        RateLimit="0",
        MaxConcurrency="1",
    )


def writes(sbx: Any) -> list[dict[str, Any]]:
    return [e for e in sbx.app.requests if e["method"] in ("POST", "PUT", "PATCH", "DELETE")]


def as_json(value: Any) -> Any:
    """A result (or a record) as a tool receives it: through the CLI's JSON."""
    return json.loads(to_json(value.to_dict() if isinstance(value, ActivityResult) else value))


# -- Query --------------------------------------------------------------------------------


def test_query_builds_its_statement_from_parts_without_pasting_text(books: Any) -> None:
    _, conn = books
    query = Query(
        conn,
        table="contacts",
        fields=["id", "name"],
        conditions=[("name", "LIKE", "A%"), ("reference", "IS NOT NULL"), ("name", "!=", "x'y")],
        order_by=["-name"],
        limit=3,
        offset=1,
    )
    assert query.sql() == (
        "SELECT id, name FROM contacts WHERE name LIKE 'A%' AND NOT reference IS NULL AND"
        " name <> 'x''y' ORDER BY name DESC LIMIT 3 OFFSET 1"
    )
    everyone = [r["name"] for r in Query(conn, "SELECT name FROM contacts WHERE name LIKE 'A%'")]
    expected = sorted(everyone, reverse=True)[1:4]
    assert expected and [r["name"] for r in query] == expected
    assert all(set(r) == {"id", "name"} for r in query)
    # A value that looks like SQL stays a value.
    hostile = Query(conn, table="contacts", conditions={"name": "x' OR '1'='1"})
    assert "'x'' OR ''1''=''1'" in hostile.sql() and list(hostile) == []
    # A name that is not a column is refused by the engine, with close matches.
    with pytest.raises(UnknownColumnError, match="nmae"):
        list(Query(conn, table="contacts", fields=["nmae"]))
    with pytest.raises(ProgrammingError, match="unknown operator"):
        Query(conn, table="contacts", conditions=[("name", "LIKES", "A")])
    with pytest.raises(ProgrammingError, match="Query runs SELECT"):
        Query(conn, "DELETE FROM contacts WHERE id = 'a'")


def test_query_statement_with_parameters_yields_typed_records(books: Any) -> None:
    _, conn = books
    records = list(
        Query(
            conn,
            "SELECT id, balance, is_active FROM contacts WHERE name LIKE :p ORDER BY id LIMIT 2",
            params={"p": "%"},
        )
    )
    assert len(records) == 2
    from decimal import Decimal

    assert all(
        isinstance(r["balance"], Decimal) and isinstance(r["is_active"], bool) for r in records
    )
    inlist = Query(conn, table="contacts", fields=["id"], conditions={"id": [records[0]["id"]]})
    assert [r["id"] for r in inlist] == [records[0]["id"]]


# -- Create, Update, Delete ----------------------------------------------------------------


def test_create_answers_each_record_and_continues_past_failures(books: Any) -> None:
    sbx, conn = books
    records = [
        {"name": "Act One", "contact_types": ["CUSTOMER"], "credit_limit": "250.75"},
        {"name": "No Types"},
        {"name": "Bad Link", "contact_types": ["CUSTOMER"], "default_sales_ledger_account_id": "x"},
        {"name": "Act Two", "contact_types": '["VENDOR"]', "bogus": 1},
        "not a record",
        {"name": "Act Three", "contact_types": [{"id": "VENDOR", "displayed_as": "Supplier"}]},
    ]
    results = Create(conn, "contacts", max_concurrency=3)(records)
    assert [r.index for r in results] == list(range(6))
    assert [r.status for r in results] == [
        "created", "failed", "failed", "failed", "failed", "created",
    ]  # fmt: skip
    first = results[0]
    assert first.key == first.record["id"] and first.record["name"] == "Act One"
    assert str(first.record["credit_limit"]) in ("250.75", "250.75000")
    assert results[1].error.errors == (
        ("contact_types", "column contact_types is required to create a record"),
    )
    assert results[1].error.status is None  # never sent
    assert results[2].error.status == 422
    assert results[2].error.errors == (
        ("contact.default_sales_ledger_account_id", "ledger account x does not exist"),
    )
    assert results[3].error.errors == (("bogus", "unknown column 'bogus' in contacts"),)
    posts = [e for e in writes(sbx) if e["method"] == "POST"]
    assert len(posts) == 3  # the records that passed the checks, each once
    assert {tuple(p["body"]["contact"]["contact_type_ids"]) for p in posts} == {
        ("CUSTOMER",),
        ("VENDOR",),
    }
    data = as_json(first)
    assert set(data) == {"index", "status", "key", "record", "error"}
    jsonschema.validate(
        data, output_schema(default_catalog().table("contacts", "sage_accounting"), "create")
    )
    jsonschema.validate(
        as_json(results[2]),
        output_schema(default_catalog().table("contacts", "sage_accounting"), "create"),
    )


def test_stop_on_first_error_skips_the_rest_without_sending(books: Any) -> None:
    sbx, conn = books
    records = [
        {"name": "S1", "contact_types": ["CUSTOMER"]},
        {"name": "S2", "contact_types": ["CUSTOMER"], "default_sales_ledger_account_id": "x"},
        {"name": "S3", "contact_types": ["CUSTOMER"]},
        {"name": "S4", "contact_types": ["CUSTOMER"]},
    ]
    sbx.app.requests.clear()
    results = Create(conn, "contacts", stop_on_first_error=True, max_concurrency=1)(records)
    assert [r.status for r in results] == ["created", "failed", "skipped", "skipped"]
    assert results[2].error.message.startswith("not sent: POST /contacts")
    assert len(writes(sbx)) == 2


def test_update_sends_only_the_given_columns_and_needs_the_key(books: Any) -> None:
    sbx, conn = books
    key = next(iter(Query(conn, table="contacts", fields=["id"], limit=1)))["id"]
    sbx.app.requests.clear()
    results = Update(conn, "contacts", max_concurrency=1)(
        [
            {"id": key, "notes": "updated by activity", "credit_days": 14},
            {"notes": "no key"},
            {"id": key},
            {"id": "missing", "notes": "x"},
            {"id": key, "balance": 10},
        ]
    )
    assert [r.status for r in results] == ["updated", "failed", "failed", "failed", "failed"]
    assert results[0].record["notes"] == "updated by activity" and results[0].key == key
    assert results[1].error.errors == (("id", "the key column id is missing"),)
    assert "nothing to update" in results[2].error.message
    assert results[3].error.status == 404
    assert results[4].error.errors == (("balance", "column balance is read-only"),)
    puts = [e for e in writes(sbx) if e["method"] == "PUT"]
    assert [p["body"] for p in puts] == [
        {"contact": {"notes": "updated by activity", "credit_days": 14}},
        {"contact": {"notes": "x"}},
    ]


def test_delete_takes_keys_and_voids_sales_documents_only_with_a_reason(books: Any) -> None:
    sbx, conn = books
    made = Create(conn, "contacts")(
        [{"name": f"Del {n}", "contact_types": ["VENDOR"]} for n in range(2)]
    )
    results = Delete(conn, "contacts")([made[0].key, {"id": made[1].key, "name": "ignored"}])
    assert [r.status for r in results] == ["deleted", "deleted"]
    assert list(Query(conn, table="contacts", conditions={"name": ["Del 0", "Del 1"]})) == []
    invoices = {
        r["id"]: r["status_id"]
        for r in Query(conn, table="sales_invoices", fields=["id", "status_id"])
    }
    issued = [k for k, s in invoices.items() if s not in ("DRAFT", "VOID")][:2]
    contact = made[0].record["id"]
    ledger = next(iter(Query(conn, table="ledger_accounts", fields=["id"], limit=1)))["id"]
    draft = Create(conn, "sales_invoices")(
        [
            {
                "contact_id": next(iter(Query(conn, table="contacts", fields=["id"], limit=1)))[
                    "id"
                ],
                "date": "2025-08-01",
                "status_id": "DRAFT",
                "invoice_lines": [
                    {"description": "d", "ledger_account_id": ledger, "unit_price": 1}
                ],
            }
        ]
    )[0]
    assert draft.status == "created", draft.error
    del contact
    sbx.app.requests.clear()
    results = Delete(conn, "sales_invoices")(
        [
            {"id": issued[0]},
            {"id": issued[1], "void_reason": "raised twice"},
            {"id": draft.key},
        ]
    )
    assert [r.status for r in results] == ["failed", "voided", "deleted"]
    assert "not a draft" in results[0].error.message and "VoidSalesInvoice" in results[0].error.hint
    assert (
        results[1].record["status_id"] == "VOID"
        and results[1].record["void_reason"] == "raised twice"
    )
    deletes = [e for e in writes(sbx) if e["method"] == "DELETE"]
    # Sage's definition: the reason is the void_reason query parameter, with no body.
    assert [(d["path"].rsplit("/", 1)[1], d["query"], d["body"]) for d in deletes] == [
        (issued[1], "void_reason=raised+twice", None),
        (draft.key, "", None),
    ]
    with pytest.raises(NotSupportedError, match="ledger_accounts does not support DELETE"):
        Delete(conn, "ledger_accounts")
    bad = Delete(conn, "contacts")([{"id": made[0].key, "void_reason": "x"}])[0]
    assert bad.status == "failed" and bad.error.errors[0][0] == "void_reason"


def test_execute_runs_a_procedure_per_record(books: Any) -> None:
    _, conn = books
    ledger = next(iter(Query(conn, table="ledger_accounts", fields=["id"], limit=1)))["id"]
    contact = next(iter(Query(conn, table="contacts", fields=["id"], limit=1)))["id"]
    draft = Create(conn, "sales_invoices")(
        [
            {
                "contact_id": contact,
                "date": "2025-08-02",
                "status_id": "DRAFT",
                "invoice_lines": [
                    {"description": "e", "ledger_account_id": ledger, "unit_price": 2}
                ],
            }
        ]
    )[0].key
    results = Execute(conn, "ReleaseSalesInvoice")(
        [
            {"Id": draft},
            {"@id": "no-such-invoice"},
            {"Id": draft, "Bogus": 1},
            ["not", "a", "record"],
        ]
    )
    assert [r.status for r in results] == ["ok", "failed", "failed", "failed"]
    assert results[0].record == {"id": draft, "displayed_as": results[0].record["displayed_as"]}
    assert results[1].error.status == 404
    assert "unknown parameter @Bogus" in results[2].error.message
    status = next(
        iter(Query(conn, table="sales_invoices", fields=["status_id"], conditions={"id": draft}))
    )
    assert status["status_id"] == "UNPAID"
    assert (
        "Id"
        in procedure_schemas(Execute(conn, "ReleaseSalesInvoice").procedure)["input"]["required"]
    )


def test_a_dropped_create_is_unknown_and_sent_once(books: Any) -> None:
    sbx, conn = books
    sbx.app.faults.reconfigure(Faults(drop=1.0))
    sbx.app.requests.clear()
    (result,) = Create(conn, "contacts")([{"name": "Drop", "contact_types": ["CUSTOMER"]}])
    assert result.status == "unknown" and "not retried" in result.error.message
    assert [e["method"] for e in sbx.app.requests] == ["POST"]
    sbx.app.faults.reconfigure(Faults())


# -- the DB-API connection -----------------------------------------------------------------


def test_query_takes_the_dbapi_connection(write_sandbox: Callable[..., Any]) -> None:
    sbx = write_sandbox("sage_accounting")
    with dbapi_connect(sbx) as conn:
        query = Query(conn, table="contacts", fields=["id", "name"], order_by=["id"], limit=2)
        assert query.connection is conn.client
        rows = list(query)
        assert len(rows) == 2 and all(set(r) == {"id", "name"} for r in rows)
        again = Query(conn, "SELECT id FROM contacts WHERE id = ?", params=[rows[0]["id"]])
        assert list(again) == [{"id": rows[0]["id"]}]
        cursor = conn.cursor()  # the connection stays usable as a DB-API connection
        cursor.execute("SELECT name FROM contacts WHERE id = ?", [rows[1]["id"]])
        assert cursor.fetchall() == [(rows[1]["name"],)]


def test_create_update_delete_take_the_dbapi_connection(
    write_sandbox: Callable[..., Any],
) -> None:
    sbx = write_sandbox("sage_accounting")
    with dbapi_connect(sbx) as conn:
        create = Create(conn, "contacts")
        assert create.connection is conn.client
        (made,) = create([{"name": "Via connect", "contact_types": ["CUSTOMER"]}])
        assert made.status == "created" and made.record["name"] == "Via connect"
        (changed,) = Update(conn, "contacts")([{"id": made.key, "notes": "through the DB-API"}])
        assert changed.status == "updated" and changed.record["notes"] == "through the DB-API"
        (gone,) = Delete(conn, "contacts")([made.key])
        assert gone.status == "deleted"
        cursor = conn.cursor()
        cursor.execute("SELECT id FROM contacts WHERE name = 'Via connect'")
        assert cursor.fetchall() == []
    assert [e["method"] for e in writes(sbx)] == ["POST", "PUT", "DELETE"]


def test_execute_takes_the_dbapi_connection(write_sandbox: Callable[..., Any]) -> None:
    sbx = write_sandbox("sage_accounting")
    with dbapi_connect(sbx) as conn:
        ledger = next(iter(Query(conn, table="ledger_accounts", fields=["id"], limit=1)))["id"]
        contact = next(iter(Query(conn, table="contacts", fields=["id"], limit=1)))["id"]
        (draft,) = Create(conn, "sales_invoices")(
            [
                {
                    "contact_id": contact,
                    "date": "2025-08-03",
                    "status_id": "DRAFT",
                    "invoice_lines": [
                        {"description": "f", "ledger_account_id": ledger, "unit_price": 3}
                    ],
                }
            ]
        )
        assert draft.status == "created", draft.error
        release = Execute(conn, "ReleaseSalesInvoice")
        assert release.connection is conn.client
        (released,) = release([{"Id": draft.key}])
        assert released.status == "ok" and released.record["id"] == draft.key
        cursor = conn.cursor()
        cursor.execute("SELECT status_id FROM sales_invoices WHERE id = ?", [draft.key])
        assert cursor.fetchall() == [("UNPAID",)]


def test_a_closed_dbapi_connection_is_refused_and_a_client_passes_as_it_is(
    write_sandbox: Callable[..., Any],
) -> None:
    sbx = write_sandbox("sage_accounting")
    conn = dbapi_connect(sbx)
    client = conn.client
    assert client_of(conn) is client and client_of(client) is client
    conn.close()
    for make in (
        lambda: Query(conn, table="contacts"),
        lambda: Create(conn, "contacts"),
        lambda: Update(conn, "contacts"),
        lambda: Delete(conn, "contacts"),
        lambda: Execute(conn, "ReleaseSalesInvoice"),
    ):
        with pytest.raises(InterfaceError, match="the connection is closed"):
            make()


def test_connected_opens_a_client_of_a_sandboxs_client_properties(
    start_sandbox: Callable[..., Any],
) -> None:
    sbx = start_sandbox("sage_200", rows=5)
    with connected(verbose=0, **sbx.client_properties()) as client:
        assert client.product.id == "sage_200" and client.settings.url == sbx.base_url
        assert client.settings.oauth_settings_location == f"memory://sandbox-{sbx.server.port}"
        assert len(list(Query(client, "SELECT name FROM customers LIMIT 2"))) == 2
    assert client.closed
    crm = "Product=SageCRM;URL=http://127.0.0.1:9;User=me;Password=pw"
    with connected(crm, RateLimit="7") as client:
        assert client.product.id == "sage_crm" and client.settings.user == "me"
        assert client.settings.rate_limit == 7
    with connected(crm, product="Sage200", InitiateOAuth="OFF", OAuthAccessToken="t") as client:
        assert client.product.id == "sage_200"  # product overrides the connection string's


def test_threads_share_one_connection_safely(write_sandbox: Callable[..., Any]) -> None:
    sbx = write_sandbox("sage_accounting", faults=Faults(latency_ms=3))
    with connect(sbx, MaxConcurrency="3") as conn:
        outcomes: dict[int, list[ActivityResult]] = {}

        def work(thread: int) -> None:
            records = [
                {"name": f"T{thread}-{n:02d}", "contact_types": ["CUSTOMER"]} for n in range(8)
            ]
            outcomes[thread] = Create(conn, "contacts")(records)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(outcomes) == [0, 1, 2, 3]
    for thread, results in outcomes.items():
        assert [r.status for r in results] == ["created"] * 8
        assert [r.record["name"] for r in results] == [f"T{thread}-{n:02d}" for n in range(8)]
    keys = {r.key for results in outcomes.values() for r in results}
    assert len(keys) == 32
    assert len([e for e in sbx.app.requests if e["method"] == "POST"]) == 32


def test_sage200_and_crm_targets(write_sandbox: Callable[..., Any]) -> None:
    s200 = write_sandbox("sage_200")
    with connect(s200) as conn:
        made = Create(conn, "customers")(
            [{"reference": "ACT1", "name": "Act Customer"}, {"reference": "ACT1", "name": "Dup"}]
        )
        assert [r.status for r in made] == ["created", "failed"]
        assert isinstance(made[0].key, int) and made[0].record["reference"] == "ACT1"
        assert "DuplicateValue" in made[1].error.message or made[1].error.status == 400
        changed = Update(conn, "customers")([{"id": str(made[0].key), "credit_limit": 99.5}])
        assert changed[0].status == "updated" and float(changed[0].record["credit_limit"]) == 99.5
        posted = Create(conn, "sales_receipts")(
            [{"customer_id": made[0].key, "transaction_date": "2025-03-03", "cheque_value": 10,
              "bank_id": next(iter(Query(conn, table="banks", fields=["id"], limit=1)))["id"]}]
        )  # fmt: skip
        assert posted[0].status == "created" and posted[0].key, posted[0].error
        assert Delete(conn, "customers")([made[0].key])[0].status == "deleted"
    crm = write_sandbox("sage_crm")
    with connect(crm) as conn:
        made = Create(conn, "person")([{"pers_firstname": "Ada", "pers_lastname": "Lovelace"}])
        key = made[0].key
        assert made[0].status == "created" and made[0].record["pers_firstname"] == "Ada"
        assert Update(conn, "person")([{"pers_personid": key, "pers_lastname": "King"}])[0].ok
        assert Delete(conn, "person")([{"pers_personid": key}])[0].status == "deleted"
        assert [e["method"] for e in writes(crm)] == ["POST", "PATCH", "DELETE"]


# -- schemas -----------------------------------------------------------------------------


def test_input_schemas_accept_what_the_activities_accept(books: Any) -> None:
    _, conn = books
    catalog = default_catalog()
    contacts = catalog.table("contacts", "sage_accounting")
    create = input_schema(contacts, "create", catalog)
    assert set(create["required"]) == {"name", "contact_types"}
    assert "balance" not in create["properties"] and "id" not in create["properties"]
    good = {"name": "Schema Co", "contact_types": ["CUSTOMER"], "credit_limit": 5}
    jsonschema.validate(good, create)
    for bad in ({"name": "x"}, {**good, "balance": 1}, {**good, "name": "x" * 101}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, create)
    assert Create(conn, contacts)([good])[0].status == "created"
    invoice = input_schema(catalog.table("sales_invoices", "sage_accounting"), "create", catalog)
    lines = invoice["properties"]["invoice_lines"]["items"]["properties"]
    assert {"ledger_account_id", "unit_price", "quantity"} <= set(
        lines
    ) and "ledger_account" not in lines
    update = input_schema(contacts, "update")
    assert update["required"] == ["id"] and "readOnly" not in update["properties"]["id"]
    delete = input_schema(catalog.table("sales_invoices", "sage_accounting"), "delete")
    assert "void_reason" in delete["properties"]
    query = input_schema(contacts, "query")
    jsonschema.validate(
        {"fields": ["id", "name"], "conditions": [["name", "LIKE", "A%"]], "limit": 5}, query
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"fields": ["nope"]}, query)
    rows = list(Query(conn, table="contacts", limit=2))
    for row in rows:
        jsonschema.validate(as_json(row), output_schema(contacts, "query"))
    with pytest.raises(NotSupportedError):
        input_schema(catalog.table("journals", "sage_accounting"), "update")


def test_every_writable_table_has_schemas() -> None:
    """Every table that takes writes gets schemas; a sample is checked against the
    JSON Schema meta-schema (checking all 580 takes seconds)."""
    catalog = default_catalog()
    built: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for product in ("sage_accounting", "sage_200", "sage_crm"):
        for summary in catalog.tables(product):
            table = catalog.table(summary.name, product)
            for activity in ("create", "update", "delete"):
                if activity in table.operations:
                    pair = [input_schema(table, activity, catalog), output_schema(table, activity)]
                    built.setdefault((product, activity), []).extend(pair)
    assert sum(len(v) for v in built.values()) > 300
    for schemas in built.values():
        for schema in schemas[:2]:
            jsonschema.Draft202012Validator.check_schema(schema)


def test_create_schemas_state_the_requirements_validation_enforces() -> None:
    """Every table that creates: the schema's required members, and a new line's, are
    what validation requires; a record missing one is refused by both."""
    catalog = default_catalog()
    checked_lines = 0
    for summary in catalog.tables():
        table = catalog.table(summary.name, summary.product)
        if "create" not in table.operations:
            continue
        schema = input_schema(table, "create", catalog)
        assert set(schema["required"]) == {c.name for c in validation.required(table)}, table
        for column in table.columns:
            child = validation.line_table(table, column, catalog)
            if child is None or column.name not in schema["properties"]:
                continue
            items = schema["properties"][column.name]["items"]
            needed = validation.line_required(child)
            if not needed:
                continue
            checked_lines += 1
            types = {c.body_path[0]: c.type for c in child.columns if len(c.body_path) == 1}
            sample = {"DECIMAL": 1, "INTEGER": 1, "BOOLEAN": True, "DATE": "2025-01-01"}
            line = {m: sample.get(types[m], "x") for m in needed}
            jsonschema.validate([line], {**schema["properties"][column.name], "type": "array"})
            validation._lines(child, column, [line])
            for member in needed:
                short = {k: v for k, v in line.items() if k != member}
                with pytest.raises(jsonschema.ValidationError):
                    jsonschema.validate([short], {"type": "array", "items": items})
                with pytest.raises(ValueError, match=f"{member}.* required for a new line"):
                    validation._lines(child, column, [short])
    assert checked_lines >= 5  # invoices, credit notes, quotes, journals...
