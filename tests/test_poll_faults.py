"""Sage answering 429 and 5xx: cycles fail and complete later, and nothing is lost or repeated.

The sandbox injects the faults; the transport retries them as it always does (its
waits are skipped here, so the test does not sleep), and what its retries cannot
absorb fails the table's cycle, which the next cycle repeats from the same watermark.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import requests
from test_poll_helpers import (
    connection_string,
    frozen_at,
    jsonl_events,
    poll_config,
    sage200_keys,
    seconds,
    touch_sage200,
    utc,
)

from sagesql.activities.polling import runner
from sagesql.activities.polling.runner import open_session
from sagesql.connector.client import SageClient
from sagesql.connector.sources import load_settings
from sagesql.connector.transport import HTTPTransport

T0 = utc(2026, 3, 1, 8, 0, 0)


def _faults(sbx: Any, spec: str) -> None:
    answer = requests.post(sbx.url + "/_sandbox/faults", json={"spec": spec}, timeout=10)
    assert answer.status_code == 200, answer.text


def _session(sbx: Any, config: Any, attempts: int) -> Any:
    settings = load_settings(connection_string(sbx, "faults"), use_environment=False)
    connection = SageClient(settings)
    connection._transport = HTTPTransport(
        settings,
        connection.product,
        base_url=connection.base_url,
        auth=connection.auth,
        sleep=lambda seconds: None,  # the retries' waits, skipped
        max_attempts=attempts,
    )
    return open_session(config, settings, connection=connection)


def test_429_and_5xx_fail_cycles_that_complete_later(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_200", rows=200, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    config = poll_config(tmp_path, ["customers"], page_size=20, delay=seconds(0))
    s = _session(sbx, config, attempts=2)
    try:
        assert not s.poller.cycle()[0].error
        keys = sage200_keys(sbx, "customers")
        expected: set[tuple[str, str]] = set()
        when = T0
        for spec in ("errors=1.0,statuses=503", "throttle=1.0", "errors=1.0,statuses=500/502"):
            when += seconds(5)
            expected |= {
                (str(k), s)
                for s in touch_sage200(sbx, "customers", keys[:30], when)
                for k in keys[:30]
            }
            frozen_at(sbx, when + seconds(1))
            before = s.store.load("test", "customers").watermark
            _faults(sbx, spec)
            (failed,) = s.poller.cycle()
            assert failed.error and (
                "503" in failed.error or "429" in failed.error or "50" in failed.error
            )
            state = s.store.load("test", "customers")
            assert state.watermark == before and state.last_result == "failed"
            _faults(sbx, "")
            assert not s.poller.cycle()[0].error  # the next cycle completes
        s.deliverer.deliver_due()
        got = Counter(
            (e["objectId"], e["eventDate"]) for e in jsonl_events(tmp_path / "events.jsonl")
        )
        assert set(got) == expected and max(got.values()) == 1
        (row,) = runner.status(config)
        assert row["last_result"].startswith("30 UPDATED")
    finally:
        _faults(sbx, "")
        s.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_random_faults_mid_window_lose_and_repeat_nothing(start_sandbox, tmp_path, seed) -> None:
    sbx = start_sandbox("sage_200", rows=300, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    config = poll_config(tmp_path, ["customers"], page_size=25, delay=seconds(0))
    s = _session(sbx, config, attempts=2)
    try:
        s.poller.cycle()
        keys = sage200_keys(sbx, "customers")
        stamps = touch_sage200(sbx, "customers", keys, T0 + seconds(5))
        _faults(sbx, f"errors=0.3,statuses=500/502/503,throttle=0.2,seed={seed}")
        failures = 0
        step = 6
        for _ in range(40):
            frozen_at(sbx, T0 + seconds(step))
            step += 1
            failures += bool(s.poller.cycle()[0].error)
            s.deliverer.deliver_due()
            if s.store.load("test", "customers").watermark >= "2026-03-01T08:00:06Z":
                break
        _faults(sbx, "")
        s.poller.cycle()
        s.deliverer.deliver_due()
        events = jsonl_events(tmp_path / "events.jsonl")
        got = Counter((e["objectId"], e["eventDate"]) for e in events)
        assert set(got) == {(str(k), stamps[0]) for k in keys}
        assert max(got.values()) == 1
        assert failures >= 1  # the faults did fail cycles
    finally:
        _faults(sbx, "")
        s.close()
