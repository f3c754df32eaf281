"""The catalog: lazy, immutable tables; names resolved with helpful errors."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
from typer.testing import CliRunner

from sagesql import ConfigurationError, UnknownColumnError, UnknownTableError
from sagesql.schemas.catalog import Catalog, default_catalog


class CountingCatalog(Catalog):
    """A catalog that records which files it parsed."""

    def __init__(self) -> None:
        super().__init__(resources.files("sagesql.schemas"))
        self.reads: list[str] = []

    def _read(self, rel: str) -> Any:
        self.reads.append(rel)
        return super()._read(rel)


def test_listing_tables_parses_only_the_index() -> None:
    catalog = CountingCatalog()
    assert len(catalog.tables()) > 350
    assert len(catalog.tables("Sage200")) > 250
    assert catalog.reads == ["index.json"]


def test_a_table_file_is_parsed_once() -> None:
    catalog = CountingCatalog()
    first = catalog.table("contacts", "SageAccounting")
    again = catalog.table("CONTACTS", "sage_accounting")
    assert first is again
    assert catalog.reads == ["index.json", "sage_accounting/contacts.json"]


def test_tables_are_immutable() -> None:
    table = default_catalog().table("contacts", "SageAccounting")
    with pytest.raises(AttributeError):
        table.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        table.operations["list"] = None  # type: ignore[index]
    assert isinstance(table.columns, tuple)


def test_aliases_resolve() -> None:
    assert default_catalog().table("accounts", "SageCRM").name == "company"
    assert default_catalog().table("Opportunities", "SageCRM").name == "opportunity"


def test_unknown_table_names_close_matches() -> None:
    with pytest.raises(UnknownTableError) as err:
        default_catalog().table("custmers", "SageAccounting")
    assert "unknown table 'custmers' in SageAccounting" in str(err.value)
    assert "customers" in str(err.value)
    assert "\n" not in str(err.value)


def test_name_in_several_products_needs_the_product() -> None:
    with pytest.raises(UnknownTableError, match="several products"):
        default_catalog().table("customers")


def test_unknown_product() -> None:
    with pytest.raises(ConfigurationError) as err:
        default_catalog().tables("SageAcounting")
    assert "SageAccounting" in str(err.value)


def test_unknown_column_names_close_matches() -> None:
    table = default_catalog().table("contacts", "SageAccounting")
    with pytest.raises(UnknownColumnError, match="updated_at"):
        table.column("updated_att")
    assert table.column("UPDATED_AT").type == "DATETIME"


def test_statements_follow_operations() -> None:
    catalog = default_catalog()
    assert catalog.table("contacts", "SageAccounting").statements == (
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
    )
    assert "UPDATE" not in catalog.table("journals", "SageAccounting").statements
    assert "DELETE" not in catalog.table("ledger_accounts", "SageAccounting").statements
    assert catalog.table("sales_invoices", "Sage200").statements == ("INSERT",)
    assert catalog.table("sales_invoice_lines", "SageAccounting").statements == ("SELECT",)


def test_product_definitions() -> None:
    catalog = default_catalog()
    accounting = catalog.product("SageAccounting")
    assert accounting.auth["token_url"].endswith("/token")
    assert {p.name for p in accounting.procedures} >= {
        "GetOAuthAuthorizationURL",
        "GetOAuthAccessToken",
        "RefreshOAuthAccessToken",
    }
    assert (
        catalog.product("Sage200").base_urls["ProfessionalUK"].endswith("sage200extra/accounts/v1")
    )
    assert catalog.product("SageCRM").auth["type"] == "basic"


@pytest.mark.parametrize(
    ("name", "product"),
    [
        ("customers", "SageAccounting"),
        ("customers", "Sage200"),
        ("sales_invoice_lines", "SageAccounting"),
    ],
)
def test_a_table_description_is_what_describe_prints_as_json(name: str, product: str) -> None:
    from sagesql.cli.main import app

    catalog = default_catalog()
    table = catalog.table(name, product)
    info = table.to_description(product)
    assert json.loads(json.dumps(info)) == info  # plain JSON data
    assert (info["name"], info["product"], info["key"]) == (table.name, product, table.key)
    assert [c["name"] for c in info["columns"]] == [c.name for c in table.columns]
    assert info["statements"] == list(table.statements)
    assert info["parent"] == (table.parent.table if table.parent else None)
    printed = CliRunner().invoke(app, ["describe", name, "-p", product, "-f", "json"])
    assert printed.exit_code == 0 and json.loads(printed.stdout) == info


def test_a_table_description_says_how_each_column_is_pushed_and_sorted() -> None:
    table = default_catalog().table("customers", "SageAccounting")
    info = table.to_description("SageAccounting")
    columns = {c["name"]: c for c in info["columns"]}
    assert "> (updated_or_created_since, re-checked locally)" in columns["updated_at"]["pushdown"]
    assert columns["id"]["pushdown"][0].startswith("= (GET ")
    sortable = set(table.pushdown.sort.columns) if table.pushdown.sort else set()
    assert {n for n, c in columns.items() if c["sortable"]} == sortable
    assert info["operations"]["list"] == f"GET {table.operations['list'].path}"
