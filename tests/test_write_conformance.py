"""Write bodies conform to Sage's published definitions (schemas/definitions).

Every JSON body a write test sends is read back from the sandbox's request log and
validated against the request schema its table's operation names (``body_schema``):
the Accounting Swagger's ``postContacts``/``putContacts``..., the Sage 200 OpenAPI
modules' component schemas. The check is strict where the definitions are loose:
no member the definition does not list (``additionalProperties: false`` everywhere),
none it marks ``readOnly``. An update is a partial body (only the columns set), so
its ``required`` lists are not enforced; a member may be null (clearing a value).
Sage CRM publishes no definition, so its bodies are not checked here.

``assert_bodies_conform(sbx)`` is what test_writes.py and test_activities.py call
after each test, so every body sent in those tests is checked too.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
from conftest import REFERENCE

from sagesql.connector.client import SageClient
from sagesql.connector.properties import validate
from sagesql.engine import pipeline
from sagesql.schemas.catalog import Table, default_catalog

WRITE_OPERATIONS = ("create", "update")


@cache
def _document(name: str) -> dict[str, Any]:
    return json.loads((REFERENCE / name).read_text(encoding="utf-8"))


def _sage200_module(table: Table) -> str:
    return f"sage200/sage200-extra-v1-{table.module.replace('_', '-')}.openapi3.json"


def _strict(node: Any, *, partial: bool) -> Any:
    """The schema with unknown and read-only members refused, nulls allowed."""
    if isinstance(node, list):
        return [_strict(n, partial=partial) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v, partial=partial) for k, v in node.items() if k != "properties"}
    if "properties" in node:
        properties = {
            name: {"anyOf": [_strict(schema, partial=partial), {"type": "null"}]}
            for name, schema in node["properties"].items()
            if not (isinstance(schema, dict) and schema.get("readOnly"))
        }
        out["properties"] = properties
        out["additionalProperties"] = False
        if partial:
            out.pop("required", None)
    return out


ACCOUNTING = (
    "sage-accounting-v3.1.openapi.json",
    "sage-accounting-v3.1-user-businesses.openapi.json",
)


@cache
def _strict_part(name: str, part: str, partial: bool) -> dict[str, Any]:
    return _strict(copy.deepcopy(_document(name)[part]), partial=partial)


@cache
def request_schema(product: str, table_name: str, operation: str) -> dict[str, Any]:
    """The strict JSON Schema of a table's create or update body."""
    table = default_catalog().table(table_name, product)
    op = table.operations[operation]
    assert op.body_schema, f"{table.name}.{operation} names no body schema"
    partial = operation == "update"
    if product == "sage_accounting":
        for name in ACCOUNTING:  # /businesses is in a definition of its own
            definitions = _strict_part(name, "definitions", partial)
            if op.body_schema in definitions:
                return {"$ref": f"#/definitions/{op.body_schema}", "definitions": definitions}
        raise KeyError(op.body_schema)
    components = _strict_part(_sage200_module(table), "components", partial)
    if op.body_schema not in components["schemas"]:
        raise KeyError(op.body_schema)
    return {"$ref": f"#/components/schemas/{op.body_schema}", "components": components}


@cache
def _routes(product: str) -> list[tuple[str, re.Pattern[str], str, str]]:
    """(method, path pattern, table, operation) of every create and update of a product."""
    catalog = default_catalog()
    out = []
    for summary in catalog.tables(product):
        table = catalog.table(summary.name, product)
        for name in WRITE_OPERATIONS:
            op = table.operations.get(name)
            if op is None or not op.body_schema:
                continue
            pattern = re.escape(op.path).replace(re.escape("{key}"), "[^/]+")
            out.append((op.method, re.compile(pattern + "$"), table.name, name))
    return out


def route_of(product: str, method: str, path: str) -> tuple[str, str] | None:
    for verb, pattern, table, operation in _routes(product):
        if verb == method and pattern.match(path):
            return table, operation
    return None


def problems_of(product: str, method: str, path: str, body: Any) -> list[str]:
    """Why a body does not conform ([] when it does)."""
    found = route_of(product, method, path)
    if found is None:
        return [f"{method} {path}: no create or update operation of {product} has this path"]
    schema = request_schema(product, *found)
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{method} {path} ({found[0]}.{found[1]}): {'/'.join(map(str, e.absolute_path))}: "
        f"{e.message[:200]}"
        for e in validator.iter_errors(body)
    ]


def logged_bodies(sbx: Any) -> list[tuple[str, str, Any]]:
    """(method, path relative to the API, body) of every write the sandbox was sent."""
    prefix = urlsplit(sbx.base_url).path.rstrip("/")
    out = []
    for entry in list(sbx.app.requests):
        if entry["method"] in ("POST", "PUT", "PATCH") and entry.get("body") is not None:
            path = entry["path"]
            if path.startswith("/oauth") or path.startswith("/_sandbox"):
                continue
            out.append((entry["method"], path[len(prefix) :] if path.startswith(prefix) else path,
                        entry["body"]))  # fmt: skip
    return out


def assert_bodies_conform(sbx: Any) -> int:
    """Every write body the sandbox received validates; returns how many were checked."""
    if sbx.product == "sage_crm":
        return 0  # no published definition
    problems: list[str] = []
    bodies = logged_bodies(sbx)
    for method, path, body in bodies:
        if sbx.product == "sage_accounting" and re.search(r"/(release|reissue)$", path):
            continue  # actions take no body schema
        problems += problems_of(sbx.product, method, path, body)
    assert not problems, "bodies that do not conform:\n" + "\n".join(problems)
    return len(bodies)


# -- the tests ---------------------------------------------------------------------------------


def test_the_checker_refuses_what_the_definitions_refuse() -> None:
    ok = {"contact": {"name": "A", "contact_type_ids": ["CUSTOMER"]}}
    assert problems_of("sage_accounting", "POST", "/contacts", ok) == []
    # The read form of the link array, a read-only member, a wrong type, no envelope.
    for bad in (
        {"contact": {"name": "A", "contact_types": [{"id": "CUSTOMER"}]}},
        {"contact": {"name": "A", "contact_type_ids": ["CUSTOMER"], "balance": 1}},
        {"contact": {"name": 5, "contact_type_ids": ["CUSTOMER"]}},
        {"name": "A", "contact_type_ids": ["CUSTOMER"]},
    ):
        assert problems_of("sage_accounting", "POST", "/contacts", bad), bad
    # A create must carry what the definition requires; a (partial) update need not.
    assert problems_of("sage_200", "POST", "/customers", {"name": "N"})
    assert problems_of("sage_200", "PUT", "/customers/3", {"name": "N"}) == []
    assert problems_of("sage_200", "PUT", "/customers/3", {"balance": 5})  # readOnly


def _connection(sbx: Any) -> SageClient:
    props = {
        **sbx.connection_properties(),
        "OAuthSettingsLocation": f"memory://conformance-{sbx.server.port}",
        "RateLimit": "0",
    }
    return SageClient(validate(props))


def _one(conn: SageClient, sql: str) -> Any:
    return next(iter(pipeline.run(conn, sql)))[0]


def test_accounting_statements_send_bodies_the_swagger_accepts(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_accounting", rows=10, rate_limit_per_minute=0)
    with _connection(sbx) as conn:
        ledger = _one(conn, "SELECT id FROM ledger_accounts LIMIT 1")
        rate = _one(conn, "SELECT id FROM tax_rates LIMIT 1")
        country = _one(conn, "SELECT id FROM countries LIMIT 1")
        created = list(
            pipeline.run(
                conn,
                "INSERT INTO contacts (name, contact_types, reference, credit_limit, credit_days,"
                " main_address_address_line_1, main_address_city, main_address_country_id,"
                " tax_treatment_home_tax, credit_terms) VALUES"
                " (?, ?, 'CF1', 250.5, 30, '1 High St', 'Leeds', ?, TRUE, 'date_from_invoice')",
                ["Conform Ltd", '["CUSTOMER", "VENDOR"]', country],
            )
        )
        key = created[0][1]
        lines = json.dumps(
            [
                {"description": "Widget", "ledger_account_id": ledger, "quantity": 2,
                 "unit_price": "12.50", "tax_rate_id": rate},
                # The read form of a line (links as objects) is turned into the write form.
                {"description": "Service", "ledger_account": {"id": ledger, "displayed_as": "x"},
                 "quantity": 1, "unit_price": 100, "tax_rate": {"id": rate}},
            ]
        )  # fmt: skip
        list(
            pipeline.run(
                conn,
                "INSERT INTO sales_invoices (contact_id, date, reference, invoice_lines)"
                " VALUES (?, '2025-05-01', 'PO-1', ?)",
                [key, lines],
            )
        )
        list(
            pipeline.run(
                conn,
                "UPDATE contacts SET notes = 'checked', credit_limit = NULL,"
                " main_address_city = 'York' WHERE id = ?",
                [key],
            )
        )
        list(pipeline.run(conn, "INSERT INTO ledger_accounts (ledger_account_type_id,"
                         " included_in_chart, name, display_name, nominal_code)"
                         " VALUES ('SALES', TRUE, 'Conformance', 'Conf', 4999)"))  # fmt: skip
    assert [m for m, _, _ in logged_bodies(sbx)] == ["POST", "POST", "PUT", "POST"]
    assert assert_bodies_conform(sbx) == 4


def test_sage200_statements_send_bodies_the_openapi_accepts(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_200", rows=10, rate_limit_per_minute=0)
    with _connection(sbx) as conn:
        customer = _one(conn, "SELECT id FROM customers LIMIT 1")
        product = _one(conn, "SELECT id FROM products LIMIT 1")
        list(
            pipeline.run(
                conn,
                "INSERT INTO customers (reference, name, credit_limit, on_hold, account_opened,"
                " main_address_city) VALUES ('CONF01', 'Conform', 1000, FALSE, '2025-01-02',"
                " 'Leeds')",
            )
        )
        list(
            pipeline.run(
                conn, "UPDATE customers SET credit_limit = 5.25 WHERE reference = 'CONF01'"
            )
        )
        list(
            pipeline.run(
                conn,
                "INSERT INTO sales_invoices (customer_id, transaction_date, reference,"
                " document_goods_value, document_tax_value) VALUES (?, '2025-03-01', 'C-1', 100,"
                " 20)",
                [customer],
            )
        )
        warehouse = _one(conn, "SELECT id FROM warehouses LIMIT 1")
        line = {
            "line_type": "EnumLineTypeStandard",
            "product_id": product,
            "code": "P1",
            "description": "Widget",
            "warehouse_id": warehouse,
            "line_quantity": 3,
        }
        lines = json.dumps([line])  # fmt: skip
        list(
            pipeline.run(
                conn,
                "INSERT INTO sop_orders (customer_id, document_no, document_date, lines)"
                " VALUES (?, 'SO-CONF', ?, ?)",
                [customer, "2025-04-01", lines],
            )
        )
    assert [m for m, _, _ in logged_bodies(sbx)] == ["POST", "PUT", "POST", "POST"]
    assert assert_bodies_conform(sbx) == 4


@pytest.mark.parametrize("product", ["sage_accounting", "sage_200"])
def test_every_create_body_schema_named_by_the_tables_exists(product: str) -> None:
    """Each create/update of the catalog names a schema the definitions have."""
    missing = []
    for _, _, table, operation in _routes(product):
        try:
            request_schema(product, table, operation)
        except (KeyError, FileNotFoundError, AssertionError) as exc:
            missing.append(f"{table}.{operation}: {exc}")
    assert not missing, missing


def test_reference_folder_is_where_the_tests_read_it() -> None:
    assert Path(REFERENCE, "sage-accounting-v3.1.openapi.json").is_file()
