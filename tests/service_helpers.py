"""Helpers of the service tests: a running service, organizations, bodies aimed at a sandbox.

No tests here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from cryptography.fernet import Fernet

from sagesql.service.operations import create_org
from sagesql.service.server import RunningService, open_service

PUBLISHED = Path(__file__).resolve().parent.parent / "activities" / "polling" / "examples"
BODIES = {
    "sage_accounting": "sage-accounting.instance.json",
    "sage_200": "sage-200.instance.json",
    "sage_crm": "sage-crm.instance.json",
}
CALLBACK = "https://mycoolapp.com"  # the Accounting body's oauth.callback.url


class Running:
    """A service on a thread with its database file; organizations made on demand."""

    def __init__(self, tmp: Path, **options: Any) -> None:
        self.key = Fernet.generate_key().decode()
        self.path = tmp / "service.sqlite"
        self.url_db = f"sqlite:///{self.path}"
        options.setdefault("workers", 4)
        options.setdefault("refresh", 0.2)
        self.service = open_service(self.url_db, self.key, **options)
        self.server = RunningService(self.service).start()
        self.url = self.server.url

    def org(self, name: str) -> dict[str, Any]:
        made = create_org(self.service.database, name)
        made["headers"] = {
            "Authorization": f"User {made['user_secret']}, "
            f"Organization {made['organization_secret']}"
        }
        return made

    def stop(self) -> None:
        self.server.stop()


def published(product: str) -> dict[str, Any]:
    return json.loads((PUBLISHED / BODIES[product]).read_text(encoding="utf-8"))


def aimed_at(sbx: Any, product: str, receiver_url: str, *, code: str | None = None) -> dict:
    """The published body with connection properties under their own names pointing at the
    sandbox, the callback at the receiver, and a one-second interval."""
    body = published(product)
    conf = body["configuration"]
    props = sbx.connection_properties()
    conf["URL"] = props["URL"]
    conf["RateLimit"] = "0"
    conf["event.notification.callback.url"] = receiver_url
    conf["event.poller.refresh_interval"] = "1s"
    if sbx.uses_oauth:
        conf["OAuthTokenURL"] = props["OAuthTokenURL"]
        conf["OAuthClientId"] = props["OAuthClientId"]
        conf["OAuthClientSecret"] = props["OAuthClientSecret"]
        if code is not None:
            register_code(sbx, code, conf.get("oauth.callback.url") or "http://localhost:33333")
            if "providerData" not in body:
                conf["OAuthCode"] = code
    else:
        conf["User"], conf["Password"] = props["User"], props["Password"]
    return body


def register_code(sbx: Any, code: str, redirect_uri: str | None) -> None:
    consent = {"code": code, "redirect_uri": redirect_uri}
    assert requests.post(sbx.url + "/_sandbox/code", json=consent, timeout=10).ok


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"waited {timeout} s for {what}")
