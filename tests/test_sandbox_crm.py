"""The Sage CRM sandbox over real HTTP: entities, SData paging, where/orderBy, writes, auth."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from sagesql.sandbox import sdata
from sagesql.sandbox.crm_data import USERS, CrmSeeder
from sagesql.schemas.catalog import default_catalog

AUTH = ("admin", "sandbox")
LOCAL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")
CRM_TABLES = [
    default_catalog().table(t.name, "sage_crm") for t in default_catalog().tables("sage_crm")
]


# Also the forms Sage does not document (ne lt le, not, @date@): strict is the default.
EXTENDED = {"crm_filter_operators": "extended"}


def crm(start_sandbox: Any, **config: Any) -> Any:
    return start_sandbox("sage_crm", **config)


def get(sbx: Any, path: str, auth: Any = AUTH, **params: Any) -> requests.Response:
    return requests.get(sbx.base_url + path, params=params, auth=auth, timeout=10)


def send(sbx: Any, method: str, path: str, body: Any = None, **kw: Any) -> requests.Response:
    return requests.request(
        method, sbx.base_url + path, json=body, auth=kw.pop("auth", AUTH), timeout=10, **kw
    )


def everything(sbx: Any, entity: str) -> list[dict[str, Any]]:
    """Every record of an entity, through the pages of 1000."""
    out: list[dict[str, Any]] = []
    while True:
        page = get(sbx, f"/{entity}", startIndex=len(out) + 1, count=1000).json()
        out += page["$resources"]
        if len(out) >= page["$totalResults"]:
            return out


def keys(response: requests.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [int(r["$key"]) for r in response.json()["$resources"]]


def diagnosis(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["$diagnoses"]
    (found,) = body["$diagnoses"]
    assert found["$severity"] == "error"
    assert found["$sdataCode"] == code, found
    assert found["$message"]
    return found  # type: ignore[no-any-return]


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def freeze(sbx: Any, when: str) -> None:
    r = requests.post(sbx.url + "/_sandbox/clock", json={"set": when, "frozen": True}, timeout=5)
    assert r.status_code == 200


# -- reads ----------------------------------------------------------------------------------


def test_list_envelope_default_page_size_and_clamp(start_sandbox: Any) -> None:
    sbx = crm(start_sandbox, rows=120)
    page = get(sbx, "/Company").json()
    assert list(page) == ["$totalResults", "$startIndex", "$itemsPerPage", "$resources"]
    assert (page["$totalResults"], page["$startIndex"], page["$itemsPerPage"]) == (120, 1, 100)
    assert [int(r["$key"]) for r in page["$resources"]] == list(range(1, 101))
    big = get(sbx, "/Company", count=5000).json()  # clamped to the maximum, 1000
    assert big["$itemsPerPage"] == 1000 and len(big["$resources"]) == 120
    none = get(sbx, "/Company", count=0).json()
    assert none["$resources"] == [] and none["$totalResults"] == 120


def test_paging_is_one_based_and_stable(start_sandbox: Any) -> None:
    sbx = crm(start_sandbox, rows=45)
    seen: list[int] = []
    for start in range(1, 46, 10):
        page = get(sbx, "/Company", startIndex=start, count=10).json()
        assert page["$startIndex"] == start and page["$itemsPerPage"] == 10
        seen += [int(r["$key"]) for r in page["$resources"]]
    assert seen == list(range(1, 46))
    assert keys(get(sbx, "/Company", startIndex=41, count=10)) == [41, 42, 43, 44, 45]
    # With many ties (few types), pages of an orderBy still cover every record once.
    ordered = [
        k
        for start in range(1, 46, 7)
        for k in keys(get(sbx, "/Company", orderBy="comp_type", startIndex=start, count=7))
    ]
    assert sorted(ordered) == list(range(1, 46))


@pytest.mark.parametrize(
    ("params", "location"),
    [
        ({"startIndex": "0"}, "startIndex"),
        ({"startIndex": "x"}, "startIndex"),
        ({"count": "-1"}, "count"),
        ({"count": "ten"}, "count"),
    ],
)
def test_bad_paging_parameters(start_sandbox: Any, params: dict[str, str], location: str) -> None:
    sbx = crm(start_sandbox, rows=5)
    found = diagnosis(get(sbx, "/Company", **params), 400, "BadQueryParameter")
    assert found["$location"] == location


def test_records_match_the_table_definitions(start_sandbox: Any) -> None:
    sbx = crm(start_sandbox, rows=10)
    assert {t.resource for t in CRM_TABLES} == {
        "Company",
        "Person",
        "Lead",
        "Opportunity",
        "Users",
        "Cases",
        "Communication",
    }
    for table in CRM_TABLES:
        page = get(sbx, f"/{table.resource}", count=20).json()
        assert page["$resources"], table.name
        for record in page["$resources"]:
            assert set(record) == {"$key", "$url", "$updated"} | {c.name for c in table.columns}
            key = record[table.key]
            assert isinstance(key, int) and record["$key"] == str(key)
            assert record["$url"] == f"{sbx.base_url}/{table.resource}('{key}')"
            assert record["$updated"] == record[table.updated_column]
            for column in table.columns:
                value = record[column.name]
                if value is None:
                    assert column.nullable, (table.name, column.name)
                elif column.type == "INTEGER":
                    assert isinstance(value, int) and not isinstance(value, bool)
                elif column.type == "DECIMAL":
                    assert isinstance(value, (int, float)) and not isinstance(value, bool)
                elif column.type == "DATETIME":
                    assert LOCAL_DATE.match(value), value
                else:
                    assert isinstance(value, str), (column.name, value)
        one = requests.get(page["$resources"][0]["$url"], auth=AUTH, timeout=10).json()
        assert one == page["$resources"][0]


def test_dates_are_in_server_local_time(start_sandbox: Any) -> None:
    utc = get(crm(start_sandbox, rows=10), "/Company('3')").json()
    eastern = crm(start_sandbox, rows=10, crm_utc_offset_minutes=-300, **EXTENDED)
    local = get(eastern, "/Company('3')").json()
    assert utc["comp_createddate"].endswith("+00:00")
    assert local["comp_createddate"].endswith("-05:00")
    assert instant(local["comp_createddate"]) == instant(utc["comp_createddate"])
    # A date literal without an offset is read in the server's time zone.
    wall = local["comp_updateddate"][:19]
    assert keys(get(eastern, "/Company", where=f"comp_updateddate eq @{wall}@")) == [3]
    utc_wall = utc["comp_updateddate"][:19]
    assert keys(get(eastern, "/Company", where=f"comp_updateddate eq @{utc_wall}Z@")) == [3]
    assert 3 not in keys(get(eastern, "/Company", where=f"comp_updateddate eq @{utc_wall}@"))


def test_single_record_and_not_found(start_sandbox: Any) -> None:
    sbx = crm(start_sandbox, rows=10)
    record = get(sbx, "/Company('3')").json()
    assert record["$key"] == "3" and record["comp_companyid"] == 3
    assert get(sbx, "/Company(3)").json() == record
    assert get(sbx, "/company('3')").json()["comp_companyid"] == 3  # entity in any case
    diagnosis(get(sbx, "/Company('999')"), 404, "ResourceNotFound")
    diagnosis(get(sbx, "/Company('abc')"), 404, "ResourceNotFound")
    diagnosis(get(sbx, "/Invoice"), 404, "ResourceKindNotFound")
    diagnosis(get(sbx, "/Company('3')/Person"), 404, "BadUrlSyntax")
    r = send(sbx, "POST", "/Company('3')", {"comp_name": "x"})
    diagnosis(r, 405, "MethodNotAllowed")
    assert "PATCH" in r.headers["Allow"]


# -- auth, limits, errors -------------------------------------------------------------------


def test_basic_auth(start_sandbox: Any) -> None:
    sbx = crm(start_sandbox, rows=5, crm_users={"admin": "sandbox", "susan": "s3cret"})
    for auth in [None, ("admin", "wrong"), ("nobody", "sandbox")]:
        r = get(sbx, "/Company", auth=auth)
        diagnosis(r, 401, "AuthenticationFailed")
        assert r.headers["WWW-Authenticate"].startswith("Basic")
        assert "sandbox" not in r.text and "wrong" not in r.text
    bearer = requests.get(
        sbx.base_url + "/Company", headers={"Authorization": "Bearer abc"}, timeout=10
    )
    diagnosis(bearer, 401, "AuthenticationFailed")
    assert get(sbx, "/Company", auth=("susan", "s3cret")).status_code == 200
    assert get(sbx, "/Company").status_code == 200


def test_rate_limit_is_per_user(start_sandbox: Any) -> None:
    sbx = crm(
        start_sandbox,
        rows=5,
        rate_limit_per_minute=3,
        crm_users={"admin": "sandbox", "susan": "s3cret"},
    )
    for _ in range(3):
        assert get(sbx, "/Company", count=1).status_code == 200
    limited = get(sbx, "/Company", count=1)
    diagnosis(limited, 429, "TooManyRequests")
    assert int(limited.headers["Retry-After"]) >= 1
    assert get(sbx, "/Company", count=1, auth=("susan", "s3cret")).status_code == 200


def test_injected_faults_answer_with_diagnoses(start_sandbox: Any) -> None:
    from sagesql.sandbox.config import Faults

    sbx = crm(start_sandbox, rows=5, faults=Faults(errors=1.0, error_statuses=(503,)))
    diagnosis(get(sbx, "/Company"), 503, "ServiceUnavailable")


# -- where ----------------------------------------------------------------------------------


def _ci(value: str | None) -> str:
    return (value or "").lower()


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


COMPANY_WHERE: list[tuple[str, Any]] = [
    ("comp_companyid eq 7", lambda r: r["comp_companyid"] == 7),
    ("comp_companyid eq '7'", lambda r: r["comp_companyid"] == 7),
    ("comp_companyid ne 7", lambda r: r["comp_companyid"] != 7),
    ("comp_companyid lt 10", lambda r: r["comp_companyid"] < 10),
    ("comp_companyid le 10", lambda r: r["comp_companyid"] <= 10),
    ("comp_companyid gt 50", lambda r: r["comp_companyid"] > 50),
    ("comp_companyid ge 50", lambda r: r["comp_companyid"] >= 50),
    (
        "comp_companyid >= 10 and comp_companyid <> 12",
        lambda r: r["comp_companyid"] >= 10 and r["comp_companyid"] != 12,
    ),
    ("comp_companyid between 5 and 9", lambda r: 5 <= r["comp_companyid"] <= 9),
    ("comp_companyid not between 5 and 55", lambda r: not 5 <= r["comp_companyid"] <= 55),
    ("comp_type in ('Customer', 'Partner')", lambda r: r["comp_type"] in {"Customer", "Partner"}),
    ("comp_type not in ('Customer')", lambda r: r["comp_type"] != "Customer"),
    ("comp_type eq 'customer'", lambda r: r["comp_type"] == "Customer"),  # case-insensitive
    ("comp_name like 'a%'", lambda r: _ci(r["comp_name"]).startswith("a")),
    ("comp_name like '%ltd'", lambda r: _ci(r["comp_name"]).endswith("ltd")),
    ("comp_name like '%Engineering%'", lambda r: "engineering" in _ci(r["comp_name"])),
    ("comp_website like '%.example'", lambda r: r["comp_website"] is not None),
    (
        "COMP_TYPE EQ 'Customer' AND Comp_Status Eq 'Active'",
        lambda r: r["comp_type"] == "Customer" and r["comp_status"] == "Active",
    ),
    (
        "comp_type eq 'Customer' or comp_type eq 'Partner' and comp_status eq 'Active'",
        lambda r: (
            r["comp_type"] == "Customer"
            or (r["comp_type"] == "Partner" and r["comp_status"] == "Active")
        ),
    ),
    (
        "(comp_type eq 'Customer' or comp_type eq 'Partner') and comp_status eq 'Active'",
        lambda r: r["comp_type"] in {"Customer", "Partner"} and r["comp_status"] == "Active",
    ),
    (
        "not comp_type eq 'Customer' and comp_status eq 'Active'",
        lambda r: r["comp_type"] != "Customer" and r["comp_status"] == "Active",
    ),
    (
        "not (comp_type eq 'Customer' and comp_status eq 'Active')",
        lambda r: not (r["comp_type"] == "Customer" and r["comp_status"] == "Active"),
    ),
    (
        "comp_updateddate ge @2025-01-01@",
        lambda r: _at(r["comp_updateddate"]) >= datetime(2025, 1, 1, tzinfo=timezone.utc),
    ),
    (
        "comp_createddate lt @2024-06-01T12:00:00@",
        lambda r: _at(r["comp_createddate"]) < datetime(2024, 6, 1, 12, tzinfo=timezone.utc),
    ),
    (
        "comp_createddate lt @2024-06-01T12:00:00+02:00@",
        lambda r: _at(r["comp_createddate"]) < datetime(2024, 6, 1, 10, tzinfo=timezone.utc),
    ),
    (
        "comp_updateddate between @2024-03-01@ and @2024-12-31T23:59:59@",
        lambda r: (
            datetime(2024, 3, 1, tzinfo=timezone.utc)
            <= _at(r["comp_updateddate"])
            <= datetime(2024, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
        ),
    ),
]


def test_where_matches_local_evaluation(start_sandbox: Any) -> None:
    sbx = crm(start_sandbox, rows=80, **EXTENDED)  # not, lt and date literals are extended
    companies = everything(sbx, "Company")
    for where, predicate in COMPANY_WHERE:
        expected = [r["comp_companyid"] for r in companies if predicate(r)]
        assert 0 < len(expected) < len(companies), where
        response = get(sbx, "/Company", where=where, count=1000)
        assert keys(response) == expected, where
        assert response.json()["$totalResults"] == len(expected), where
    opportunities = everything(sbx, "Opportunity")
    for where, predicate in [
        ("oppo_forecast gt 100000.5", lambda r: r["oppo_forecast"] > 100000.5),
        ("oppo_forecast between 1000 and 50000", lambda r: 1000 <= r["oppo_forecast"] <= 50000),
        ("Oppo_Status eq 'In Progress'", lambda r: r["oppo_status"] == "In Progress"),
    ]:
        expected = [r["oppo_opportunityid"] for r in opportunities if predicate(r)]
        assert 0 < len(expected) < len(opportunities), where
        assert keys(get(sbx, "/Opportunity", where=where, count=1000)) == expected, where


def test_where_quotes_are_values_never_sql(start_sandbox: Any) -> None:
    sbx = crm(start_sandbox, rows=20)
    made = send(sbx, "POST", "/Company", {"comp_name": "O'Brien & Sons"}).json()
    key = int(made["$key"])
    assert keys(get(sbx, "/Company", where="comp_name eq 'O''Brien & Sons'")) == [key]
    assert keys(get(sbx, "/Company", where="comp_name like '%''%'")) == [key]
    # An injection attempt is one string value: it matches nothing rather than everything.
    assert keys(get(sbx, "/Company", where="comp_name eq 'x'' or ''1''=''1'")) == []
    assert keys(get(sbx, "/Company", where="comp_name eq 'x'' or 1=1 --'")) == []


@pytest.mark.parametrize(
    ("where", "mentions"),
    [
        ("comp_nmae eq 'x'", "comp_name"),
        ("comp_name eq", "value"),
        ("comp_name 'x'", "operator"),
        ("comp_name eq 'x", "unterminated"),
        ("(comp_companyid eq 1", "')'"),
        ("comp_companyid eq 1 comp_name", "and"),
        ("comp_companyid eq 1 and", "field"),
        ("'x' eq comp_name", "field name"),
        ("comp_website eq null", "null"),
        ("comp_website is null", "null"),
        ("comp_companyid eq true", "boolean"),
        ("comp_companyid like '1%'", "like"),
        ("comp_updateddate gt '2024-01-01'", "date literal"),
        ("comp_name eq 5", "quote"),
        ("comp_companyid eq 'seven'", "number"),
        ("comp_updateddate gt @2024-13-01@", "date"),
        ("comp_updateddate gt @yesterday@", "date literal"),
        ("comp_companyid between 1 or 2", "between"),
        ("comp_companyid in 1, 2", "'('"),
        ("comp_companyid eq 1 # 2", "character"),
    ],
)
def test_where_errors_are_400(start_sandbox: Any, where: str, mentions: str) -> None:
    sbx = crm(start_sandbox, rows=5)
    found = diagnosis(get(sbx, "/Company", where=where), 400, "BadWhereSyntax")
    assert found["$location"] == "where"
    assert mentions.lower() in found["$message"].lower(), found["$message"]


# Every where= form Sage does not document for sagecrm2, and how the 400 names it.
UNDOCUMENTED_WHERE = [
    ("comp_companyid ne 1", "'ne' operator"),
    ("comp_companyid lt 3", "'lt' operator"),
    ("comp_companyid le 3", "'le' operator"),
    ("comp_companyid = 1", "'=' operator"),
    ("comp_companyid <> 1", "'<>' operator"),
    ("comp_companyid < 3", "'<' operator"),
    ("comp_companyid <= 3", "'<=' operator"),
    ("comp_companyid > 3", "'>' operator"),
    ("comp_companyid >= 3", "'>=' operator"),
    ("not comp_companyid eq 1", "'not' operator"),
    ("comp_name eq 'x' or not (comp_companyid eq 1)", "'not' operator"),
    ("comp_companyid not in (1, 2)", "'not' operator"),
    ("comp_companyid not between 1 and 2", "'not' operator"),
    ("comp_name not like 'a%'", "'not' operator"),
    ("comp_updateddate ge @2025-01-01@", "date literal @2025-01-01@"),
    ("comp_updateddate ge @2025-01-01T10:00:00Z@", "date literal @2025-01-01T10:00:00Z@"),
    ("comp_createddate between @2024-01-01@ and @2025-01-01@", "date literal @2024-01-01@"),
]


@pytest.mark.parametrize(("where", "form"), UNDOCUMENTED_WHERE)
def test_strict_where_refuses_undocumented_forms(start_sandbox: Any, where: str, form: str) -> None:
    strict = crm(start_sandbox, rows=5)
    found = diagnosis(get(strict, "/Company", where=where), 400, "BadWhereSyntax")
    assert found["$location"] == "where"
    assert f"documents no {form}" in found["$message"], found["$message"]
    assert "eq gt ge like between in" in found["$message"]
    # The same form is understood when the sandbox is told to take more.
    assert get(crm(start_sandbox, rows=5, **EXTENDED), "/Company", where=where).status_code == 200


def test_strict_where_takes_every_documented_form(start_sandbox: Any) -> None:
    sbx = crm(start_sandbox, rows=40)
    companies = everything(sbx, "Company")
    for where, predicate in [
        ("comp_companyid eq 3", lambda r: r["comp_companyid"] == 3),
        ("comp_companyid gt 30", lambda r: r["comp_companyid"] > 30),
        ("comp_companyid ge 30", lambda r: r["comp_companyid"] >= 30),
        ("comp_companyid between 5 and 9", lambda r: 5 <= r["comp_companyid"] <= 9),
        ("comp_companyid in (2, 4, 6)", lambda r: r["comp_companyid"] in {2, 4, 6}),
        ("comp_name like 'A%'", lambda r: r["comp_name"].lower().startswith("a")),
        (
            "(comp_companyid eq 1 or comp_companyid eq 2) and comp_companyid ge 2",
            lambda r: r["comp_companyid"] == 2,
        ),
    ]:
        expected = [r["comp_companyid"] for r in companies if predicate(r)]
        assert keys(get(sbx, "/Company", where=where, count=1000)) == expected, where


def test_where_compiles_to_parameterised_sql() -> None:
    fields = {
        "comp_name": sdata.Field("comp_name", "TEXT", "n", frozenset({"=", "LIKE"})),
        "comp_companyid": sdata.Field("comp_companyid", "INTEGER", "i", frozenset({"=", ">="})),
    }
    sql, params = sdata.compile_where(
        "comp_name eq 'Robert''); DROP TABLE x; --' or not comp_companyid ge 3 and "
        "comp_name like 'a%'",
        fields,
        extended=True,
    )
    assert "DROP" not in sql and "'" not in sql
    assert sql == "(n COLLATE NOCASE = ? OR ((NOT i >= ?) AND n LIKE ?))"
    assert params == ["Robert'); DROP TABLE x; --", 3, "a%"]


# -- orderBy --------------------------------------------------------------------------------


def test_order_by_several_keys(start_sandbox: Any) -> None:
    sbx = crm(start_sandbox, rows=60)
    companies = everything(sbx, "Company")
    by_type = sorted(companies, key=lambda r: r["comp_companyid"])
    by_type.sort(key=lambda r: _ci(r["comp_type"]), reverse=True)
    got = keys(get(sbx, "/Company", orderBy="comp_type desc, comp_companyid", count=100))
    assert got == [r["comp_companyid"] for r in by_type]
    by_name = sorted(companies, key=lambda r: (_ci(r["comp_name"]), r["comp_companyid"]))
    got = keys(get(sbx, "/Company", orderBy="COMP_NAME asc", count=100))
    assert got == [r["comp_companyid"] for r in by_name]
    by_updated = sorted(companies, key=lambda r: r["comp_companyid"])
    by_updated.sort(key=lambda r: _at(r["comp_updateddate"]), reverse=True)
    got = keys(get(sbx, "/Company", orderBy="comp_updateddate desc", count=100))
    assert got == [r["comp_companyid"] for r in by_updated]
    got = keys(get(sbx, "/Company", orderBy="comp_companyid desc", count=5))
    assert got == [60, 59, 58, 57, 56]
    for bad in ["comp_nmae", "comp_name sideways", "comp_name,", "'x'"]:
        found = diagnosis(get(sbx, "/Company", orderBy=bad), 400, "BadQueryParameter")
        assert found["$location"] == "orderBy"


# -- writes ---------------------------------------------------------------------------------


def test_create(start_sandbox: Any) -> None:
    sbx = crm(start_sandbox, rows=10, crm_users={"admin": "sandbox", "susan": "s3cret"}, **EXTENDED)
    freeze(sbx, "2025-10-01T12:00:00Z")
    body = {
        "Pers_LastName": "Nakamura",
        "pers_firstname": "Aiko",
        "pers_companyid": "4",
        "pers_personid": 9999,  # read-only: ignored
        "$key": "9999",
    }
    r = send(sbx, "POST", "/Person", body)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["pers_personid"] == 21 and made["$key"] == "21"  # people are 2 * rows
    assert r.headers["Location"] == made["$url"]
    assert made["pers_lastname"] == "Nakamura" and made["pers_companyid"] == 4
    assert made["pers_createddate"] == made["pers_updateddate"] == "2025-10-01T12:00:00+00:00"
    assert made["pers_createdby"] == made["pers_updatedby"] == 1
    assert made["pers_deleted"] is None and made["pers_emailaddress"] is None
    assert get(sbx, "/Person('21')").json() == made
    assert keys(get(sbx, "/Person", where="pers_lastname eq 'Nakamura'")) == [21]
    assert keys(get(sbx, "/Person", where="pers_createddate ge @2025-10-01@")) == [21]
    again = send(sbx, "POST", "/Person", {"pers_lastname": "Ito"}, auth=("susan", "s3cret"))
    assert again.json()["pers_personid"] == 22
    assert again.json()["pers_createdby"] == 2  # susan's Users record
    assert get(sbx, "/Person").json()["$totalResults"] == 22


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"comp_type": "Customer"}, "comp_name"),
        ({"comp_name": ""}, "comp_name"),
        ({"comp_name": None}, "comp_name"),
        ({"comp_name": "A", "comp_colour": "red"}, "comp_colour"),
        ({"comp_name": "A", "comp_primarypersonid": "abc"}, "comp_primarypersonid"),
        ({"comp_name": "A", "comp_primarypersonid": 1.5}, "comp_primarypersonid"),
        ({"comp_name": 42}, "comp_name"),
    ],
)
def test_create_validation(start_sandbox: Any, body: dict[str, Any], location: str) -> None:
    sbx = crm(start_sandbox, rows=5)
    found = diagnosis(send(sbx, "POST", "/Company", body), 400, "ApplicationDiagnosis")
    assert found["$location"] == location
    assert location in found["$message"]
    assert get(sbx, "/Company").json()["$totalResults"] == 5


def test_create_needs_a_json_object(start_sandbox: Any) -> None:
    sbx = crm(start_sandbox, rows=5)
    diagnosis(send(sbx, "POST", "/Company", [{"comp_name": "A"}]), 400, "ApplicationDiagnosis")
    raw = requests.post(sbx.base_url + "/Company", data="{not json", auth=AUTH, timeout=10)
    diagnosis(raw, 400, "ApplicationDiagnosis")


def test_update_patch_and_put(start_sandbox: Any) -> None:
    sbx = crm(start_sandbox, rows=10, crm_users={"admin": "sandbox", "susan": "s3cret"}, **EXTENDED)
    freeze(sbx, "2025-10-02T08:30:00Z")
    before = get(sbx, "/Company('5')").json()
    r = send(sbx, "PATCH", "/Company('5')", {"COMP_STATUS": "Inactive"}, auth=("susan", "s3cret"))
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["comp_status"] == "Inactive"
    assert after["comp_updateddate"] == after["$updated"] == "2025-10-02T08:30:00+00:00"
    assert after["comp_updatedby"] == 2
    unchanged = {k for k in before if k not in {"comp_status", "comp_updateddate", "$updated"}}
    assert {k: after[k] for k in unchanged if k != "comp_updatedby"} == {
        k: before[k] for k in unchanged if k != "comp_updatedby"
    }
    assert get(sbx, "/Company('5')").json() == after
    # Polling by the updated date finds exactly the changed record.
    since = "comp_updateddate ge @2025-10-02T08:00:00@"
    assert keys(get(sbx, "/Company", where=since)) == [5]
    requests.post(sbx.url + "/_sandbox/clock", json={"advance": 60}, timeout=5)
    r = send(sbx, "PUT", "/Company('6')", {"comp_website": "www.six.example"})
    assert r.status_code == 200 and r.json()["comp_website"] == "www.six.example"
    assert r.json()["comp_updateddate"] == "2025-10-02T08:31:00+00:00"
    assert keys(get(sbx, "/Company", where=since, orderBy="comp_updateddate desc")) == [6, 5]
    diagnosis(send(sbx, "PATCH", "/Company('999')", {"comp_status": "x"}), 404, "ResourceNotFound")
    found = diagnosis(
        send(sbx, "PATCH", "/Company('5')", {"comp_name": ""}), 400, "ApplicationDiagnosis"
    )
    assert found["$location"] == "comp_name"


def test_delete_is_soft(start_sandbox: Any) -> None:
    sbx = crm(start_sandbox, rows=10)
    r = send(sbx, "DELETE", "/Company('4')")
    assert r.status_code == 204 and r.content == b""
    diagnosis(get(sbx, "/Company('4')"), 404, "ResourceNotFound")
    page = get(sbx, "/Company").json()
    assert page["$totalResults"] == 9 and 4 not in [int(x["$key"]) for x in page["$resources"]]
    assert keys(get(sbx, "/Company", where="comp_companyid eq 4")) == []
    kept = sbx.app.store.get("crm", "Company", "4", include_deleted=True)
    assert kept["comp_deleted"] == 1
    diagnosis(send(sbx, "DELETE", "/Company('4')"), 404, "ResourceNotFound")
    diagnosis(send(sbx, "PATCH", "/Company('4')", {"comp_status": "x"}), 404, "ResourceNotFound")
    # Ids are never reused.
    assert send(sbx, "POST", "/Company", {"comp_name": "New"}).json()["comp_companyid"] == 11
    diagnosis(send(sbx, "DELETE", "/Company"), 405, "MethodNotAllowed")


def test_lists_lag_behind_recent_updates(start_sandbox: Any) -> None:
    sbx = crm(start_sandbox, rows=10, **EXTENDED)
    freeze(sbx, "2025-10-03T09:00:00Z")
    requests.post(sbx.url + "/_sandbox/lag", json={"seconds": 60}, timeout=5)
    send(sbx, "PATCH", "/Company('2')", {"comp_sector": "Retail"})
    made = send(sbx, "POST", "/Company", {"comp_name": "Fresh"}).json()
    recent = "comp_updateddate ge @2025-10-01@"
    assert keys(get(sbx, "/Company", where=recent)) == []
    assert get(sbx, "/Company").json()["$totalResults"] == 9  # the new one is not there yet
    assert get(sbx, "/Company('2')").json()["comp_sector"] == "Retail"  # single GETs are current
    requests.post(sbx.url + "/_sandbox/clock", json={"advance": 61}, timeout=5)
    assert keys(get(sbx, "/Company", where=recent)) == [2, made["comp_companyid"]]


# -- demo data ------------------------------------------------------------------------------


def test_demo_data_is_consistent(start_sandbox: Any) -> None:
    rows = 40
    sbx = crm(start_sandbox, rows=rows)
    data = {t.resource: everything(sbx, t.resource) for t in CRM_TABLES}
    users = {u["user_userid"]: u["user_logon"] for u in data["Users"]}
    assert users[1] == "admin" and len(users) == len(USERS)
    companies = {c["comp_companyid"]: c for c in data["Company"]}
    people = {p["pers_personid"]: p for p in data["Person"]}
    assert len(companies) == rows and len(people) == 2 * rows
    for company in companies.values():
        primary = people[company["comp_primarypersonid"]]
        assert primary["pers_companyid"] == company["comp_companyid"]
    assert all(p["pers_companyid"] in companies for p in people.values() if p["pers_companyid"])
    assert any(p["pers_companyid"] is None for p in people.values())
    for oppo in data["Opportunity"]:
        assert oppo["oppo_primarycompanyid"] in companies
        assert (
            people[oppo["oppo_primarypersonid"]]["pers_companyid"]
            == (oppo["oppo_primarycompanyid"])
        )
        assert round(oppo["oppo_forecast"], 2) == oppo["oppo_forecast"] > 0
    assert all(c["case_primarycompanyid"] in companies for c in data["Cases"])
    low, high = (
        datetime(2024, 1, 1, tzinfo=timezone.utc),
        datetime(2025, 9, 30, 18, 0, tzinfo=timezone.utc),
    )
    for table in CRM_TABLES:
        prefix = table.key.split("_")[0]
        updated = []
        for record in data[table.resource]:
            assert record[f"{prefix}_createdby"] in users
            assert record[f"{prefix}_updatedby"] in users
            made, changed = _at(record[table.created_column]), _at(record[table.updated_column])
            assert low <= made <= changed <= high
            updated.append(changed)
        if table.resource != "Users":
            assert max(Counter(updated).values()) > 1, table.resource  # some share a second
        created = [_at(r[table.created_column]) for r in data[table.resource]]
        assert created == sorted(created)  # ids follow creation


def test_demo_data_is_deterministic(start_sandbox: Any) -> None:
    def snapshot(sbx: Any) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in r.items() if k != "$url"}
            for entity in ("Company", "Person", "Opportunity")
            for r in everything(sbx, entity)
        ]

    one = snapshot(crm(start_sandbox, rows=15, seed=7))
    assert snapshot(crm(start_sandbox, rows=15, seed=7)) == one
    assert snapshot(crm(start_sandbox, rows=15, seed=8)) != one


def test_default_dataset_seeds_fast(start_sandbox: Any) -> None:
    sbx = crm(start_sandbox)  # rows=50
    began = time.perf_counter()
    for table in CRM_TABLES:
        assert get(sbx, f"/{table.resource}", count=1).status_code == 200
    elapsed = time.perf_counter() - began
    assert elapsed < 1.0, elapsed
    # And the seeder alone, for a larger size, stays linear and quick.
    began = time.perf_counter()
    seeder = CrmSeeder(1, 2000, timezone(timedelta(0)))
    made = sum(1 for t in CRM_TABLES for _ in seeder.records(t))
    assert made == 2000 * 8 + len(USERS)
    assert time.perf_counter() - began < 3.0
