"""The platforms' three published instance bodies, unchanged, polled by ``sagesql poll``.

Each body in ``activities/polling/examples/`` runs as the platforms' documentation
publishes it, byte for byte: only ``--callback-url`` (a local receiver) and ``-c``
(pointing it at the sandbox, as an operator would for a trial) are given. A baseline
cycle, then creates, updates and deletes through each API, then the next cycles: the
receiver gets the platforms' notification for each change, with its ``objectType``,
``objectId``, ``eventType`` and ``raw`` (the record as Sage returned it), signed or
authenticated as the body says. Accounting's token pair comes from the body's
``providerData.code`` alone; Sage 200's company is the one the body names.
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
from test_poll_helpers import Receiver, frozen_at, seconds, utc

from sagesql.activities.polling.sinks import SIGNATURE_HEADER

PUBLISHED = Path(__file__).resolve().parent.parent / "activities" / "polling" / "examples"
T0 = utc(2026, 6, 1, 9, 0, 0)
T1 = T0 + seconds(30)

pytestmark = pytest.mark.slow  # three products, a dozen subprocess runs


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def _poll(body: str, state: Path, receiver: Receiver, connection: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGESQL_")}
    env["SAGESQL_DATA_DIR"] = str(state.parent / "data")
    command = [sys.executable, "-m", "sagesql.cli.main", "poll", "--config", str(PUBLISHED / body)]
    command += ["--state", str(state), "--callback-url", receiver.url, "-c", connection, "--once"]
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr


def _events(receiver: Receiver) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(objectType, eventType, objectId) -> that event's raw record."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for message in receiver.messages():
        records = iter(message["raw"][message["events"][0]["objectType"]])
        for event, raw in zip(message["events"], records, strict=True):
            out[(event["objectType"], event["eventType"], event["objectId"])] = raw
    return out


def _until(found: Any, run: Any, tries: int = 4) -> None:
    """Poll again (a second later each time) until ``found()``: id sets are compared every
    few cycles, so a Sage 200 or CRM deletion shows within that many."""
    for _ in range(tries):
        if found():
            return
        run()
    assert found()


def test_the_accounting_body_polls_with_its_code_and_signs_its_events(
    start_sandbox, tmp_path, receiver
) -> None:
    sbx = start_sandbox("sage_accounting", rows=20, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    consent = {
        "code": "1c6ff4089d58d80e86482ab7d5b97f15dd7b041d",
        "redirect_uri": "https://mycoolapp.com",
    }
    assert requests.post(sbx.url + "/_sandbox/code", json=consent, timeout=10).ok
    connection = (
        f"URL={sbx.base_url};OAuthTokenURL={sbx.token_url};OAuthClientId=sandbox-client;"
        "OAuthClientSecret=sandbox-secret;RateLimit=0"
    )
    state = tmp_path / "accounting.poll.sqlite"
    _poll("sage-accounting.instance.json", state, receiver, connection)
    assert receiver.messages() == []  # the baseline: nothing before it is an event
    api = {"Authorization": f"Bearer {sbx.token()['access_token']}"}
    base = sbx.base_url
    frozen_at(sbx, T1)
    customers = requests.get(f"{base}/contacts?contact_type_id=CUSTOMER", headers=api).json()
    changed, gone = (c["id"] for c in customers["$items"][:2])
    made = requests.post(
        f"{base}/contacts",
        json={"contact": {"name": "Published Ltd", "contact_type_ids": ["CUSTOMER"]}},
        headers=api,
    ).json()["id"]
    assert requests.put(
        f"{base}/contacts/{changed}", json={"contact": {"notes": "x"}}, headers=api
    ).ok
    assert requests.delete(f"{base}/contacts/{gone}", headers=api).status_code == 204
    frozen_at(sbx, T1 + seconds(10))
    _poll("sage-accounting.instance.json", state, receiver, connection)
    events = _events(receiver)
    assert set(events) == {
        ("customers", "CREATED", made),
        ("customers", "UPDATED", changed),
        ("customers", "DELETED", gone),
    }
    # attributes='created_at,updated_at': what Sage returns for it, as Sage spells it.
    listed = requests.get(
        f"{base}/contacts?contact_type_id=CUSTOMER&attributes=created_at,updated_at"
        "&items_per_page=200",
        headers=api,
    ).json()["$items"]
    assert events[("customers", "UPDATED", changed)] == next(
        r for r in listed if r["id"] == changed
    )
    assert set(events[("customers", "CREATED", made)]) == {
        "id",
        "displayed_as",
        "$path",
        "created_at",
        "updated_at",
    }
    assert events[("customers", "DELETED", gone)]["id"] == gone
    # Signed with the body's signature.secret over the exact bytes sent.
    for body, headers in zip(receiver.bodies, receiver.headers, strict=True):
        digest = hmac.new(b"xxxxxxxxxxxxxxxxxxxxxxxxx", body, hashlib.sha256).digest()
        assert headers[SIGNATURE_HEADER] == "sha256=" + base64.b64encode(digest).decode()
    message = receiver.messages()[0]
    assert (message["instanceName"], message["elementKey"]) == ("API_Polling", "sageone")


def test_the_sage_200_body_polls_its_named_company(start_sandbox, tmp_path, receiver) -> None:
    sbx = start_sandbox("sage_200", rows=20, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    props = {**sbx.connection_properties(), "RateLimit": "0"}
    connection = ";".join(f"{k}={v}" for k, v in props.items())
    state = tmp_path / "sage200.poll.sqlite"

    def poll() -> None:
        _poll("sage-200.instance.json", state, receiver, connection)

    poll()
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {sbx.token()['access_token']}"
    sites = api.get(sbx.base_url + "/sites", timeout=10).json()
    named = next(s for s in sites if s["company_name"] == "Cloud-Elements Demodata")
    api.headers.update({"X-Site": str(named["site_id"]), "X-Company": str(named["company_id"])})
    base = sbx.base_url
    frozen_at(sbx, T1)
    made = api.post(f"{base}/customers", json={"reference": "PUB01", "name": "Published Ltd"})
    assert made.ok, made.text
    new = str(made.json()["id"])
    assert api.put(f"{base}/products/2", json={"description": "changed"}).ok
    invoice = api.post(
        f"{base}/sales_invoices", json={"customer_id": 3, "document_goods_value": 100}
    )
    assert invoice.ok, invoice.text
    assert api.delete(f"{base}/products/5").status_code == 204
    frozen_at(sbx, T1 + seconds(10))
    poll()
    clock = iter(range(11, 20))

    def again() -> None:
        frozen_at(sbx, T1 + seconds(next(clock)))
        poll()

    _until(lambda: ("products", "DELETED", "5") in _events(receiver), again)
    events = _events(receiver)
    kinds = set(events)
    # transactions' url polls customers: the same changes, under its own name.
    for wanted in [
        ("customers", "CREATED", new),
        ("transactions", "CREATED", new),
        ("products", "UPDATED", "2"),
        ("products", "DELETED", "5"),
    ]:
        assert wanted in kinds, (wanted, sorted(kinds))
    assert any(t == "invoices" and k == "CREATED" for t, k, _ in kinds)
    assert events[("customers", "CREATED", new)]["reference"] == "PUB01"  # company 3's record
    assert events[("products", "DELETED", "5")] == {"id": 5}
    posted = next(raw for (t, k, _), raw in events.items() if t == "invoices")
    assert posted["trader_transaction_type"] == "TradingAccountEntryTypeInvoice"
    # The body's webhook basic auth.
    expected = "Basic " + base64.b64encode(b"CompanyName123:P@$$w0rd").decode()
    assert all(h["Authorization"] == expected for h in receiver.headers)


def test_the_crm_body_polls_with_its_own_column_names(start_sandbox, tmp_path, receiver) -> None:
    sbx = start_sandbox("sage_crm", rows=20, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    connection = f"URL={sbx.base_url};User=admin;Password=sandbox;RateLimit=0"
    state = tmp_path / "crm.poll.sqlite"

    def poll() -> None:
        _poll("sage-crm.instance.json", state, receiver, connection)

    poll()
    auth = ("admin", "sandbox")
    base = sbx.base_url
    frozen_at(sbx, T1)
    assert requests.patch(f"{base}/Company('3')", json={"comp_status": "Active"}, auth=auth).ok
    made = requests.post(f"{base}/Company", json={"comp_name": "Published Co"}, auth=auth).json()
    assert requests.patch(
        f"{base}/Opportunity('6')", json={"oppo_description": "Changed"}, auth=auth
    ).ok
    assert requests.delete(f"{base}/Person('4')", auth=auth).status_code == 204
    frozen_at(sbx, T1 + seconds(10))
    poll()
    clock = iter(range(11, 20))

    def again() -> None:
        frozen_at(sbx, T1 + seconds(next(clock)))
        poll()

    _until(lambda: ("contacts", "DELETED", "4") in _events(receiver), again)
    events = _events(receiver)
    assert set(events) == {
        ("accounts", "UPDATED", "3"),
        ("accounts", "CREATED", str(made["comp_companyid"])),
        ("opportunities", "UPDATED", "6"),
        ("contacts", "DELETED", "4"),
    }
    assert events[("accounts", "UPDATED", "3")]["$key"] == "3"  # SData's own JSON
    assert events[("contacts", "DELETED", "4")] == {"pers_personid": 4}
    assert json.loads(receiver.bodies[0])["message"]["elementKey"] == "sagecrm"
