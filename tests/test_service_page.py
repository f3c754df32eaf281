"""The operations page at ``/`` in a real headless browser: Debian's chromium driven by Playwright.

JavaScript is turned off in the browser: the page is server-rendered HTML with plain
forms, so signing in, reading the instances (per resource lag, outbox, dead letters),
the recent errors and the dead letters, and pressing the replay button all work
without it. The dead letter is real: the instance's callback points at a receiver that
answers 500 and the instance allows two attempts; after the receiver is mended, the
button sends the letter again and the receiver gets it.

Playwright never downloads a browser here (``executable_path``): .ci/run installs
Debian's chromium when it is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from service_helpers import Running, aimed_at, wait_for
from test_poll_helpers import Receiver, frozen_at, seconds, utc

CHROMIUM = Path("/usr/bin/chromium")
CODE = "1c6ff4089d58d80e86482ab7d5b97f15dd7b041d"
T0 = utc(2026, 5, 4, 10, 0, 0)
T1 = T0 + seconds(30)

pytestmark = pytest.mark.slow


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "apt-get install -y chromium (.ci/run does it)"
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


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


def _status(running: Running, org: dict, iid: str) -> dict[str, Any]:
    answer = requests.get(f"{running.url}/instances/{iid}/status", headers=org["headers"])
    assert answer.status_code == 200, answer.text
    return answer.json()


def _sign_in(page: Any, url: str, org: dict) -> None:
    page.goto(url + "/")
    page.get_by_label("Organization secret").fill(org["organization_secret"])
    page.get_by_label("User secret").fill(org["user_secret"])
    page.get_by_role("button", name="Sign in").click()


def test_operations_page_shows_instances_and_replays_a_dead_letter(
    start_sandbox, running, receiver, browser
) -> None:
    sbx = start_sandbox("sage_accounting", rows=10, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    acme, other = running.org("acme"), running.org("other")
    receiver.status = 500  # the receiver is down: every attempt fails
    body = aimed_at(sbx, "sage_accounting", receiver.url, code=CODE)
    body["configuration"]["event.notification.delivery"] = {
        "max_attempts": 2,
        "backoff": "1s",
        "give_up_after": "1s",
    }
    made = requests.post(f"{running.url}/instances", json=body, headers=acme["headers"])
    assert made.status_code == 200, made.text
    iid = made.json()["id"]
    wait_for(
        lambda: all(r["watermark"] for r in _status(running, acme, iid)["resources"]),
        what="a first cycle",
    )
    frozen_at(sbx, T1)
    token = {"Authorization": f"Bearer {sbx.token()['access_token']}"}
    created = requests.post(
        f"{sbx.base_url}/contacts",
        json={"contact": {"name": "Dead Letter Ltd", "contact_type_ids": ["CUSTOMER"]}},
        headers=token,
    ).json()
    frozen_at(sbx, T1 + seconds(10))
    wait_for(
        lambda: _status(running, acme, iid)["resources"][0]["dead_letters"] == 1,
        60,
        "the event parked as a dead letter",
    )
    assert receiver.events() == []

    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    # Wrong secrets: the sign-in form again, saying so.
    page.goto(running.url + "/")
    page.get_by_label("Organization secret").fill(other["organization_secret"])
    page.get_by_label("User secret").fill(acme["user_secret"])
    page.get_by_role("button", name="Sign in").click()
    assert "wrong secrets" in page.content()
    _sign_in(page, running.url, acme)
    assert page.locator("h1").inner_text() == "acme: instances"
    assert "<script" not in page.content()
    section = page.locator(f"#instance-{iid}")
    assert "API_Polling" in section.locator("h2").inner_text()
    header = section.locator("table.resources tr").first.locator("th").all_inner_texts()
    assert header[:5] == ["resource", "watermark", "lag", "outbox", "dead letters"]
    cells = section.locator("table.resources tr").nth(1).locator("td").all_inner_texts()
    resource = dict(zip(header, cells, strict=True))
    assert resource["resource"] == "customers"
    assert resource["watermark"] and resource["lag"]
    assert resource["outbox"] == "0" and resource["dead letters"] == "1"
    assert "500" in section.locator(".errors").inner_text()  # the delivery's error
    dead = section.locator(".dead table tr").nth(1).locator("td").all_inner_texts()
    assert dead[1] == "customers" and dead[2] == "1" and "500" in dead[4]

    # Another organization signed in elsewhere sees none of it.
    theirs = browser.new_context(java_script_enabled=False).new_page()
    _sign_in(theirs, running.url, other)
    assert "No instances yet" in theirs.content() and iid not in theirs.content()
    theirs.context.close()

    # A replay posted without the page's form token is refused.
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    forged = requests.post(
        f"{running.url}/ui/instances/{iid}/replay", data={"csrf": "x"}, cookies=cookies
    )
    assert forged.status_code == 403
    assert _status(running, acme, iid)["resources"][0]["dead_letters"] == 1

    receiver.status = 200  # mended
    section.get_by_role("button", name="Replay 1 dead letter(s)").click()
    assert page.locator("#replayed").inner_text() == "1 dead letter(s) sent again"
    wait_for(lambda: receiver.events(), 30, "the replayed event at the receiver")
    (event,) = receiver.events()
    assert (event["objectType"], event["eventType"], event["objectId"]) == (
        "customers",
        "CREATED",
        created["id"],
    )
    wait_for(
        lambda: _status(running, acme, iid)["resources"][0]["delivered"] >= 1,
        what="the delivery noted",
    )
    page.goto(running.url + "/")
    section = page.locator(f"#instance-{iid}")
    cells = section.locator("table.resources tr").nth(1).locator("td").all_inner_texts()
    resource = dict(zip(header, cells, strict=True))
    assert resource["dead letters"] == "0" and resource["delivered"] == "1"
    assert section.locator(".dead").inner_text() == "none"
    # Signing out ends the session.
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Organization secret").wait_for()  # the sign-in page, once it loaded
    assert page.get_by_label("Organization secret").count() == 1
    context.close()
