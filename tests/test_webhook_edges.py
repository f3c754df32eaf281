"""Webhook receivers that misbehave, over real HTTP: redirects are never followed (a 3xx
is a failed attempt naming the Location, retried, then a dead letter), and an answer is
read within bounds (1 MiB, the sink's timeout for the whole attempt)."""

from __future__ import annotations

import time
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hostile_http import (
    HostileServer,
    Recorder,
    answer,
    endless,
    endless_chunked,
    redirect,
    trickling_body,
    trickling_headers,
)

from sagesql.activities.polling.config import DeliveryConfig, SinkConfig
from sagesql.activities.polling.deliverer import Deliverer
from sagesql.activities.polling.events import Origin, batch, make_event
from sagesql.activities.polling.sinks import DeliveryFailed, WebhookSink
from sagesql.activities.polling.sqlite_state import SQLiteStateStore

ORIGIN = Origin("inst", "Instance", "sage200")
SECRETS = {"signature": "sig-key-0xSECRET", "password": "hook-pass-0xSECRET", "header": "hdr-0xS"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def webhook(url: str, *, timeout: float = 5.0) -> SinkConfig:
    return SinkConfig(
        kind="webhook",
        name="hook",
        url=url,
        username="hook-user",
        password=SECRETS["password"],
        signature_key=SECRETS["signature"],
        headers={"X-Custom": SECRETS["header"]},
        timeout=timeout,
    )


def message() -> Any:
    event = make_event(
        "inst",
        "customers",
        "UPDATED",
        object_id=7,
        key=7,
        mark="U",
        stamp="2026-02-01T09:00:00Z",
        date="2026-02-01T09:00:00Z",
        raw={"id": 7, "name": "Acme"},
    )
    (one,) = batch("inst", "customers", [event])
    return one


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failed_attempt_naming_the_location_then_a_dead_letter(
    tmp_path: Path, status: int
) -> None:
    with (
        Recorder() as elsewhere,
        HostileServer(redirect(status, elsewhere.url + "/catch-all?who=me")) as receiver,
    ):
        store = SQLiteStateStore(tmp_path / "state.sqlite")
        sink = WebhookSink(webhook(receiver.url + "/hook"), ORIGIN)
        msg = message()
        store.commit("inst", "customers", messages=[msg], marks=[], sinks=["hook"], now=1.0)
        clock = FakeClock()
        policy = DeliveryConfig(
            give_up_after=timedelta(minutes=1), max_attempts=3, backoff=timedelta(seconds=5)
        )
        deliverer = Deliverer(store, "inst", {"hook": sink}, policy, clock=clock, jitter=lambda: 1)
        try:
            first = deliverer.deliver_due()
            assert (first.delivered, first.retried, first.parked) == (0, 1, 0)
            (pending,) = store.pending("inst", "customers", "hook", 10)
            assert f"{status}" in (pending.last_error or "")
            assert elsewhere.url + "/catch-all?who=me" in (pending.last_error or "")
            for _ in range(20):
                clock.now += 20
                deliverer.deliver_due()
            (dead,) = store.dead_letters("inst")
        finally:
            deliverer.close()
            store.close()
        # Nothing reached the other origin: no GET without the body (301/302/303), no
        # body, signature, credentials or custom header (307/308).
        assert elsewhere.seen == []
        assert dead.message_id == msg.message_id and dead.attempts >= 3
        assert f"answered {status} redirecting to {elsewhere.url}/catch-all" in (
            dead.last_error or ""
        )
        assert "set the sink's url" in (dead.last_error or "")
        # Every attempt was a POST with the whole signed body, to the configured URL only.
        assert len(receiver.requests) == dead.attempts
        for raw in receiver.requests:
            assert raw.startswith(b"POST /hook ")
            assert msg.message_id.encode() in raw and b"Elements-Webhook-Signature" in raw


def test_a_relative_location_is_named_in_full_and_credentials_in_it_masked(
    tmp_path: Path,
) -> None:
    with HostileServer(redirect(302, "/moved/here")) as receiver:
        failed = _refused(receiver.url + "/hook")
    assert f"redirecting to {receiver.url}/moved/here" in failed.reason
    assert not failed.permanent
    with HostileServer(redirect(307, "https://user:pw-0xSECRET@evil.example/x")) as receiver:
        failed = _refused(receiver.url + "/hook")
    assert "https://user:***@evil.example/x" in failed.reason
    assert "pw-0xSECRET" not in failed.reason


def _refused(url: str) -> DeliveryFailed:
    failure, _, _ = _bounded_send(url, timeout=5)
    assert failure is not None
    return failure


def _bounded_send(url: str, timeout: float) -> tuple[DeliveryFailed | None, float, int]:
    """One delivery attempt: (its failure, seconds taken, peak bytes allocated)."""
    sink = WebhookSink(webhook(url, timeout=timeout), ORIGIN)
    msg = message()
    tracemalloc.start()
    started = time.monotonic()
    failure = None
    try:
        sink.send(msg.message_id, "customers", msg.events)
    except DeliveryFailed as exc:
        failure = exc
    finally:
        took = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        sink.close()
    return failure, took, peak


@pytest.mark.parametrize("behaviour", [endless, endless_chunked], ids=["length", "chunked"])
def test_an_endless_answer_is_read_no_further_than_1_mib(behaviour: Any) -> None:
    with HostileServer(behaviour()) as receiver:
        failure, took, peak = _bounded_send(receiver.url + "/hook", timeout=5)
    assert failure is not None and not failure.permanent
    assert "larger than 1048576 bytes" in failure.reason
    assert peak < 8 * 1024 * 1024, f"{peak} bytes held"
    assert took < 3


@pytest.mark.parametrize("behaviour", [trickling_body, trickling_headers], ids=["body", "headers"])
def test_a_trickling_answer_ends_at_the_sink_s_timeout(behaviour: Any) -> None:
    with HostileServer(behaviour()) as receiver:
        failure, took, peak = _bounded_send(receiver.url + "/hook", timeout=1.0)
    assert failure is not None and not failure.permanent
    assert "no complete answer within 1 s" in failure.reason
    assert 0.9 < took < 2.5
    assert peak < 8 * 1024 * 1024


def test_a_small_answer_still_delivers_and_secrets_stay_out_of_reasons() -> None:
    with HostileServer(answer(200, b'{"ok": true}')) as receiver:
        failure, _, _ = _bounded_send(receiver.url + "/hook", timeout=5)
    assert failure is None
    with HostileServer(answer(400, SECRETS["password"].encode())) as receiver:
        failure, _, _ = _bounded_send(receiver.url + "/hook", timeout=5)
    assert failure is not None and failure.permanent
    assert all(secret not in failure.reason for secret in SECRETS.values())
