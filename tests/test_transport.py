"""The HTTP transport over real HTTP: headers, URLs, retries, 401, rate limit, errors, redaction.

Servers: pytest-httpserver for exact sequences of answers, and the sandbox's
ProductApp (a tiny subclass with one list route) for its fault injection.
Sleeping is injected: a fake clock records the waits, except where a test checks
that a wait really happens.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from werkzeug.wrappers import Request, Response

from sagesql import __version__
from sagesql.connector import api_errors, logs
from sagesql.connector.properties import Settings
from sagesql.connector.throttle import TokenBucket
from sagesql.connector.transport import HTTPTransport
from sagesql.errors import (
    APIError,
    AuthError,
    IntegrityError,
    OperationalError,
    RetriableAPIError,
)
from sagesql.sandbox.app import ProductApp, json_response
from sagesql.sandbox.config import Faults, SandboxConfig
from sagesql.sandbox.server import RunningServer
from sagesql.schemas.catalog import default_catalog

ACCOUNTING = default_catalog().product("sage_accounting")
SAGE200 = default_catalog().product("sage_200")
CRM = default_catalog().product("sage_crm")
TOKEN = "access-token-abc123"


class Bearer(requests.auth.AuthBase):
    """A fixed bearer token, optionally replaced by a refresh on 401."""

    def __init__(self, token: str = TOKEN, refreshed: str | None = None) -> None:
        self.token = token
        self.refreshed = refreshed
        self.refresh_calls = 0

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class Refreshing(Bearer):
    def refresh_after_401(self, response: requests.Response) -> bool:
        self.refresh_calls += 1
        if self.refreshed is None:
            return False
        self.token = self.refreshed
        return True


class FakeTime:
    """monotonic() and sleep() over a fake clock; remembers every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def settings(**kwargs: Any) -> Settings:
    values: dict[str, Any] = {"oauth_access_token": TOKEN, "timeout": 60, "rate_limit": 0}
    values.update(kwargs)
    return Settings(**values)


@pytest.fixture
def make():
    """make(base_url, **transport kwargs) -> HTTPTransport with fake time unless sleep= is given."""
    made: list[HTTPTransport] = []

    def build(base_url: str, *, product=ACCOUNTING, auth=None, config=None, **kwargs: Any):
        fake = FakeTime()
        kwargs.setdefault("sleep", fake.sleep)
        kwargs.setdefault("monotonic", fake.monotonic)
        kwargs.setdefault("jitter", lambda: 1.0)
        transport = HTTPTransport(
            config or settings(),
            product,
            base_url=base_url,
            auth=auth if auth is not None else Bearer(),
            **kwargs,
        )
        transport.fake = fake  # type: ignore[attr-defined]
        made.append(transport)
        return transport

    yield build
    for transport in made:
        transport.close()


def json_answer(data: Any, status: int = 200, **headers: str) -> Response:
    return Response(json.dumps(data), status=status, headers=headers, mimetype="application/json")


# -- sandbox apps -----------------------------------------------------------------------------


class ListApp(ProductApp):
    """The sandbox base with one resource: GET lists 50 records, POST creates one."""

    product = "sage_accounting"

    def route(self, request: Request, principal: Any) -> Response:
        if request.method == "POST":
            return json_response({"id": "new", **(request.get_json() or {})}, 201)
        return json_response([{"id": i, "name": f"record {i}" * 5} for i in range(50)])


@pytest.fixture
def sandbox():
    """A running ListApp: (app, base_url, token)."""
    app = ListApp(SandboxConfig(product="sage_accounting", rate_limit_per_minute=0))
    server = RunningServer(app).start()
    yield app, server.url + "/v3.1", app.oauth.issue()["access_token"]
    server.stop()


# -- session, headers, URLs ------------------------------------------------------------------


def test_headers_auth_and_product_headers(httpserver, make) -> None:
    httpserver.expect_request(
        "/v3.1/contacts",
        headers={
            "User-Agent": f"sagesql/{__version__}",
            "Accept": "application/json",
            "X-Business": "business-1",
            "Authorization": f"Bearer {TOKEN}",
        },
    ).respond_with_json({"ok": True})
    transport = make(httpserver.url_for("/v3.1"), extra_headers={"X-Business": "business-1"})
    assert transport.get_json("contacts") == {"ok": True}


def test_paths_links_and_foreign_hosts(httpserver, make) -> None:
    httpserver.expect_request("/v3.1/contacts", query_string="page=2").respond_with_json([1])
    transport = make(httpserver.url_for("/v3.1/"))
    # Relative paths, Accounting's $next links (no /v3.1), full paths and same-host URLs.
    assert transport.get_json("contacts", params={"page": 2}) == [1]
    assert transport.get_json("/contacts?page=2") == [1]
    assert transport.get_json("/v3.1/contacts?page=2") == [1]
    assert transport.get_json(httpserver.url_for("/v3.1/contacts?page=2")) == [1]
    with pytest.raises(APIError, match="another host"):
        transport.get_json("https://evil.example.com/v3.1/contacts")
    assert len(httpserver.log) == 4


def test_read_timeout_from_settings_is_retried() -> None:
    calls: list[float] = []

    def app(environ, start_response):
        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(1.5)  # longer than Timeout=1
        return json_answer({"ok": True})(environ, start_response)

    server = RunningServer(app).start()
    transport = HTTPTransport(
        settings(timeout=1), ACCOUNTING, base_url=server.url, auth=None, jitter=lambda: 0.0
    )
    try:
        started = time.monotonic()
        assert transport.get_json("x") == {"ok": True}
        assert len(calls) == 2
        assert 1.0 <= time.monotonic() - started < 1.5
    finally:
        transport.close()
        server.stop()


def test_proxy_from_settings(httpserver, make) -> None:
    # The test server plays the proxy: requests send it the absolute URL.
    httpserver.expect_request("/v3.1/contacts").respond_with_json({"via": "proxy"})
    config = settings(proxy_server="127.0.0.1", proxy_port=httpserver.port)
    transport = make("http://sage.example.invalid/v3.1", config=config)
    assert transport.get_json("contacts") == {"via": "proxy"}
    assert httpserver.log[0][0].host == "sage.example.invalid"


# -- retries ---------------------------------------------------------------------------------


def test_429_waits_retry_after_seconds(httpserver, make) -> None:
    httpserver.expect_ordered_request("/v3.1/x").respond_with_response(
        json_answer([{"$dataCode": "TooManyRequests"}], 429, **{"Retry-After": "1"})
    )
    httpserver.expect_ordered_request("/v3.1/x").respond_with_json({"ok": 1})
    transport = make(httpserver.url_for("/v3.1"), sleep=time.sleep, monotonic=time.monotonic)
    started = time.monotonic()
    assert transport.get_json("x") == {"ok": 1}
    assert time.monotonic() - started >= 1.0
    assert len(httpserver.log) == 2


def test_429_retry_after_http_date_measured_from_the_answers_date(make) -> None:
    server_now = datetime(2020, 5, 1, 12, 0, 0, tzinfo=timezone.utc)  # a clock far from ours
    headers = {
        "Date": format_datetime(server_now, usegmt=True),
        "Retry-After": format_datetime(server_now + timedelta(seconds=3), usegmt=True),
    }
    answers = [json_answer([], 429, **headers), json_answer({"ok": 1})]

    def app(environ, start_response):  # the sandbox server keeps the app's Date header
        return answers.pop(0)(environ, start_response)

    server = RunningServer(app).start()
    try:
        transport = make(server.url + "/v3.1")
        assert transport.get_json("x") == {"ok": 1}
    finally:
        server.stop()
    assert transport.fake.sleeps == [3.0]


def test_5xx_backoff_doubles_with_jitter(httpserver, make) -> None:
    for status in (500, 502, 503, 504):
        httpserver.expect_ordered_request("/v3.1/x").respond_with_data("busy", status)
    httpserver.expect_ordered_request("/v3.1/x").respond_with_json({"ok": 1})
    transport = make(httpserver.url_for("/v3.1"))  # jitter 1.0: the full delay each time
    assert transport.get_json("x") == {"ok": 1}
    assert transport.fake.sleeps == [0.5, 1.0, 2.0, 4.0]
    halves = make(httpserver.url_for("/v3.1"), jitter=lambda: 0.5)
    httpserver.clear()
    httpserver.expect_ordered_request("/v3.1/x").respond_with_data("busy", 503)
    httpserver.expect_ordered_request("/v3.1/x").respond_with_json({"ok": 1})
    halves.get_json("x")
    assert halves.fake.sleeps == [0.25]


def test_retries_bounded_by_count(httpserver, make) -> None:
    httpserver.expect_request("/v3.1/contacts").respond_with_data("down", 503)
    transport = make(httpserver.url_for("/v3.1"), config=settings(timeout=60))  # 120 s in all
    with pytest.raises(RetriableAPIError, match=r"GET /contacts: gave up after 6 attempts.*503"):
        transport.get_json("contacts")
    assert len(httpserver.log) == 6


def test_retries_bounded_by_time(httpserver, make) -> None:
    httpserver.expect_request("/v3.1/contacts").respond_with_data("down", 502)
    transport = make(httpserver.url_for("/v3.1"), retry_budget=3.0)
    with pytest.raises(RetriableAPIError, match=r"after 3 attempts.*3 s limit.*502") as info:
        transport.get_json("contacts")
    assert transport.fake.sleeps == [0.5, 1.0]  # the next wait (2 s) would pass 3 s in all
    assert info.value.status == 502


def test_retry_after_longer_than_the_budget_gives_up_at_once(httpserver, make) -> None:
    httpserver.expect_request("/v3.1/x").respond_with_response(
        json_answer([], 429, **{"Retry-After": "600"})
    )
    transport = make(httpserver.url_for("/v3.1"))
    with pytest.raises(RetriableAPIError, match="429"):
        transport.get_json("x")
    assert len(httpserver.log) == 1 and transport.fake.sleeps == []


def test_post_not_retried_on_5xx_but_retried_on_429(httpserver, make) -> None:
    httpserver.expect_ordered_request("/v3.1/contacts", method="POST").respond_with_data(
        "oops", 503
    )
    transport = make(httpserver.url_for("/v3.1"))
    with pytest.raises(APIError) as info:
        transport.json_request("POST", "contacts", json={"contact": {"name": "A"}})
    assert not isinstance(info.value, RetriableAPIError)
    assert "check before sending it again" in str(info.value)
    assert len(httpserver.log) == 1
    httpserver.clear()
    httpserver.expect_ordered_request("/v3.1/contacts", method="POST").respond_with_response(
        json_answer([], 429, **{"Retry-After": "2"})
    )
    httpserver.expect_ordered_request("/v3.1/contacts", method="POST").respond_with_json(
        {"id": "c1"}, 201
    )
    assert transport.json_request("POST", "contacts", json={"contact": {}}) == {"id": "c1"}
    assert len(httpserver.log) == 2 and transport.fake.sleeps == [2.0]


def test_put_and_delete_are_retried_post_only_when_told(httpserver, make) -> None:
    transport = make(httpserver.url_for("/v3.1"))
    for method, idempotent in (("PUT", None), ("DELETE", None), ("POST", True)):
        httpserver.clear()
        httpserver.expect_ordered_request("/v3.1/x", method=method).respond_with_data("", 500)
        httpserver.expect_ordered_request("/v3.1/x", method=method).respond_with_data("", 204)
        response = transport.request(method, "x", json={}, idempotent=idempotent)
        assert response.status_code == 204 and len(httpserver.log) == 2


def test_reads_survive_sandbox_faults(sandbox, make) -> None:
    app, base_url, token = sandbox
    transport = make(base_url, auth=Bearer(token))
    specs = [
        Faults(drop=0.3, seed=1),
        Faults(truncate=0.3, seed=2),
        Faults(errors=0.3, error_statuses=(500, 502, 503, 504), seed=3),
        Faults(throttle=0.3, seed=4),
        Faults(drop=0.1, truncate=0.1, errors=0.1, throttle=0.1, seed=5),
    ]
    for faults in specs:
        app.faults.reconfigure(faults)
        app.requests.clear()
        for _ in range(15):
            records = transport.get_json("contacts")
            assert [r["id"] for r in records] == list(range(50))
        assert any(entry["fault"] for entry in app.requests), faults


def test_post_not_retried_after_a_dropped_connection(sandbox, make) -> None:
    app, base_url, token = sandbox
    transport = make(base_url, auth=Bearer(token))
    app.faults.reconfigure(Faults(drop=1.0))
    with pytest.raises(OperationalError, match="not retried") as info:
        transport.json_request("POST", "contacts", json={"contact": {"name": "A"}})
    assert not isinstance(info.value, RetriableAPIError)
    assert [e["method"] for e in app.requests] == ["POST"]
    app.faults.reconfigure(Faults(truncate=1.0))
    app.requests.clear()
    with pytest.raises(OperationalError, match=r"cut short.*not retried"):
        transport.json_request("POST", "contacts", json={"contact": {"name": "A"}})
    assert len(app.requests) == 1
    # Reads go on until the bound, then say so.
    app.faults.reconfigure(Faults(drop=1.0))
    app.requests.clear()
    with pytest.raises(RetriableAPIError, match=r"GET /contacts.*dropped"):
        transport.get_json("contacts")
    assert len(app.requests) == 6


def test_post_retried_after_connection_refused(make) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = ListApp(SandboxConfig(product="sage_accounting", rate_limit_per_minute=0))
    started: list[RunningServer] = []

    def sleep(seconds: float) -> None:
        # Nothing listens on the port at first; the server comes up while we back off.
        if not started:
            started.append(RunningServer(app, port=port).start())

    transport = make(
        f"http://127.0.0.1:{port}/v3.1", sleep=sleep, auth=Bearer(app.oauth.issue()["access_token"])
    )
    try:
        created = transport.json_request("POST", "contacts", json={"name": "A"})
    finally:
        for server in started:
            server.stop()
    assert created == {"id": "new", "name": "A"}
    assert [e["method"] for e in app.requests] == ["POST"]  # once: the first never arrived


def test_post_retried_when_the_host_name_does_not_resolve(make) -> None:
    transport = make("http://sagesql-test.invalid/v3.1")
    with pytest.raises(RetriableAPIError, match=r"POST /contacts: gave up after 6.*resolved"):
        transport.json_request("POST", "contacts", json={})
    assert len(transport.fake.sleeps) == 5


def test_cut_json_without_length_is_retried_for_reads_only(httpserver, make) -> None:
    cut = '[{"id": 1}, {"id": 2'
    httpserver.expect_ordered_request("/v3.1/x").respond_with_data(
        cut, content_type="application/json"
    )
    httpserver.expect_ordered_request("/v3.1/x").respond_with_json([{"id": 1}, {"id": 2}])
    transport = make(httpserver.url_for("/v3.1"))
    assert transport.get_json("x") == [{"id": 1}, {"id": 2}]
    httpserver.clear()
    httpserver.expect_request("/v3.1/x", method="POST").respond_with_data(
        cut, 201, content_type="application/json"
    )
    with pytest.raises(APIError, match="unexpected: 201 application/json instead of JSON"):
        transport.json_request("POST", "x", json={})
    assert len(httpserver.log) == 1


# -- 401 -------------------------------------------------------------------------------------


def _expect_token(httpserver, token: str, status: int, method: str = "GET") -> None:
    body = [{"$dataCode": "AuthorizationFailure", "$message": "Access token expired"}]
    answer = json_answer(body, 401) if status == 401 else json_answer({"ok": 1}, status)
    httpserver.expect_ordered_request(
        "/v3.1/x", method=method, headers={"Authorization": f"Bearer {token}"}
    ).respond_with_response(answer)


def test_401_refresh_then_retry_once(httpserver, make) -> None:
    _expect_token(httpserver, "old", 401, "POST")
    _expect_token(httpserver, "new", 201, "POST")
    auth = Refreshing("old", refreshed="new")
    transport = make(httpserver.url_for("/v3.1"), auth=auth)
    assert transport.json_request("POST", "x", json={}) == {"ok": 1}  # Sage refused: safe
    assert auth.refresh_calls == 1 and len(httpserver.log) == 2


def test_401_after_refresh_is_an_auth_error(httpserver, make) -> None:
    _expect_token(httpserver, "old", 401)
    _expect_token(httpserver, "new", 401)
    auth = Refreshing("old", refreshed="new")
    transport = make(httpserver.url_for("/v3.1"), auth=auth)
    with pytest.raises(AuthError, match="even after a refresh"):
        transport.get_json("x")
    assert auth.refresh_calls == 1 and len(httpserver.log) == 2


def test_401_without_refresh_says_how_to_fix(httpserver, make) -> None:
    _expect_token(httpserver, TOKEN, 401)
    transport = make(httpserver.url_for("/v3.1"))
    with pytest.raises(AuthError) as info:
        transport.get_json("x")
    text = str(info.value)
    assert "GET /x: the access token expired or was refused: Access token expired" in text
    assert "401 AuthorizationFailure" in text
    assert "sagesql auth login" in text and "InitiateOAuth=GETANDREFRESH" in text
    assert TOKEN not in text and info.value.status == 401
    assert len(httpserver.log) == 1


def test_401_with_basic_auth_names_user_and_password(httpserver, make) -> None:
    httpserver.expect_request("/sdata/crmj/sagecrm2/-/Company").respond_with_data("", 401)
    transport = make(
        httpserver.url_for("/sdata/crmj/sagecrm2/-"),
        product=CRM,
        auth=requests.auth.HTTPBasicAuth("admin", "pw-secret"),
    )
    with pytest.raises(AuthError, match=r"user name or password.*User and Password"):
        transport.get_json("Company")


# -- rate limit -------------------------------------------------------------------------------


def test_token_bucket_keeps_the_limit_in_every_minute() -> None:
    fake = FakeTime()
    bucket = TokenBucket(30, burst=5, monotonic=fake.monotonic, sleep=fake.sleep)
    stamps = []
    for _ in range(200):
        bucket.acquire()
        stamps.append(fake.now)
    for i, start in enumerate(stamps):  # any sliding minute, as Sage counts
        assert sum(1 for t in stamps[i:] if t < start + 60) <= 30
    minutes = (stamps[-1] - stamps[0]) / 60
    assert 200 / minutes >= 0.8 * 30  # and not much slower than the limit
    assert stamps[:5] == [stamps[0]] * 5  # the small burst goes at once


def test_token_bucket_threads_share_the_rate() -> None:
    import threading

    bucket = TokenBucket(600, burst=2)  # 10 a second
    stamps: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(3):
            bucket.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamps.sort()
    assert stamps[-1] - stamps[0] >= (18 - 2) / 10 * 0.9
    for i, start in enumerate(stamps):
        assert sum(1 for t in stamps[i:] if t < start + 0.5) <= 2 + 5 + 1


def test_transport_waits_on_the_rate_limit_and_on_retry_after(httpserver, make) -> None:
    httpserver.expect_request("/v3.1/x").respond_with_json({})
    transport = make(httpserver.url_for("/v3.1"), config=settings(rate_limit=60))
    for _ in range(5):
        transport.get_json("x")
    # 60 a minute with a burst of 3: two waits of 60/57 s.
    assert transport.fake.sleeps == pytest.approx([60 / 57, 60 / 57])
    bucket = TokenBucket(0, monotonic=transport.fake.monotonic, sleep=transport.fake.sleep)
    bucket.pause(5)
    assert bucket.acquire() == 5.0


# -- error answers ---------------------------------------------------------------------------

ERROR_CASES = [
    # product, method, status, content type, body, class, message part, errors
    (
        ACCOUNTING,
        "POST",
        422,
        "application/json",
        [
            {
                "$severity": "error",
                "$dataCode": "RecordInvalid",
                "$message": "can't be blank",
                "$source": "name",
            }
        ],
        IntegrityError,
        "POST /contacts: contact.name: can't be blank (422 RecordInvalid)",
        [("contact.name", "can't be blank")],
    ),
    (
        ACCOUNTING,
        "GET",
        404,
        "application/json",
        [
            {
                "$severity": "error",
                "$dataCode": "RecordNotFound",
                "$message": "Not found",
                "$source": "",
            }
        ],
        APIError,
        "GET /contacts: Not found (404 RecordNotFound)",
        [(None, "Not found")],
    ),
    (
        ACCOUNTING,
        "GET",
        403,
        "application/json",
        [{"$dataCode": "MultiUserAccessDenied", "$message": "Access denied for this business"}],
        AuthError,
        "Access denied for this business (403 MultiUserAccessDenied)",
        [(None, "Access denied for this business")],
    ),
    (
        SAGE200,
        "GET",
        400,
        "application/json",
        [{"$severity": "error", "$dataCode": "HeaderNotFound", "$message": "X-Site is missing"}],
        APIError,
        "GET /contacts: X-Site is missing (400 HeaderNotFound)",
        [(None, "X-Site is missing")],
    ),
    (
        SAGE200,
        "POST",
        400,
        "application/json",
        {
            "Message": "The request is invalid.",
            "ModelState": {"customer.name": ["Name is required"]},
        },
        IntegrityError,
        "POST /contacts: customer.name: Name is required (400)",
        [("customer.name", "Name is required")],
    ),
    (
        SAGE200,
        "GET",
        400,
        "text/plain",
        "Skip requires orderby",
        APIError,
        "GET /contacts: Skip requires orderby (400)",
        [(None, "Skip requires orderby")],
    ),
    (
        CRM,
        "POST",
        400,
        "application/json",
        {
            "$diagnoses": [
                {
                    "$severity": "error",
                    "$sdataCode": "ValidationError",
                    "$message": "Field is mandatory",
                    "$payloadPath": "comp_name",
                }
            ]
        },
        IntegrityError,
        "POST /contacts: comp_name: Field is mandatory (400 ValidationError)",
        [("comp_name", "Field is mandatory")],
    ),
    (
        CRM,
        "GET",
        404,
        "application/json",
        {
            "$diagnoses": [
                {"$severity": "error", "$sdataCode": "ResourceNotFound", "$message": "No Company 9"}
            ]
        },
        APIError,
        "GET /contacts: No Company 9 (404 ResourceNotFound)",
        [(None, "No Company 9")],
    ),
]


@pytest.mark.parametrize(
    "product,method,status,kind,body,cls,message,details",
    ERROR_CASES,
    ids=[f"{c[0].product}-{c[2]}-{i}" for i, c in enumerate(ERROR_CASES)],
)
def test_error_answers_map_to_the_tree(
    httpserver, make, product, method, status, kind, body, cls, message, details
) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    httpserver.expect_request("/api/contacts", method=method).respond_with_data(
        text, status, content_type=kind
    )
    transport = make(httpserver.url_for("/api"), product=product)
    # Accounting wraps a record in its singular name, which qualifies the fields.
    payload = None
    if method == "POST":
        payload = {"contact": {"name": ""}} if product is ACCOUNTING else {"name": ""}
    with pytest.raises(cls) as info:
        transport.request(method, "contacts", json=payload)
    assert type(info.value) is cls
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.status == status and info.value.errors == details


def test_error_answers_of_the_sandbox_products(start_sandbox, make) -> None:
    accounting = start_sandbox("sage_accounting", rows=5)
    transport = make(accounting.base_url, auth=Bearer(accounting.token()["access_token"]))
    with pytest.raises(IntegrityError) as info:
        transport.json_request("POST", "contacts", json={"contact": {"reference": "R1"}})
    assert info.value.status == 422 and ("contact.name", "name is required") in info.value.errors
    assert str(info.value).startswith("POST /contacts: contact.")
    with pytest.raises(APIError, match="404 RecordNotFound"):
        transport.get_json("contacts/nope")
    with pytest.raises(AuthError, match="sagesql auth login"):
        make(accounting.base_url, auth=Bearer("not-a-token")).get_json("contacts")

    sage200 = start_sandbox("sage_200", rows=5)
    transport = make(
        sage200.base_url, product=SAGE200, auth=Bearer(sage200.token()["access_token"])
    )
    with pytest.raises(
        APIError, match="X-Site"
    ) as info:  # no X-Site header: not the record's fault
        transport.json_request("POST", "customers", json={})
    assert type(info.value) is APIError and info.value.status == 400

    crm = start_sandbox("sage_crm", rows=5)
    transport = make(
        crm.base_url, product=CRM, auth=requests.auth.HTTPBasicAuth("admin", "sandbox")
    )
    with pytest.raises(APIError, match=r"GET /Company\('99999'\): .*404 ResourceNotFound"):
        transport.get_json("Company('99999')")
    with pytest.raises(IntegrityError, match="comp_name"):
        transport.json_request("POST", "Company", json={})


@pytest.mark.parametrize(
    "status,kind,body,expected",
    [
        (
            502,
            "text/html",
            "<html><body>" + "Bad gateway " * 5000 + "</body></html>",
            "502 text/html",
        ),
        (404, "text/html", "", "404 text/html with an empty body"),
        (422, "application/json", '[{"$message": "can', "422 application/json"),
        (200, "text/html", "<html>Sign in to your proxy</html>", "200 text/html instead of JSON"),
    ],
)
def test_malformed_answers_say_what_came(httpserver, make, status, kind, body, expected) -> None:
    httpserver.expect_request("/api/x", method="POST").respond_with_data(
        body, status, content_type=kind
    )
    transport = make(httpserver.url_for("/api"))
    with pytest.raises(APIError) as info:
        transport.json_request("POST", "x", json={})
    text = str(info.value)
    assert f"POST /x: the API answered something unexpected: {expected}" in text
    assert len(text) < 450  # never the whole body


def test_error_details_of_other_shapes() -> None:
    odata = {
        "error": {"code": "BadFilter", "message": "bad $filter", "details": [{"message": "at 5"}]}
    }
    assert [d.text() for d in api_errors.parse_details(odata)] == ["bad $filter", "at 5"]
    oauth = {"error": "invalid_grant", "error_description": "refresh token used"}
    assert api_errors.parse_details(oauth)[0].message == "refresh token used"
    assert api_errors.parse_details({"nothing": "here"}) is None
    assert api_errors.one_line("a\n  b" + "c" * 500).startswith("a bccc")
    assert len(api_errors.one_line("x" * 500)) == 200


# -- logging and redaction ------------------------------------------------------------------


@pytest.fixture
def restore_logging():
    names = ["sagesql", "sagesql.http", "urllib3", "oauthlib", "requests_oauthlib"]
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    logs.configure(Settings(verbosity=1))  # removes the file handler
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


SECRETS = {
    "access": "AT-settings-5f1c9e",
    "refresh": "RT-settings-77ab21",
    "client": "CS-client-secret-93d4",
    "password": "PW-crm-password-x1",
    "proxy": "PP-proxy/pass word!",
    "runtime_access": "AT-runtime-0c0ffee",
    "runtime_refresh": "RT-runtime-beef42",
    "code": "AUTHCODE-123456",
}


def test_no_secret_in_the_log_at_verbosity_5(
    httpserver, tmp_path, caplog, restore_logging, monkeypatch
) -> None:
    logfile = tmp_path / "sagesql.log"
    config = settings(
        oauth_access_token=SECRETS["access"],
        oauth_refresh_token=SECRETS["refresh"],
        oauth_client_id="client-1",
        oauth_client_secret=SECRETS["client"],
        password=SECRETS["password"],
        user="admin",
        proxy_server="127.0.0.1",
        proxy_port=httpserver.port,
        proxy_user="puser",
        proxy_password=SECRETS["proxy"],
        verbosity=5,
        logfile=str(logfile),
    )
    logging.getLogger("requests_oauthlib").setLevel(logging.DEBUG)  # configure must undo this
    logs.configure(config)
    caplog.set_level(logging.DEBUG)  # every other handler sees redacted records too
    token_answer = {
        "access_token": SECRETS["runtime_access"],
        "refresh_token": SECRETS["runtime_refresh"],
        "token_type": "bearer",
        "expires_in": 300,
    }
    httpserver.expect_request("/oauth/token", method="POST").respond_with_json(token_answer)
    httpserver.expect_request("/v3.1/contacts").respond_with_json(
        {"$items": [{"id": 1, "password": SECRETS["password"]}], "$total": 1}
    )
    httpserver.expect_request("/v3.1/callback").respond_with_json({"ok": True})
    httpserver.expect_request("/v3.1/fail").respond_with_data("no", 400)

    # Token refresh through requests-oauthlib (it logs tokens at DEBUG if allowed).
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    from requests_oauthlib import OAuth2Session

    oauth = OAuth2Session(
        "client-1", token={"access_token": SECRETS["access"], "token_type": "Bearer"}
    )
    oauth.proxies = config.proxies()
    oauth.refresh_token(
        "http://sage.example.invalid/oauth/token",
        refresh_token=SECRETS["refresh"],
        client_id="client-1",
        client_secret=SECRETS["client"],
    )
    oauth.close()

    transport = HTTPTransport(
        config,
        ACCOUNTING,
        base_url="http://sage.example.invalid/v3.1",
        auth=Bearer(SECRETS["runtime_access"]),
    )
    try:
        transport.get_json("contacts")
        transport.get_json("callback", params={"code": SECRETS["code"], "state": "s1"})
        transport.request(
            "POST",
            "http://sage.example.invalid/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": SECRETS["runtime_refresh"],
                "client_secret": SECRETS["client"],
            },
        )
        with pytest.raises(IntegrityError):
            transport.json_request("POST", "fail", json={"user": {"password": SECRETS["password"]}})
    finally:
        transport.close()
    logging.getLogger("sagesql").error(
        "connection string was %s", f"OAuthClientSecret={SECRETS['client']}"
    )
    try:
        raise RuntimeError(f"token {SECRETS['access']} refused")
    except RuntimeError:
        logging.getLogger("sagesql").exception("failed")

    for handler in logging.getLogger("sagesql").handlers:
        handler.flush()
    text = logfile.read_text(encoding="utf-8")
    # What reached any handler, the test server's own access log (werkzeug) aside.
    client_records = "\n".join(
        caplog.handler.format(r) for r in caplog.records if not r.name.startswith("werkzeug")
    )
    # The log is there and detailed: requests, headers and bodies.
    assert "GET http://sage.example.invalid/v3.1/contacts -> 200" in text
    assert "'Authorization': '***'" in text and '"$total": 1' in text
    assert "code=***" in text and "refresh_token=***" in text
    assert "urllib3" in text  # Verbosity 5 includes the connection pool's messages
    basic = base64.b64encode(f"puser:{SECRETS['proxy']}".encode()).decode()
    for name, secret in {**SECRETS, "proxy_basic": basic}.items():
        for form in {secret, requests.utils.quote(secret, safe="")}:
            assert form not in text, f"{name} leaked into the log file"
            assert form not in client_records, f"{name} leaked into a log record"
    assert logging.getLogger("requests_oauthlib").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("oauthlib").getEffectiveLevel() >= logging.WARNING


def test_redact_helpers() -> None:
    assert (
        logs.redact('{"access_token": "abc", "expires_in": 3}')
        == '{"access_token": "***", "expires_in": 3}'
    )
    assert (
        logs.redact("grant_type=x&client_secret=s3&code=c0de")
        == "grant_type=x&client_secret=***&code=***"
    )
    assert logs.redact("{'Authorization': 'Bearer xyz'}") == "{'Authorization': '***'}"
    assert logs.redact('"$dataCode": "RecordInvalid"') == '"$dataCode": "RecordInvalid"'
    assert (
        logs.redact_url("http://u:p4ss@host/x?token=t&page=2")
        == "http://u:***@host/x?token=***&page=2"
    )
    assert logs.redact("my secret-value here", ["secret-value"]) == "my *** here"
