"""The Sage 200 sandbox over real HTTP: headers, OData queries, records, writes, postings.

Each behaviour of SAGE-APIS.md section 2 (and issue 3) has a test that would fail if
the emulator got it wrong. Records are checked against the record schemas of Sage's
published OpenAPI modules, so the sandbox cannot drift from Sage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
import requests
from conftest import REFERENCE
from hypothesis import given, settings
from hypothesis import strategies as st

from sagesql.sandbox.odata import Field, ODataError, filter_sql
from sagesql.schemas.catalog import default_catalog

STANDARD = "/uk/sage200/accounts/v1"
PROFESSIONAL = "/uk/sage200extra/accounts/v1"
MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class Api:
    """A Sage 200 client of one sandbox: token, site and company headers, JSON calls."""

    def __init__(self, sbx: Any, company: str = "1", prefix: str = PROFESSIONAL) -> None:
        self.sbx = sbx
        self.root = sbx.url + prefix
        self.token = sbx.token()["access_token"]
        sites = requests.get(self.root + "/sites", headers=self.auth(), timeout=10).json()
        self.site = sites[0]["site_id"]
        self.company = company

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def headers(self, **extra: str) -> dict[str, str]:
        return {**self.auth(), "X-Site": self.site, "X-Company": self.company, **extra}

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", None) or self.headers()
        return requests.request(method, self.root + path, headers=headers, timeout=10, **kwargs)

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.call("GET", path, params=params)

    def ok(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: Any) -> requests.Response:
        return self.call("POST", path, json=body)

    def put(self, path: str, body: Any) -> requests.Response:
        return self.call("PUT", path, json=body)

    def delete(self, path: str) -> requests.Response:
        return self.call("DELETE", path)


@pytest.fixture
def api(start_sandbox: Callable[..., Any]) -> Api:
    return Api(start_sandbox("sage_200", rows=20))


def error_of(response: requests.Response, status: int) -> dict[str, Any]:
    """The one (first) entry of an error array, after checking the status and format."""
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert isinstance(body, list) and body, body
    assert body[0]["$severity"] == "error"
    return body[0]


def freeze(api: Api, instant: str) -> None:
    response = requests.post(
        api.sbx.url + "/_sandbox/clock", json={"set": instant, "frozen": True}, timeout=10
    )
    assert response.status_code == 200


# -- base URLs, sites, headers, auth, rate limit -------------------------------------------


def test_standard_and_professional_serve_the_same_data(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_200", rows=20)
    standard, professional = Api(sbx, prefix=STANDARD), Api(sbx, prefix=PROFESSIONAL)
    assert standard.ok("/customers") == professional.ok("/customers")
    assert sbx.base_url.endswith(PROFESSIONAL)
    response = requests.get(
        sbx.url + "/uk/sage300/accounts/v1/customers", headers=standard.headers()
    )
    assert response.status_code == 404


def test_sites_lists_one_site_with_three_companies_and_needs_no_site_headers(api: Api) -> None:
    response = requests.get(api.root + "/sites", headers=api.auth(), timeout=10)
    sites = response.json()
    assert response.status_code == 200 and isinstance(sites, list)
    assert len({s["site_id"] for s in sites}) == 1
    assert sorted(s["company_id"] for s in sites) == [1, 2, 3]
    assert {"company_name", "site_name", "site_short_name"} <= set(sites[0])
    assert "date_time_updated" not in sites[0]
    chosen = api.ok("/sites", **{"$filter": "company_id eq 2", "$select": "company_name"})
    assert chosen == [{"company_name": "Demo Manufacturing Ltd"}]


@pytest.mark.parametrize("missing", ["X-Site", "X-Company"])
def test_a_missing_site_or_company_header_is_a_gateway_error(api: Api, missing: str) -> None:
    headers = api.headers()
    del headers[missing]
    error = error_of(api.call("GET", "/customers", headers=headers), 400)
    assert error["$dataCode"] == "HeaderNotFound"
    assert missing in error["$message"]


@pytest.mark.parametrize(
    ("header", "value", "code"),
    [
        ("X-Site", "00000000-0000-0000-0000-000000000000", "SiteNotFound"),
        ("X-Company", "99", "CompanyNotFound"),
        ("X-Company", "abc", "CompanyNotFound"),
    ],
)
def test_an_unknown_site_or_company_is_refused(
    api: Api, header: str, value: str, code: str
) -> None:
    error = error_of(api.call("GET", "/customers", headers=api.headers(**{header: value})), 403)
    assert error["$dataCode"] == code


def test_each_company_has_its_own_data(api: Api) -> None:
    first = api.ok("/customers", **{"$select": "name"})
    api.company = "2"
    second = api.ok("/customers", **{"$select": "name"})
    assert len(first) == len(second) == 20 and first != second
    created = api.post("/customers", {"reference": "ONLYIN2", "name": "Company Two Only"})
    assert created.status_code == 200
    api.company = "1"
    assert api.ok("/customers", **{"$filter": "reference eq 'ONLYIN2'"}) == []


def test_tokens_are_required_valid_and_unexpired(api: Api) -> None:
    no_token = {k: v for k, v in api.headers().items() if k != "Authorization"}
    assert error_of(api.call("GET", "/customers", headers=no_token), 401)
    bad = api.headers(Authorization="Bearer nope")
    assert error_of(api.call("GET", "/customers", headers=bad), 401)
    api.sbx.app.clock.advance(api.sbx.config.access_token_lifetime + 1)
    assert "expired" in error_of(api.get("/customers"), 401)["$message"]
    assert api.sbx.token()["scope"] == "openid profile email offline_access"


def test_the_rate_limit_counts_per_company(start_sandbox: Any) -> None:
    api = Api(start_sandbox("sage_200", rows=5, rate_limit_per_minute=3))
    for _ in range(3):
        assert api.get("/customers").status_code == 200
    limited = api.get("/customers")
    assert error_of(limited, 429)["$dataCode"] == "TooManyRequests"
    assert int(limited.headers["Retry-After"]) >= 1
    api.company = "2"
    assert api.get("/customers").status_code == 200


# -- records -------------------------------------------------------------------------------


def test_lists_are_bare_arrays_of_records_with_integer_ids_and_utc_times(api: Api) -> None:
    customers = api.ok("/customers")
    assert isinstance(customers, list) and len(customers) == 20
    assert [c["id"] for c in customers] == list(range(1, 21))
    for customer in customers:
        assert MS_Z.match(customer["date_time_created"]), customer["date_time_created"]
        assert MS_Z.match(customer["date_time_updated"])
        assert customer["date_time_created"] <= customer["date_time_updated"]
        assert "2024-01-01" <= customer["date_time_created"] <= "2025-09-30T18:00:00.000Z"


def test_some_records_share_an_update_time(start_sandbox: Any) -> None:
    api = Api(start_sandbox("sage_200", rows=200))
    stamps = [p["date_time_updated"] for p in api.ok("/sales_posted_transactions")]
    seconds = [s[:19] for s in stamps]
    assert len(set(seconds)) < len(seconds)


@pytest.mark.parametrize(
    "resource", ["sales_transaction_views", "product_views", "sites", "users", "bank_views"]
)
def test_views_without_an_update_time_have_no_date_time_updated(api: Api, resource: str) -> None:
    records = api.ok("/" + resource)
    assert records
    assert all("date_time_updated" not in r for r in records)
    error = error_of(api.get("/" + resource, **{"$filter": "date_time_updated gt 2024-01-01"}), 400)
    assert "date_time_updated" in error["$message"]


def test_singletons_answer_one_object(api: Api) -> None:
    licence = api.ok("/licence")
    assert isinstance(licence, dict) and isinstance(licence["is_sales_enabled"], bool)
    assert api.ok("/current_user")["logon_name"] == "MANAGER"


def test_get_one_record_or_404(api: Api) -> None:
    customer = api.ok("/customers/7")
    assert customer["id"] == 7 and customer == api.ok("/customers")[6]
    assert error_of(api.get("/customers/999"), 404)["$dataCode"] == "RecordNotFound"
    assert error_of(api.get("/customers/abc"), 404)
    assert error_of(api.get("/no_such_things"), 404)


def test_the_same_seed_gives_the_same_data(start_sandbox: Any) -> None:
    one = Api(start_sandbox("sage_200", rows=10, seed=7))
    two = Api(start_sandbox("sage_200", rows=10, seed=7))
    other = Api(start_sandbox("sage_200", rows=10, seed=8))
    for resource in ("/customers", "/sop_orders", "/sales_posted_transactions", "/units"):
        assert one.ok(resource) == two.ok(resource)
    assert one.site == two.site != other.site
    assert one.ok("/customers") != other.ok("/customers")


def test_core_data_is_consistent_across_tables(api: Api) -> None:
    top = {"$top": 5000}
    customers = {c["id"]: c for c in api.ok("/customers", **top)}
    suppliers = {s["id"]: s for s in api.ok("/suppliers", **top)}
    products = {p["id"]: p for p in api.ok("/products", **top)}
    warehouses = {w["id"] for w in api.ok("/warehouses")}
    groups = {g["id"] for g in api.ok("/product_groups")}
    tax = {t["id"]: t["tax_rate"] for t in api.ok("/tax_codes")}
    assert all(p["product_group_id"] in groups for p in products.values())
    for holding in api.ok("/warehouse_holdings", **top):
        assert holding["product_id"] in products and holding["warehouse_id"] in warehouses
    for resource, traders, key in (
        ("/sop_orders", customers, "customer_id"),
        ("/pop_orders", suppliers, "supplier_id"),
    ):
        orders = api.ok(resource, **top)
        assert len(orders) == 20
        for order in orders:
            assert order[key] in traders
            lines = order["lines"]
            assert lines
            for line in lines:
                product = products[line["product_id"]]
                assert (line["code"], line["description"]) == (product["code"], product["name"])
                rate = tax[line["tax_code_id"]]
                assert line["line_tax_value"] == pytest.approx(
                    line["line_total_value"] * rate / 100, abs=0.01
                )
            assert order["total_net_value"] == pytest.approx(
                sum(x["line_total_value"] for x in lines)
            )
            assert order["total_tax_value"] == pytest.approx(
                sum(x["line_tax_value"] for x in lines)
            )
            assert order["total_gross_value"] == pytest.approx(
                order["total_net_value"] + order["total_tax_value"]
            )
    signs = {
        "TradingAccountEntryTypeInvoice": 1,
        "TradingAccountEntryTypeCreditNote": -1,
        "TradingAccountEntryTypePurchasePaymentSalesReceipt": -1,
    }
    for resource, traders, key in (
        ("/sales_posted_transactions", customers, "customer_id"),
        ("/purchase_posted_transactions", suppliers, "supplier_id"),
    ):
        owed: dict[int, float] = {}
        for posted in api.ok(resource, **top):
            assert posted[key] in traders
            assert posted["document_gross_value"] == pytest.approx(
                posted["document_goods_value"] + posted["document_tax_value"]
            )
            sign = signs[posted["trader_transaction_type"]]
            owed[posted[key]] = (
                owed.get(posted[key], 0) + sign * posted["document_outstanding_value"]
            )
        for trader_id, trader in traders.items():
            assert trader["balance"] == pytest.approx(owed.get(trader_id, 0), abs=0.01)
    banks = {b["id"] for b in api.ok("/banks")}
    assert all(b["bank_id"] in banks for b in api.ok("/bank_posted_transactions", **top))


# -- conformance with the published definitions --------------------------------------------


@cache
def published_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for path in sorted((REFERENCE / "sage200").glob("*.openapi3.json")):
        for name, schema in json.loads(path.read_text(encoding="utf-8"))["components"][
            "schemas"
        ].items():
            schemas.setdefault(name, schema)
    return schemas


def resolved(schema: dict[str, Any] | None) -> dict[str, Any]:
    schema = schema or {}
    out: dict[str, Any] = {}
    if "$ref" in schema:
        out.update(resolved(published_schemas()[schema["$ref"].rsplit("/", 1)[-1]]))
    for part in schema.get("allOf", []):
        merged = resolved(part)
        properties = {**out.get("properties", {}), **merged.get("properties", {})}
        out.update(merged)
        out["properties"] = properties
    out.update({k: v for k, v in schema.items() if k not in ("$ref", "allOf")})
    return out


def misfits(value: Any, schema: dict[str, Any] | None, where: str) -> list[str]:
    """Where a value is not what the schema allows: unknown fields, wrong types (nested)."""
    schema = resolved(schema)
    if value is None:
        return []
    kind, form = schema.get("type"), str(schema.get("format", ""))
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if form in ("int16", "int32", "int64"):
        ok = is_int
    elif form.startswith("decimal") or kind == "number":
        ok = is_int or isinstance(value, float)
    elif form == "boolean" or kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "integer":
        ok = is_int
    elif kind == "string":
        ok = isinstance(value, str)
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not an array"]
        return [
            m for i, v in enumerate(value) for m in misfits(v, schema.get("items"), f"{where}[{i}]")
        ]
    elif kind == "object" or "properties" in schema:
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not an object"]
        properties = schema.get("properties") or {}
        if not properties:  # an expandable link: its fields are the linked record's
            return []
        return [
            m
            for key, inner in value.items()
            for m in (
                misfits(inner, properties[key], f"{where}.{key}")
                if key in properties
                else [f"{where}.{key}: not a property of the record schema"]
            )
        ]
    else:
        ok = True
    return [] if ok else [f"{where}: {value!r} is not {kind} {form}".rstrip()]


def record_schema(resource: str) -> dict[str, Any]:
    table = default_catalog().table(resource, "sage_200")
    return {"$ref": "#/components/schemas/" + table.operations["list"].record_schema}


def test_the_misfit_check_catches_unknown_fields_and_wrong_types() -> None:
    schema = record_schema("customers")
    assert misfits({"id": 1, "name": "x", "balance": 1.5}, schema, "c") == []
    assert misfits({"nickname": "x"}, schema, "c") == [
        "c.nickname: not a property of the record schema"
    ]
    assert misfits({"id": "1"}, schema, "c")
    assert misfits({"balance": "1.50"}, schema, "c")
    assert misfits({"main_address": {"city": 5}}, schema, "c")


CORE_SAMPLE = [
    "customers",
    "suppliers",
    "products",
    "sop_orders",
    "pop_orders",
    "nominal_codes",
    "sales_posted_transactions",
    "purchase_posted_transactions",
    "bank_posted_transactions",
    "warehouse_holdings",
    "banks",
]


def test_every_list_resource_is_served_and_fits_the_published_record_schema(
    start_sandbox: Any,
) -> None:
    api = Api(start_sandbox("sage_200", rows=3, rate_limit_per_minute=0))
    catalog = default_catalog()
    served = 0
    for summary in catalog.tables("sage_200"):
        table = catalog.table(summary.name, "sage_200")
        if "list" not in table.operations:
            continue
        body = api.ok(table.operations["list"].path)
        records = body if isinstance(body, list) else [body]
        assert records, f"{table.name} has no records"
        for record in records:
            assert misfits(record, record_schema(table.name), table.name) == []
            if table.key == "id":
                assert isinstance(record["id"], int)
        served += 1
    assert served >= 260


@pytest.mark.parametrize("resource", CORE_SAMPLE)
def test_single_records_fit_the_published_schema(api: Api, resource: str) -> None:
    record = api.ok(f"/{resource}/1")
    assert misfits(record, record_schema(resource), resource) == []


# -- $filter -------------------------------------------------------------------------------


FILTERS: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
    ("balance gt 1000", lambda c: c["balance"] > 1000),
    ("balance ge 0", lambda c: c["balance"] >= 0),
    ("id lt 5", lambda c: c["id"] < 5),
    ("id le 5", lambda c: c["id"] <= 5),
    ("id ne 3", lambda c: c["id"] != 3),
    ("5 gt id", lambda c: c["id"] < 5),
    ("on_hold eq false", lambda c: not c["on_hold"]),
    ("credit_limit eq 5000 or credit_limit eq 10000", lambda c: c["credit_limit"] in (5000, 10000)),
    ("not (id lt 5) and balance lt 0", lambda c: c["id"] >= 5 and c["balance"] < 0),
    ("id eq 1 or id eq 2 and id eq 3", lambda c: c["id"] == 1),
    ("(id eq 1 or id eq 2) and id eq 2", lambda c: c["id"] == 2),
    ("not id eq 1 and id le 2", lambda c: c["id"] == 2),
    ("contains(name,'ing')", lambda c: "ing" in c["name"].lower()),
    ("startswith(name,'C')", lambda c: c["name"].lower().startswith("c")),
    ("endswith(name,'ltd')", lambda c: c["name"].lower().endswith("ltd")),
    ("not contains(name,'a')", lambda c: "a" not in c["name"].lower()),
    ("contains(name,'a') eq false", lambda c: "a" not in c["name"].lower()),
    ("main_address/city eq 'London'", lambda c: c["main_address"]["city"] == "London"),
    ("date_time_updated gt 2025-01-01T00:00:00Z", lambda c: c["date_time_updated"] > "2025-01-01T"),
    (
        "date_time_created le 2024-06-30",
        lambda c: c["date_time_created"] <= "2024-06-30T00:00:00.000Z",
    ),
    ("status_reason eq null", lambda c: c["status_reason"] is None),
    ("status_reason ne null", lambda c: c["status_reason"] is not None),
]


@pytest.mark.parametrize(("expression", "predicate"), FILTERS, ids=[f for f, _ in FILTERS])
def test_filter_keeps_the_records_the_expression_describes(
    api: Api, expression: str, predicate: Callable[[dict[str, Any]], bool]
) -> None:
    everything = api.ok("/customers")
    wanted = [c["id"] for c in everything if predicate(c)]
    found = [c["id"] for c in api.ok("/customers", **{"$filter": expression})]
    assert found == wanted


def test_filter_precedence_and_edge_cases_are_not_vacuous(api: Api) -> None:
    everything = api.ok("/customers")
    names = [c["name"] for c in everything]
    assert any("ing" in n.lower() for n in names) and not all("ing" in n.lower() for n in names)
    balances = [c["balance"] for c in everything]
    assert any(b > 1000 for b in balances) and any(b < 0 for b in balances)


def test_filter_on_dates_of_posted_transactions(api: Api) -> None:
    everything = api.ok("/sales_posted_transactions")
    day = sorted(p["transaction_date"] for p in everything)[len(everything) // 2]
    found = api.ok("/sales_posted_transactions", **{"$filter": f"transaction_date ge {day[:10]}"})
    assert [p["id"] for p in found] == [p["id"] for p in everything if p["transaction_date"] >= day]
    unsettled = api.ok("/sales_posted_transactions", **{"$filter": "full_settlement_date eq null"})
    assert [p["id"] for p in unsettled] == [
        p["id"] for p in everything if p["full_settlement_date"] is None
    ]


def test_filter_strings_escape_quotes_and_wildcards(api: Api) -> None:
    for reference, name in (("QUOTE1", "O'Brien's Bakery"), ("WILD1", "100% Fresh_Foods")):
        assert api.post("/customers", {"reference": reference, "name": name}).status_code == 200
    found = api.ok("/customers", **{"$filter": "name eq 'O''Brien''s Bakery'"})
    assert [c["reference"] for c in found] == ["QUOTE1"]
    # Text compares case-insensitively, as Sage 200's SQL Server collation does.
    found = api.ok("/customers", **{"$filter": "name eq 'o''brien''S BAKERY'"})
    assert [c["reference"] for c in found] == ["QUOTE1"]
    found = api.ok("/customers", **{"$filter": "contains(name,'''s Bak')"})
    assert [c["reference"] for c in found] == ["QUOTE1"]
    found = api.ok("/customers", **{"$filter": "contains(name,'0% F')"})
    assert [c["reference"] for c in found] == ["WILD1"]
    assert api.ok("/customers", **{"$filter": "contains(name,'_F')"})[0]["reference"] == "WILD1"
    assert api.ok("/customers", **{"$filter": "contains(name,'%')"})[0]["reference"] == "WILD1"
    assert api.ok("/customers", **{"$filter": "startswith(name,'%')"}) == []


BAD_QUERIES = [
    ({"$filter": "nickname eq 'x'"}, "nickname"),
    ({"$filter": "name eq"}, "end of the filter"),
    ({"$filter": "name eq 'open"}, "unterminated"),
    ({"$filter": "(id eq 1"}, "')'"),
    ({"$filter": "id eq 1 id eq 2"}, "'id'"),
    ({"$filter": "name like 'x'"}, "like"),
    ({"$filter": "substringof('x',name)"}, "substringof"),
    ({"$filter": "id eq 'one'"}, "id"),
    ({"$filter": "name eq 5"}, "quote"),
    ({"$filter": "date_time_updated gt '2024-01-01'"}, "unquoted"),
    ({"$filter": "date_time_updated gt 2016-02-24T09:52:11.452"}, "end in Z"),
    ({"$filter": "date_time_updated gt 2016-02-24T09:52:11+01:00"}, "end in Z"),
    ({"$filter": "date_time_created lt 2024-13-45"}, "invalid date"),
    ({"$filter": "contains(balance,'1')"}, "text field"),
    ({"$filter": "name"}, "not a condition"),
    ({"$filter": "balance gt null"}, "null"),
    ({"$filter": "memos eq 1"}, "collection"),
    ({"$filter": ""}, "empty"),
    ({"$orderby": "nickname"}, "nickname"),
    ({"$orderby": "name sideways"}, "asc or desc"),
    ({"$select": "id,nickname"}, "nickname"),
    ({"$expand": "main_address"}, "main_address"),
    ({"$top": "ten"}, "$top"),
    ({"$top": "-1"}, "$top"),
    ({"$count": "maybe"}, "$count"),
    ({"$search": "x"}, "$search"),
]


@pytest.mark.parametrize(("params", "named"), BAD_QUERIES, ids=[str(p) for p, _ in BAD_QUERIES])
def test_bad_query_options_are_400_with_a_clear_message(
    api: Api, params: dict[str, str], named: str
) -> None:
    error = error_of(api.get("/customers", **params), 400)
    assert error["$dataCode"] == "InvalidQuery"
    assert named.lower() in error["$message"].lower(), error["$message"]
    assert error["$source"] == next(iter(params))


def test_filter_sql_is_parameterised() -> None:
    fields = {"name": Field("json_extract(data, '$.name')", "TEXT")}
    sql, params = filter_sql("name eq 'x''); DROP TABLE r_customers; --'", fields.__getitem__)
    assert "DROP" not in sql and params == ["x'); DROP TABLE r_customers; --"]
    with pytest.raises(ODataError, match="position 12"):
        filter_sql("name eq 'x' name", fields.__getitem__)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=12))
def test_any_string_literal_reaches_sql_as_one_parameter(text: str) -> None:
    fields = {"name": Field("n", "TEXT")}
    quoted = "'" + text.replace("'", "''") + "'"
    assert filter_sql(f"name eq {quoted}", fields.__getitem__) == (
        "n IS ? COLLATE NOCASE",
        [text],
    )


# -- $select, $orderby, $top, $skip, $count, $expand ---------------------------------------


def test_select_returns_only_the_fields_asked_for(api: Api) -> None:
    records = api.ok("/customers", **{"$select": "id,name,main_address/city", "$top": 3})
    assert len(records) == 3
    for record in records:
        assert set(record) == {"id", "name", "main_address"}
        assert set(record["main_address"]) == {"city"}
    assert set(api.ok("/customers/2", **{"$select": "reference"})) == {"reference"}


def test_orderby_sorts_by_several_keys(api: Api) -> None:
    everything = api.ok("/customers")
    ordered = api.ok("/customers", **{"$orderby": "currency_id desc, name asc"})
    expected = sorted(everything, key=lambda c: c["name"].lower())
    expected.sort(key=lambda c: c["currency_id"], reverse=True)
    assert [c["id"] for c in ordered] == [c["id"] for c in expected]
    assert len({c["currency_id"] for c in everything}) > 1
    descending = api.ok("/customers", **{"$orderby": "id desc"})
    assert [c["id"] for c in descending] == list(range(20, 0, -1))


def test_top_defaults_to_500_and_stops_at_5000(start_sandbox: Any) -> None:
    api = Api(start_sandbox("sage_200", rows=260))  # 520 posted transactions
    assert len(api.ok("/sales_posted_transactions")) == 500
    assert len(api.ok("/sales_posted_transactions", **{"$top": 5000})) == 520
    assert len(api.ok("/sales_posted_transactions", **{"$top": 7})) == 7
    error = error_of(api.get("/sales_posted_transactions", **{"$top": 5001}), 400)
    assert "5000" in error["$message"]


def test_skip_needs_orderby_and_pages_through_everything(api: Api) -> None:
    error = error_of(api.get("/customers", **{"$skip": 5}), 400)
    assert "$orderby" in error["$message"]
    pages, skip = [], 0
    while True:
        page = api.ok("/customers", **{"$orderby": "id", "$top": 6, "$skip": skip})
        pages += page
        skip += 6
        if len(page) < 6:
            break
    assert [c["id"] for c in pages] == list(range(1, 21))


def test_count_is_a_bare_integer_of_the_filtered_rows(api: Api) -> None:
    response = api.get("/customers", **{"$count": "true"})
    assert response.status_code == 200 and response.text.strip() == "20"
    wanted = len(api.ok("/customers", **{"$filter": "balance gt 0"}))
    assert (
        api.ok("/customers", **{"$count": "true", "$filter": "balance gt 0", "$top": 1}) == wanted
    )
    assert isinstance(api.ok("/customers", **{"$count": "false"}), list)


def test_expand_fills_links_that_are_otherwise_null(api: Api) -> None:
    order = api.ok("/sop_orders/1")
    assert order["customer"] is None
    expanded = api.ok("/sop_orders/1", **{"$expand": "customer,currency"})
    assert expanded["customer"]["id"] == order["customer_id"]
    assert expanded["currency"]["id"] == order["currency_id"]
    listed = api.ok("/products", **{"$expand": "tax_code", "$top": 2})
    assert listed[0]["tax_code"]["id"] == listed[0]["tax_code_id"]


# -- writes --------------------------------------------------------------------------------


def test_post_creates_a_record_with_the_next_id_and_its_times(api: Api) -> None:
    freeze(api, "2026-03-04T05:06:07.891Z")
    response = api.post(
        "/customers",
        {"reference": "NEW0001", "name": "New Customer Ltd", "main_address": {"city": "York"}},
    )
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["id"] == 21
    assert (
        created["date_time_created"] == created["date_time_updated"] == "2026-03-04T05:06:07.891Z"
    )
    assert created["main_address"]["city"] == "York" and created["balance"] == 0
    assert misfits(created, record_schema("customers"), "customers") == []
    assert api.ok("/customers/21") == created
    assert api.ok("/customers", **{"$filter": "reference eq 'NEW0001'"}) == [created]
    assert api.post("/customers", {"reference": "NEW0002", "name": "x"}).json()["id"] == 22


def test_post_checks_required_fields_types_and_duplicates(api: Api) -> None:
    response = api.post("/customers", {"name": "No Reference"})
    error = error_of(response, 400)
    assert error["$source"] == "reference" and "reference" in error["$message"]
    both = api.post("/customers", {})
    assert {e["$source"] for e in both.json()} == {"reference", "name"}
    assert error_of(api.post("/customers", {"reference": "X", "name": 5}), 400)["$source"] == "name"
    too_long = error_of(api.post("/customers", {"reference": "TOOLONG99", "name": "x"}), 400)
    assert "8" in too_long["$message"]
    taken = api.ok("/customers/1")["reference"]
    assert error_of(api.post("/customers", {"reference": taken, "name": "x"}), 400)[
        "$dataCode"
    ] == ("DuplicateValue")
    assert error_of(api.call("POST", "/customers", data="{not json"), 400)
    assert api.ok("/customers", **{"$count": "true"}) == 20


def test_put_updates_and_bumps_date_time_updated_for_pollers(api: Api) -> None:
    before = api.ok("/customers/3")
    freeze(api, "2026-05-01T10:00:00.000Z")
    response = api.put("/customers/3", {"name": "Renamed Ltd", "balance": 1e9})
    assert response.status_code == 200
    after = response.json()
    assert after["name"] == "Renamed Ltd"
    assert after["balance"] == before["balance"]  # read-only: ignored
    assert after["date_time_created"] == before["date_time_created"]
    assert after["date_time_updated"] == "2026-05-01T10:00:00.000Z"
    changed = api.ok("/customers", **{"$filter": "date_time_updated gt 2026-04-30T00:00:00Z"})
    assert [c["id"] for c in changed] == [3]
    assert api.ok("/customers/3") == after
    assert error_of(api.put("/customers/999", {"name": "x"}), 404)


def test_delete_removes_the_record(api: Api) -> None:
    assert api.delete("/customers/4").status_code == 204
    assert error_of(api.get("/customers/4"), 404)
    assert 4 not in [c["id"] for c in api.ok("/customers")]
    assert api.ok("/customers", **{"$count": "true"}) == 19
    assert api.ok("/customers", **{"$filter": "id eq 4"}) == []
    assert error_of(api.delete("/customers/4"), 404)
    assert api.delete("/customers/20").status_code == 204
    reborn = api.post("/customers", {"reference": "AFTER", "name": "After Ltd"}).json()
    assert reborn["id"] == 21  # an identity: the id of a deleted record is not reused


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/tax_codes/1"),
        ("POST", "/tax_codes"),
        ("PUT", "/currencies/1"),
        ("GET", "/sales_invoices"),
        ("GET", "/sales_invoices/1"),
        ("PUT", "/customers"),
        ("DELETE", "/sales_posted_transactions/1"),
    ],
)
def test_operations_a_table_lacks_are_405(api: Api, method: str, path: str) -> None:
    response = api.call(method, path, json={})
    assert error_of(response, 405)["$dataCode"] == "MethodNotAllowed"
    assert "Allow" in response.headers


def test_sales_orders_are_created_with_lines_and_totals(api: Api) -> None:
    product = api.ok("/products/2")
    line = {
        "line_type": "EnumLineTypeStandard",
        "product_id": 2,
        "warehouse_id": 1,
        "code": product["code"],
        "description": product["name"],
        "line_quantity": 3,
        "selling_unit_price": 10.5,
    }
    body = {
        "customer_id": 5,
        "document_no": "WEB0001",
        "lines": [line, {**line, "line_quantity": 1}],
    }
    response = api.post("/sop_orders", body)
    assert response.status_code == 200, response.text
    order = response.json()
    rate = api.ok(f"/tax_codes/{product['tax_code_id']}")["tax_rate"]
    assert [x["line_total_value"] for x in order["lines"]] == [31.5, 10.5]
    assert order["total_net_value"] == 42.0
    assert order["total_tax_value"] == pytest.approx(42.0 * rate / 100)
    assert len({x["id"] for x in order["lines"]}) == 2
    assert all(x["sop_order_id"] == order["id"] for x in order["lines"])
    bad = api.post("/sop_orders", {**body, "lines": [{**line, "product_id": 999}]})
    assert "product_id" in error_of(bad, 400)["$source"]
    assert error_of(api.post("/sop_orders", {**body, "customer_id": 999}), 400)["$source"] == (
        "customer_id"
    )
    updated = api.put(f"/sop_orders/{order['id']}", {"lines": [order["lines"][0]]}).json()
    assert (
        updated["total_net_value"] == 31.5 and updated["lines"][0]["id"] == order["lines"][0]["id"]
    )


# -- insert-only postings ------------------------------------------------------------------


def test_a_sales_invoice_is_posted_and_read_back_as_a_posted_transaction(api: Api) -> None:
    freeze(api, "2026-02-02T12:00:00.000Z")
    before = api.ok("/customers/6")
    response = api.post(
        "/sales_invoices",
        {
            "customer_id": 6,
            "reference": "WEB-1",
            "document_goods_value": 100,
            "document_tax_value": 20,
        },
    )
    assert response.status_code == 200, response.text
    urn = response.json()["urn"]
    assert isinstance(urn, str) and set(response.json()) == {"urn"}
    (posted,) = api.ok("/sales_posted_transactions", **{"$filter": f"urn eq {urn}"})
    assert posted["customer_id"] == 6 and posted["reference"] == "WEB-1"
    assert posted["trader_transaction_type"] == "TradingAccountEntryTypeInvoice"
    assert posted["document_gross_value"] == 120 and posted["document_outstanding_value"] == 120
    assert misfits(posted, record_schema("sales_posted_transactions"), "posted") == []
    after = api.ok("/customers/6")
    assert after["balance"] == pytest.approx(before["balance"] + 120)
    assert after["date_time_updated"] == "2026-02-02T12:00:00.000Z"
    assert (
        error_of(api.post("/sales_invoices", {"reference": "x"}), 400)["$source"] == "customer_id"
    )
    assert (
        error_of(api.post("/sales_invoices", {"customer_id": 999}), 400)["$source"] == "customer_id"
    )


def test_a_sales_receipt_reaches_the_bank_with_the_same_urn(api: Api) -> None:
    bank = api.ok("/banks/1")
    response = api.post("/sales_receipts", {"customer_id": 2, "bank_id": 1, "cheque_value": 75.5})
    assert response.status_code == 200, response.text
    urn = int(response.json()["urn"])
    (posted,) = api.ok("/sales_posted_transactions", **{"$filter": f"urn eq {urn}"})
    assert posted["trader_transaction_type"] == "TradingAccountEntryTypePurchasePaymentSalesReceipt"
    (banked,) = api.ok("/bank_posted_transactions", **{"$filter": f"urn eq {urn}"})
    assert banked["bank_id"] == 1 and banked["cheque_value"] == 75.5
    assert api.ok("/banks/1")["balance"] == pytest.approx(bank["balance"] + 75.5)
    missing = api.post("/sales_receipts", {"customer_id": 2})
    assert {e["$source"] for e in missing.json()} == {"bank_id", "cheque_value"}


def test_purchase_invoices_and_bank_payments_are_posted_too(api: Api) -> None:
    urn = api.post("/purchase_invoices", {"supplier_id": 3, "document_goods_value": 50}).json()[
        "urn"
    ]
    (posted,) = api.ok("/purchase_posted_transactions", **{"$filter": f"urn eq {urn}"})
    assert posted["supplier_id"] == 3 and posted["document_gross_value"] == 50
    response = api.post(
        "/bank_payment",
        {
            "bank_id": 2,
            "nominal_analysis_items": [{"code": "7100", "goods_value": 40, "tax_value": 8}],
        },
    )
    assert response.status_code == 200, response.text
    (banked,) = api.ok(
        "/bank_posted_transactions", **{"$filter": f"urn eq {response.json()['urn']}"}
    )
    assert banked["bank_id"] == 2 and banked["cheque_value"] == -48
    transfer = api.post("/bank_transfer", {"bank_from_id": 1, "bank_to_id": 2, "payment_value": 10})
    assert transfer.status_code == 200 and transfer.json()["payment_value"] == 10
    assert error_of(api.get("/bank_payment"), 405)


def test_allocations_settle_posted_transactions(api: Api) -> None:
    invoice = api.post("/sales_invoices", {"customer_id": 8, "document_goods_value": 30}).json()
    (posted,) = api.ok("/sales_posted_transactions", **{"$filter": f"urn eq {invoice['urn']}"})
    body = {
        "customer_id": 8,
        "allocation_lines": [{"posted_tran_id": posted["id"], "value_to_allocate": 30}],
    }
    assert api.post("/sales_allocations", body).status_code == 200
    settled = api.ok(f"/sales_posted_transactions/{posted['id']}")
    assert settled["document_outstanding_value"] == 0 and settled["document_allocated_value"] == 30
    other = {**body, "customer_id": 9}
    assert error_of(api.post("/sales_allocations", other), 400)["$dataCode"] == "RecordNotFound"


# -- visibility lag ------------------------------------------------------------------------


def test_recent_changes_are_listed_only_after_the_visibility_lag(start_sandbox: Any) -> None:
    api = Api(start_sandbox("sage_200", rows=5, visibility_lag=30))
    freeze(api, "2026-01-01T00:00:00.000Z")
    created = api.post("/customers", {"reference": "LAGGED", "name": "Lagged Ltd"}).json()
    assert api.ok(f"/customers/{created['id']}") == created  # a single GET sees it at once
    assert api.ok("/customers", **{"$filter": "reference eq 'LAGGED'"}) == []
    assert api.ok("/customers", **{"$count": "true"}) == 5
    api.sbx.app.clock.advance(31)
    assert [c["id"] for c in api.ok("/customers", **{"$filter": "reference eq 'LAGGED'"})] == [6]


def test_a_post_answers_the_status_the_published_definitions_give(api: Api) -> None:
    """Every POST of the Sage 200 definitions answers 200 (with 400 for errors), not 201."""
    statuses = {
        code
        for path in sorted((REFERENCE / "sage200").glob("*.openapi3.json"))
        for item in json.loads(path.read_text(encoding="utf-8"))["paths"].values()
        for code in item.get("post", {}).get("responses", {})
        if code.startswith("2")
    }
    assert statuses == {"200"}
    created = api.post("/customers", {"reference": "POST200", "name": "Status Check"})
    assert created.status_code == 200 and created.json()["reference"] == "POST200"
