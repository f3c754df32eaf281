"""The sandbox core over real HTTP: OAuth server, rate limit, faults, admin clock, lag, runner.

The product emulators are tested in their own files; here a minimal ProductApp
(``EchoApp``) stands in for them, so the core's behaviour is pinned down whatever
the products do. The runner tests plug the same app in as all three products.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from werkzeug.wrappers import Request, Response

from sagesql.errors import ConfigurationError, NotSupportedError
from sagesql.sandbox.app import ApiError, ProductApp, json_response
from sagesql.sandbox.clock import sortable
from sagesql.sandbox.config import Faults, SandboxConfig, serve_config
from sagesql.sandbox.products import SITES, ProductSite
from sagesql.sandbox.server import RunningServer

CLIENT, SECRET = "sandbox-client", "sandbox-secret"
CALLBACK = "http://localhost:33333/callback"
FROZEN = "2030-01-02T03:04:05Z"


# -- a minimal product ---------------------------------------------------------------------


class EchoApp(ProductApp):
    """A product with three resources: ping, a big body, and "things" kept in the store."""

    product = "test"

    def rate_key(self, request: Request, principal: Any) -> str:
        return request.headers.get("X-Business", "default")

    def route(self, request: Request, principal: Any) -> Response:
        path = request.path.rstrip("/")
        if path.endswith("/ping"):
            return json_response({"ok": True})
        if path.endswith("/big"):
            return json_response({"data": "x" * 20_000})
        if path.endswith("/things"):
            now = sortable(self.clock.now())
            if request.method == "POST":
                record = {"id": str(self.store.count("s", "things") + 1), **request.json}
                self.store.insert("s", "things", record, created=now, updated=now)
                return json_response(record, 201)
            visible = self.visible_before()
            return json_response(
                self.store.records(
                    "s",
                    "things",
                    where="updated < ?" if visible else "",
                    params=[visible] if visible else [],
                )
            )
        return super().route(request, principal)


class BasicEchoApp(EchoApp):
    """The same, behind HTTP basic auth (as Sage CRM is)."""

    uses_oauth = False

    def authenticate(self, request: Request) -> Any:
        auth = request.authorization
        if auth and self.config.crm_users.get(auth.username or "") == auth.password:
            return auth.username
        raise ApiError(401, "Unauthorized", "basic credentials required")


@dataclass
class Served:
    app: EchoApp
    url: str

    def token(self) -> str:
        return str(self.app.oauth.issue()["access_token"])

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.get(self.url + path, headers=headers, timeout=10, **kwargs)

    def admin(self, what: str, body: dict[str, Any] | None = None) -> Any:
        if body is None:
            response = requests.get(f"{self.url}/_sandbox/{what}", timeout=10)
        else:
            response = requests.post(f"{self.url}/_sandbox/{what}", json=body, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def authorize(self, **params: str) -> requests.Response:
        query = {"client_id": CLIENT, "response_type": "code", "redirect_uri": CALLBACK}
        query.update(params)
        return requests.get(
            self.url + "/oauth/authorize", params=query, allow_redirects=False, timeout=10
        )

    def code(self, **params: str) -> str:
        response = self.authorize(**params)
        assert response.status_code == 302, response.text
        return parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]

    def token_request(self, auth: Any = None, **form: str) -> requests.Response:
        if auth is None and "client_id" not in form:
            form = {"client_id": CLIENT, "client_secret": SECRET, **form}
        return requests.post(self.url + "/oauth/token", data=form, auth=auth, timeout=10)

    def exchange(self, code: str, **form: str) -> requests.Response:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, **form}
        return self.token_request(**form)

    def refresh(self, refresh_token: str, **form: str) -> requests.Response:
        return self.token_request(grant_type="refresh_token", refresh_token=refresh_token, **form)


@pytest.fixture
def serve_app() -> Iterator[Callable[..., Served]]:
    """Serve an EchoApp (or ``app_class``) on a free port; keyword arguments are config fields."""
    servers: list[RunningServer] = []

    def start(app_class: type[EchoApp] = EchoApp, **config: Any) -> Served:
        app = app_class(SandboxConfig(product="test", **config))
        server = RunningServer(app).start()
        servers.append(server)
        return Served(app, server.url)

    yield start
    for server in servers:
        server.stop()
        server.app.store.close()


def oauth_error(response: requests.Response) -> str:
    return str(response.json()["error"])


def date_headers(response: requests.Response) -> list[str]:
    return list(response.raw.headers.getlist("Date"))


# -- OAuth: authorize and code exchange -------------------------------------------------------


def test_authorize_redirects_at_once_with_code_and_state_keeping_the_redirect_query(
    serve_app: Callable[..., Served],
) -> None:
    sbx = serve_app()
    redirect = CALLBACK + "?tenant=a%20b&empty=&tenant=c"
    response = sbx.authorize(redirect_uri=redirect, state="xyz 123")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(redirect + "&code=")
    query = parse_qs(urlsplit(location).query, keep_blank_values=True)
    assert query["state"] == ["xyz 123"]
    assert query["tenant"] == ["a b", "c"] and query["empty"] == [""]
    token = sbx.exchange(query["code"][0], redirect_uri=redirect)
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 300
    assert body["refresh_token"] and body["refresh_token_expires_in"] == 31 * 24 * 3600
    assert token.headers["Cache-Control"] == "no-store"
    assert sbx.get("/api/ping", body["access_token"]).status_code == 200


def test_authorize_refuses_unknown_clients_and_other_response_types(
    serve_app: Callable[..., Served],
) -> None:
    sbx = serve_app()
    assert sbx.authorize(client_id="stranger").status_code == 400
    assert sbx.authorize(redirect_uri="urn:ietf:wg:oauth:2.0:oob").status_code == 400
    response = sbx.authorize(response_type="token", state="s")
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["error"] == ["unsupported_response_type"] and "code" not in query
    response = sbx.authorize(code_challenge="abc", code_challenge_method="S512")
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["invalid_request"]


def test_a_code_is_single_use(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app()
    code = sbx.code()
    assert sbx.exchange(code).status_code == 200
    again = sbx.exchange(code)
    assert again.status_code == 400 and oauth_error(again) == "invalid_grant"


def test_a_code_expires_after_60_seconds_of_sandbox_time(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app()
    sbx.admin("clock", {"set": FROZEN, "frozen": True})
    fresh, stale = sbx.code(), sbx.code()
    sbx.admin("clock", {"advance": 59})
    assert sbx.exchange(fresh).status_code == 200
    sbx.admin("clock", {"advance": 1})
    response = sbx.exchange(stale)
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"


def test_the_redirect_uri_must_match_exactly(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app()
    for other in (CALLBACK + "/", CALLBACK.replace("localhost", "127.0.0.1"), ""):
        response = sbx.exchange(sbx.code(), redirect_uri=other)
        assert response.status_code == 400 and oauth_error(response) == "invalid_grant", other


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.mark.parametrize("method", ["S256", "plain"])
def test_pkce_checks_the_verifier(serve_app: Callable[..., Served], method: str) -> None:
    sbx = serve_app()
    verifier = "v" * 43 + method
    challenge = s256(verifier) if method == "S256" else verifier
    params = {"code_challenge": challenge, "code_challenge_method": method}
    assert sbx.exchange(sbx.code(**params), code_verifier=verifier).status_code == 200
    for wrong in ("w" * 43, challenge if method == "S256" else "x", None):
        form = {} if wrong is None else {"code_verifier": wrong}
        response = sbx.exchange(sbx.code(**params), **form)
        assert response.status_code == 400 and oauth_error(response) == "invalid_grant", wrong


def test_client_authentication_by_form_fields_and_by_basic(
    serve_app: Callable[..., Served],
) -> None:
    sbx = serve_app()
    form = {"grant_type": "authorization_code", "redirect_uri": CALLBACK}
    by_form = sbx.token_request(client_id=CLIENT, client_secret=SECRET, code=sbx.code(), **form)
    assert by_form.status_code == 200
    by_basic = sbx.token_request(auth=(CLIENT, SECRET), code=sbx.code(), **form)
    assert by_basic.status_code == 200, by_basic.text
    for auth, fields in (
        ((CLIENT, "wrong"), {}),
        (None, {"client_id": CLIENT, "client_secret": "wrong"}),
        (None, {"client_id": "stranger", "client_secret": SECRET}),
        (None, {"client_id": CLIENT}),
    ):
        response = sbx.token_request(auth=auth, code=sbx.code(), **form, **fields)
        assert response.status_code == 401 and oauth_error(response) == "invalid_client"


def test_token_endpoint_refuses_other_grants_and_methods(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app()
    response = sbx.token_request(grant_type="password")
    assert response.status_code == 400 and oauth_error(response) == "unsupported_grant_type"
    assert requests.get(sbx.url + "/oauth/token", timeout=10).status_code == 405


# -- OAuth: refresh, rotation, expiry, revoke --------------------------------------------------


def test_refresh_rotates_and_the_old_refresh_token_is_dead(
    serve_app: Callable[..., Served],
) -> None:
    sbx = serve_app()
    first = sbx.exchange(sbx.code()).json()
    second = sbx.refresh(first["refresh_token"])
    assert second.status_code == 200
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert pair["access_token"] != first["access_token"]
    assert sbx.get("/api/ping", pair["access_token"]).status_code == 200
    reuse = sbx.refresh(first["refresh_token"])
    assert reuse.status_code == 400 and oauth_error(reuse) == "invalid_grant"
    third = sbx.refresh(pair["refresh_token"])
    assert third.status_code == 200 and third.json()["refresh_token"] != pair["refresh_token"]
    assert sbx.app.oauth.refresh_count == 2


def test_a_refresh_token_belongs_to_its_client(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app(clients={CLIENT: SECRET, "other": "other-secret"})
    pair = sbx.app.oauth.issue(CLIENT)
    response = sbx.refresh(pair["refresh_token"], client_id="other", client_secret="other-secret")
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"


def test_refresh_tokens_expire(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app(refresh_token_lifetime=3600)
    sbx.admin("clock", {"set": FROZEN, "frozen": True})
    kept, lost = sbx.app.oauth.issue(), sbx.app.oauth.issue()
    sbx.admin("clock", {"advance": 3599})
    assert sbx.refresh(kept["refresh_token"]).status_code == 200
    sbx.admin("clock", {"advance": 1})
    response = sbx.refresh(lost["refresh_token"])
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"
    assert "expired" in response.json()["error_description"]


def test_access_token_lifetime_is_configurable_and_enforced_by_the_sandbox_clock(
    serve_app: Callable[..., Served],
) -> None:
    sbx = serve_app(access_token_lifetime=120)
    sbx.admin("clock", {"set": FROZEN, "frozen": True})
    pair = sbx.exchange(sbx.code()).json()
    assert pair["expires_in"] == 120
    sbx.admin("clock", {"advance": 119})
    assert sbx.get("/api/ping", pair["access_token"]).status_code == 200
    sbx.admin("clock", {"advance": 1})
    expired = sbx.get("/api/ping", pair["access_token"])
    assert expired.status_code == 401
    assert expired.json()[0]["$message"] == "Access token expired"
    # A refresh (refresh tokens live on) gives a working access token again.
    renewed = sbx.refresh(pair["refresh_token"]).json()
    assert sbx.get("/api/ping", renewed["access_token"]).status_code == 200


def test_missing_and_invalid_tokens_are_401(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app()
    missing, invalid = sbx.get("/api/ping"), sbx.get("/api/ping", "sbx_at_forged")
    assert (missing.status_code, invalid.status_code) == (401, 401)
    assert missing.json()[0]["$dataCode"] == "AuthorizationFailure"
    assert invalid.json()[0]["$message"] == "Invalid access token"


@pytest.mark.parametrize("which", ["refresh_token", "access_token"])
def test_revoking_either_token_ends_the_whole_login(
    serve_app: Callable[..., Served], which: str
) -> None:
    sbx = serve_app()
    login = sbx.exchange(sbx.code()).json()
    rotated = sbx.refresh(login["refresh_token"]).json()  # same login, later tokens
    other = sbx.exchange(sbx.code()).json()
    unauthenticated = requests.post(
        sbx.url + "/oauth/revoke", data={"token": rotated[which]}, timeout=10
    )
    assert unauthenticated.status_code == 401
    revoke = requests.post(
        sbx.url + "/oauth/revoke", data={"token": rotated[which]}, auth=(CLIENT, SECRET), timeout=10
    )
    assert revoke.status_code == 200
    for token in (login["access_token"], rotated["access_token"]):
        assert sbx.get("/api/ping", token).status_code == 401
    response = sbx.refresh(rotated["refresh_token"])
    assert response.status_code == 400 and oauth_error(response) == "invalid_grant"
    assert sbx.get("/api/ping", other["access_token"]).status_code == 200
    assert sbx.refresh(other["refresh_token"]).status_code == 200


# -- rate limit --------------------------------------------------------------------------------


def test_rate_limit_per_key_with_a_right_retry_after_and_a_sliding_window(
    serve_app: Callable[..., Served],
) -> None:
    sbx = serve_app(rate_limit_per_minute=5)
    sbx.admin("clock", {"set": FROZEN, "frozen": True})
    token = sbx.token()  # issued in frozen time, so that it is valid there
    business = {"X-Business": "b1"}
    for _ in range(3):
        assert sbx.get("/api/ping", token, headers=dict(business)).status_code == 200
    sbx.admin("clock", {"advance": 20})
    for _ in range(2):
        assert sbx.get("/api/ping", token, headers=dict(business)).status_code == 200
    limited = sbx.get("/api/ping", token, headers=dict(business))
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "40"  # the first three leave the window at 60 s
    assert limited.json()[0]["$dataCode"] == "TooManyRequests"
    # Another business has its own count.
    assert sbx.get("/api/ping", token, headers={"X-Business": "b2"}).status_code == 200
    sbx.admin("clock", {"advance": 30})
    assert sbx.get("/api/ping", token, headers=dict(business)).headers["Retry-After"] == "10"
    sbx.admin("clock", {"advance": 10})
    for _ in range(3):  # the first three slid out of the window; the later two still count
        assert sbx.get("/api/ping", token, headers=dict(business)).status_code == 200
    assert sbx.get("/api/ping", token, headers=dict(business)).headers["Retry-After"] == "20"


def test_rate_limit_zero_is_off(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app(rate_limit_per_minute=0)
    token = sbx.token()
    assert all(sbx.get("/api/ping", token).status_code == 200 for _ in range(30))


# -- faults ------------------------------------------------------------------------------------


def statuses(sbx: Served, n: int, token: str) -> list[int]:
    return [sbx.get("/api/ping", token).status_code for _ in range(n)]


def test_faults_are_off_by_default(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app()
    assert not sbx.app.config.faults.active
    assert set(statuses(sbx, 50, sbx.token())) == {200}


def test_latency_is_added_to_every_request(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app(faults=Faults.parse("latency=150"))
    token = sbx.token()
    started = time.perf_counter()
    assert sbx.get("/api/ping", token).status_code == 200
    slow = time.perf_counter() - started
    sbx.admin("faults", {"spec": ""})
    started = time.perf_counter()
    sbx.get("/api/ping", token)
    fast = time.perf_counter() - started
    assert 0.15 <= slow < 1.0 and fast < 0.1, (slow, fast)


def test_error_share_is_roughly_right_and_repeats_with_the_seed(
    serve_app: Callable[..., Served],
) -> None:
    sbx = serve_app(faults=Faults.parse("errors=0.3,seed=7"), rate_limit_per_minute=0)
    token = sbx.token()
    first = statuses(sbx, 200, token)
    errors = [s for s in first if s != 200]
    assert 40 <= len(errors) <= 80, len(errors)
    assert set(errors) == {500, 502, 503}
    sbx.admin("faults", {"spec": "errors=0.3,seed=7"})  # reconfiguring restarts the draw
    assert statuses(sbx, 200, token) == first
    sbx.admin("faults", {"errors": 0.5, "statuses": [503], "seed": 1})
    assert set(statuses(sbx, 40, token)) == {200, 503}


def test_throttle_share_answers_429_with_retry_after(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app(faults=Faults.parse("throttle=0.25,seed=3"), rate_limit_per_minute=0)
    token = sbx.token()
    answers = [sbx.get("/api/ping", token) for _ in range(200)]
    throttled = [r for r in answers if r.status_code == 429]
    assert 30 <= len(throttled) <= 70, len(throttled)
    assert all(r.headers["Retry-After"] == "1" for r in throttled)
    assert {r.status_code for r in answers} == {200, 429}


def test_dropped_connections_raise_connection_error(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app(faults=Faults.parse("drop=1"))
    with pytest.raises(requests.ConnectionError):
        sbx.get("/api/ping", sbx.token())
    log = sbx.admin("requests")
    assert log[-1]["fault"] == "drop" and log[-1]["status"] is None


def test_truncated_bodies_raise_chunked_encoding_error(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app(faults=Faults.parse("truncate=1"))
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead"):
        sbx.get("/api/big", sbx.token())


def test_admin_faults_endpoint_reconfigures_and_rejects_bad_specs(
    serve_app: Callable[..., Served],
) -> None:
    sbx = serve_app()
    token = sbx.token()
    state = sbx.admin("faults", {"spec": "errors=1,statuses=502"})
    assert state["errors"] == 1.0 and state["error_statuses"] == [502]
    assert sbx.admin("faults")["errors"] == 1.0
    assert sbx.get("/api/ping", token).status_code == 502
    bad = requests.post(f"{sbx.url}/_sandbox/faults", json={"spec": "errors=2"}, timeout=10)
    assert bad.status_code == 400 and "bad value '2' for errors" in bad.json()["error"]
    assert sbx.get("/api/ping", token).status_code == 502  # a bad spec changes nothing
    sbx.admin("faults", {"spec": ""})
    assert sbx.get("/api/ping", token).status_code == 200


def test_admin_endpoints_are_never_faulted(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app(faults=Faults.parse("drop=1"))
    assert sbx.admin("clock")["frozen"] is False


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("errors=1.5", "bad value '1.5' for errors"),
        ("latency=-5", "bad value '-5' for latency"),
        ("latency=inf", "bad value 'inf' for latency"),
        ("throttle=abc", "bad value 'abc' for throttle"),
        ("statuses=500/20x", "bad value '500/20x' for statuses"),
        ("statuses=200", "bad value '200' for statuses"),
        ("seed=1.5", "bad value '1.5' for seed"),
        ("latency", "bad value '' for latency"),
        ("lag=3", "unknown fault 'lag'"),
        ("errors=0.6,drop=0.5", "add up to more than 1"),
    ],
)
def test_faults_parse_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match="bad --faults") as caught:
        Faults.parse(spec)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_faults_parse_reports_every_problem_and_reads_good_specs() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Faults.parse("errors=2, foo=1,drop=x")
    text = str(caught.value)
    assert all(p in text for p in ("'2' for errors", "unknown fault 'foo'", "'x' for drop"))
    faults = Faults.parse(
        " Latency=50 , errors=0.1,statuses=500/503,throttle=0.05,drop=0.01,truncate=0.01,seed=3,"
    )
    assert (faults.latency_ms, faults.errors, faults.error_statuses) == (50.0, 0.1, (500, 503))
    assert (faults.throttle, faults.drop, faults.truncate, faults.seed) == (0.05, 0.01, 0.01, 3)
    assert faults.active and not Faults.parse("").active and not Faults.parse("seed=4").active


def test_serve_config_names_every_bad_option_and_applies_the_good_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        serve_config(
            every_product=True, port=65534, rows=0, token_lifetime=0, rate_limit=-1, faults="x=1"
        )
    assert str(caught.value) == (
        "--port 65534 is out of range (0 to 65533); --rows 0 must be at least 1; "
        "--token-lifetime 0 must be at least 1 second; --rate-limit -1 must be 0 (off) or more"
    )
    assert serve_config(port=65535).rate_limit_per_minute == SandboxConfig().rate_limit_per_minute
    with pytest.raises(ConfigurationError, match="bad --faults"):
        serve_config(faults="errors=2")
    config = serve_config(token_lifetime=30, rate_limit=0, faults="latency=5", rows=3)
    assert (config.access_token_lifetime, config.rate_limit_per_minute) == (30, 0)
    assert config.faults.latency_ms == 5.0 and config.rows == SandboxConfig().rows


# -- clock, Date, request log, lag ------------------------------------------------------------


def test_admin_clock_set_frozen_advance_and_the_date_header(
    serve_app: Callable[..., Served],
) -> None:
    sbx = serve_app()
    state = sbx.admin("clock", {"set": FROZEN, "frozen": True})
    assert state["frozen"] is True and state["now"] == "2030-01-02T03:04:05+00:00"
    token = sbx.token()
    response = sbx.get("/api/ping", token)
    assert date_headers(response) == ["Wed, 02 Jan 2030 03:04:05 GMT"]
    time.sleep(0.05)
    assert sbx.admin("clock")["now"] == state["now"]  # frozen: time stands still
    sbx.admin("clock", {"advance": 90})
    assert date_headers(sbx.get("/api/ping", token)) == ["Wed, 02 Jan 2030 03:05:35 GMT"]
    # Running from a set instant: time moves on from there.
    sbx.admin("clock", {"set": "2031-06-01T00:00:00Z"})
    running = parsedate_to_datetime(date_headers(sbx.get("/api/ping", sbx.token()))[0])
    assert timedelta(0) <= running - datetime(2031, 6, 1, tzinfo=timezone.utc) < timedelta(5)
    # Back to real time.
    state = sbx.admin("clock", {"set": None})
    assert state["frozen"] is False and state["offset_seconds"] == 0
    real = parsedate_to_datetime(date_headers(sbx.get("/api/ping", sbx.token()))[0])
    assert abs(real - datetime.now(timezone.utc)) < timedelta(seconds=5)


def test_admin_clock_freezes_where_it_is_and_rejects_bad_times(
    serve_app: Callable[..., Served],
) -> None:
    sbx = serve_app()
    sbx.admin("clock", {"advance": 3600})
    state = sbx.admin("clock", {"frozen": True})
    assert state["frozen"] is True
    frozen_at = datetime.fromisoformat(state["now"])
    assert frozen_at - datetime.now(timezone.utc) > timedelta(minutes=59)
    bad = requests.post(f"{sbx.url}/_sandbox/clock", json={"set": "yesterday"}, timeout=10)
    assert bad.status_code == 400 and "error" in bad.json()
    assert sbx.admin("clock", {"frozen": False})["frozen"] is False


def test_every_answer_carries_one_date_from_the_sandbox_clock(
    serve_app: Callable[..., Served],
) -> None:
    sbx = serve_app()
    sbx.admin("clock", {"set": FROZEN, "frozen": True})
    expected = ["Wed, 02 Jan 2030 03:04:05 GMT"]
    assert date_headers(sbx.get("/api/ping")) == expected  # 401
    assert date_headers(sbx.authorize()) == expected  # OAuth redirect
    assert date_headers(sbx.token_request(grant_type="password")) == expected  # OAuth error
    assert date_headers(requests.get(sbx.url + "/_sandbox/clock", timeout=10)) == expected
    sbx.admin("faults", {"spec": "errors=1"})
    assert date_headers(sbx.get("/api/ping", sbx.token())) == expected


def test_request_log_records_api_requests_and_can_be_cleared(
    serve_app: Callable[..., Served],
) -> None:
    sbx = serve_app()
    sbx.admin("clock", {"set": FROZEN, "frozen": True})
    token = sbx.token()
    sbx.get("/api/ping", token, params={"page": "2", "q": "a b"})
    sbx.get("/api/nothing", token)
    log = sbx.admin("requests")
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("GET", "/api/ping", 200),
        ("GET", "/api/nothing", 404),
    ]
    assert log[0]["query"] == "page=2&q=a+b" and log[0]["fault"] is None
    assert log[0]["time"] == "2030-01-02T03:04:05.000Z"
    assert requests.delete(f"{sbx.url}/_sandbox/requests", timeout=10).json() == []
    sbx.admin("faults", {"spec": "throttle=1"})
    sbx.get("/api/ping", token)
    assert [(e["status"], e["fault"]) for e in sbx.admin("requests")] == [(429, "throttle")]


def test_unknown_admin_endpoint_is_404(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app()
    assert requests.get(f"{sbx.url}/_sandbox/nothing", timeout=10).status_code == 404


def test_visibility_lag_hides_fresh_records_until_it_has_passed(
    serve_app: Callable[..., Served],
) -> None:
    sbx = serve_app()
    sbx.admin("clock", {"set": FROZEN, "frozen": True})
    token = sbx.token()
    assert sbx.app.visible_before() is None
    assert sbx.admin("lag", {"seconds": 30}) == {"seconds": 30.0}
    assert sbx.admin("lag") == {"seconds": 30.0}
    created = requests.post(
        f"{sbx.url}/api/things",
        json={"name": "new"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert created.status_code == 201
    assert sbx.get("/api/things", token).json() == []
    sbx.admin("clock", {"advance": 29})
    assert sbx.get("/api/things", token).json() == []
    sbx.admin("clock", {"advance": 1.001})
    assert [r["name"] for r in sbx.get("/api/things", token).json()] == ["new"]
    sbx.admin("lag", {"seconds": 0})
    assert sbx.app.visible_before() is None


def test_admin_token_endpoint_issues_a_working_pair(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app()
    pair = sbx.admin("token", {})
    assert sbx.get("/api/ping", pair["access_token"]).status_code == 200


def test_basic_auth_products_have_no_oauth_endpoints(serve_app: Callable[..., Served]) -> None:
    sbx = serve_app(BasicEchoApp)
    assert sbx.get("/api/ping").status_code == 401
    assert sbx.get("/api/ping", auth=("admin", "sandbox")).status_code == 200
    assert sbx.authorize().status_code == 401  # /oauth/* is just another (protected) path


# -- the runner (Sandbox) with EchoApp standing in for the products ------------------------------


@pytest.fixture
def fake_products(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make all three products serve EchoApp (CRM: BasicEchoApp), whatever emulators exist."""
    for product, site in list(SITES.items()):
        module_name = f"_fake_{site.module}"
        module = types.ModuleType(f"sagesql.sandbox.{module_name}")
        app_class = type(
            site.app_class,
            (BasicEchoApp if product == "sage_crm" else EchoApp,),
            {"product": product},
        )
        setattr(module, site.app_class, app_class)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        monkeypatch.setitem(
            SITES, product, ProductSite(product, module_name, site.app_class, site.api_prefix)
        )


def parse_connection_string(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split(";"))


@pytest.mark.usefixtures("fake_products")
def test_sandbox_resolves_product_names_and_gives_connection_properties() -> None:
    from sagesql.sandbox.runner import Sandbox

    with Sandbox("sageaccounting") as sbx:
        assert sbx.product == "sage_accounting" and sbx.title
        props = sbx.connection_properties()
        assert list(props) == [
            "Product",
            "URL",
            "InitiateOAuth",
            "OAuthClientId",
            "OAuthClientSecret",
            "OAuthAccessToken",
            "OAuthRefreshToken",
            "OAuthTokenURL",
            "OAuthAuthorizationURL",
        ]
        assert props["Product"] == "SageAccounting" and props["InitiateOAuth"] == "REFRESH"
        assert props["URL"] == sbx.url + "/v3.1" == sbx.base_url
        assert props["OAuthTokenURL"] == sbx.url + "/oauth/token" == sbx.token_url
        assert props["OAuthAuthorizationURL"] == sbx.authorization_url
        ping = requests.get(
            props["URL"] + "/ping",
            headers={"Authorization": f"Bearer {props['OAuthAccessToken']}"},
            timeout=10,
        )
        assert ping.status_code == 200
        refreshed = requests.post(
            props["OAuthTokenURL"],
            data={"grant_type": "refresh_token", "refresh_token": props["OAuthRefreshToken"]},
            auth=(props["OAuthClientId"], props["OAuthClientSecret"]),
            timeout=10,
        )
        assert refreshed.status_code == 200
        assert parse_connection_string(sbx.connection_string(props)) == props
        # Each call is a login of its own.
        assert sbx.connection_properties()["OAuthAccessToken"] != props["OAuthAccessToken"]
    with Sandbox("SAGE200") as sbx:
        props = parse_connection_string(sbx.connection_string())
        assert props["Product"] == "Sage200" and props["URL"].endswith(
            "/uk/sage200extra/accounts/v1"
        )
        assert "Site" not in props and "Company" not in props


@pytest.mark.usefixtures("fake_products")
def test_a_throwaway_client_keeps_its_tokens_in_memory_and_accounting_is_the_default() -> None:
    from sagesql.sandbox.runner import Sandbox

    with Sandbox() as sbx:
        assert sbx.product == "sage_accounting"
        props = sbx.client_properties()
        assert props.pop("OAuthSettingsLocation") == f"memory://sandbox-{sbx.server.port}"
        assert set(props) == set(sbx.connection_properties())
        assert props["Product"] == "SageAccounting" and props["URL"] == sbx.base_url
    with Sandbox("SageCRM") as sbx:
        props = sbx.client_properties()
        assert props["OAuthSettingsLocation"].startswith("memory://sandbox-")
        assert props["User"] == "admin"


@pytest.mark.usefixtures("fake_products")
def test_crm_connection_uses_basic_credentials() -> None:
    from sagesql.sandbox.runner import Sandbox

    with Sandbox("SageCRM") as sbx:
        props = sbx.connection_properties()
        assert props == {
            "Product": "SageCRM",
            "URL": sbx.url + "/sdata/crmj/sagecrm2/-",
            "User": "admin",
            "Password": "sandbox",
        }
        assert sbx.token_url is None and sbx.authorization_url is None
        ping = requests.get(props["URL"] + "/ping", auth=("admin", "sandbox"), timeout=10)
        assert ping.status_code == 200


def test_connection_string_quotes_values_that_need_it() -> None:
    from sagesql.sandbox.runner import format_connection_string

    text = format_connection_string({"A": "x;y", "B": 'say "hi"', "C": " pad", "D": "plain"})
    assert text == 'A="x;y";B="say ""hi""";C=" pad";D=plain'


def test_unknown_products_and_missing_emulators_are_clean_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sagesql.sandbox.runner import Sandbox

    with pytest.raises(ConfigurationError, match="unknown product 'Sage300'"):
        Sandbox("Sage300")
    monkeypatch.setitem(
        SITES, "sage_crm", ProductSite("sage_crm", "_no_such_module", "CrmApp", "/sdata")
    )
    with pytest.raises(NotSupportedError, match="no emulator for SageCRM"):
        Sandbox("SageCRM")


@pytest.mark.usefixtures("fake_products")
def test_a_port_in_use_is_a_clean_error() -> None:
    from sagesql.sandbox.runner import Sandbox

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"port {port} on 127.0.0.1 is already in use"):
            Sandbox("SageAccounting", port=port)


@pytest.mark.usefixtures("fake_products")
def test_stop_is_safe_twice_and_before_start() -> None:
    from sagesql.sandbox.runner import Sandbox

    never_started = Sandbox("SageAccounting")
    done = threading.Event()
    threading.Thread(target=lambda: (never_started.stop(), done.set()), daemon=True).start()
    assert done.wait(5), "stopping a sandbox that never started hangs"
    sbx = Sandbox("SageAccounting").start()
    sbx.stop()
    sbx.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(sbx.url + "/_sandbox/clock", timeout=2)


@pytest.mark.usefixtures("fake_products")
def test_db_file_keeps_data_and_refuses_another_seed_rows_or_product(tmp_path: Path) -> None:
    from sagesql.sandbox.runner import Sandbox, stored_settings
    from sagesql.sandbox.serve import start_sandboxes, stop_sandboxes

    db = tmp_path / "deep" / "acc.sqlite"
    config = SandboxConfig(db=db, seed=5, rows=7)
    with Sandbox("SageAccounting", config) as sbx:
        token = sbx.token()["access_token"]
        made = requests.post(
            sbx.base_url + "/things",
            json={"name": "kept"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert made.status_code == 201
    assert stored_settings(db) == {"product": "sage_accounting", "seed": "5", "rows": "7"}
    # Reused: the seed and rows left out come from the file; the data is still there.
    (sbx,) = start_sandboxes(["SageAccounting"], SandboxConfig(), db=db)
    try:
        assert (sbx.config.seed, sbx.config.rows) == (5, 7)
        token = sbx.token()["access_token"]
        things = requests.get(
            sbx.base_url + "/things", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert [t["name"] for t in things.json()] == ["kept"]
    finally:
        stop_sandboxes([sbx])
    with pytest.raises(ConfigurationError, match="made with seed 5 \\(not 6\\)"):
        Sandbox("SageAccounting", SandboxConfig(db=db, seed=6, rows=7))
    with pytest.raises(ConfigurationError, match="rows 7 \\(not 8\\)"):
        start_sandboxes(["SageAccounting"], SandboxConfig(), db=db, rows=8)
    with pytest.raises(ConfigurationError, match="holds sage_accounting data, not sage_crm"):
        start_sandboxes(["SageCRM"], SandboxConfig(), db=db)
    with pytest.raises(ConfigurationError, match="is a file"):
        start_sandboxes(None, SandboxConfig(), db=db)
    (tmp_path / "junk.sqlite").write_text("not a database")
    with pytest.raises(ConfigurationError, match="not a sandbox database"):
        start_sandboxes(["SageAccounting"], SandboxConfig(), db=tmp_path / "junk.sqlite")


@pytest.mark.usefixtures("fake_products")
def test_start_sandboxes_serves_all_three_on_consecutive_ports(tmp_path: Path) -> None:
    from sagesql.sandbox.serve import start_sandboxes, stop_sandboxes

    port = free_port_run(3)
    sandboxes = start_sandboxes(None, SandboxConfig(), port=port, db=tmp_path / "all")
    try:
        assert [(s.product, s.server.port) for s in sandboxes] == [
            ("sage_accounting", port),
            ("sage_200", port + 1),
            ("sage_crm", port + 2),
        ]
        assert sorted(p.name for p in (tmp_path / "all").iterdir() if p.suffix == ".sqlite") == [
            "sage_200.sqlite",
            "sage_accounting.sqlite",
            "sage_crm.sqlite",
        ]
    finally:
        stop_sandboxes(sandboxes)


@pytest.mark.usefixtures("fake_products")
def test_start_sandboxes_skips_a_missing_emulator_only_when_serving_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sagesql.sandbox.serve import start_sandboxes, stop_sandboxes

    monkeypatch.setitem(
        SITES, "sage_200", ProductSite("sage_200", "_no_such_module", "Sage200App", "/uk")
    )
    warnings: list[str] = []
    sandboxes = start_sandboxes(None, SandboxConfig(), warn=warnings.append)
    try:
        assert [s.product for s in sandboxes] == ["sage_accounting", "sage_crm"]
        assert warnings == [
            "warning: the sandbox has no emulator for Sage200 yet "
            "(sagesql.sandbox._no_such_module is missing); serving the others"
        ]
    finally:
        stop_sandboxes(sandboxes)
    with pytest.raises(NotSupportedError):
        start_sandboxes(["Sage200"], SandboxConfig())


@pytest.mark.usefixtures("fake_products")
def test_a_failed_start_leaves_nothing_running() -> None:
    from sagesql.sandbox.serve import start_sandboxes

    port = free_port_run(3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 2))  # CRM's port
        taken.listen()
        with pytest.raises(ConfigurationError, match="already in use"):
            start_sandboxes(None, SandboxConfig(), port=port)
    for first in (port, port + 1):  # Accounting's and Sage 200's ports are free again
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", first))


def test_wait_for_stop_returns_on_sigint_and_restores_the_handler() -> None:
    import os
    import signal

    from sagesql.sandbox.serve import wait_for_stop

    before = signal.getsignal(signal.SIGINT)

    def interrupt() -> None:
        deadline = time.monotonic() + 5
        while signal.getsignal(signal.SIGINT) is before and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    started = time.monotonic()
    wait_for_stop()
    assert time.monotonic() - started < 5
    assert signal.getsignal(signal.SIGINT) is before


def free_port_run(n: int) -> int:
    """A port P with P..P+n-1 all free on 127.0.0.1 (checked, then released)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
        if first + n > 65535:
            continue
        socks = []
        try:
            for port in range(first, first + n):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no run of free ports")
