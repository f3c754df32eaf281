"""CRMFilterOperators: Sage CRM's where= in the forms Sage documents, or more when asked.

By default (``documented``) sagesql sends only what Sage documents for sagecrm2 and the
sandbox refuses anything else; ``extended`` also sends ``ne lt le``, ``not (...)`` and
``@...@`` date literals, which an extended sandbox takes. Rows are the same either way.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sagesql.connector.client import SageClient
from sagesql.connector.properties import PROPERTIES, validate
from sagesql.engine.pipeline import run
from sagesql.errors import ConfigurationError, Error

STATEMENTS = [
    "SELECT comp_companyid FROM company WHERE comp_companyid < 5",
    "SELECT comp_companyid FROM company WHERE comp_companyid <= 5 AND comp_companyid != 3",
    "SELECT comp_companyid FROM company WHERE NOT (comp_companyid = 4) AND comp_companyid >= 30",
    "SELECT comp_companyid FROM company WHERE comp_updateddate >= '2025-01-01T00:00:00Z'",
    "SELECT comp_companyid FROM company WHERE comp_companyid BETWEEN 3 AND 9",
]

UNDOCUMENTED = (" ne ", " lt ", " le ", "not (", "@")


def wheres(sandbox: Any) -> list[str]:
    """The where= of every list request the sandbox received."""
    found = []
    for r in sandbox.app.requests:
        query = parse_qs(str(r["query"])) if "query" in r else parse_qs(urlsplit(r["path"]).query)
        found += query.get("where", [])
    return found


def rows(client: SageClient, sql: str) -> list[tuple[Any, ...]]:
    result = run(client, sql)
    try:
        return sorted(tuple(row) for row in result.rows)
    finally:
        result.close()


def test_the_property_is_listed_and_checked() -> None:
    prop = next(p for p in PROPERTIES if p.name == "CRMFilterOperators")
    assert (prop.default, prop.choices) == ("documented", ("documented", "extended"))
    assert validate(
        {"Product": "SageAccounting", "OAuthAccessToken": "t"}
    ).crm_filter_operators == ("documented")
    settings = validate(
        {"Product": "SageAccounting", "OAuthAccessToken": "t", "CRMFilterOperators": "EXTENDED"}
    )
    assert settings.crm_filter_operators == "extended"
    with pytest.raises(ConfigurationError, match="CRMFilterOperators"):
        validate({"Product": "SageAccounting", "OAuthAccessToken": "t", "CRMFilterOperators": "x"})


def test_extended_sends_more_and_returns_the_same_rows(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_crm", rows=40, crm_filter_operators="extended")
    base = {**sbx.connection_properties(), "RateLimit": "0"}
    documented = SageClient(validate(base))
    extended = SageClient(validate({**base, "CRMFilterOperators": "extended"}))
    sent: dict[str, list[str]] = {"documented": [], "extended": []}
    for sql in STATEMENTS:
        sbx.app.requests.clear()
        expected = rows(documented, sql)
        sent["documented"] += wheres(sbx)
        sbx.app.requests.clear()
        assert rows(extended, sql) == expected, sql
        sent["extended"] += wheres(sbx)
    assert not [w for w in sent["documented"] if any(u in w for u in UNDOCUMENTED)]
    assert "comp_companyid between 3 and 9" in sent["documented"]
    joined = " | ".join(sent["extended"])
    for form in ("comp_companyid lt 5", " ne 3", "not (comp_companyid eq 4)", "ge @2025-01-01T"):
        assert form in joined, joined
    assert "comp_companyid ge 3 and comp_companyid le 9" in joined


def test_a_strict_sandbox_refuses_what_extended_sends(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_crm", rows=10)  # strict: the default
    base = {**sbx.connection_properties(), "RateLimit": "0"}
    extended = SageClient(validate({**base, "CRMFilterOperators": "extended"}))
    with pytest.raises(Error, match="documents no 'lt' operator"):
        rows(extended, STATEMENTS[0])
    assert rows(SageClient(validate(base)), STATEMENTS[0]) == [(1,), (2,), (3,), (4,)]
