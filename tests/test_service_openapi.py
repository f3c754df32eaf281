"""The OpenAPI document against the server's real answers, with Schemathesis.

The document is loaded from the running service's ``/openapi.json``; the service has
a real organization and an instance on the Accounting sandbox that has delivered an
event (so ``/events`` has one). Then:

- every GET operation gets generated requests, schema-valid and schema-violating
  (Hypothesis, few examples each), about the real instance or another id; each answer
  goes through all of Schemathesis' checks (no 5xx, a documented status, content
  type, headers and body as documented, invalid input refused, auth not ignored);
- every operation's error answers are made on purpose (401 without or with wrong
  credentials, 404 for an id that is not the organization's, 400 for bad input, 413
  for a body over the bound) and checked against what the document says of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from service_helpers import Running, aimed_at, wait_for
from test_poll_helpers import Receiver, frozen_at, seconds, utc

pytestmark = pytest.mark.slow

CODE = "1c6ff4089d58d80e86482ab7d5b97f15dd7b041d"
T0 = utc(2026, 5, 4, 10, 0, 0)
EXAMPLES = 25  # per operation and generation mode: the whole file stays well under a minute
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class Api:
    """The running service, its organizations, its instance and its document."""

    def __init__(self, running: Running, sbx: Any, receiver: Receiver) -> None:
        self.running = running
        self.url = running.url
        self.acme, self.other = running.org("acme"), running.org("other")
        body = aimed_at(sbx, "sage_accounting", receiver.url, code=CODE)
        made = requests.post(f"{self.url}/instances", json=body, headers=self.acme["headers"])
        assert made.status_code == 200, made.text
        self.iid = made.json()["id"]
        self.schema = schemathesis.openapi.from_url(f"{self.url}/openapi.json")


@pytest.fixture
def api(tmp_path, start_sandbox) -> Iterator[Api]:
    sbx = start_sandbox("sage_accounting", rows=5, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    receiver = Receiver()
    running = Running(tmp_path, rate_limit=1_000_000)
    try:
        api = Api(running, sbx, receiver)
        status = f"{api.url}/instances/{api.iid}/status"
        headers = api.acme["headers"]
        wait_for(
            lambda: requests.get(status, headers=headers).json()["resources"][0]["watermark"],
            what="a first cycle",
        )
        frozen_at(sbx, T0 + seconds(30))
        token = {"Authorization": f"Bearer {sbx.token()['access_token']}"}
        contact = {"contact": {"name": "OpenAPI Ltd", "contact_type_ids": ["CUSTOMER"]}}
        assert requests.post(f"{sbx.base_url}/contacts", json=contact, headers=token).ok
        frozen_at(sbx, T0 + seconds(40))
        wait_for(receiver.events, what="an event delivered")
        yield api
    finally:
        running.stop()
        receiver.stop()


def test_get_operations_answer_as_documented(api: Api) -> None:
    operations = [r.ok() for r in api.schema.get_all_operations()]
    gets = [op for op in operations if op.method.upper() == "GET"]
    assert {op.path for op in gets} == {
        "/instances",
        "/instances/{id}",
        "/instances/{id}/events",
        "/instances/{id}/status",
    }
    seen: set[tuple[str, int]] = set()
    for op in gets:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _generated(api, op, mode, seen)
    # The generated requests reached real answers, not only refusals.
    assert {(p, 200) for p in ("/instances/{id}/events", "/instances/{id}/status")} <= seen
    assert ("/instances/{id}/events", 400) in seen


def _generated(api: Api, op: Any, mode: GenerationMode, seen: set[tuple[str, int]]) -> None:
    """A few generated requests to ``op``, about the real instance or another id; every
    answer through all of Schemathesis' checks."""

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=op.as_strategy(generation_mode=mode), real=st.booleans())
    def conforms(case: Any, real: bool) -> None:
        if real and "id" in (case.path_parameters or {}):
            case.path_parameters["id"] = api.iid
        response = case.call_and_validate(headers=api.acme["headers"])
        seen.add((op.path, response.status_code))

    conforms()


def _errors(api: Api) -> list[tuple[str, str, dict[str, Any], int]]:
    """(path, method, case fields, expected status) of each error made on purpose."""
    nope = {"id": "0123456789abcdef"}
    mine = {"id": api.iid}
    return [
        ("/instances/{id}/events", "GET", {"path_parameters": mine, "query": {"limit": 0}}, 400),
        (
            "/instances/{id}/events",
            "GET",
            {"path_parameters": mine, "query": {"state": "lost"}},
            400,
        ),
        (
            "/instances/{id}/events",
            "GET",
            {"path_parameters": mine, "query": {"stat": "dead"}},
            400,
        ),
        ("/instances", "POST", {"body": {"configuration": {}}}, 400),
        ("/instances", "POST", {"body": {"configuration": {"x": "y" * 2_000_000}}}, 413),
        ("/instances/{id}", "PATCH", {"path_parameters": mine, "body": []}, 400),
        ("/instances/{id}/events/replay", "POST", {"path_parameters": mine, "body": []}, 400),
        (
            "/instances/{id}/events/replay",
            "POST",
            {"path_parameters": mine, "body": {"resource": 5}},
            400,
        ),
        ("/instances/{id}/query", "POST", {"path_parameters": mine, "body": {"sql": 5}}, 400),
        (
            "/instances/{id}/query",
            "POST",
            {"path_parameters": mine, "body": {"sql": "SELEC nothing"}},
            400,
        ),
        (
            "/instances/{id}/activities/{activity}",
            "POST",
            {"path_parameters": {**mine, "activity": "query"}, "body": {"table": "nope"}},
            400,
        ),
        ("/instances/{id}", "GET", {"path_parameters": nope}, 404),
        ("/instances/{id}", "PATCH", {"path_parameters": nope, "body": {"name": "x"}}, 404),
        ("/instances/{id}", "DELETE", {"path_parameters": nope}, 404),
        ("/instances/{id}/events", "GET", {"path_parameters": nope}, 404),
        ("/instances/{id}/events/replay", "POST", {"path_parameters": nope, "body": {}}, 404),
        ("/instances/{id}/status", "GET", {"path_parameters": nope}, 404),
        ("/instances/{id}/query", "POST", {"path_parameters": nope, "body": {"sql": "S"}}, 404),
        (
            "/instances/{id}/activities/{activity}",
            "POST",
            {"path_parameters": {**nope, "activity": "create"}, "body": {"records": []}},
            404,
        ),
    ]


def _call(api: Api, path: str, method: str, fields: dict[str, Any], headers: dict) -> Any:
    case = api.schema[path][method].Case(**fields)
    response = case.call(headers=headers)
    return case, response


def test_error_answers_are_as_documented(api: Api) -> None:
    for path, method, fields, expected in _errors(api):
        case, response = _call(api, path, method, fields, api.acme["headers"])
        assert response.status_code == expected, (method, path, fields, response.text)
        case.validate_response(response, checks=CONFORMANCE)
        assert response.json()["error"]
    # Another organization's instance is the same 404 as one that does not exist.
    for result in api.schema.get_all_operations():
        op = result.ok()
        if "{id}" not in op.path:
            continue
        fields: dict[str, Any] = {"path_parameters": {"id": api.iid, "activity": "query"}}
        if op.body:
            fields["body"] = {"records": [], "sql": "SELECT 1"}
        fields["path_parameters"] = {
            k: v for k, v in fields["path_parameters"].items() if "{" + k + "}" in op.path
        }
        case, response = _call(api, op.path, op.method.upper(), fields, api.other["headers"])
        assert response.status_code == 404, (op.method, op.path, response.text)
        case.validate_response(response, checks=CONFORMANCE)
        # ... and without, or with wrong, credentials: 401 with WWW-Authenticate.
        wrong = {
            "Authorization": f"User {api.acme['user_secret']}, "
            f"Organization {api.other['organization_secret']}"
        }
        for headers in ({"Authorization": "Bearer x"}, wrong):
            case, response = _call(api, op.path, op.method.upper(), fields, headers)
            assert response.status_code == 401, (op.method, op.path, response.text)
            assert response.headers["www-authenticate"] == ["User, Organization"]
            case.validate_response(response, checks=CONFORMANCE)
    assert requests.get(f"{api.url}/instances/{api.iid}", headers=api.acme["headers"]).ok


def test_the_rate_limited_answer_is_as_documented(tmp_path) -> None:
    running = Running(tmp_path, rate_limit=1, workers=0)
    try:
        org = running.org("acme")
        schema = schemathesis.openapi.from_url(f"{running.url}/openapi.json")
        case = schema["/instances"]["GET"].Case()
        assert case.call(headers=org["headers"]).status_code == 200
        response = case.call(headers=org["headers"])
        assert response.status_code == 429
        case.validate_response(response, checks=CONFORMANCE)
    finally:
        running.stop()
