"""Delivery: webhook shape and signature, retries with backoff, dead letters, replay, sinks.

Time is moved, not waited for: the deliverer takes a clock, and a receiver "down for
minutes" is a receiver answering 503 while the test advances that clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from test_poll_helpers import (
    Receiver,
    connection_string,
    frozen_at,
    jsonl_events,
    poll_config,
    sage200_keys,
    seconds,
    session,
    touch_sage200,
    utc,
)

from sagesql.activities.polling import runner
from sagesql.activities.polling.config import DeliveryConfig, SinkConfig
from sagesql.activities.polling.deliverer import Deliverer
from sagesql.activities.polling.events import (
    Origin,
    batch,
    json_value,
    make_event,
    platform_body,
)
from sagesql.activities.polling.sinks import (
    SIGNATURE_HEADER,
    LinesSink,
    build,
    redirect,
    signature,
)
from sagesql.connector.sources import load_settings

T0 = utc(2026, 2, 1, 9, 0, 0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def _webhook(receiver: Receiver, **extra: Any) -> SinkConfig:
    return SinkConfig(kind="webhook", name="webhook", url=receiver.url, **extra)


def _produce(sbx: Any, s: Any, batches: int, per_batch: int, start: Any) -> list[str]:
    """Change rows in ``batches`` cycles; the stamps in the order they were made."""
    keys = sage200_keys(sbx, "customers")
    stamps = []
    when = start
    for b in range(batches):
        when = when + seconds(2)
        chunk = keys[b * per_batch : (b + 1) * per_batch]
        stamps += touch_sage200(sbx, "customers", chunk, when)
        frozen_at(sbx, when + seconds(1))
        results = s.poller.cycle()
        assert not [r.error for r in results if r.error]
    # One more cycle: the last one may have frozen its window before the last change.
    frozen_at(sbx, when + seconds(10))
    s.poller.cycle()
    return stamps


def _in_order(receiver: Receiver) -> list[tuple[str, str]]:
    events = receiver.events()
    dates = [e["eventDate"] for e in events]
    assert dates == sorted(dates), "delivered out of order"
    return [(e["objectId"], e["eventDate"]) for e in events]


def test_receiver_down_for_minutes_then_everything_in_order(start_sandbox, tmp_path, receiver):
    sbx = start_sandbox("sage_200", rows=60, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    config = poll_config(tmp_path, ["customers"], sinks=[_webhook(receiver)], delay=seconds(0))
    s = session(sbx, config)
    clock = FakeClock()
    deliverer = Deliverer(s.store, "test", s.sinks, config.delivery, clock=clock, jitter=lambda: 1)
    try:
        s.poller.cycle()
        receiver.status = 503
        _produce(sbx, s, batches=3, per_batch=15, start=T0)
        attempts = 0
        for _ in range(60):  # five simulated minutes, in 5 s steps
            report = deliverer.deliver_due()
            attempts += report.retried
            clock.advance(5)
        assert receiver.events() == [] and attempts >= 5
        assert s.store.status("test", ["customers"])[0].dead == 0  # nothing given up
        receiver.status = 200
        for _ in range(40):
            deliverer.deliver_due()
            clock.advance(5)
        delivered = _in_order(receiver)
        assert len(delivered) == 45 and len(set(delivered)) == 45
        assert max(len(m["events"]) for m in receiver.messages()) == 10
        assert s.store.status("test", ["customers"])[0].pending == 0
    finally:
        s.close()


def test_a_long_outage_parks_in_order_and_replay_sends_them(start_sandbox, tmp_path, receiver):
    sbx = start_sandbox("sage_200", rows=60, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    policy = DeliveryConfig(give_up_after=timedelta(minutes=10), max_attempts=5)
    config = poll_config(
        tmp_path, ["customers"], sinks=[_webhook(receiver)], delay=seconds(0), delivery=policy
    )
    s = session(sbx, config)
    clock = FakeClock()
    deliverer = Deliverer(s.store, "test", s.sinks, policy, clock=clock, jitter=lambda: 1)
    try:
        s.poller.cycle()
        receiver.status = 500
        _produce(sbx, s, batches=2, per_batch=20, start=T0)
        for _ in range(90):  # 30 simulated minutes
            deliverer.deliver_due()
            clock.advance(20)
        status = s.store.status("test", ["customers"])[0]
        assert status.dead == 4 and status.pending == 0  # 40 events in 4 messages, all parked
        dead = s.store.dead_letters("test")
        assert [d.seq for d in dead] == sorted(d.seq for d in dead)
        receiver.status = 200
        # Back up: later changes flow again; the parked ones wait for a replay.
        _produce(sbx, s, batches=1, per_batch=5, start=T0 + seconds(60))
        deliverer.deliver_due()
        assert len(receiver.events()) == 5
        count, report = runner.replay(replace(config, product="sage_200"))
        assert count == 4 and report is not None and report.delivered == 4
        changes = [(e["objectId"], e["eventDate"]) for e in receiver.events()]
        assert len(changes) == 45 and len(set(changes)) == 45
        assert s.store.status("test", ["customers"])[0].dead == 0
    finally:
        s.close()


def test_a_4xx_is_parked_at_once(start_sandbox, tmp_path, receiver):
    sbx = start_sandbox("sage_200", rows=20, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    config = poll_config(tmp_path, ["customers"], sinks=[_webhook(receiver)], delay=seconds(0))
    s = session(sbx, config)
    try:
        s.poller.cycle()
        receiver.status = 401
        _produce(sbx, s, batches=1, per_batch=3, start=T0)
        report = s.deliverer.deliver_due()
        assert report.parked == 1 and report.retried == 0
        (dead,) = s.store.dead_letters("test")
        assert "401" in (dead.last_error or "")
    finally:
        s.close()


def test_webhook_shape_signature_basic_auth_and_headers(start_sandbox, tmp_path, receiver):
    sbx = start_sandbox("sage_200", rows=30, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    sink = _webhook(
        receiver,
        username="hook-user",
        password="hook-pass",
        signature_key="s3cret",
        headers={"X-Tenant": "acme"},
    )
    config = poll_config(tmp_path, ["customers"], sinks=[sink], delay=seconds(0))
    s = session(sbx, config)
    try:
        s.poller.cycle()
        _produce(sbx, s, batches=1, per_batch=23, start=T0)
        s.deliverer.deliver_due()
        messages = receiver.messages()
        assert [len(m["events"]) for m in messages] == [10, 10, 3]
        for body, headers in zip(receiver.bodies, receiver.headers, strict=True):
            expected = base64.b64encode(hmac.new(b"s3cret", body, hashlib.sha256).digest()).decode()
            assert headers[SIGNATURE_HEADER] == f"sha256={expected}"
            assert (
                headers["Authorization"]
                == "Basic " + base64.b64encode(b"hook-user:hook-pass").decode()
            )
            assert headers["X-Tenant"] == "acme"
        message = messages[0]
        assert message["instanceId"] == "test" and message["instanceName"] == "test instance"
        event = message["events"][0]
        assert set(event) >= {"eventType", "objectType", "objectId", "eventDate", "elementKey"}
        assert event["objectType"] == "customers" and event["elementKey"] == "sage200"
        raw = message["raw"]["customers"]
        assert len(raw) == 10 and raw[0]["id"] == int(event["objectId"])
    finally:
        s.close()


def test_the_same_change_keeps_its_event_id(start_sandbox, tmp_path):
    sbx = start_sandbox("sage_200", rows=30, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    config = poll_config(tmp_path, ["customers"], delay=seconds(0))
    s = session(sbx, config)
    try:
        s.poller.cycle()
        _produce(sbx, s, batches=1, per_batch=12, start=T0)
        s.deliverer.deliver_due()
    finally:
        s.close()
    first = jsonl_events(tmp_path / "events.jsonl")
    # Rewind and poll again: the same changes, the same ids (receivers dedupe by them).
    runner.reset(config, table="customers", since=T0)
    s = session(sbx, config)
    try:
        s.poller.cycle()
        s.deliverer.deliver_due()
    finally:
        s.close()
    both = jsonl_events(tmp_path / "events.jsonl")
    second = both[len(first) :]
    assert len(second) == len(first) == 12
    assert [e["eventId"] for e in second] == [e["eventId"] for e in first]
    assert [e["messageId"] for e in second] == [e["messageId"] for e in first]


def test_event_ids_and_message_ids_derive_from_the_change():
    def event(key: str, stamp: str) -> Any:
        return make_event(
            "i",
            "t",
            "UPDATED",
            object_id=key,
            key=key,
            mark="U",
            stamp=stamp,
            date=stamp,
            raw={},
        )

    a, b = event("1", "2026-01-01T00:00:00Z"), event("1", "2026-01-01T00:00:01Z")
    assert a.event_id == event("1", "2026-01-01T00:00:00Z").event_id != b.event_id
    (m1,) = batch("i", "t", [a, b])
    (m2,) = batch("i", "t", [a, b])
    assert m1.message_id == m2.message_id
    assert [len(m.events) for m in batch("i", "t", [a] * 25)] == [10, 10, 5]
    body = platform_body(m1.message_id, "t", m1.events, Origin("i", "n", "sagecrm"))
    assert json.loads(body)["message"]["eventId"] == m1.message_id
    assert (
        signature(b"body", "k")
        == "sha256=" + base64.b64encode(hmac.new(b"k", b"body", hashlib.sha256).digest()).decode()
    )


def test_record_numbers_do_not_depend_on_a_decimal_s_places():
    """Query results give a DECIMAL the places the API wrote (6500.00); a record (and so a
    snapshot's content hash) holds the number: whole ones as ints, as before."""
    for written, number in (("6500.00", 6500), ("6500", 6500), ("-3.0", -3)):
        value = json_value(Decimal(written))
        assert value == number and type(value) is int
    assert json_value(Decimal("1.50")) == json_value(Decimal("1.5")) == 1.5
    assert json.dumps(json_value(Decimal("49.870"))) == "49.87"


def test_jsonl_and_stdout_sinks_write_one_plain_event_per_line(tmp_path):
    origin = Origin("inst", "Instance", "sage200")
    events = [
        make_event(
            "inst",
            "customers",
            "CREATED",
            object_id=7,
            key=7,
            mark="U",
            stamp="2026-01-01T00:00:00.000Z",
            date="2026-01-01T00:00:00.000Z",
            raw={"id": 7},
        )
    ]
    (message,) = batch("inst", "customers", events)
    sinks = build(
        [
            SinkConfig(kind="jsonl", name="file", path=tmp_path / "out" / "e.jsonl"),
            SinkConfig(kind="stdout", name="stdout"),
        ],
        origin,
        stdout=(out := io.StringIO()),
    )
    for sink in sinks.values():
        sink.send(message.message_id, "customers", message.events)
        sink.close()
    (line,) = (tmp_path / "out" / "e.jsonl").read_text().splitlines()
    assert out.getvalue() == line + "\n"
    data = json.loads(line)
    assert data["eventType"] == "CREATED" and data["objectId"] == "7"
    assert data["messageId"] == message.message_id and data["instanceId"] == "inst"
    assert data["raw"] == {"id": 7}
    assert isinstance(sinks["stdout"], LinesSink)


def test_status_shows_watermark_lag_outbox_and_dead_letters(start_sandbox, tmp_path, receiver):
    sbx = start_sandbox("sage_200", rows=20, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    config = poll_config(tmp_path, ["customers"], sinks=[_webhook(receiver)], delay=seconds(2))
    s = session(sbx, config)
    try:
        s.poller.cycle()
        receiver.status = 503
        _produce(sbx, s, batches=1, per_batch=4, start=T0)
        s.deliverer.deliver_due()
    finally:
        s.close()
    (row,) = runner.status(config)
    assert row["table"] == "customers"
    assert row["watermark"] == "2026-02-01T09:00:10Z"
    assert row["lag"] == "2s" and row["outbox"] == 1 and row["dead_letters"] == 0
    assert row["events"] == 4 and row["cycles"] == 3
    assert "503" in row["delivery_error"]


def test_max_attempts_is_the_most_a_message_gets(start_sandbox, tmp_path, receiver, caplog):
    sbx = start_sandbox("sage_200", rows=20, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    # Far from give_up_after: the attempts bound comes first and alone decides.
    policy = DeliveryConfig(give_up_after=timedelta(hours=1), max_attempts=2)
    config = poll_config(
        tmp_path, ["customers"], sinks=[_webhook(receiver)], delay=seconds(0), delivery=policy
    )
    s = session(sbx, config)
    clock = FakeClock()
    deliverer = Deliverer(s.store, "test", s.sinks, policy, clock=clock, jitter=lambda: 1)
    try:
        s.poller.cycle()
        receiver.status = 503
        _produce(sbx, s, batches=1, per_batch=3, start=T0)
        with caplog.at_level("DEBUG", logger="sagesql.poll"):
            for _ in range(20):  # ten simulated minutes
                deliverer.deliver_due()
                clock.advance(30)
        (dead,) = s.store.dead_letters("test")
        assert dead.attempts == 2
        assert "parked as a dead letter after 2 attempt(s)" in caplog.text
        assert "attempt 1 of 2 failed" in caplog.text and "attempt 3" not in caplog.text
    finally:
        s.close()


def test_a_trial_run_holds_the_configured_sinks_messages(start_sandbox, tmp_path, receiver):
    """--sink/--callback-url: the replaced sinks' pending messages wait, never parked."""
    sbx = start_sandbox("sage_200", rows=20, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    config = poll_config(tmp_path, ["customers"], sinks=[_webhook(receiver)], delay=seconds(0))
    s = session(sbx, config)
    try:
        s.poller.cycle()
        receiver.status = 503
        _produce(sbx, s, batches=1, per_batch=2, start=T0)
        assert s.deliverer.deliver_due().retried == 1
    finally:
        s.close()
    touch_sage200(sbx, "customers", sage200_keys(sbx, "customers")[5:6], T0 + seconds(10))
    frozen_at(sbx, T0 + seconds(12))
    sinks, held = redirect(config.sinks, to=f"jsonl:{tmp_path / 'trial.jsonl'}")
    settings = load_settings(connection_string(sbx, "trial"), use_environment=False)
    code = runner.run(replace(config, sinks=sinks), settings, once=True, held=held)
    assert code == 0  # the trial sink got everything of this run
    assert [e["objectId"] for e in jsonl_events(tmp_path / "trial.jsonl")] == ["6"]
    (row,) = runner.status(config)
    assert row["outbox"] == 1 and row["dead_letters"] == 0  # the webhook's message waits
