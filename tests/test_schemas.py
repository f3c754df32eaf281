"""The table definitions: valid against the meta-schema, complete, and the generator's output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = REPO / "schemas"
INDEX = json.loads((SCHEMAS / "index.json").read_text(encoding="utf-8"))
TABLE_FILES = [entry["file"] for entry in INDEX["tables"]]


def _load(rel: str) -> Any:
    return json.loads((SCHEMAS / rel).read_text(encoding="utf-8"))


def _validator(name: str) -> Draft202012Validator:
    registry: Registry = Registry()
    for meta in ("table.schema.json", "procedure.schema.json", "product.schema.json"):
        resource = Resource.from_contents(_load(meta))
        registry = registry.with_resources([(meta, resource), (resource.id(), resource)])
    schema = _load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=registry)


TABLE_VALIDATOR = _validator("table.schema.json")
PRODUCT_VALIDATOR = _validator("product.schema.json")


def _errors(validator: Draft202012Validator, data: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]


@pytest.mark.parametrize("rel", TABLE_FILES)
def test_table_file_is_valid_and_consistent(rel: str) -> None:
    table = _load(rel)
    assert _errors(TABLE_VALIDATOR, table) == []
    assert rel == f"{table['product']}/{table['name']}.json"
    names = [c["name"] for c in table["columns"]]
    assert len(names) == len(set(names)), "column names are unique"
    columns = {c["name"]: c for c in table["columns"]}
    for role in ("key", "updated_column", "created_column"):
        if table[role] is not None:
            assert table[role] in columns, f"{role} {table[role]} is a column"
    for role in ("updated_column", "created_column"):
        if table[role] is not None:
            assert columns[table[role]]["type"] in {"DATETIME", "DATE"}
    push = table["pushdown"]
    for p in push["parameters"]:
        assert p["column"] in columns, f"parameter {p['parameter']} filters an existing column"
    if push["expression"]:
        for col, ops in push["expression"]["columns"].items():
            assert col in columns
            assert columns[col]["type"] != "JSON" or not ops
    if push["sort"]:
        assert set(push["sort"]["columns"]) <= set(columns)
    if table["parent"]:
        assert table["parent"]["key_column"] == names[0]
        parent = _load(f"{table['product']}/{table['parent']['table']}.json")
        assert table["name"] in parent["children"]
    for child in table["children"]:
        assert (SCHEMAS / table["product"] / f"{child}.json").exists()
    for kind in ("get", "update", "delete"):
        if kind in table["operations"]:
            # A singleton (no key) is read and updated at its collection path.
            has_key = "{key}" in table["operations"][kind]["path"]
            assert has_key == (table["key"] is not None)
    for proc in table["procedures"]:
        params = {p["name"] for p in proc["parameters"]}
        request = proc["request"]
        if "path" in request:
            assert set(re.findall(r"{(\w+)}", request["path"])) <= params


@pytest.mark.parametrize("product", ["sage_accounting", "sage_200", "sage_crm"])
def test_product_file_is_valid(product: str) -> None:
    assert _errors(PRODUCT_VALIDATOR, _load(f"{product}/_product.json")) == []


def test_index_lists_exactly_the_table_files() -> None:
    on_disk = {p.relative_to(SCHEMAS).as_posix() for p in SCHEMAS.glob("sage_*/*.json")}
    on_disk -= {f"{p}/_product.json" for p in ("sage_accounting", "sage_200", "sage_crm")}
    assert on_disk == set(TABLE_FILES)
    for entry in INDEX["tables"]:
        table = _load(entry["file"])
        assert entry["name"] == table["name"]
        assert entry["aliases"] == table["aliases"]
        assert entry["description"] == table["description"]


def test_generator_reproduces_the_committed_schemas(reference: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "schemas.generator", "--check", "--reference", str(reference)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _tables(product: str) -> dict[str, dict[str, Any]]:
    return {e["name"]: _load(e["file"]) for e in INDEX["tables"] if e["product"] == product}


def test_every_accounting_list_endpoint_is_a_table(reference: Path) -> None:
    spec = json.loads((reference / "sage-accounting-v3.1.openapi.json").read_text())
    lists = [p for p, v in spec["paths"].items() if "get" in v and "{" not in p]
    assert len(lists) == 85
    tables = _tables("sage_accounting")
    by_path = {
        t["operations"]["list"]["path"] for t in tables.values() if "list" in t["operations"]
    }
    assert set(lists) <= by_path
    assert "businesses" in tables


def test_every_sage200_list_resource_is_a_table(reference: Path) -> None:
    paths: set[str] = set()
    for module in (reference / "sage200").glob("*.openapi3.json"):
        spec = json.loads(module.read_text())
        paths |= {p for p, v in spec["paths"].items() if "get" in v and "{" not in p}
    tables = _tables("sage_200")
    by_path = {
        t["operations"]["list"]["path"] for t in tables.values() if "list" in t["operations"]
    }
    assert paths <= by_path
    assert len(paths) == 266


def test_sage200_posting_resources_are_insert_only() -> None:
    tables = _tables("sage_200")
    for name in ("sales_invoices", "sales_receipts", "purchase_invoices"):
        assert set(tables[name]["operations"]) == {"create"}, name


def test_crm_entities_with_platform_aliases() -> None:
    tables = _tables("sage_crm")
    assert set(tables) >= {
        "company",
        "person",
        "lead",
        "opportunity",
        "users",
        "cases",
        "communication",
    }
    aliases = {a: t for t in tables.values() for a in t["aliases"]}
    assert {
        k: v["name"]
        for k, v in aliases.items()
        if k in {"accounts", "contacts", "leads", "opportunities"}
    } == {
        "accounts": "company",
        "contacts": "person",
        "leads": "lead",
        "opportunities": "opportunity",
    }


def test_customers_view_pushes_down_updated_at() -> None:
    customers = _load("sage_accounting/customers.json")
    assert customers["fixed_parameters"] == {"contact_type_id": "CUSTOMER"}
    assert customers["updated_column"] == "updated_at"
    pushed = {
        (p["operator"], p["parameter"], p["exact"])
        for p in customers["pushdown"]["parameters"]
        if p["column"] == "updated_at"
    }
    assert (">=", "updated_or_created_since", True) in pushed
    assert (">", "updated_or_created_since", False) in pushed


def test_links_become_id_and_displayed_as_columns() -> None:
    invoice = {c["name"]: c for c in _load("sage_accounting/sales_invoices.json")["columns"]}
    assert invoice["contact_id"]["path"] == ["contact", "id"]
    assert invoice["contact_displayed_as"]["path"] == ["contact", "displayed_as"]
    assert invoice["contact_id"]["required_on_create"]


def test_invoice_lines_child_table() -> None:
    lines = _load("sage_accounting/sales_invoice_lines.json")
    assert lines["parent"] == {
        "table": "sales_invoices",
        "path": ["invoice_lines"],
        "key_column": "sales_invoice_id",
    }
