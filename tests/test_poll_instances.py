"""The platforms' instance JSON examples run against the sandboxes and deliver events.

Each example (Sage Accounting customers; Sage 200 customers, payments, invoices,
products and warehouses; Sage CRM accounts, contacts, leads, opportunities and users)
is used as-is but for its callback URL, which points at a local receiver. A first run
starts the poller at the server's now; changes are made through each API; a second
run delivers them. The CLI test drives ``sagesql poll``, ``status``, ``reset`` and
``replay`` as a user would, in subprocesses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from test_poll_config import EXAMPLES
from test_poll_helpers import Receiver, connection_string, frozen_at, seconds, utc

from sagesql.activities.polling import loading, runner
from sagesql.activities.polling.sinks import SIGNATURE_HEADER
from sagesql.connector.sources import load_settings

T0 = utc(2026, 5, 4, 10, 0, 0)
T1 = T0 + seconds(30)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def _example(tmp_path: Path, product: str, receiver: Receiver) -> Path:
    data = json.loads((EXAMPLES / f"{product}.instance.json").read_text(encoding="utf-8"))
    data["configuration"]["event.notification.callback.url"] = receiver.url
    path = tmp_path / f"{product}.instance.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def _run_once(sbx: Any, path: Path) -> None:
    config = loading.load(path)
    settings = load_settings(connection_string(sbx, "instance"), use_environment=False)
    assert runner.run(config, settings, once=True) == 0


def _kinds(receiver: Receiver) -> set[tuple[str, str, str]]:
    return {(e["objectType"], e["eventType"], e["objectId"]) for e in receiver.events()}


def test_sage_accounting_customers_instance(start_sandbox, tmp_path, receiver) -> None:
    sbx = start_sandbox("sage_accounting", rows=30, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    path = _example(tmp_path, "sage_accounting", receiver)
    _run_once(sbx, path)
    headers = {"Authorization": f"Bearer {sbx.token()['access_token']}"}
    base = sbx.base_url
    frozen_at(sbx, T1)
    customers = requests.get(f"{base}/contacts?contact_type_id=CUSTOMER", headers=headers).json()
    first, second = (c["id"] for c in customers["$items"][:2])
    made = requests.post(
        f"{base}/contacts",
        json={"contact": {"name": "Instance Test Ltd", "contact_type_ids": ["CUSTOMER"]}},
        headers=headers,
    ).json()
    requests.put(f"{base}/contacts/{first}", json={"contact": {"notes": "x"}}, headers=headers)
    assert requests.delete(f"{base}/contacts/{second}", headers=headers).status_code == 204
    frozen_at(sbx, T1 + seconds(10))
    _run_once(sbx, path)
    assert _kinds(receiver) == {
        ("customers", "CREATED", made["id"]),
        ("customers", "UPDATED", first),
        ("customers", "DELETED", second),
    }
    # Signed with the instance's key, exactly over the bytes sent.
    for body, sent in zip(receiver.bodies, receiver.headers, strict=True):
        digest = hmac.new(b"acme-accounting-signing-key", body, hashlib.sha256).digest()
        assert sent[SIGNATURE_HEADER] == "sha256=" + base64.b64encode(digest).decode()
    message = receiver.messages()[0]
    assert message["instanceId"] == "418277" and message["elementKey"] == "sageaccounting"


def test_sage_200_instance(start_sandbox, tmp_path, receiver) -> None:
    sbx = start_sandbox("sage_200", rows=30, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    path = _example(tmp_path, "sage_200", receiver)
    _run_once(sbx, path)
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {sbx.token()['access_token']}"
    site = s.get(sbx.base_url + "/sites").json()[0]
    s.headers.update({"X-Site": str(site["site_id"]), "X-Company": str(site["company_id"])})
    base = sbx.base_url
    frozen_at(sbx, T1)
    bank = s.get(base + "/banks").json()[0]["id"]
    invoice = s.post(base + "/sales_invoices", json={"customer_id": 3, "document_goods_value": 100})
    receipt = s.post(
        base + "/sales_receipts", json={"customer_id": 3, "bank_id": bank, "cheque_value": 40}
    )
    assert invoice.status_code == receipt.status_code == 200
    assert s.put(base + "/products/2", json={"description": "changed"}).status_code == 200
    assert s.put(base + "/warehouses/1", json={"description": "changed"}).status_code == 200
    frozen_at(sbx, T1 + seconds(10))
    _run_once(sbx, path)
    kinds = _kinds(receiver)
    by_type = {t: k for t, k, _ in kinds}
    assert by_type == {
        "customers": "UPDATED",
        "invoices": "CREATED",
        "payments": "CREATED",
        "products": "UPDATED",
        "warehouses": "UPDATED",
    }
    assert ("customers", "UPDATED", "3") in kinds and ("products", "UPDATED", "2") in kinds
    raw = {m["events"][0]["objectType"]: m["raw"] for m in receiver.messages()}
    (posted,) = raw["invoices"]["invoices"]
    assert posted["trader_transaction_type"] == "TradingAccountEntryTypeInvoice"
    assert all(h["Authorization"].startswith("Basic ") for h in receiver.headers)


def test_sage_crm_instance(start_sandbox, tmp_path, receiver) -> None:
    sbx = start_sandbox("sage_crm", rows=30, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    path = _example(tmp_path, "sage_crm", receiver)
    _run_once(sbx, path)
    auth = ("admin", "sandbox")
    base = sbx.base_url
    frozen_at(sbx, T1)
    leads = requests.get(f"{base}/Lead?count=50", auth=auth).json()["$resources"]
    lead = next(r["lead_leadid"] for r in leads if r["lead_stage"] != "No Interest")
    quiet = next(r["lead_leadid"] for r in leads if r["lead_stage"] == "No Interest")
    changes = [
        ("Company('3')", {"comp_status": "Active"}),
        ("Person('4')", {"pers_lastname": "Changed"}),
        (f"Lead('{lead}')", {"lead_companyname": "Changed Ltd"}),
        (f"Lead('{quiet}')", {"lead_companyname": "Filtered out"}),
        ("Opportunity('6')", {"oppo_description": "Changed"}),
        ("Users('2')", {"user_lastname": "Changed"}),
    ]
    for resource, body in changes:
        answer = requests.patch(f"{base}/{resource}", json=body, auth=auth)
        assert answer.status_code == 200, (resource, answer.text)
    made = requests.post(f"{base}/Company", json={"comp_name": "New Co"}, auth=auth).json()
    frozen_at(sbx, T1 + seconds(10))
    _run_once(sbx, path)
    assert _kinds(receiver) == {
        ("accounts", "UPDATED", "3"),
        ("accounts", "CREATED", str(made["comp_companyid"])),
        ("contacts", "UPDATED", "4"),
        ("leads", "UPDATED", str(lead)),
        ("opportunities", "UPDATED", "6"),
        ("users", "UPDATED", "2"),
    }


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagesql.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.slow
def test_the_cli_polls_reports_rewinds_and_replays(start_sandbox, tmp_path, receiver) -> None:
    sbx = start_sandbox("sage_crm", rows=20, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    path = _example(tmp_path, "sage_crm", receiver)
    state = str(tmp_path / "crm.state")
    env = {**os.environ, "SAGESQL_CONNECTION": connection_string(sbx, "cli")}
    common = ["--config", str(path), "--state", state]
    first = _cli("poll", *common, "--once", env=env)
    assert first.returncode == 0, first.stderr
    frozen_at(sbx, T1)
    requests.patch(
        f"{sbx.base_url}/Company('5')", json={"comp_status": "x"}, auth=("admin", "sandbox")
    )
    frozen_at(sbx, T1 + seconds(10))
    receiver.status = 503
    second = _cli("poll", *common, "--once", "-v", env=env)
    assert second.returncode == 3, second.stderr  # the message waits for a retry
    assert "accounts: 1 UPDATED" in second.stderr
    assert "1 message(s) not delivered: 1 wait for a retry" in second.stderr
    status = _cli("poll", "status", *common, "--format", "json", env=env)
    rows = {r["table"]: r for r in json.loads(status.stdout)}
    assert (
        rows["accounts"]["outbox"] == 1 and rows["accounts"]["watermark"] == "2026-05-04T10:00:35Z"
    )
    assert set(rows) == {"accounts", "contacts", "leads", "opportunities", "users"}
    table = _cli("poll", "status", *common, env={**env, "COLUMNS": "200"})
    assert "accounts" in table.stdout and "dead letters" in table.stdout
    receiver.status = 200
    third = _cli("poll", *common, "--once", env=env)
    assert third.returncode == 0, third.stderr
    assert [e["objectId"] for e in receiver.events()] == ["5"]
    # Rewind: the same change again, with the same event id.
    reset = _cli(
        "poll", "reset", *common, "--table", "accounts", "--since", "2026-05-04T10:00:00Z", env=env
    )
    assert reset.returncode == 0 and "rewound" in reset.stdout, reset.stderr
    fourth = _cli("poll", *common, "--once", env=env)
    assert fourth.returncode == 0, fourth.stderr
    ids = [e["eventId"] for e in receiver.events()]
    assert len(ids) == 2 and ids[0] == ids[1]
    nothing = _cli("poll", "replay", *common, env=env)
    assert nothing.returncode == 0 and "nothing to replay" in nothing.stdout
    bad = _cli("poll", "reset", *common, "--table", "acounts", "--since", "2026-01-01", env=env)
    assert bad.returncode == 2 and "did you mean accounts" in bad.stderr
    explain = _cli("poll", *common, "--explain", env=env)
    # Sage CRM documents no date literal for where=: the window is applied locally, and said so.
    assert explain.returncode == 0 and "GET /Company" in explain.stdout
    assert "?where=comp_updateddate" not in explain.stdout
    assert "documents no date-time literals" in explain.stdout
    assert "keyset chunks" not in explain.stdout  # no LIMIT reaches the API without the window
