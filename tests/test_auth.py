"""Token store and OAuth modes, end to end against the sandbox's OAuth server over real HTTP."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from rich.pretty import pretty_repr
from werkzeug.wrappers import Request, Response

from sagesql import AuthError, ConfigurationError
from sagesql.connector.auth import OAuthAuth
from sagesql.connector.login import Endpoints, authorization_url, code_from, run_login
from sagesql.connector.properties import validate
from sagesql.connector.tokenstore import FileTokenStore, MemoryTokenStore, TokenSet, open_store
from sagesql.sandbox.app import ProductApp, json_response
from sagesql.sandbox.config import SandboxConfig
from sagesql.sandbox.server import RunningServer
from sagesql.schemas.catalog import default_catalog


class EchoApp(ProductApp):
    """The sandbox pipeline (OAuth server, 401s, clock) with one route that says who called."""

    product = "sage_accounting"

    def route(self, request: Request, principal: Any) -> Response:
        return json_response({"client": principal.client_id, "scope": principal.scope})


@pytest.fixture
def oauth_server() -> Iterator[RunningServer]:
    # No rate limit: these tests hammer the server to provoke concurrent refreshes.
    config = SandboxConfig(access_token_lifetime=300, rate_limit_per_minute=0)
    with RunningServer(EchoApp(config)) as server:
        yield server


def settings_for(server: RunningServer, **props: Any) -> Any:
    base = {
        "Product": "SageAccounting",
        "URL": server.url + "/v3.1",
        "OAuthClientId": "sandbox-client",
        "OAuthClientSecret": "sandbox-secret",
        "OAuthTokenURL": server.url + "/oauth/token",
        "OAuthAuthorizationURL": server.url + "/oauth/authorize?filter=apiv3.1",
    }
    base.update(props)
    return validate(base)


def call(server: RunningServer, auth: OAuthAuth) -> requests.Response:
    response = requests.get(server.url + "/v3.1/contacts", auth=auth, timeout=10)
    if response.status_code == 401 and auth.refresh_after_401(response):
        response = requests.get(server.url + "/v3.1/contacts", auth=auth, timeout=10)
    return response


# -- token store --------------------------------------------------------------------------


def test_file_store_writes_atomically_with_mode_0600(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "sub" / "tokens.json")
    tokens = TokenSet(access_token="a" * 20, refresh_token="r" * 20, expires_at=123.0)
    with store.locked():
        store.save(tokens)
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert store.load() == tokens
    assert sorted(p.name for p in store.path.parent.iterdir()) == [
        "tokens.json",
        "tokens.json.lock",
    ]
    assert "a" * 20 not in repr(tokens)
    assert "a" * 20 not in pretty_repr(tokens) and "r" * 20 not in pretty_repr(tokens)
    store.clear()
    assert store.load() is None


def test_corrupt_token_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text("{not json")
    with pytest.raises(ConfigurationError) as err:
        FileTokenStore(path).load()
    assert "\n" not in str(err.value) and "auth logout" in str(err.value)


def test_memory_store_is_shared_by_id() -> None:
    one, two = open_store("memory://shared-test"), open_store("memory://shared-test")
    one.save(TokenSet(access_token="x"))
    assert isinstance(two, MemoryTokenStore) and two.load() == TokenSet(access_token="x")
    assert open_store("memory://other-test").load() is None
    with pytest.raises(ConfigurationError):
        open_store("memory://")


# -- InitiateOAuth=OFF ---------------------------------------------------------------------


def test_off_uses_the_given_token_and_never_refreshes(oauth_server: RunningServer) -> None:
    token = oauth_server.app.oauth.issue()
    settings = settings_for(oauth_server, OAuthAccessToken=token["access_token"])
    auth = OAuthAuth(settings, MemoryTokenStore("off"), token_url=settings.oauth_token_url)
    assert call(oauth_server, auth).json()["client"] == "sandbox-client"
    oauth_server.app.clock.advance(301)
    response = requests.get(oauth_server.url + "/v3.1/contacts", auth=auth, timeout=10)
    assert response.status_code == 401
    assert auth.refresh_after_401(response) is False
    assert "expired" in auth.expired_message()


# -- InitiateOAuth=REFRESH -----------------------------------------------------------------


def test_refresh_mode_refreshes_before_expiry_and_stores_the_new_pair(
    oauth_server: RunningServer, tmp_path: Path
) -> None:
    app = oauth_server.app
    app.oauth.access_lifetime = 2
    first = app.oauth.issue()
    settings = settings_for(
        oauth_server,
        InitiateOAuth="REFRESH",
        OAuthAccessToken=first["access_token"],
        OAuthRefreshToken=first["refresh_token"],
    )
    store = FileTokenStore(tmp_path / "tokens.json")
    auth = OAuthAuth(settings, store, token_url=settings.oauth_token_url)
    assert call(oauth_server, auth).status_code == 200
    # The given token's expiry is unknown: it is used until a 401, then refreshed.
    app.clock.advance(3)
    assert call(oauth_server, auth).status_code == 200
    assert auth.refreshes == 1
    stored = store.load()
    assert stored is not None and stored.refresh_token != first["refresh_token"]
    # Now the expiry is known: the next refresh happens before the token expires.
    import time

    time.sleep(1.6)
    assert call(oauth_server, auth).status_code == 200
    assert auth.refreshes == 2
    # A new connection with the same (now retired) given tokens uses the stored chain.
    again = OAuthAuth(
        settings, FileTokenStore(tmp_path / "tokens.json"), token_url=settings.oauth_token_url
    )
    assert call(oauth_server, again).status_code == 200
    assert again.refreshes == 0


def test_refresh_with_a_used_refresh_token_is_a_clear_auth_error(
    oauth_server: RunningServer,
) -> None:
    pair = oauth_server.app.oauth.issue()
    requests.post(
        oauth_server.url + "/oauth/token",
        timeout=10,
        data={
            "grant_type": "refresh_token",
            "refresh_token": pair["refresh_token"],
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
        },
    )
    settings = settings_for(
        oauth_server, InitiateOAuth="REFRESH", OAuthRefreshToken=pair["refresh_token"]
    )
    auth = OAuthAuth(settings, MemoryTokenStore("used"), token_url=settings.oauth_token_url)
    with pytest.raises(AuthError) as err:
        auth.current()
    message = str(err.value)
    assert "invalid_grant" in message and "sagesql auth login" in message
    assert pair["refresh_token"] not in message and "sandbox-secret" not in message


def test_revoked_login_is_refused(oauth_server: RunningServer) -> None:
    pair = oauth_server.app.oauth.issue()
    requests.post(
        oauth_server.url + "/oauth/revoke",
        timeout=10,
        data={
            "token": pair["refresh_token"],
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
        },
    )
    settings = settings_for(
        oauth_server,
        InitiateOAuth="REFRESH",
        OAuthAccessToken=pair["access_token"],
        OAuthRefreshToken=pair["refresh_token"],
    )
    auth = OAuthAuth(settings, MemoryTokenStore("revoked"), token_url=settings.oauth_token_url)
    response = requests.get(oauth_server.url + "/v3.1/contacts", auth=auth, timeout=10)
    assert response.status_code == 401
    with pytest.raises(AuthError, match="invalid_grant"):
        auth.refresh_after_401(response)


# -- InitiateOAuth=GETANDREFRESH: the code flow with the listener ----------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def browser(url: str) -> bool:
    """A browser that signs in at once: follow the authorize redirect to the listener."""
    threading.Thread(target=requests.get, args=(url,), kwargs={"timeout": 10}, daemon=True).start()
    return True


def test_getandrefresh_logs_in_with_pkce_through_the_listener(oauth_server: RunningServer) -> None:
    settings = settings_for(
        oauth_server,
        InitiateOAuth="GETANDREFRESH",
        CallbackURL=f"http://localhost:{free_port()}/callback",
    )
    product = default_catalog().product("SageAccounting")
    endpoints = Endpoints.of(settings, product)
    assert endpoints.pkce
    logins = []

    def login() -> dict[str, Any]:
        logins.append(1)
        return run_login(settings, endpoints, opener=browser, timeout=20)

    store = MemoryTokenStore("getandrefresh")
    auth = OAuthAuth(settings, store, token_url=endpoints.token_url, login=login)
    assert call(oauth_server, auth).status_code == 200
    assert store.load() is not None
    second = OAuthAuth(settings, store, token_url=endpoints.token_url, login=login)
    assert call(oauth_server, second).status_code == 200
    assert len(logins) == 1, "stored tokens are used: no second login"


def test_headless_login_accepts_the_pasted_redirect_url(oauth_server: RunningServer) -> None:
    settings = settings_for(
        oauth_server,
        InitiateOAuth="GETANDREFRESH",
        CallbackURL=f"http://localhost:{free_port()}/cb",
    )
    endpoints = Endpoints.of(settings, default_catalog().product("SageAccounting"))
    shown: list[str] = []

    def paste(prompt: str) -> str:
        url = shown[0].split("\n", 1)[1]
        return requests.get(url, allow_redirects=False, timeout=10).headers["Location"]

    token = run_login(
        settings, endpoints, opener=lambda url: False, ask=paste, say=shown.append, timeout=20
    )
    assert token["access_token"] and token["refresh_token"]
    assert "Open this URL" in shown[0]


def test_authorization_url_keeps_the_provider_query_and_adds_pkce(
    oauth_server: RunningServer,
) -> None:
    settings = settings_for(oauth_server, InitiateOAuth="GETANDREFRESH")
    endpoints = Endpoints.of(settings, default_catalog().product("SageAccounting"))
    url = authorization_url(settings, endpoints, state="s1", code_challenge="abc")
    assert "filter=apiv3.1" in url and "state=s1" in url and "code_challenge_method=S256" in url
    sage200 = Endpoints.of(
        validate({"Product": "Sage200", "OAuthAccessToken": "x"}),
        default_catalog().product("Sage200"),
    )
    assert sage200.extra == {"audience": "s200ukipd/sage200"}


def test_code_from_checks_state() -> None:
    assert code_from("http://localhost:1/cb?code=abc&state=s", "s") == "abc"
    assert code_from("abc", "s") == "abc"
    with pytest.raises(AuthError, match="state"):
        code_from("http://localhost:1/cb?code=abc&state=evil", "s")
    with pytest.raises(AuthError, match="refused"):
        code_from("http://localhost:1/cb?error=access_denied&state=s", "s")


# -- single-flight refresh across threads and processes -------------------------------------


def test_threads_sharing_a_store_refresh_once_per_expiry(
    oauth_server: RunningServer, tmp_path: Path
) -> None:
    app = oauth_server.app
    app.oauth.access_lifetime = 2
    pair = app.oauth.issue()
    settings = settings_for(
        oauth_server, InitiateOAuth="REFRESH", OAuthRefreshToken=pair["refresh_token"]
    )
    errors: list[BaseException] = []
    statuses: list[int] = []

    def worker() -> None:
        auth = OAuthAuth(
            settings, FileTokenStore(tmp_path / "t.json"), token_url=settings.oauth_token_url
        )
        import time

        deadline = time.monotonic() + 4
        try:
            while time.monotonic() < deadline:
                statuses.append(call(oauth_server, auth).status_code)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(statuses) == {200}
    # 4 s of 2 s tokens refreshed ~0.5 s early: a handful of refreshes, not one per thread.
    assert 2 <= app.oauth.refresh_count <= 6


HAMMER = textwrap.dedent(
    """
    import json, sys, time, requests
    from sagesql.connector.auth import OAuthAuth
    from sagesql.connector.properties import validate
    from sagesql.connector.tokenstore import FileTokenStore
    props, store_path, seconds = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    settings = validate(props)
    auth = OAuthAuth(settings, FileTokenStore(store_path), token_url=settings.oauth_token_url)
    url = props["URL"] + "/contacts"
    ok = refused = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r = requests.get(url, auth=auth, timeout=10)
        if r.status_code == 401 and auth.refresh_after_401(r):
            r = requests.get(url, auth=auth, timeout=10)
        if r.status_code == 200:
            ok += 1
        else:
            refused += 1
    print(json.dumps({"ok": ok, "refused": refused, "refreshes": auth.refreshes}))
    """
)


@pytest.mark.slow
def test_eight_processes_hammering_one_store_never_lock_the_user_out(
    oauth_server: RunningServer, tmp_path: Path
) -> None:
    app = oauth_server.app
    app.oauth.access_lifetime = 2
    pair = app.oauth.issue()
    props = {
        "Product": "SageAccounting",
        "URL": oauth_server.url + "/v3.1",
        "InitiateOAuth": "REFRESH",
        "OAuthClientId": "sandbox-client",
        "OAuthClientSecret": "sandbox-secret",
        "OAuthRefreshToken": pair["refresh_token"],
        "OAuthTokenURL": oauth_server.url + "/oauth/token",
    }
    store = tmp_path / "shared-tokens.json"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, json.dumps(props), str(store), "8"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out))
    assert all(r["refused"] == 0 for r in results), results
    assert all(r["ok"] > 0 for r in results)
    total_refreshes = sum(r["refreshes"] for r in results)
    assert total_refreshes == app.oauth.refresh_count
    # 8 s of 2 s tokens: about one refresh per 1.5 s, whichever process makes it.
    assert 3 <= app.oauth.refresh_count <= 10, results
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
