"""Crash safety: a poller killed with SIGKILL 20 times while 10,000 changes happen loses none.

The poller is the real ``sagesql poll`` in a subprocess, polling a CRM sandbox every
0.2 s and posting to a local receiver. While a writer changes 10,000 distinct rows
(each change a new (id, updated) pair, hundreds per second), the poller is killed
with SIGKILL at random moments (during start-up, reads, commits, deliveries) and
started again, 20 times. In the end every change has reached the receiver at least
once, and a change received twice always carries the same eventId (the duplicate of
a message sent before the kill could record it).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest
from test_poll_helpers import Receiver, connection_string, touch_crm

pytestmark = pytest.mark.slow

CHANGES = 10_000
KILLS = 20


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "crash.toml"
    path.write_text(
        f"""
name = "crash"
start = "now"
delay = "1s"
lookback = "0s"

[[tables]]
table = "accounts"
deletes = "off"

[[sinks]]
type = "webhook"
url = "{url}"
""",
        encoding="utf-8",
    )
    return path


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_sigkill_twenty_times_during_ten_thousand_changes(start_sandbox, tmp_path) -> None:
    receiver = Receiver()
    sbx = start_sandbox("sage_crm", rows=CHANGES, rate_limit_per_minute=0)
    store = sbx.app.store
    keys = [int(row[0]) for row in store.select("crm", "Company", columns="key")]
    assert len(keys) == CHANGES
    config = _config(tmp_path, receiver.url)
    env = {**os.environ, "SAGESQL_CONNECTION": connection_string(sbx, "crash")}
    command = [
        sys.executable, "-m", "sagesql.cli.main", "poll",
        "--config", str(config), "--interval", "0.2s", "--quiet",
    ]  # fmt: skip

    log = (tmp_path / "poller.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)

    # The first run starts the watermark at the server's now, before any change.
    poller = start()
    deadline = time.monotonic() + 20
    while not (tmp_path / "crash.poll.sqlite").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)

    expected: set[tuple[str, str]] = set()
    done = threading.Event()

    def write() -> None:
        rng = random.Random(7)
        order = keys[:]
        rng.shuffle(order)
        position = 0
        while position < len(order):
            size = rng.randint(100, 400)
            batch = order[position : position + size]
            position += size
            when = sbx.app.clock.now().replace(microsecond=0)
            touch_crm(sbx, "Company", batch, when)
            expected.update((str(k), _stamp(when)) for k in batch)
            time.sleep(rng.uniform(0.1, 0.6))
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    rng = random.Random(11)
    kills = 0
    try:
        while kills < KILLS:
            time.sleep(rng.uniform(0.3, 2.0))
            assert poller.poll() is None, (tmp_path / "poller.log").read_text()[-2000:]
            poller.send_signal(signal.SIGKILL)
            poller.wait(timeout=10)
            kills += 1
            poller = start()
        writer.join(timeout=120)
        assert done.is_set()
        # Let the last poller catch up.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            got = {(e["objectId"], e["eventDate"]) for e in receiver.events()}
            if expected <= got:
                break
            time.sleep(0.5)
    finally:
        poller.send_signal(signal.SIGTERM)
        try:
            poller.wait(timeout=30)
        except subprocess.TimeoutExpired:
            poller.kill()
        writer.join(timeout=10)
        receiver.stop()
        log.close()

    assert len(expected) == CHANGES
    events = receiver.events()
    received = {(e["objectId"], e["eventDate"]) for e in events}
    missing = expected - received
    assert not missing, f"{len(missing)} changes never delivered, e.g. {sorted(missing)[:3]}"
    assert received <= expected  # nothing invented
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in events:
        ids[(e["objectId"], e["eventDate"])].add(e["eventId"])
    assert all(len(v) == 1 for v in ids.values()), "a change arrived under two eventIds"
    # Messages sent twice are the same message.
    bodies: dict[str, set[str]] = defaultdict(set)
    for message in receiver.messages():
        bodies[message["eventId"]].add(json.dumps(message, sort_keys=True))
    assert all(len(v) == 1 for v in bodies.values())
    duplicates = len(events) - len(received)
    print(f"\n{CHANGES} changes, {kills} SIGKILLs, {len(events)} events received, "
          f"{duplicates} duplicates (same eventId)")  # fmt: skip
    assert kills == KILLS
