"""sagesql serve end to end: published bodies POSTed, changes delivered, PATCH, DELETE.

Each published body goes in unchanged but for connection properties written under their
own names (URL, OAuthTokenURL, OAuthClientId...), the callback URL (a local receiver)
and a one-second interval. The service exchanges the code at creation, polls the
sandbox with the polling library, and the receiver checks every signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from service_helpers import Running, aimed_at, register_code, wait_for
from test_poll_helpers import Receiver, frozen_at, seconds, utc

from sagesql.activities.polling.sinks import SIGNATURE_HEADER

T0 = utc(2026, 5, 4, 10, 0, 0)
T1 = T0 + seconds(30)
CODE = "1c6ff4089d58d80e86482ab7d5b97f15dd7b041d"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def running(tmp_path) -> Iterator[Running]:
    r = Running(tmp_path)
    yield r
    r.stop()


def _status(running: Running, org: dict, iid: str) -> dict[str, Any]:
    answer = requests.get(f"{running.url}/instances/{iid}/status", headers=org["headers"])
    assert answer.status_code == 200, answer.text
    return answer.json()


def _watermarked(running: Running, org: dict, iid: str) -> bool:
    resources = _status(running, org, iid)["resources"]
    return bool(resources) and all(r["watermark"] for r in resources)


def _signed(receiver: Receiver, key: str) -> None:
    for body, sent in zip(receiver.bodies, receiver.headers, strict=True):
        digest = hmac.new(key.encode(), body, hashlib.sha256).digest()
        assert sent[SIGNATURE_HEADER] == "sha256=" + base64.b64encode(digest).decode()


def _create(running: Running, org: dict, body: dict) -> dict[str, Any]:
    answer = requests.post(f"{running.url}/instances", json=body, headers=org["headers"])
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_accounting_body_polls_delivers_patches_and_deletes(
    start_sandbox, running, receiver
) -> None:
    sbx = start_sandbox("sage_accounting", rows=30, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    org = running.org("acme")
    body = aimed_at(sbx, "sage_accounting", receiver.url, code=CODE)
    made = _create(running, org, body)
    assert made["element"]["key"] == "sageone" and made["tags"] == ["Test"]
    assert made["configuration"]["oauth.api.secret"] == "********" and made["token"]
    assert made["configuration"]["OAuthClientSecret"] == "********"
    iid = made["id"]
    wait_for(lambda: _watermarked(running, org, iid), what="a first cycle")
    headers = {"Authorization": f"Bearer {sbx.token()['access_token']}"}
    frozen_at(sbx, T1)
    created = requests.post(
        f"{sbx.base_url}/contacts",
        json={"contact": {"name": "Service Test Ltd", "contact_type_ids": ["CUSTOMER"]}},
        headers=headers,
    ).json()
    frozen_at(sbx, T1 + seconds(10))
    wait_for(lambda: receiver.events(), what="the event at the receiver")
    (event,) = receiver.events()
    assert (event["objectType"], event["eventType"], event["objectId"]) == (
        "customers",
        "CREATED",
        created["id"],
    )
    assert receiver.messages()[0]["instanceId"] == iid
    _signed(receiver, "xxxxxxxxxxxxxxxxxxxxxxxxx")  # the body's signature.secret
    delivered = requests.get(
        f"{running.url}/instances/{iid}/events?state=delivered", headers=org["headers"]
    ).json()
    assert delivered[0]["events"][0]["objectId"] == created["id"]
    # PATCH: a new interval; the watermark stays where it was.
    before = {r["table"]: r["watermark"] for r in _status(running, org, iid)["resources"]}
    patched = requests.patch(
        f"{running.url}/instances/{iid}",
        json={
            "configuration": {"event.poller.refresh_interval": "2s", "oauth.api.secret": "********"}
        },
        headers=org["headers"],
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["configuration"]["event.poller.refresh_interval"] == "2s"
    wait_for(lambda: _status(running, org, iid)["interval_seconds"] == 2.0, what="the new interval")
    after = {r["table"]: r["watermark"] for r in _status(running, org, iid)["resources"]}
    assert after == before
    # DELETE: polling stops within one cycle and the tokens are gone.
    assert (
        requests.delete(f"{running.url}/instances/{iid}", headers=org["headers"]).status_code == 204
    )
    wait_for(lambda: running.service.scheduler.running(iid) is None, 5, "the instance to stop")
    assert running.service.database.token_data(iid) is None
    log_before = len(requests.get(sbx.url + "/_sandbox/requests", timeout=10).json())
    import time

    time.sleep(2.5)
    log_after = len(requests.get(sbx.url + "/_sandbox/requests", timeout=10).json())
    assert log_after == log_before
    assert not running.service.database.state_path(iid).exists()


@pytest.mark.parametrize("product", ["sage_200", "sage_crm"])
def test_sage_200_and_crm_bodies_deliver_a_change(
    start_sandbox, running, receiver, product
) -> None:
    sbx = start_sandbox(product, rows=30, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    org = running.org("acme")
    made = _create(running, org, aimed_at(sbx, product, receiver.url, code=f"code-{product}"))
    iid = made["id"]
    wait_for(lambda: _watermarked(running, org, iid), what="a first cycle")
    frozen_at(sbx, T1)
    if product == "sage_200":
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {sbx.token()['access_token']}"
        sites = s.get(sbx.base_url + "/sites").json()
        site = next(x for x in sites if x["company_name"] == "Cloud-Elements Demodata")
        s.headers.update({"X-Site": str(site["site_id"]), "X-Company": str(site["company_id"])})
        assert s.put(sbx.base_url + "/products/2", json={"description": "x"}).status_code == 200
        expected = ("products", "UPDATED", "2")
    else:
        answer = requests.patch(
            f"{sbx.base_url}/Person('4')",
            json={"pers_lastname": "Changed"},
            auth=("admin", "sandbox"),
        )
        assert answer.status_code == 200
        expected = ("contacts", "UPDATED", "4")
    frozen_at(sbx, T1 + seconds(10))
    wait_for(lambda: receiver.events(), what="the event at the receiver")
    kinds = {(e["objectType"], e["eventType"], e["objectId"]) for e in receiver.events()}
    assert kinds == {expected}
    if product == "sage_200":
        _signed(receiver, "X" * 32)  # the body's signing.key
        assert all(h["Authorization"].startswith("Basic ") for h in receiver.headers)


def test_a_bad_body_lists_every_problem_and_stores_nothing(running) -> None:
    org = running.org("acme")
    body = aimed_at_nothing()
    answer = requests.post(f"{running.url}/instances", json=body, headers=org["headers"])
    assert answer.status_code == 400
    problems = answer.json()["problems"]
    text = " ".join(problems)
    assert "nosuchresource" in text and "NoSuchField" in text and "Logfile" in text
    assert len(problems) >= 3
    assert requests.get(f"{running.url}/instances", headers=org["headers"]).json() == []


def aimed_at_nothing() -> dict[str, Any]:
    from service_helpers import published

    body = published("sage_crm")
    conf = body["configuration"]
    conf["Logfile"] = "/tmp/anywhere.log"
    poller = conf["event.poller.configuration"]
    poller["nosuchresource"] = {"url": "/hubs/crm/nosuchresource", "idField": "key"}
    poller["accounts"]["datesConfiguration"]["updatedDateField"] = "NoSuchField"
    return body


def test_a_refused_code_fails_the_post_with_the_reason(start_sandbox, running, receiver) -> None:
    sbx = start_sandbox("sage_accounting", rows=5, rate_limit_per_minute=0)
    org = running.org("acme")
    body = aimed_at(sbx, "sage_accounting", receiver.url)  # the code was never granted
    answer = requests.post(f"{running.url}/instances", json=body, headers=org["headers"])
    assert answer.status_code == 400
    assert "invalid_grant" in answer.json()["error"] and CODE not in answer.text
    assert requests.get(f"{running.url}/instances", headers=org["headers"]).json() == []
    register_code(sbx, CODE, "https://mycoolapp.com")
    assert requests.post(f"{running.url}/instances", json=body, headers=org["headers"]).ok


def test_patch_with_a_new_code_exchanges_it_and_a_refused_one_changes_nothing(
    start_sandbox, running, receiver
) -> None:
    sbx = start_sandbox("sage_accounting", rows=5, rate_limit_per_minute=0)
    org = running.org("acme")
    made = _create(running, org, aimed_at(sbx, "sage_accounting", receiver.url, code=CODE))
    iid = made["id"]
    url = f"{running.url}/instances/{iid}"
    database, box = running.service.database, running.service.box

    def tokens() -> dict[str, Any]:
        return box.open(database.token_data(iid))

    def stored() -> dict[str, Any]:
        row = database.instance(None, iid)
        assert row is not None
        return box.open(row.body)

    wait_for(lambda: _watermarked(running, org, iid), what="a first cycle")
    first = tokens()
    # What GET answers, sent back with a new name: the masked code means unchanged.
    shown = requests.get(url, headers=org["headers"]).json()
    assert shown["providerData"] == {"code": "********"}
    same = requests.patch(
        url,
        json={"name": "renamed", "providerData": shown["providerData"]},
        headers=org["headers"],
    )
    assert same.status_code == 200, same.text
    assert stored()["providerData"]["code"] == CODE and tokens() == first
    # A code the provider refuses: 400 with its reason, nothing stored.
    refused = requests.patch(
        url,
        json={"name": "not this", "providerData": {"code": "never-granted"}},
        headers=org["headers"],
    )
    assert refused.status_code == 400 and "invalid_grant" in refused.json()["error"]
    assert "never-granted" not in refused.text
    assert stored()["name"] == "renamed" and stored()["providerData"]["code"] == CODE
    assert tokens() == first
    # A granted one: exchanged now, the new pair stored, and polling goes on with it.
    new_code = "2d7a00c4b5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0"
    register_code(sbx, new_code, "https://mycoolapp.com")
    changed = requests.patch(url, json={"providerData": {"code": new_code}}, headers=org["headers"])
    assert changed.status_code == 200, changed.text
    assert changed.json()["providerData"] == {"code": "********"} and new_code not in changed.text
    assert stored()["providerData"]["code"] == new_code
    second = tokens()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    version = database.versions()[iid]

    def reopened_and_polled() -> bool:
        polled = running.service.scheduler.running(iid)
        return polled is not None and polled.version == version and polled.cycles >= 2

    wait_for(reopened_and_polled, what="two cycles with the new tokens")
    status = _status(running, org, iid)
    assert status["error"] is None and status["polling"]
    assert all(not (r["last_result"] or "").startswith("failed") for r in status["resources"])
