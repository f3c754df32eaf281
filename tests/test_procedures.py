"""EXEC: auth procedures and business actions, end to end against the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from sagesql import AuthError, ProgrammingError
from sagesql.connector.client import SageClient
from sagesql.connector.properties import validate
from sagesql.engine import pipeline


@pytest.fixture
def accounting(start_sandbox: Any) -> Iterator[tuple[Any, SageClient]]:
    sbx = start_sandbox("sage_accounting")
    props = {**sbx.connection_properties(), "OAuthSettingsLocation": "memory://procedures"}
    with SageClient(validate(props)) as conn:
        yield sbx, conn


def one(conn: SageClient, sql: str) -> dict[str, Any]:
    result = pipeline.run(conn, sql)
    rows = list(result)
    assert len(rows) == 1
    return dict(zip([c.name for c in result.columns], rows[0], strict=True))


def sent(sbx: Any) -> list[dict[str, Any]]:
    return [r for r in sbx.app.requests if not r["path"].startswith("/_sandbox")]


def test_authorization_url_then_web_code_exchange_then_refresh(accounting: Any) -> None:
    _sbx, conn = accounting
    url = one(conn, "EXEC GetOAuthAuthorizationURL @State = 'st-1'")["URL"]
    assert "state=st-1" in url and "client_id=sandbox-client" in url
    redirect = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
    assert parse_qs(urlsplit(redirect).query)["state"] == ["st-1"]
    # The whole redirect URL is accepted as the verifier, as a bare code would be.
    first = one(conn, f"EXEC GetOAuthAccessToken @AuthMode = 'WEB', @Verifier = '{redirect}'")
    assert first["OAuthAccessToken"] and first["OAuthRefreshToken"]
    assert 0 < first["ExpiresIn"] <= 300
    stored = conn.store.load()
    assert stored is not None and stored.access_token == first["OAuthAccessToken"]
    again = one(
        conn, f"EXECUTE RefreshOAuthAccessToken OAuthRefreshToken = '{first['OAuthRefreshToken']}'"
    )
    assert again["OAuthRefreshToken"] != first["OAuthRefreshToken"]
    with pytest.raises(AuthError, match="invalid_grant"):  # rotation: the old one is dead
        one(
            conn,
            f"EXEC RefreshOAuthAccessToken @OAuthRefreshToken = '{first['OAuthRefreshToken']}'",
        )


def _invoice(sbx: Any, conn: SageClient, status: str) -> str:
    result = pipeline.run(conn, "SELECT id, status_id FROM sales_invoices")
    ids = [row[0] for row in result if row[1] == status]
    assert ids, f"the demo data has a {status} invoice"
    return str(ids[0])


def test_release_and_void_a_sales_invoice(accounting: Any) -> None:
    sbx, conn = accounting
    draft = _invoice(sbx, conn, "DRAFT")
    released = one(conn, f"EXEC ReleaseSalesInvoice @Id = '{draft}'")
    assert released["id"] == draft
    status = list(pipeline.run(conn, f"SELECT status_id FROM sales_invoices WHERE id = '{draft}'"))
    assert status == [("UNPAID",)] or status[0][0] != "DRAFT"
    voided = one(conn, f"EXEC VoidSalesInvoice @Id = '{draft}', @VoidReason = 'raised twice'")
    assert voided["success"] in (True, 1)
    after = list(pipeline.run(conn, f"SELECT status_id FROM sales_invoices WHERE id = '{draft}'"))
    assert after == [("VOID",)]
    void_calls = [r for r in sent(sbx) if r["method"] == "DELETE"]
    assert len(void_calls) == 1 and void_calls[0]["path"] == f"/v3.1/sales_invoices/{draft}"
    # As Sage's definition has it: a query parameter, no body.
    assert void_calls[0]["query"] == "void_reason=raised+twice" and void_calls[0]["body"] is None


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("EXEC ReleaseSalesInvoce @Id = 'x'", "did you mean ReleaseSalesInvoice"),
        ("EXEC VoidSalesInvoice @Id = 'x'", "@VoidReason is required"),
        (
            "EXEC VoidSalesInvoice @Id = 'x', @Reason = 'y', @VoidReason = 'z'",
            "unknown parameter @Reason",
        ),
        ("EXEC GetOAuthAccessToken @AuthMode = 'PHONE'", "must be one of APP, WEB"),
        ("EXEC GetOAuthAccessToken @AuthMode = 'WEB'", "needs @Verifier"),
        ("EXEC VoidSalesInvoice @Id = 'x', @VoidReason = some_column", "literal value"),
    ],
)
def test_bad_exec_is_refused_before_anything_is_sent(
    accounting: Any, sql: str, message: str
) -> None:
    sbx, conn = accounting
    with pytest.raises(ProgrammingError, match=message):
        pipeline.run(conn, sql)
    assert sent(sbx) == []


def test_explain_exec_names_the_call(accounting: Any) -> None:
    _, conn = accounting
    text = pipeline.explain(conn, "EXEC VoidSalesInvoice @Id = 'a', @VoidReason = 'b'")
    assert "DELETE /sales_invoices/{Id}" in text and "sales_invoices" in text


def test_cli_masks_tokens_unless_asked(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_accounting")
    pair = sbx.token()
    props = sbx.connection_properties()
    conn = ";".join(
        f"{k}={v}" for k, v in {**props, "OAuthSettingsLocation": "memory://cli"}.items()
    )
    sql = f"EXEC RefreshOAuthAccessToken @OAuthRefreshToken = '{pair['refresh_token']}'"
    masked = subprocess.run(
        [sys.executable, "-m", "sagesql.cli.main", "query", "-c", conn, "-f", "jsonl", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert masked.returncode == 0, masked.stderr
    row = json.loads(masked.stdout)
    assert row["OAuthAccessToken"] == "********" and row["ExpiresIn"] > 0
    assert "sbx_at_" not in masked.stdout + masked.stderr
