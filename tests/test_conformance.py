"""The sandboxes' answers conform to Sage's published definitions (jsonschema, strict).

Every Accounting list endpoint of the definition (attributes=all) and one record of
each, every Sage 200 list resource and one record of each: only the definitions' known
defects (conformance.KNOWN_DEFECTS, each with its reason) are allowed.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import requests
from conformance import ACCOUNTING, tally, unexpected, violations

from sagesql.schemas.catalog import default_catalog

LIST_PATH = re.compile(r"^/([a-z_]+)$")


def _ref(schema: dict[str, Any] | None) -> str | None:
    ref = (schema or {}).get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def accounting_found(sbx: Any) -> list[tuple[str, str]]:
    doc = json.loads(ACCOUNTING.read_text(encoding="utf-8"))
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + sbx.token()["access_token"]
    found: list[tuple[str, str]] = []
    for path, item in doc["paths"].items():
        match = LIST_PATH.match(path)
        get = item.get("get")
        if not match or not get:
            continue
        schema = get.get("responses", {}).get("200", {}).get("schema", {})
        if schema.get("type") == "array":
            list_def, item_def = None, _ref(schema.get("items"))
        else:
            list_def, item_def = _ref(schema), None
        params = (
            {"attributes": "all"}
            if any(p.get("name") == "attributes" for p in get.get("parameters", []))
            else {}
        )
        response = session.get(sbx.base_url + path, params=params, timeout=30)
        if response.status_code != 200:
            found.append(("status", f"GET {path}: {response.status_code}"))
            continue
        body = response.json()
        if list_def:
            found += violations("sage_accounting", list_def, body, path)
            items = body.get("$items", []) if isinstance(body, dict) else []
        elif item_def:
            items = body if isinstance(body, list) else []
            for n, record in enumerate(items):
                found += violations("sage_accounting", item_def, record, f"{path}[{n}]")
        else:
            items = []
        key_get = doc["paths"].get(f"{path}/{{key}}", {}).get("get")
        if key_get and items and isinstance(items[0], dict) and items[0].get("id"):
            one_def = _ref(key_get.get("responses", {}).get("200", {}).get("schema"))
            one = session.get(f"{sbx.base_url}{path}/{items[0]['id']}", timeout=30)
            if one.status_code != 200:
                found.append(("status", f"GET {path}/{{key}}: {one.status_code}"))
            elif one_def:
                found += violations("sage_accounting", one_def, one.json(), f"{path}/{{key}}")
    return found


def sage200_found(sbx: Any) -> list[tuple[str, str]]:
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + sbx.token()["access_token"]
    site = session.get(sbx.base_url + "/sites", timeout=30).json()[0]
    session.headers.update({"X-Site": str(site["site_id"]), "X-Company": str(site["company_id"])})
    catalog = default_catalog()
    found: list[tuple[str, str]] = []
    for summary in catalog.tables("sage_200"):
        table = catalog.table(summary.name, "sage_200")
        listing = table.operations.get("list")
        if listing is None or not listing.record_schema:
            continue
        response = session.get(sbx.base_url + listing.path, timeout=30)
        if response.status_code != 200:
            found.append(("status", f"GET {listing.path}: {response.status_code}"))
            continue
        body = response.json()
        records = body if isinstance(body, list) else [body]
        for n, record in enumerate(records[:3]):
            found += violations("sage_200", listing.record_schema, record, f"{listing.path}[{n}]")
    return found


def report(product: str, found: list[tuple[str, str]]) -> str:
    return f"{product}: {dict(sorted(tally(found).items()))}"


def test_the_checker_finds_what_it_should() -> None:
    bad = {"id": "x", "displayed_as": "x", "$path": "/x", "nickname": 1, "balance": "1.00"}
    kinds = {k for k, _ in violations("sage_accounting", "Contact", bad, "c")}
    assert {"unknown-property"} <= kinds
    kinds = {k for k, _ in violations("sage_accounting", "Contact", {"notes": "Notes 3"}, "c")}
    assert "placeholder" in kinds


def test_accounting_answers_conform(start_sandbox: Any, capsys: pytest.CaptureFixture[str]) -> None:
    sbx = start_sandbox("sage_accounting", rows=3, rate_limit_per_minute=0)
    found = accounting_found(sbx)
    with capsys.disabled():
        print("\n" + report("sage_accounting", found))
    assert unexpected(found) == []


def test_sage200_answers_conform(start_sandbox: Any, capsys: pytest.CaptureFixture[str]) -> None:
    sbx = start_sandbox("sage_200", rows=3, rate_limit_per_minute=0)
    found = sage200_found(sbx)
    with capsys.disabled():
        print("\n" + report("sage_200", found))
    assert unexpected(found) == []
