"""The token endpoint misbehaving, over real HTTP: a refresh answer lost after Sage rotated
the token (clear, recorded for every process sharing the store, recoverable by a new
login), an HTML page where a token should be, and ``sagesql auth status`` asking Sage
rather than trusting the store.

The sandbox's OAuth server stays strict (a used refresh token is refused at once); a
relay in front of it cuts or drops its answers, as a broken network would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hostile_http import HostileServer, answer

from sagesql.connector.client import SageClient
from sagesql.connector.properties import validate
from sagesql.connector.tokenstore import FileTokenStore, TokenSet
from sagesql.errors import APIError, AuthError, RetriableAPIError
from sagesql.sandbox.runner import Sandbox

BIN = Path(sys.executable).parent


class Relay:
    """A token endpoint in front of the sandbox's: it forwards each request and, while
    ``cut`` is above zero, cuts the answer in half after the sandbox gave it (the token is
    rotated by then); while ``drop`` is above zero it hangs up before forwarding."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.cut = 0
        self.drop = 0
        self.forwarded = 0
        self._lock = threading.Lock()
        self.server = HostileServer(self._behave)
        self.url = self.server.url + "/oauth/token"

    def _behave(self, conn: socket.socket, request: bytes, stop: threading.Event) -> None:
        with self._lock:
            dropping = self.drop > 0
            self.drop -= dropping
        if dropping:
            conn.shutdown(socket.SHUT_RDWR)
            return
        head, _, body = request.partition(b"\r\n\r\n")
        kind = next(
            (
                line.split(b":", 1)[1].strip().decode()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-type:")
            ),
            "application/x-www-form-urlencoded",
        )
        reply = requests.post(self.target, data=body, headers={"Content-Type": kind}, timeout=10)
        with self._lock:
            self.forwarded += 1
            cutting = self.cut > 0
            self.cut -= cutting
        content = reply.content
        sent = content[: len(content) // 2] if cutting else content
        conn.sendall(
            f"HTTP/1.1 {reply.status_code} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(content)}\r\nConnection: close\r\n\r\n".encode()
            + sent
        )
        if cutting:
            conn.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def sbx(start_sandbox: Any) -> Sandbox:
    return start_sandbox("sage_accounting", rows=5, rate_limit_per_minute=0)  # type: ignore[no-any-return]


@pytest.fixture
def relay(sbx: Sandbox) -> Iterator[Relay]:
    r = Relay(str(sbx.token_url))
    yield r
    r.stop()


def properties(sbx: Sandbox, token_url: str, store: Path) -> dict[str, str]:
    """A GETANDREFRESH connection, its tokens in a file (as 'sagesql auth login' leaves
    them), the token endpoint at ``token_url``."""
    client_id, secret = next(iter(sbx.config.clients.items()))
    return {
        "Product": "SageAccounting",
        "URL": sbx.base_url,
        "InitiateOAuth": "GETANDREFRESH",
        "OAuthClientId": client_id,
        "OAuthClientSecret": secret,
        "OAuthTokenURL": token_url,
        "OAuthSettingsLocation": str(store),
        "Timeout": "5",
        "RateLimit": "0",
    }


def log_in(sbx: Sandbox, store: Path, *, expired: bool = True) -> dict[str, Any]:
    """What 'sagesql auth login' stores: a fresh pair (here already due for a refresh)."""
    pair = sbx.token()
    tokens = TokenSet.from_response(pair)
    if expired:
        tokens = TokenSet(**{**tokens.to_json(), "expires_at": time.time() - 1})
    file = FileTokenStore(store)
    with file.locked():
        file.save(tokens)
    return pair


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGESQL_")}
    env.update(SAGESQL_CONFIG_DIR=str(home / "config"), SAGESQL_DATA_DIR=str(home / "data"))
    return subprocess.run(
        [str(BIN / "sagesql"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def conn_text(props: dict[str, str]) -> str:
    return ";".join(f"{k}={v}" for k, v in props.items())


def test_a_refresh_answer_lost_after_rotation_names_the_login_and_a_login_recovers(
    sbx: Sandbox, relay: Relay, tmp_path: Path
) -> None:
    store = tmp_path / "tokens.json"
    props = properties(sbx, relay.url, store)
    pair = log_in(sbx, store)
    relay.cut = 1  # the sandbox rotates the refresh token; its answer never arrives whole
    first = SageClient(validate(props))
    try:
        with pytest.raises(AuthError) as lost:
            first.transport.get_json("/contacts")
        message = str(lost.value)
        # Asked once more with the same refresh token: the strict server refused it.
        assert relay.forwarded == 2
        assert "invalid_grant" in message and "answer was lost" in message
        assert "every process sharing this store" in message
        assert "run 'sagesql auth login'" in message and "\n" not in message
        assert pair["refresh_token"] not in message and props["OAuthClientSecret"] not in message
        stored = json.loads(store.read_text())
        assert "broke off" in stored["refresh_lost"]  # when and how, for every process

        # Another process sharing the store: the same clear error, one line, exit 1.
        done = cli(tmp_path, "query", "-c", conn_text(props), "SELECT id FROM contacts LIMIT 1")
        assert done.returncode == 1, done.stderr
        (line,) = done.stderr.splitlines()
        assert "was retired by a refresh whose answer was lost" in line
        assert "sagesql auth login" in line and "internal error" not in line

        # A new login (what 'sagesql auth login' writes) brings everyone back, the
        # long-running client included, without a restart.
        log_in(sbx, store, expired=False)
        assert first.transport.get_json("/contacts") is not None
        done = cli(tmp_path, "query", "-c", conn_text(props), "SELECT id FROM contacts LIMIT 1")
        assert done.returncode == 0, done.stderr
        assert json.loads(store.read_text()).get("refresh_lost") is None
    finally:
        first.close()


def test_a_refresh_lost_before_it_reached_sage_recovers_by_itself(
    sbx: Sandbox, relay: Relay, tmp_path: Path
) -> None:
    store = tmp_path / "tokens.json"
    log_in(sbx, store)
    relay.drop = 1  # the connection dies before the grant is forwarded: nothing rotated
    with SageClient(validate(properties(sbx, relay.url, store))) as conn:
        assert conn.transport.get_json("/contacts") is not None
        assert conn.auth.refreshes == 1  # type: ignore[attr-defined]
    assert relay.forwarded == 1
    assert json.loads(store.read_text()).get("refresh_lost") is None


def test_answers_lost_twice_say_try_again_then_the_login(
    sbx: Sandbox, relay: Relay, tmp_path: Path
) -> None:
    store = tmp_path / "tokens.json"
    log_in(sbx, store)
    relay.cut = 2
    with SageClient(validate(properties(sbx, relay.url, store))) as conn:
        with pytest.raises(RetriableAPIError) as twice:
            conn.transport.get_json("/contacts")
        assert "twice" in str(twice.value) and "sagesql auth login" in str(twice.value)
        with pytest.raises(AuthError, match="answer was lost"):
            conn.transport.get_json("/contacts")


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (200, RetriableAPIError, "answered 200 with text/html, not a token"),
        (404, APIError, "answered 404 with text/html, not an OAuth answer"),
        (502, RetriableAPIError, "answered 502 (text/html)"),
    ],
)
def test_an_html_page_at_the_token_url_is_not_a_used_refresh_token(
    sbx: Sandbox, tmp_path: Path, status: int, error: type[Exception], words: str
) -> None:
    page = b"<html><body>Please sign in to the corporate proxy</body></html>"
    store = tmp_path / "tokens.json"
    log_in(sbx, store)
    with HostileServer(answer(status, page, {"Content-Type": "text/html"})) as server:
        props = properties(sbx, server.url + "/oauth/token", store)
        with SageClient(validate(props)) as conn, pytest.raises(error) as err:
            conn.transport.get_json("/contacts")
    message = str(err.value)
    assert words in message
    assert "already used" not in message and "invalid_grant" not in message
    if status < 500:
        assert "OAuthTokenURL" in message


def _status(home: Path, props: dict[str, str], *extra: str) -> dict[str, Any]:
    done = cli(home, "auth", "status", "-c", conn_text(props), "--format", "json", *extra)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_auth_status_asks_sage_and_says_when_it_could_not(sbx: Sandbox, tmp_path: Path) -> None:
    store = tmp_path / "tokens.json"
    props = properties(sbx, str(sbx.token_url), store)
    pair = log_in(sbx, store, expired=False)
    info = _status(tmp_path, props)
    assert info["logged_in"] is True and info["checked"].startswith("yes")
    # Revoked at Sage (another device logged out): the store still holds the tokens.
    stored = json.loads(store.read_text())
    client_id, secret = next(iter(sbx.config.clients.items()))
    revoked = requests.post(
        str(sbx.revoke_url),
        data={"token": stored["refresh_token"], "client_id": client_id, "client_secret": secret},
        timeout=10,
    )
    assert revoked.status_code == 200
    info = _status(tmp_path, props)
    assert info["logged_in"] is False
    assert info["checked"].startswith("no:") and "sagesql auth login" in info["checked"]
    assert "invalid_grant" in info["checked"]
    # Without asking: it says it did not.
    info = _status(tmp_path, props, "--no-check")
    assert info["logged_in"] is True and "not checked" in info["checked"]
    # The token endpoint unreachable: it says it could not check.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    unreachable = {**props, "OAuthTokenURL": f"http://127.0.0.1:{port}/oauth/token"}
    info = _status(tmp_path, unreachable)
    assert info["logged_in"] is None and info["checked"].startswith("could not check")
    for text in (json.dumps(info), str(info)):
        assert pair["refresh_token"] not in text and stored["refresh_token"] not in text


def test_the_relay_sees_what_the_client_sends(sbx: Sandbox, relay: Relay, tmp_path: Path) -> None:
    """The grant's form: client id and secret in the body, never a redirect followed."""
    store = tmp_path / "tokens.json"
    log_in(sbx, store)
    with SageClient(validate(properties(sbx, relay.url, store))) as conn:
        conn.transport.get_json("/contacts")
    (request,) = relay.server.requests
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /oauth/token ")
    fields = dict(pair.split(b"=", 1) for pair in body.split(b"&"))
    assert fields[b"grant_type"] == b"refresh_token" and b"client_secret" in fields
