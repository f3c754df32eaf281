"""The refresh relay and a worker SIGKILLed in the middle of a refresh (issue 16).

Sage retires a refresh token as it answers. These tests hold the sandbox's token
endpoint at the exact moment in question (the refresh token rotated, the answer not yet
sent), SIGKILL the worker process that holds the instance's token row there, and check
that the next holder of the row adopts the pair the relay records instead of sending
the retired refresh token again (which Sage answers ``invalid_grant``). Real parts: the
service database on PostgreSQL, the relay's child process, the sandbox over HTTP.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.fernet import Fernet
from service_helpers import aimed_at

from sagesql.connector.auth import OAuthAuth, fingerprint
from sagesql.connector.token_endpoint import AnswerLost
from sagesql.service import refresher
from sagesql.service.instances import connect, prepare
from sagesql.service.operations import create_org
from sagesql.service.refresher import RefreshRelay
from sagesql.service.secrets import SecretBox
from sagesql.service.server import RunningService, open_service
from sagesql.service.storage import ServiceDatabase
from sagesql.service.tokens import DatabaseTokenStore

CODE = "1c6ff4089d58d80e86482ab7d5b97f15dd7b041d"  # the published body's providerData.code


@dataclass
class Setup:
    url: str
    key: str
    database: ServiceDatabase
    instance: str
    sandbox: Any


def auth_for(database: ServiceDatabase, key: str, iid: str, relay: RefreshRelay | None) -> Any:
    """The instance's OAuthAuth as a worker builds it (through ``relay`` when given)."""
    box = SecretBox(key)
    row = database.instance(None, iid)
    assert row is not None
    prepared = prepare(box.open(row.body), iid, database.state_path(iid))
    store = DatabaseTokenStore(database, box, iid, relay_wait=20.0)
    token_url = connect(prepared, store).auth.token_url
    grant = relay.grant_for(database, iid, token_url) if relay is not None else None
    return OAuthAuth(prepared.settings, store, token_url=token_url, grant=grant)


# A worker: one forced refresh through its relay (it is killed before the answer).
WORKER = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_refresh_relay import auth_for
from sagesql.service.refresher import RefreshRelay
from sagesql.service.storage import ServiceDatabase
url, key, iid = sys.argv[1:4]
auth_for(ServiceDatabase(url, upgrade=False), key, iid, RefreshRelay(url, key)).check()
"""


@pytest.fixture
def setup(pg_url: str, start_sandbox) -> Any:
    sbx = start_sandbox("sage_accounting", rows=1, access_token_lifetime=60)
    key = Fernet.generate_key().decode()
    service = open_service(pg_url, key, workers=0)
    server = RunningService(service).start()
    try:
        org = create_org(service.database, "relay")
        headers = {
            "Authorization": f"User {org['user_secret']}, Organization {org['organization_secret']}"
        }
        body = aimed_at(sbx, "sage_accounting", "http://127.0.0.1:9/", code=CODE)
        made = requests.post(f"{server.url}/instances", json=body, headers=headers, timeout=30)
        assert made.status_code == 200, made.text
        yield Setup(pg_url, key, service.database, made.json()["id"], sbx)
    finally:
        server.stop()


def refused(sbx: Any) -> list[dict[str, Any]]:
    log = requests.get(sbx.url + "/_sandbox/requests", timeout=10).json()
    return [e for e in log if e["path"].endswith("/oauth/token") and e["status"] == 400]


class Gate:
    """Holds the sandbox's first refresh after Sage's side of it: the old refresh token
    retired, the new pair issued, the answer not yet sent."""

    def __init__(self, oauth: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reached = threading.Event()
        self.opened = threading.Event()
        self.issued: list[dict[str, Any]] = []
        real = oauth._refresh_token

        def held(request: Any, client_id: str) -> Any:
            answer = real(request, client_id)
            if not self.reached.is_set():
                self.issued.append(json.loads(answer.get_data()))
                self.reached.set()
                self.opened.wait(30)
            return answer

        monkeypatch.setattr(oauth, "_refresh_token", held)


def test_a_worker_killed_after_sage_rotated_the_token_is_followed_without_invalid_grant(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    oauth = setup.sandbox.app.oauth
    gate = Gate(oauth, monkeypatch)
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, setup.url, setup.key, setup.instance],
        stderr=subprocess.DEVNULL,
    )
    try:
        assert gate.reached.wait(30), "the worker's refresh never reached the token endpoint"
        worker.send_signal(signal.SIGKILL)  # holding the token row, its grant in flight
        worker.wait(10)
    finally:
        worker.kill()
    # The next holder of the token row (another worker) finds the token expiring.
    got: dict[str, Any] = {}

    def next_holder() -> None:
        try:
            got["tokens"] = auth_for(setup.database, setup.key, setup.instance, None).check()
        except Exception as exc:  # said in the assertion below
            got["error"] = exc

    thread = threading.Thread(target=next_holder)
    thread.start()
    time.sleep(1.5)
    # It waits for the dead worker's grant instead of sending the retired refresh token.
    assert thread.is_alive(), got
    assert oauth.refresh_count == 1
    gate.opened.set()
    thread.join(30)
    assert "error" not in got, got["error"]
    assert got["tokens"].access_token == gate.issued[0]["access_token"]
    assert got["tokens"].refresh_token == gate.issued[0]["refresh_token"]
    assert oauth.refresh_count == 1
    assert refused(setup.sandbox) == []
    # The adopted pair is the stored one, and the chain goes on from it.
    after = auth_for(setup.database, setup.key, setup.instance, None).check()
    assert after.access_token != got["tokens"].access_token
    assert oauth.refresh_count == 2 and refused(setup.sandbox) == []


def test_a_grant_no_relay_has_taken_is_withdrawn_not_waited_for_nor_sent(setup: Setup) -> None:
    oauth = setup.sandbox.app.oauth
    box = SecretBox(setup.key)
    store = DatabaseTokenStore(setup.database, box, setup.instance)
    old = store.load()
    assert old is not None and old.refresh_token
    # A worker marked its grant and was killed before its relay read the request.
    mark = refresher.in_flight(setup.database, setup.instance, fingerprint(old.refresh_token))
    started = time.monotonic()
    fresh = auth_for(setup.database, setup.key, setup.instance, None).check()
    assert time.monotonic() - started < 5.0  # not the relay wait (20 s here)
    assert oauth.refresh_count == 1 and fresh.refresh_token != old.refresh_token
    # The request reaches the relay late: the mark is gone, so nothing is sent.
    request = {"mark": mark, "instance": setup.instance, "url": setup.sandbox.token_url}
    request["refresh_token"] = old.refresh_token
    out = io.BytesIO()
    refresher.serve(setup.database, box, io.BytesIO(json.dumps(request).encode() + b"\n"), out)
    reply = json.loads(out.getvalue())
    assert reply["kind"] == "RetriableAPIError" and "withdrawn" in reply["message"]
    assert oauth.refresh_count == 1 and refused(setup.sandbox) == []


def test_a_relay_asked_again_for_a_recorded_grant_answers_it_without_sending(
    setup: Setup,
) -> None:
    oauth = setup.sandbox.app.oauth
    box = SecretBox(setup.key)
    old = DatabaseTokenStore(setup.database, box, setup.instance).load()
    assert old is not None and old.refresh_token
    parent = fingerprint(old.refresh_token) or ""
    replies = []
    for _ in range(2):  # the second as after a relay that died before replying
        mark = refresher.in_flight(setup.database, setup.instance, parent)
        request = {"mark": mark, "instance": setup.instance, "url": setup.sandbox.token_url}
        request["refresh_token"] = old.refresh_token
        out = io.BytesIO()
        refresher.serve(setup.database, box, io.BytesIO(json.dumps(request).encode() + b"\n"), out)
        replies.append(json.loads(out.getvalue()))
    assert "answer" in replies[0], replies[0]
    assert replies[1]["answer"]["refresh_token"] == replies[0]["answer"]["refresh_token"]
    assert oauth.refresh_count == 1 and refused(setup.sandbox) == []


def test_a_hung_relay_holds_its_worker_no_longer_than_the_wait(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = RefreshRelay(setup.url, setup.key)
    url = setup.sandbox.token_url
    old = DatabaseTokenStore(setup.database, SecretBox(setup.key), setup.instance).load()
    assert old is not None and old.refresh_token
    # The relay started (a Python process: slower than the wait below) and answering.
    fresh = relay.grant_for(setup.database, setup.instance, url)(old.refresh_token)
    grant = relay.grant_for(setup.database, setup.instance, url, wait=1.0)
    gate = Gate(setup.sandbox.app.oauth, monkeypatch)  # from now on its grant never answers
    started = time.monotonic()
    try:
        with pytest.raises(AnswerLost, match="gave no answer in 1 s"):
            grant(fresh["refresh_token"])
        assert time.monotonic() - started < 5.0
        assert gate.reached.is_set()
        assert relay._child is None  # ended: the next grant starts a new one
    finally:
        gate.opened.set()
        relay.close()
