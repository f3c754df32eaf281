"""The Sage Accounting sandbox over real HTTP: businesses, lists, filters, writes, actions, auth."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from sagesql.sandbox.accounting import LISTED_AS_LINKS
from sagesql.sandbox.accounting_data import resources

HEX32 = re.compile(r"^[0-9a-f]{32}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
MONEY = re.compile(r"^-?\d+\.\d\d$")


class Client:
    """A requests session on one sandbox, with a token and (optionally) a business."""

    def __init__(self, sbx: Any, business: str | None = None) -> None:
        self.sbx = sbx
        self.base = sbx.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = "Bearer " + sbx.token()["access_token"]
        if business:
            self.session.headers["X-Business"] = business

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(self.base + path, params=params, timeout=30)

    def ok(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base + path, json=body, timeout=30, **kwargs)

    def put(self, path: str, body: Any) -> requests.Response:
        return self.session.put(self.base + path, json=body, timeout=30)

    def delete(self, path: str, body: Any = None, **params: Any) -> requests.Response:
        return self.session.delete(self.base + path, json=body, params=params, timeout=30)

    def all(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a list, following $next (a relative link without /v3.1)."""
        page = self.ok(path, items_per_page=200, **params)
        items = list(page["$items"])
        while page["$next"]:
            assert page["$next"].startswith("/") and not page["$next"].startswith("/v3.1")
            response = self.session.get(self.base + page["$next"], timeout=30)
            page = response.json()
            items += page["$items"]
        return items

    def admin(self, what: str, body: dict[str, Any]) -> Any:
        return requests.post(f"{self.sbx.url}/_sandbox/{what}", json=body, timeout=10).json()


def errors_of(response: requests.Response) -> list[dict[str, Any]]:
    body = response.json()
    assert isinstance(body, list) and body, body
    for entry in body:
        assert set(entry) == {"$severity", "$dataCode", "$message", "$source"}
        assert entry["$severity"] == "error"
    return body


@pytest.fixture
def sbx(start_sandbox: Any) -> Any:
    return start_sandbox("sage_accounting", rows=50)


@pytest.fixture
def api(sbx: Any) -> Client:
    return Client(sbx)


# -- businesses -----------------------------------------------------------------------------


def test_businesses_list_lead_and_one(api: Client) -> None:
    page = api.ok("/businesses")
    assert set(page) == {"$total", "$page", "$next", "$back", "$items_per_page", "$items"}
    assert page["$total"] == 2 and len(page["$items"]) == 2
    lead, second = page["$items"]
    assert HEX32.match(lead["id"]) and lead["name"]
    assert api.ok("/businesses/lead")["id"] == lead["id"]
    assert api.ok(f"/businesses/{second['id']}")["name"] == second["name"]
    assert api.get("/businesses/" + "0" * 32).status_code == 404
    changed = api.put(f"/businesses/{second['id']}", {"business": {"name": "Renamed LLP"}})
    assert changed.status_code == 200 and changed.json()["name"] == "Renamed LLP"
    assert api.ok("/businesses")["$items"][1]["name"] == "Renamed LLP"
    assert api.post("/businesses", {"business": {"name": "x"}}).status_code == 405


def test_x_business_selects_the_business(sbx: Any, api: Client) -> None:
    lead, second = (b["id"] for b in api.ok("/businesses")["$items"])
    default = api.ok("/contacts")
    assert Client(sbx, lead).ok("/contacts") == default
    other = Client(sbx, second).ok("/contacts")
    assert other["$total"] < default["$total"]
    assert not {i["id"] for i in other["$items"]} & {i["id"] for i in default["$items"]}
    # What is written in one business stays there.
    made = Client(sbx, second).post(
        "/contacts", {"contact": {"name": "Only Second", "contact_type_ids": ["VENDOR"]}}
    )
    assert made.status_code == 201
    assert api.get(f"/contacts/{made.json()['id']}").status_code == 404
    response = Client(sbx, "f" * 32).get("/contacts")
    assert response.status_code == 403
    assert errors_of(response)[0]["$dataCode"] == "MultiUserAccessDenied"


# -- lists ------------------------------------------------------------------------------------


def test_envelope_paging_and_links(start_sandbox: Any) -> None:
    api = Client(start_sandbox("sage_accounting", rows=250))
    page = api.ok("/contacts")
    assert list(page) == ["$total", "$page", "$next", "$back", "$itemsPerPage", "$items"]
    assert page["$total"] == 250 and page["$itemsPerPage"] == 20 and len(page["$items"]) == 20
    assert page["$page"] == 1 and page["$back"] is None
    assert page["$next"] == "/contacts?page=2&items_per_page=20"
    page = api.ok("/contacts", page=3, items_per_page=25, search="a", attributes="name")
    total = page["$total"]
    assert page["$next"] == "/contacts?page=4&items_per_page=25&search=a&attributes=name"
    assert page["$back"] == "/contacts?page=2&items_per_page=25&search=a&attributes=name"
    # A page past the end answers the last page.
    last = api.ok("/contacts", page=999, items_per_page=25, search="a")
    assert last["$page"] == -(-total // 25) and last["$next"] is None
    assert len(last["$items"]) == total - 25 * (last["$page"] - 1)
    # items_per_page is clamped to 1..200; text is refused.
    assert api.ok("/contacts", items_per_page=1000)["$itemsPerPage"] == 200
    assert len(api.ok("/contacts", items_per_page=1000)["$items"]) == 200
    assert api.ok("/contacts", items_per_page=0)["$itemsPerPage"] == 1
    bad = api.get("/contacts", items_per_page="many")
    assert bad.status_code == 422 and errors_of(bad)[0]["$source"] == "items_per_page"
    # Paging by $next visits every record once.
    ids = [i["id"] for i in api.all("/contacts")]
    assert len(ids) == len(set(ids)) == 250
    small = []
    for n in range(1, 14):
        small += [i["id"] for i in api.ok("/contacts", page=n, items_per_page=20)["$items"]]
    assert small == ids


def test_attributes_and_single_get(api: Client) -> None:
    items = api.ok("/contacts")["$items"]
    assert all(set(i) == {"id", "displayed_as", "$path"} for i in items)
    first = items[0]
    assert HEX32.match(first["id"]) and first["$path"] == f"/contacts/{first['id']}"
    full = api.ok("/contacts", attributes="all")["$items"][0]
    assert full == api.ok(f"/contacts/{first['id']}")
    assert TIME.match(full["created_at"]) and TIME.match(full["updated_at"])
    assert MONEY.match(full["balance"]) and full["name"] and full["displayed_as"]
    some = api.ok("/contacts", attributes="name,email")["$items"][0]
    assert set(some) == {"id", "displayed_as", "$path", "name", "email"}
    assert some["email"] == full["email"]
    response = api.get("/contacts/" + "0" * 32)
    assert response.status_code == 404
    assert errors_of(response)[0]["$dataCode"] == "RecordNotFound"
    assert api.get("/no_such_things").status_code == 404


def test_updated_or_created_since_is_inclusive(api: Client) -> None:
    everything = api.all("/contacts", attributes="updated_at,created_at")
    since = sorted(i["updated_at"] for i in everything)[len(everything) // 2]
    found = api.all("/contacts", attributes="updated_at", updated_or_created_since=since)
    expected = {i["id"] for i in everything if i["updated_at"] >= since or i["created_at"] >= since}
    assert {i["id"] for i in found} == expected
    assert any(i["updated_at"] == since for i in found)
    # The same instant with an offset, and a bare date.
    offset = since[:-1] + "+00:00"
    assert api.ok("/contacts", updated_or_created_since=offset)["$total"] == len(expected)
    day = since[:10]
    by_day = {i["id"] for i in everything if i["updated_at"][:10] >= day}
    assert api.ok("/contacts", updated_or_created_since=day)["$total"] == len(by_day)
    bad = api.get("/contacts", updated_or_created_since="yesterday")
    assert bad.status_code == 422


def test_delete_keeps_a_tombstone_for_deleted_since(api: Client) -> None:
    before = api.ok("/contacts")["$total"]
    tombstones = api.ok("/contacts", deleted_since="2024-01-01", attributes="deleted_at")
    assert tombstones["$total"] >= 1  # the demo data has some
    victim = api.ok("/contacts")["$items"][3]["id"]
    assert api.delete(f"/contacts/{victim}").status_code == 204
    assert api.get(f"/contacts/{victim}").status_code == 404
    assert api.ok("/contacts")["$total"] == before - 1
    found = api.all("/contacts", deleted_since="2024-01-01")
    mine = next(i for i in found if i["id"] == victim)
    assert TIME.match(mine["deleted_at"])
    # Exclusive: deleted_since equal to the deletion time leaves it out.
    later = api.all("/contacts", deleted_since=mine["deleted_at"], attributes="deleted_at")
    assert victim not in {i["id"] for i in later}
    assert all(i["deleted_at"] > mine["deleted_at"] for i in later)
    assert api.delete(f"/contacts/{victim}").status_code == 404


def test_from_date_and_to_date_are_inclusive(api: Client) -> None:
    everything = api.all("/sales_invoices", attributes="date")
    dates = sorted(i["date"] for i in everything)
    low, high = dates[10], dates[30]
    found = api.all("/sales_invoices", attributes="date", from_date=low, to_date=high)
    assert {i["id"] for i in found} == {i["id"] for i in everything if low <= i["date"] <= high}
    assert {low, high} <= {i["date"] for i in found}


def test_search_is_a_case_insensitive_substring(api: Client) -> None:
    everything = api.all("/contacts", attributes="name,reference")
    word = "ltd"
    expected = {
        i["id"] for i in everything if word in i["name"].lower() or word in i["reference"].lower()
    }
    assert expected
    for text in ("ltd", "LTD", "Ltd"):
        assert {i["id"] for i in api.all("/contacts", search=text)} == expected
    reference = everything[5]["reference"]
    assert everything[5]["id"] in {i["id"] for i in api.all("/contacts", search=reference)}
    invoices = api.all("/sales_invoices", attributes="contact_name")
    name = invoices[0]["contact_name"]
    hits = api.all("/sales_invoices", search=name.upper(), attributes="contact_name")
    assert invoices[0]["id"] in {i["id"] for i in hits}
    assert all(name.lower() in i["contact_name"].lower() for i in hits)


def test_contact_type_filter_serves_customers_and_suppliers(api: Client) -> None:
    everything = api.all("/contacts", attributes="contact_types")
    kinds = {i["id"]: {t["id"] for t in i["contact_types"]} for i in everything}
    customers = {i["id"] for i in api.all("/contacts", contact_type_id="CUSTOMER")}
    vendors = {i["id"] for i in api.all("/contacts", contact_type_id="VENDOR")}
    assert customers == {k for k, v in kinds.items() if "CUSTOMER" in v}
    assert vendors == {k for k, v in kinds.items() if "VENDOR" in v}
    assert customers | vendors == set(kinds) and customers & vendors  # some are both
    assert set(api.ok("/contact_types", attributes="all")["$items"][0]) == {
        "id",
        "displayed_as",
        "$path",
    }
    assert {i["id"] for i in api.ok("/contact_types")["$items"]} == {"CUSTOMER", "VENDOR"}


def test_equality_filters(api: Client) -> None:
    invoices = api.all("/sales_invoices", attributes="contact,status")
    contact = invoices[0]["contact"]["id"]
    by_contact = api.all("/sales_invoices", contact_id=contact)
    assert {i["id"] for i in by_contact} == {
        i["id"] for i in invoices if i["contact"]["id"] == contact
    }
    for status in ("PAID", "UNPAID"):
        expected = {i["id"] for i in invoices if i["status"]["id"] == status}
        assert expected
        assert {i["id"] for i in api.all("/sales_invoices", status_id=status)} == expected
    products = api.all("/products", attributes="active")
    inactive = {i["id"] for i in products if i["active"] is False}
    assert {i["id"] for i in api.all("/products", active="false")} == inactive
    assert len(api.all("/products", active="true")) == len(products) - len(inactive)
    person = api.all("/contacts", attributes="email")[7]
    found = api.all("/contacts", email=person["email"].upper())
    assert [i["id"] for i in found] == [person["id"]]
    paid_to = api.all("/contact_payments", attributes="bank_account")[0]["bank_account"]["id"]
    assert api.ok("/contact_payments", bank_account_id=paid_to)["$total"] > 0
    assert api.ok("/contact_payments", bank_account_id="0" * 32)["$total"] == 0
    visible = api.all("/ledger_accounts", visible_in="sales", attributes="visible_in_sales")
    assert visible and all(i["visible_in_sales"] for i in visible)


def test_sort(api: Client) -> None:
    for field, direction in (("date", "desc"), ("due_date", "asc"), ("created_at", "desc")):
        items = api.all("/sales_invoices", sort=f"{field}:{direction}", attributes=field)
        values = [i[field] for i in items]
        assert values == sorted(values, reverse=direction == "desc")
        assert len({i["id"] for i in items}) == len(items) == 50
    plain = api.all("/sales_invoices", sort="date", attributes="date")
    assert [i["date"] for i in plain] == sorted(i["date"] for i in plain)
    for bad in ("total_amount", "date:sideways"):
        response = api.get("/sales_invoices", sort=bad)
        assert response.status_code == 422 and errors_of(response)[0]["$source"] == "sort"


# -- data ---------------------------------------------------------------------------------------


def test_documents_reference_real_records_and_add_up(api: Client) -> None:
    contacts = {i["id"] for i in api.all("/contacts")}
    products = {i["id"] for i in api.all("/products")}
    services = {i["id"] for i in api.all("/services")}
    ledgers = {i["id"] for i in api.all("/ledger_accounts")}
    rates = {i["id"]: Decimal(i["percentage"]) for i in api.all("/tax_rates", attributes="all")}
    assert "GB_STANDARD" in rates and rates["GB_STANDARD"] == 20
    for resource, lines_key in (
        ("sales_invoices", "invoice_lines"),
        ("sales_credit_notes", "credit_note_lines"),
        ("purchase_invoices", "invoice_lines"),
    ):
        documents = api.all(f"/{resource}", attributes="all")
        assert documents
        for doc in documents:
            assert doc["contact"]["id"] in contacts
            lines = doc[lines_key]
            assert lines
            for line in lines:
                item = line["product"] or line["service"]
                assert item["id"] in (products if line["product"] else services)
                assert line["ledger_account"]["id"] in ledgers
                net = Decimal(line["quantity"]) * Decimal(line["unit_price"])
                assert Decimal(line["net_amount"]) == net
                tax = (net * rates[line["tax_rate"]["id"]] / 100).quantize(Decimal("0.01"))
                assert Decimal(line["tax_amount"]) == tax
            for total in ("net_amount", "tax_amount", "total_amount"):
                assert MONEY.match(doc[total])
                assert Decimal(doc[total]) == sum(Decimal(x[total]) for x in lines)
    payments = api.all("/contact_payments", attributes="all")
    invoices = {i["id"]: i for i in api.all("/sales_invoices", attributes="all")}
    allocated = [p for p in payments if p["allocated_artefacts"]]
    assert allocated
    for payment in allocated:
        artefact = payment["allocated_artefacts"][0]["artefact"]
        if artefact["$path"].startswith("/sales_invoices/"):
            invoice = invoices[artefact["id"]]
            assert invoice["status"]["id"] == "PAID"
            assert payment["total_amount"] == invoice["total_amount"]
            assert payment["contact"]["id"] == invoice["contact"]["id"]
    for journal in api.all("/journals", attributes="all"):
        lines = journal["journal_lines"]
        debit = sum(Decimal(x["debit"]) for x in lines)
        assert debit == sum(Decimal(x["credit"]) for x in lines) == Decimal(journal["total"])
        assert all(x["ledger_account"]["id"] in ledgers for x in lines)


def test_data_is_deterministic_and_sized_by_rows(start_sandbox: Any) -> None:
    one = Client(start_sandbox("sage_accounting", rows=30, seed=7))
    two = Client(start_sandbox("sage_accounting", rows=30, seed=7))
    other = Client(start_sandbox("sage_accounting", rows=30, seed=8))
    for resource in ("contacts", "sales_invoices", "journals", "bank_deposits"):
        assert one.all(f"/{resource}", attributes="all") == two.all(
            f"/{resource}", attributes="all"
        )
    assert one.ok("/contacts")["$items"] != other.ok("/contacts")["$items"]
    assert one.ok("/contacts")["$total"] == 30
    assert one.ok("/sales_invoices")["$total"] == 30
    times = [i["updated_at"] for i in one.all("/contacts", attributes="updated_at")]
    assert len(set(times)) < len(times)  # some records share a second
    assert min(times) >= "2024-01-01" and max(times) <= "2025-09-30T18:00:00Z"


def test_every_list_endpoint_is_served(api: Client) -> None:
    for name, resource in resources().items():
        if name == "businesses":
            continue
        body = api.ok(f"/{name}", attributes="all")
        if resource.singleton:
            assert isinstance(body, dict) and "$items" not in body
            continue
        assert body["$total"] >= 1, name
        first = body["$items"][0]
        if "get" in resource.table.operations:
            key = first["$path"].rsplit("/", 1)[1]
            whole = api.ok(f"/{name}/{key}")
            for field in LISTED_AS_LINKS.get(name, ()):  # a link in lists, whole in a GET
                if isinstance(whole.get(field), dict):
                    assert first[field] == {
                        k: whole[field].get(k) for k in ("id", "displayed_as", "$path")
                    }
                    whole[field] = first[field]
            assert whole == first, name


# -- writes ------------------------------------------------------------------------------------


def test_create_contact(api: Client, sbx: Any) -> None:
    response = api.post(
        "/contacts",
        {
            "contact": {
                "name": "Brand New Ltd",
                "contact_type_ids": ["CUSTOMER"],
                "email": "hello@brandnew.example",
                "credit_limit": 1500,
                "main_address": {"address_line_1": "1 New Street", "country_id": "GB"},
                "ignored_field": "x",
            }
        },
    )
    assert response.status_code == 201, response.text
    made = response.json()
    assert HEX32.match(made["id"]) and made["$path"] == f"/contacts/{made['id']}"
    assert made["contact_types"] == [
        {"id": "CUSTOMER", "displayed_as": "Customer", "$path": "/contact_types/CUSTOMER"}
    ]
    assert made["credit_limit"] == "1500.00" and made["displayed_as"].startswith("Brand New Ltd")
    assert made["main_address"]["country"]["id"] == "GB"
    assert made["main_address"]["address_line_1"] == "1 New Street"
    assert "ignored_field" not in made and made["deleted_at"] is None
    assert api.ok(f"/contacts/{made['id']}") == made
    found = api.all("/contacts", updated_or_created_since=made["created_at"])
    assert made["id"] in {i["id"] for i in found}
    assert api.ok("/contacts", search="brand new")["$total"] == 1


def test_create_errors(api: Client) -> None:
    response = api.post("/contacts", {"contact": {"notes": "no name"}})
    assert response.status_code == 422
    problems = errors_of(response)
    assert {p["$source"] for p in problems} == {"name", "contact_type_ids"}
    assert all(p["$dataCode"] == "RecordInvalid" for p in problems)
    response = api.post("/contacts", {"contact": {"name": "X", "contact_type_ids": ["NOPE"]}})
    assert response.status_code == 422 and errors_of(response)[0]["$source"] == "contact_type_ids"
    response = api.post("/contacts", {"customer": {"name": "X"}})
    assert response.status_code == 422 and errors_of(response)[0]["$source"] == "contact"
    response = api.post("/contacts", {"contact": {"name": "X", "credit_limit": "lots"}})
    assert {p["$source"] for p in errors_of(response)} >= {"credit_limit"}
    response = api.session.post(
        api.base + "/contacts", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and errors_of(response)
    response = api.session.post(
        api.base + "/contacts", data="name=X", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415 and errors_of(response)


def test_create_invoice_computes_amounts(api: Client) -> None:
    customer = api.ok("/contacts", contact_type_id="CUSTOMER")["$items"][0]["id"]
    product = api.ok("/products", attributes="all")["$items"][0]
    response = api.post(
        "/sales_invoices",
        {
            "sales_invoice": {
                "contact_id": customer,
                "date": "2025-03-04",
                "invoice_lines": [
                    {"product_id": product["id"], "quantity": 3},
                    {
                        "description": "Hand-made",
                        "ledger_account_id": product["sales_ledger_account"]["id"],
                        "quantity": "2",
                        "unit_price": "10.005",
                        "tax_rate_id": "GB_LOWER",
                    },
                ],
            }
        },
    )
    assert response.status_code == 201, response.text
    invoice = response.json()
    first, second = invoice["invoice_lines"]
    price = Decimal(product["sales_prices"][0]["price"])
    assert first["description"] == product["description"]
    assert Decimal(first["net_amount"]) == 3 * price
    assert second["unit_price"] == "10.01" and second["net_amount"] == "20.02"
    assert second["tax_amount"] == "1.00" and second["tax_rate"]["id"] == "GB_LOWER"
    for total in ("net_amount", "tax_amount", "total_amount"):
        assert Decimal(invoice[total]) == Decimal(first[total]) + Decimal(second[total])
    assert invoice["contact"]["id"] == customer and invoice["contact_name"]
    assert invoice["status"]["id"] == "UNPAID" and invoice["displayed_as"] == "SI-52"
    assert invoice["due_date"] == "2025-04-03"
    assert api.ok(f"/sales_invoices/{invoice['id']}") == invoice
    # Missing fields, bad lines and unknown links: one problem each.
    response = api.post(
        "/sales_invoices",
        {
            "sales_invoice": {
                "contact_id": "0" * 32,
                "invoice_lines": [{"quantity": 1}, {"product_id": "1" * 32, "unit_price": 1}],
            }
        },
    )
    assert response.status_code == 422
    sources = {p["$source"] for p in errors_of(response)}
    assert {"contact_id", "date", "invoice_lines[0].unit_price"} <= sources
    assert {"invoice_lines[0].description", "invoice_lines[1].product_id"} <= sources


def test_update_changes_given_fields_and_bumps_updated_at(api: Client) -> None:
    contact = api.ok("/contacts", attributes="all")["$items"][2]
    api.admin("clock", {"advance": 5})
    response = api.put(f"/contacts/{contact['id']}", {"contact": {"notes": "Called today"}})
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["notes"] == "Called today" and changed["name"] == contact["name"]
    assert changed["updated_at"] > contact["updated_at"]
    assert changed["created_at"] == contact["created_at"]
    assert api.ok(f"/contacts/{contact['id']}") == changed
    polled = api.all("/contacts", updated_or_created_since=changed["updated_at"])
    assert contact["id"] in {i["id"] for i in polled}
    response = api.put(f"/contacts/{contact['id']}", {"contact": {"name": "Renamed Ltd"}})
    assert response.json()["displayed_as"].startswith("Renamed Ltd (")
    invoice = api.ok("/sales_invoices", status_id="UNPAID", attributes="all")["$items"][0]
    lines = [{"description": "Only line", "unit_price": "100", "quantity": 1}]
    lines[0]["ledger_account_id"] = invoice["invoice_lines"][0]["ledger_account"]["id"]
    lines[0]["tax_rate_id"] = "GB_STANDARD"
    changed = api.put(
        f"/sales_invoices/{invoice['id']}", {"sales_invoice": {"invoice_lines": lines}}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["total_amount"] == "120.00"
    assert api.put("/contacts/" + "0" * 32, {"contact": {"notes": "x"}}).status_code == 404


def test_void_release_and_draft_delete(api: Client) -> None:
    customer = api.ok("/contacts", contact_type_id="CUSTOMER")["$items"][0]["id"]
    ledger = api.ok("/ledger_accounts", visible_in="sales")["$items"][0]["id"]
    body = {
        "sales_invoice": {
            "contact_id": customer,
            "date": "2025-05-06",
            "status_id": "DRAFT",
            "invoice_lines": [
                {"description": "Work", "ledger_account_id": ledger, "unit_price": "50"}
            ],
        }
    }
    draft = api.post("/sales_invoices", body).json()
    assert draft["status"]["id"] == "DRAFT" and draft["outstanding_amount"] == "0.00"
    released = api.post(f"/sales_invoices/{draft['id']}/release")
    assert released.status_code == 201
    assert released.json()["status"]["id"] == "UNPAID"
    assert released.json()["outstanding_amount"] == released.json()["total_amount"] == "50.00"
    assert api.post(f"/sales_invoices/{draft['id']}/release").status_code == 422
    # Voiding needs a reason, keeps the invoice listable with status VOID.
    response = api.delete(f"/sales_invoices/{draft['id']}")
    assert response.status_code == 422 and errors_of(response)[0]["$source"] == "void_reason"
    # Sage's definition takes void_reason as a query parameter; a body is refused.
    response = api.delete(f"/sales_invoices/{draft['id']}", {"void_reason": "Duplicate"})
    assert response.status_code == 400 and isinstance(response.json(), list)
    refused = errors_of(response)[0]
    assert refused["$dataCode"] and refused["$source"] == "void_reason"
    assert api.ok(f"/sales_invoices/{draft['id']}")["status"]["id"] == "UNPAID"
    response = api.delete(f"/sales_invoices/{draft['id']}", void_reason="Duplicate")
    assert response.status_code == 200
    assert response.json()["status"]["id"] == "VOID"
    voided = api.ok(f"/sales_invoices/{draft['id']}")
    assert voided["void_reason"] == "Duplicate" and voided["outstanding_amount"] == "0.00"
    assert draft["id"] in {i["id"] for i in api.all("/sales_invoices", status_id="VOID")}
    assert (
        api.put(f"/sales_invoices/{draft['id']}", {"sales_invoice": {"notes": "x"}}).status_code
        == 422
    )
    # A credit note is voided the same way.
    credit = api.post(
        "/sales_credit_notes",
        {
            "sales_credit_note": {
                "contact_id": customer,
                "date": "2025-05-07",
                "credit_note_lines": [
                    {"description": "Refund", "ledger_account_id": ledger, "unit_price": "5"}
                ],
            }
        },
    ).json()
    assert credit["status"]["id"] == "UNPAID"
    response = api.delete(f"/sales_credit_notes/{credit['id']}", void_reason="Wrong customer")
    assert response.status_code == 200 and response.json()["void_reason"] == "Wrong customer"
    # A draft is deleted outright: a tombstone.
    draft = api.post("/sales_invoices", body).json()
    assert api.delete(f"/sales_invoices/{draft['id']}").status_code == 204
    assert api.get(f"/sales_invoices/{draft['id']}").status_code == 404
    gone = api.all("/sales_invoices", deleted_since="2024-01-01")
    assert draft["id"] in {i["id"] for i in gone}
    # Purchase invoices release too.
    vendor = api.ok("/contacts", contact_type_id="VENDOR")["$items"][0]["id"]
    purchase = api.post(
        "/purchase_invoices",
        {
            "purchase_invoice": {
                "contact_id": vendor,
                "date": "2025-05-06",
                "due_date": "2025-06-06",
                "status_id": "DRAFT",
                "invoice_lines": [
                    {
                        "description": "Stock",
                        "ledger_account_id": ledger,
                        "quantity": 2,
                        "unit_price": 3,
                    }
                ],
            }
        },
    )
    assert purchase.status_code == 201, purchase.text
    assert api.post(f"/purchase_invoices/{purchase.json()['id']}/release").status_code == 201


def test_journals_reissue_and_operations_tables_lack(api: Client) -> None:
    ledgers = [i["id"] for i in api.all("/ledger_accounts")]
    lines = [
        {"ledger_account_id": ledgers[0], "debit": "12.50", "credit": 0},
        {"ledger_account_id": ledgers[1], "debit": 0, "credit": "12.50"},
    ]
    made = api.post(
        "/journals", {"journal": {"date": "2025-02-03", "reference": "J1", "journal_lines": lines}}
    )
    assert made.status_code == 201, made.text
    journal = made.json()
    assert journal["total"] == "12.50" and len(journal["journal_lines"]) == 2
    unbalanced = [dict(lines[0]), dict(lines[1], credit="1.00")]
    response = api.post(
        "/journals",
        {"journal": {"date": "2025-02-03", "reference": "J2", "journal_lines": unbalanced}},
    )
    assert response.status_code == 422
    reissued = api.post(f"/journals/{journal['id']}/reissue")
    assert reissued.status_code == 201
    assert reissued.json()["id"] != journal["id"]
    assert reissued.json()["journal_lines"][0]["debit"] == "12.50"
    assert api.get(f"/journals/{journal['id']}").status_code == 404
    # Operations the tables do not have.
    response = api.put(f"/journals/{reissued.json()['id']}", {"journal": {"reference": "x"}})
    assert response.status_code == 405 and errors_of(response)
    assert api.delete(f"/ledger_accounts/{ledgers[0]}").status_code == 405
    assert api.post("/transactions", {"transaction": {}}).status_code == 405
    transaction = api.ok("/transactions")["$items"][0]["id"]
    assert api.put(f"/transactions/{transaction}", {"transaction": {}}).status_code == 405
    assert api.post(f"/contacts/{ledgers[0]}/release").status_code == 404


def test_settings_singletons_and_user(api: Client) -> None:
    settings = api.ok("/financial_settings")
    assert "$items" not in settings and settings["$path"] == "/financial_settings"
    response = api.put("/financial_settings", {"financial_settings": {"tax_number": "GB123"}})
    assert response.status_code == 200 and response.json()["tax_number"] == "GB123"
    assert api.ok("/financial_settings")["tax_number"] == "GB123"
    assert api.ok("/user")["email"]


def test_visibility_lag_hides_fresh_changes(api: Client) -> None:
    api.admin("lag", {"seconds": 30})
    made = api.post("/contacts", {"contact": {"name": "Lagging", "contact_type_ids": ["VENDOR"]}})
    assert made.status_code == 201
    assert api.ok("/contacts", search="Lagging")["$total"] == 0
    assert api.ok(f"/contacts/{made.json()['id']}")["name"] == "Lagging"
    api.admin("clock", {"advance": 31})
    assert api.ok("/contacts", search="Lagging")["$total"] == 1


# -- deep pages ----------------------------------------------------------------------------------


def test_deep_pages_stay_exact_across_writes(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_accounting", rows=6000, rate_limit_per_minute=0)
    api = Client(sbx)
    store = sbx.app.store
    business = sbx.app.lead
    expected = [
        json.loads(row[0])["id"]
        for row in store.select(business, "contacts", order="seq", columns="data")
    ]
    assert len(expected) == 6000

    def page(n: int, **params: Any) -> list[str]:
        return [
            i["id"] for i in api.ok("/contacts", page=n, items_per_page=200, **params)["$items"]
        ]

    for n in (1, 11, 12, 23, 30):
        assert page(n) == expected[(n - 1) * 200 : n * 200]
    gone = expected[4321]
    assert api.delete(f"/contacts/{gone}").status_code == 204
    expected.remove(gone)
    for n in (22, 23, 30):
        assert page(n) == expected[(n - 1) * 200 : n * 200]
    # Sorted deep pages (contacts have no sort: invoices do).
    for sort, order in (("created_at:desc", "created DESC"), ("updated_at", "updated ASC")):
        direction = order.split()[1]
        rows = store.select(business, "sales_invoices", order=f"{order}, seq {direction}")
        wanted = [json.loads(row[0])["id"] for row in rows]
        for n in (1, 12, 25):
            found = api.ok("/sales_invoices", page=n, items_per_page=200, sort=sort)["$items"]
            assert [i["id"] for i in found] == wanted[(n - 1) * 200 : n * 200]


def test_list_queries_are_served_by_indexes(start_sandbox: Any) -> None:
    """The plans SQLite picks for the common list queries: no table scan, no sort."""
    from werkzeug.datastructures import MultiDict

    sbx = start_sandbox("sage_accounting", rows=300)
    app, scope = sbx.app, sbx.app.lead
    cases = [
        ("contacts", {}, "r_contacts_live"),
        ("contacts", {"contact_type_id": "VENDOR"}, "r_contacts_contact_type_id_vendor"),
        ("contacts", {"contact_type_id": "CUSTOMER"}, "r_contacts_contact_type_id_customer"),
        ("contacts", {"email": "a@b.example"}, "r_contacts_by_email"),
        ("contacts", {"updated_or_created_since": "2025-01-01"}, "r_contacts_live"),
        ("sales_invoices", {"contact_id": "0" * 32}, "r_sales_invoices_by_contact_id"),
        ("sales_invoices", {"sort": "created_at:desc"}, "r_sales_invoices_created"),
    ]
    for resource, params, index in cases:
        query = app.query(resources()[resource], MultiDict(params))
        name = app.store.ensure(scope, resource)
        sql = (
            f'SELECT data FROM "{name}" WHERE scope = ? AND deleted IS NULL AND {query.where} '
            f"ORDER BY {query.order_sql} LIMIT 200 OFFSET 0"
        ).replace("AND  ORDER", "ORDER")
        plan = " / ".join(
            row[-1]
            for row in app.store.execute("EXPLAIN QUERY PLAN " + sql, [scope, *query.params])
        )
        assert index in plan, (params, plan)
        if "email" not in params and "contact_id" not in params:
            assert "TEMP B-TREE" not in plan, (params, plan)  # pages come in index order


# -- auth and limits ------------------------------------------------------------------------------


def test_missing_invalid_and_expired_tokens(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_accounting", access_token_lifetime=2)
    api = Client(sbx)
    assert api.get("/contacts").status_code == 200
    for headers in ({}, {"Authorization": "Bearer nonsense"}):
        response = requests.get(sbx.base_url + "/contacts", headers=headers, timeout=10)
        assert response.status_code == 401
        assert errors_of(response)[0]["$dataCode"] == "AuthorizationFailure"
    api.admin("clock", {"advance": 3})
    response = api.get("/contacts")
    assert response.status_code == 401 and "expired" in errors_of(response)[0]["$message"]


def test_rate_limit_is_per_business(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_accounting", rate_limit_per_minute=3)
    api = Client(sbx)
    second = sbx.app.second
    for _ in range(3):
        assert api.get("/contact_types").status_code == 200
    response = api.get("/contact_types")
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert Client(sbx, second).get("/contact_types").status_code == 200
    api.admin("clock", {"advance": 61})
    assert api.get("/contact_types").status_code == 200


# -- the published definition ----------------------------------------------------------------


class Definition:
    """Sage's Swagger definitions, to check records against their record schema."""

    def __init__(self, *paths: Path) -> None:
        self.definitions: dict[str, Any] = {}
        for path in paths:
            self.definitions.update(json.loads(path.read_text(encoding="utf-8"))["definitions"])

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.definitions[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def problems(self, schema: dict[str, Any], value: Any, where: str) -> Iterator[str]:
        """Why a value does not fit a schema (nothing when it does)."""
        schema = self.resolve(schema)
        if value is None:
            return  # Sage sends null for any field it has no value for
        kind = schema.get("type", "object" if "properties" in schema else None)
        if kind == "object":
            if not isinstance(value, dict):
                yield f"{where}: {value!r} is not an object"
                return
            props = schema.get("properties", {})
            for name, item in value.items():
                if name not in props:
                    yield f"{where}.{name}: not a property of the definition"
                else:
                    yield from self.problems(props[name], item, f"{where}.{name}")
        elif kind == "array":
            if not isinstance(value, list):
                yield f"{where}: {value!r} is not an array"
                return
            for n, item in enumerate(value):
                yield from self.problems(schema.get("items", {}), item, f"{where}[{n}]")
        elif kind in ("number", "integer"):
            # Sage sends money and other numbers as numeric strings ("-430035.84").
            number = value
            if isinstance(value, str):
                try:
                    number = Decimal(value)
                except ArithmeticError:
                    yield f"{where}: {value!r} is not a number"
                    return
            if isinstance(number, bool) or not isinstance(number, int | float | Decimal):
                yield f"{where}: {value!r} is not a number"
            elif kind == "integer" and number != int(number):
                yield f"{where}: {value!r} is not an integer"
        elif kind == "boolean":
            if not isinstance(value, bool):
                yield f"{where}: {value!r} is not a boolean"
        elif kind == "string":
            if not isinstance(value, str):
                yield f"{where}: {value!r} is not a string"
            elif schema.get("format") == "date-time" and not TIME.match(value):
                yield f"{where}: {value!r} is not a date-time"
            elif schema.get("format") == "date" and not re.match(r"^\d{4}-\d\d-\d\d$", value):
                yield f"{where}: {value!r} is not a date"


def test_records_conform_to_the_published_definition(api: Client, reference: Path) -> None:
    definition = Definition(
        reference / "sage-accounting-v3.1.openapi.json",
        reference / "sage-accounting-v3.1-user-businesses.openapi.json",
    )
    # Every served resource: the core ones (contacts, sales_invoices, products, ledger_accounts,
    # bank_accounts, tax_rates, journals...) and every generic one.
    problems: list[str] = []
    checked = 0
    for name, resource in resources().items():
        schema_name = resource.table.operations["list"].record_schema
        if not schema_name:
            continue
        schema = {"$ref": f"#/definitions/{schema_name}"}
        if name == "businesses":
            records = api.ok("/businesses")["$items"]
        elif resource.singleton:
            records = [api.ok(f"/{name}")]
        else:
            records = api.ok(f"/{name}", attributes="all", items_per_page=5)["$items"]
            if "get" in resource.table.operations:
                key = records[0]["$path"].rsplit("/", 1)[1]
                records.append(api.ok(f"/{name}/{key}"))
        assert records, name
        for record in records:
            problems += definition.problems(schema, record, name)
        checked += 1
    assert checked >= 80
    # Records made through the API conform too.
    customer = api.ok("/contacts", contact_type_id="CUSTOMER")["$items"][0]["id"]
    vendor = api.ok("/contacts", contact_type_id="VENDOR")["$items"][0]["id"]
    product = api.ok("/products")["$items"][0]["id"]
    ledger = api.ok("/ledger_accounts")["$items"][0]["id"]
    line = {"product_id": product, "quantity": 2, "discount_amount": "1.00"}
    made = {
        "Contact": api.post(
            "/contacts", {"contact": {"name": "Made", "contact_type_ids": ["CUSTOMER"]}}
        ),
        "SalesInvoice": api.post(
            "/sales_invoices",
            {
                "sales_invoice": {
                    "contact_id": customer,
                    "date": "2025-01-02",
                    "invoice_lines": [line],
                }
            },
        ),
        "PurchaseInvoice": api.post(
            "/purchase_invoices",
            {
                "purchase_invoice": {
                    "contact_id": vendor,
                    "date": "2025-01-02",
                    "due_date": "2025-02-02",
                    "invoice_lines": [line],
                }
            },
        ),
        "Journal": api.post(
            "/journals",
            {
                "journal": {
                    "date": "2025-01-02",
                    "reference": "J",
                    "journal_lines": [
                        {"ledger_account_id": ledger, "debit": 1, "credit": 0},
                        {"ledger_account_id": ledger, "debit": 0, "credit": 1},
                    ],
                }
            },
        ),
    }
    for schema_name, response in made.items():
        assert response.status_code == 201, response.text
        problems += definition.problems(
            {"$ref": f"#/definitions/{schema_name}"}, response.json(), schema_name
        )
    assert not problems, "\n".join(problems[:30])


def _field_placeholders(value: Any, where: str = "") -> list[str]:
    """Values that are a field's own name and a number ("Accounting Type 0")."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            shown = key.replace("_", " ").title()
            if isinstance(inner, str) and re.fullmatch(re.escape(shown) + r" \d+", inner):
                found.append(f"{where}.{key}: {inner!r}")
            else:
                found += _field_placeholders(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            found += _field_placeholders(item, where + "[]")
    return found


def test_code_and_text_fields_hold_real_values_not_field_name_placeholders(api: Client) -> None:
    """Every list endpoint (attributes=all): no "Field Name N"; codes as Sage's samples."""
    definition = json.loads(
        (
            Path(__file__).resolve().parent.parent
            / "schemas"
            / "definitions"
            / "sage-accounting-v3.1.openapi.json"
        ).read_text(encoding="utf-8")
    )
    found: list[str] = []
    for path, item in definition["paths"].items():
        if re.fullmatch(r"/[a-z_]+", path) and "get" in item:
            response = api.get(path, attributes="all")
            if response.status_code == 200:
                found += _field_placeholders(response.json(), path)
    assert found == []
    settings = api.ok("/financial_settings")
    assert settings["accounting_type"] in ("accrual", "cash")
    assert settings["mtd_activation_status"] == "mtd_unavailable"
    assert settings["sales_tax_calculation"] in ("invoice", "cash", None)


def test_the_attachment_file_and_bank_feed_routes(api: Client) -> None:
    attachment = api.all("/attachments")[0]
    response = api.session.get(
        f"{api.base}/attachments/{attachment['id']}/file",
        headers={"Accept": "application/octet-stream"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/octet-stream")
    assert api.ok(f"/attachments/{attachment['id']}/file")["id"] == attachment["id"]
    bank = api.all("/bank_accounts")[0]
    feed = api.ok(f"/bank_accounts/{bank['id']}/bank_feed")
    assert set(feed) == {"id", "displayed_as", "$path"} and feed["id"] == bank["id"]
    assert api.get(f"/bank_accounts/{'0' * 32}/bank_feed").status_code == 404


def test_a_duplicate_contact_reference_is_refused(api: Client) -> None:
    taken = api.all("/contacts", attributes="reference")[0]["reference"]
    body = {"contact": {"name": "Twin", "contact_type_ids": ["CUSTOMER"], "reference": taken}}
    response = api.post("/contacts", body)
    assert response.status_code == 422
    assert errors_of(response)[0]["$source"] == "reference"
    made = api.post("/contacts", {"contact": {**body["contact"], "reference": "UNIQ1"}})
    assert made.status_code == 201
    moved = api.put(f"/contacts/{made.json()['id']}", {"contact": {"reference": taken}})
    assert moved.status_code == 422 and errors_of(moved)[0]["$source"] == "reference"
    same = api.put(f"/contacts/{made.json()['id']}", {"contact": {"reference": "UNIQ1"}})
    assert same.status_code == 200


def test_a_list_answers_nested_records_as_links_as_the_samples_show(api: Client) -> None:
    """bank_accounts.main_address: {id, displayed_as, $path} in a list, whole in a GET."""
    sample = json.loads(
        (
            Path(__file__).resolve().parent.parent
            / "schemas/definitions/samples/ledgerscope-GetAll_BankAccount.json"
        ).read_text(encoding="utf-8")
    )
    items = sample["$items"] if isinstance(sample, dict) else sample
    assert set(items[0]["main_address"]) == {"id", "displayed_as", "$path"}
    listed = api.ok("/bank_accounts", attributes="all")["$items"][0]
    assert set(listed["main_address"]) == {"id", "displayed_as", "$path"}
    assert listed["main_address"]["$path"].startswith("/addresses/")
    named = api.ok("/bank_accounts", attributes="main_address")["$items"][0]
    assert set(named["main_address"]) == {"id", "displayed_as", "$path"}
    whole = api.ok(f"/bank_accounts/{listed['id']}")
    assert "address_line_1" in whole["main_address"]


def test_records_carry_links_where_the_definition_has_them(api: Client) -> None:
    """links: [{href, rel, type}] (the definition's Link) on contacts, invoices, payments..."""
    definition = json.loads(
        (
            Path(__file__).resolve().parent.parent
            / "schemas/definitions/sage-accounting-v3.1.openapi.json"
        ).read_text(encoding="utf-8")
    )["definitions"]
    assert set(definition["Link"]["properties"]) == {"href", "rel", "type"}
    for name, kind in (("contacts", "Contact"), ("sales_invoices", "SalesInvoice")):
        assert "links" in definition[kind]["properties"]
        listed = api.ok(f"/{name}", attributes="all")["$items"][0]
        whole = api.ok(f"/{name}/{listed['id']}")
        for record in (listed, whole):
            (link,) = record["links"]
            assert set(link) == {"href", "rel", "type"}
            assert link["href"].startswith("https://") and link["rel"] == "alternate"
        assert listed["links"] == whole["links"]
    assert "links" not in definition["LedgerAccount"]["properties"]
    ledger = api.ok("/ledger_accounts", attributes="all")["$items"][0]
    assert "links" not in ledger and "links" not in api.ok(f"/ledger_accounts/{ledger['id']}")
    created = api.post(
        "/contacts", {"contact": {"name": "Links Ltd", "contact_type_ids": ["CUSTOMER"]}}
    )
    assert created.status_code == 201, created.text
    made = created.json()
    assert made["links"][0]["type"] == "text/html"
    assert api.ok(f"/contacts/{made['id']}")["links"] == made["links"]


def test_nested_records_of_their_own_are_links_in_lists_everywhere(api: Client) -> None:
    """AddressRegion (own id, $path, resource): a link in a list; contacts stay whole."""
    for name, fields in (("tax_profiles", ("address_region",)),):
        assert LISTED_AS_LINKS[name] == fields
        listed = api.ok(f"/{name}", attributes="all")["$items"]
        cut = [r for r in listed if any(isinstance(r.get(f), dict) for f in fields)]
        assert cut, name
        for record in cut:
            whole = api.ok(f"/{name}/{record['id']}")
            for field in fields:
                if isinstance(whole.get(field), dict):
                    assert set(record[field]) == {"id", "displayed_as", "$path"}
                    assert record[field]["$path"] == whole[field]["$path"]
                    assert len(whole[field]) > 3
        named = api.ok(f"/{name}", attributes=",".join(fields))["$items"]
        assert all(
            set(r[f]) == {"id", "displayed_as", "$path"}
            for r in named
            for f in fields
            if isinstance(r.get(f), dict)
        )
    # A sales document's address is its own copy (SalesArtefactAddress, no resource): whole.
    quote = api.ok("/sales_quotes", attributes="all")["$items"][0]
    assert "sales_quotes" not in LISTED_AS_LINKS and "address_line_1" in quote["main_address"]
    contact = api.ok("/contacts", attributes="all")["$items"][0]
    assert "contacts" not in LISTED_AS_LINKS and "address_line_1" in contact["main_address"]
