"""The service's isolation and safety: two organizations, credentials, secrets at rest, limits.

Every endpoint is tried with another organization's credentials (404, and nothing
changed), without or with wrong credentials (401); the database file and the log are
searched for every secret; the rate limit answers 429 with Retry-After; bodies are
bounded; the OpenAPI document describes the real answers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import jsonschema
import pytest
import requests
from service_helpers import Running, aimed_at, wait_for
from test_poll_helpers import Receiver

from sagesql.service.openapi import document
from sagesql.service.secrets import secret_values

CODE = "1c6ff4089d58d80e86482ab7d5b97f15dd7b041d"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def running(tmp_path) -> Iterator[Running]:
    r = Running(tmp_path, rate_limit=10_000)
    yield r
    r.stop()


def _endpoints(iid: str) -> list[tuple[str, str, dict | None]]:
    base = f"/instances/{iid}"
    return [
        ("GET", base, None),
        ("PATCH", base, {"name": "stolen"}),
        ("GET", base + "/events", None),
        ("POST", base + "/events/replay", {}),
        ("GET", base + "/status", None),
        ("POST", base + "/activities/query", {"table": "contacts", "limit": 1}),
        ("POST", base + "/activities/create", {"table": "contacts", "records": [{}]}),
        ("POST", base + "/activities/update", {"table": "contacts", "records": []}),
        ("POST", base + "/activities/delete", {"table": "contacts", "records": []}),
        ("POST", base + "/activities/execute", {"procedure": "x", "records": []}),
        ("POST", base + "/query", {"sql": "SELECT 1"}),
        ("DELETE", base, None),
    ]


def test_every_endpoint_across_two_organizations(start_sandbox, running, receiver) -> None:
    sbx = start_sandbox("sage_accounting", rows=5, rate_limit_per_minute=0)
    acme, other = running.org("acme"), running.org("other")
    body = aimed_at(sbx, "sage_accounting", receiver.url, code=CODE)
    made = requests.post(f"{running.url}/instances", json=body, headers=acme["headers"]).json()
    iid = made["id"]
    assert requests.get(f"{running.url}/instances", headers=other["headers"]).json() == []
    wrong = {
        "Authorization": f"User {acme['user_secret']}, Organization {other['organization_secret']}"
    }
    for method, path, payload in _endpoints(iid):
        theirs = requests.request(
            method, running.url + path, json=payload, headers=other["headers"]
        )
        assert theirs.status_code == 404, (method, path, theirs.text)
        for headers in ({}, wrong, {"Authorization": "Bearer x"}):
            refused = requests.request(method, running.url + path, json=payload, headers=headers)
            assert refused.status_code == 401, (method, path, headers)
    for method, path in (("GET", "/instances"), ("POST", "/instances")):
        assert requests.request(method, running.url + path, json=body).status_code == 401
    # An Element token must be the instance's own.
    element = {"Authorization": acme["headers"]["Authorization"] + ", Element nope"}
    assert requests.get(f"{running.url}/instances/{iid}", headers=element).status_code == 401
    element = {"Authorization": acme["headers"]["Authorization"] + f", Element {made['token']}"}
    assert requests.get(f"{running.url}/instances/{iid}", headers=element).status_code == 200
    # Nothing of acme's changed; the owner still reaches everything.
    mine = requests.get(f"{running.url}/instances/{iid}", headers=acme["headers"]).json()
    assert mine["name"] == "API_Polling"
    rows = requests.post(
        f"{running.url}/instances/{iid}/query",
        json={"sql": "SELECT id, name FROM contacts LIMIT 3"},
        headers=acme["headers"],
    )
    assert rows.status_code == 200 and len(rows.json()) == 3
    query = requests.post(
        f"{running.url}/instances/{iid}/activities/query",
        json={"table": "contacts", "fields": ["id"], "limit": 2},
        headers=acme["headers"],
    )
    assert len(query.json()["records"]) == 2
    created = requests.post(
        f"{running.url}/instances/{iid}/activities/create",
        json={
            "table": "contacts",
            "records": [{"name": "Over HTTP", "contact_types": ["CUSTOMER"]}, {}],
        },
        headers=acme["headers"],
    ).json()["results"]
    assert [r["status"] for r in created] == ["created", "failed"]
    _conforms(running, acme, iid)


def _conforms(running: Running, org: dict, iid: str) -> None:
    """Real answers against the OpenAPI document's schemas."""
    doc = document()
    components = doc["components"]["schemas"]

    def check(path: str, method: str, status: str, data: object) -> None:
        answers = doc["paths"][path][method]["responses"][status]
        _validate(data, answers["content"]["application/json"]["schema"], components)

    h = org["headers"]
    check("/instances", "get", "200", requests.get(f"{running.url}/instances", headers=h).json())
    check(
        "/instances/{id}",
        "get",
        "200",
        requests.get(f"{running.url}/instances/{iid}", headers=h).json(),
    )
    check(
        "/instances/{id}/status",
        "get",
        "200",
        requests.get(f"{running.url}/instances/{iid}/status", headers=h).json(),
    )
    check(
        "/instances/{id}/events",
        "get",
        "200",
        requests.get(f"{running.url}/instances/{iid}/events", headers=h).json(),
    )
    check(
        "/instances/{id}",
        "get",
        "404",
        requests.get(f"{running.url}/instances/nope", headers=h).json(),
    )


def _validate(data: object, schema: dict, components: dict) -> None:
    import json

    text = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
    jsonschema.Draft202012Validator(
        {
            **json.loads(text),
            "$defs": json.loads(
                json.dumps(components).replace("#/components/schemas/", "#/$defs/")
            ),
        }
    ).validate(data)


def test_secrets_are_neither_stored_in_clear_nor_logged(
    start_sandbox, running, receiver, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    sbx = start_sandbox("sage_accounting", rows=5, rate_limit_per_minute=0)
    org = running.org("acme")
    body = aimed_at(sbx, "sage_accounting", receiver.url, code=CODE)
    made = requests.post(f"{running.url}/instances", json=body, headers=org["headers"]).json()
    iid = made["id"]
    wait_for(lambda: running.service.database.token_data(iid), what="tokens")
    status = f"{running.url}/instances/{iid}/status"
    wait_for(
        lambda: requests.get(status, headers=org["headers"]).json()["resources"][0]["watermark"],
        what="a cycle",
    )
    tokens = running.service.box.open(running.service.database.token_data(iid))
    secrets = [*secret_values(body), org["organization_secret"], org["user_secret"], made["token"]]
    secrets += [tokens["access_token"], tokens["refresh_token"]]
    answers = requests.get(f"{running.url}/instances/{iid}", headers=org["headers"]).text
    answers += requests.get(f"{running.url}/instances", headers=org["headers"]).text
    stored = b"".join(p.read_bytes() for p in running.path.parent.rglob("*") if p.is_file())
    logged = caplog.text
    for secret in secrets:
        assert secret.encode() not in stored, "a secret is stored in clear"
        assert secret not in logged, "a secret is logged"
        if secret != made["token"]:
            assert secret not in answers, "a secret is answered"


def test_rate_limit_and_body_bound(tmp_path) -> None:
    running = Running(tmp_path, rate_limit=5, workers=0)
    try:
        org = running.org("acme")
        codes = [
            requests.get(f"{running.url}/instances", headers=org["headers"]).status_code
            for _ in range(7)
        ]
        assert codes[:5] == [200] * 5 and codes[-1] == 429
        limited = requests.get(f"{running.url}/instances", headers=org["headers"])
        assert int(limited.headers["Retry-After"]) >= 1
        other = running.org("other")  # another organization is not held back
        assert requests.get(f"{running.url}/instances", headers=other["headers"]).ok
        big = b"{" + b" " * (2 * 1024 * 1024) + b"}"
        answer = requests.post(
            f"{running.url}/instances",
            data=big,
            headers={**other["headers"], "Content-Type": "application/json"},
        )
        assert answer.status_code == 413
    finally:
        running.stop()
