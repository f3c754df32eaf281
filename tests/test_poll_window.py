"""Polling against the sandboxes: the frozen window, ties, rows moving mid-cycle, lag, clocks.

Every test drives a real poller (the same planner, transport and SQLite outbox as
``sagesql poll``) over real HTTP, and checks what reached the JSON lines sink: every
change once, none lost.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import requests
from test_poll_helpers import (
    accounting_keys,
    frozen_at,
    jsonl_events,
    poll_config,
    request_log,
    sage200_keys,
    sage200_scope,
    seconds,
    session,
    touch_accounting,
    touch_sage200,
    utc,
)

from sagesql.activities.polling.config import TableConfig
from sagesql.engine.values import datetime_text

T0 = utc(2026, 1, 1, 12, 0, 0)
T1 = T0 + seconds(10)


def _cycle(s: Any) -> list[Any]:
    results = s.poller.cycle()
    s.deliverer.deliver_due()
    assert not [r.error for r in results if r.error]
    return results


def _no_repeats(events: list[dict[str, Any]]) -> None:
    seen = Counter((e["objectId"], e["eventType"] == "DELETED", e["eventDate"]) for e in events)
    repeated = [k for k, n in seen.items() if n > 1]
    assert not repeated, repeated[:5]


def _window_responses(s: Any, marker: str, at: int, action: Any) -> None:
    """Run ``action`` right after the ``at``-th answer whose URL holds ``marker``."""
    count = {"n": 0}

    def hook(response: Any, *args: Any, **kwargs: Any) -> None:
        if response.status_code == 200 and marker in requests.utils.unquote(response.url):
            count["n"] += 1
            if count["n"] == at:
                action()

    s.connection.transport.session.hooks["response"].append(hook)


def test_hundreds_of_rows_in_one_second_across_chunks_and_cycles(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_200", rows=400, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    config = poll_config(
        tmp_path, ["customers"], page_size=50, delay=seconds(0), lookback=seconds(120)
    )
    s = session(sbx, config)
    try:
        _cycle(s)  # the first cycle starts at the server's now
        keys = sage200_keys(sbx, "customers")
        assert len(keys) == 400
        touch_sage200(sbx, "customers", keys[:250], T1)
        frozen_at(sbx, T1)
        first = _cycle(s)
        assert first[0].kinds["UPDATED"] == 250
        assert first[0].requests >= 6  # keyset chunks of 50: one request each
        # 150 more rows get the same second after the watermark reached it.
        touch_sage200(sbx, "customers", keys[250:], T1)
        _cycle(s)
        frozen_at(sbx, T1 + seconds(5))
        _cycle(s)
        events = jsonl_events(tmp_path / "events.jsonl")
        _no_repeats(events)
        stamp = datetime_text(T1, "sage_200")
        assert sorted(int(e["objectId"]) for e in events) == sorted(keys)
        assert {e["eventDate"] for e in events} == {stamp}
    finally:
        s.close()


def test_accounting_paged_window_with_hundreds_of_rows_in_one_second(
    start_sandbox, tmp_path
) -> None:
    sbx = start_sandbox("sage_accounting", rows=450, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    config = poll_config(tmp_path, ["contacts"], delay=seconds(0))
    s = session(sbx, config)
    try:
        _cycle(s)
        keys = accounting_keys(sbx, "contacts")
        assert len(keys) >= 450
        touch_accounting(sbx, "contacts", keys[:300], T1)
        frozen_at(sbx, T1)
        _cycle(s)
        touch_accounting(sbx, "contacts", keys[300:], T1)
        frozen_at(sbx, T1 + seconds(3))
        _cycle(s)
        _cycle(s)
        events = [e for e in jsonl_events(tmp_path / "events.jsonl") if e["eventType"] != "DELETED"]
        _no_repeats(events)
        assert sorted(e["objectId"] for e in events) == sorted(keys)
    finally:
        s.close()


def test_rows_changed_while_a_keyset_window_is_read(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_200", rows=300, rate_limit_per_minute=0)
    # The first cycle reads from T0, well after the change: a row it skipped would not
    # be read again by the lookback.
    reading = T1 + seconds(300)
    frozen_at(sbx, reading)
    config = poll_config(
        tmp_path, ["customers"], page_size=50, delay=seconds(0), lookback=seconds(60), start=T0
    )
    keys = sorted(sage200_keys(sbx, "customers"))
    touch_sage200(sbx, "customers", keys, T1)
    s = session(sbx, config, Pagesize="50")
    try:
        later = reading + seconds(1)
        moved_unread, moved_read = keys[-20:], keys[:5]

        def change_mid_read() -> None:
            # Rows leave the window while it is read: some already read, some not yet.
            touch_sage200(sbx, "customers", moved_unread + moved_read, later)

        _window_responses(s, "date_time_updated", 2, change_mid_read)
        _cycle(s)
        frozen_at(sbx, later + seconds(2))
        _cycle(s)
        events = jsonl_events(tmp_path / "events.jsonl")
        _no_repeats(events)
        latest = {int(e["objectId"]): e["eventDate"] for e in events}
        assert set(latest) == set(keys)  # none lost
        stamp_later = datetime_text(later, "sage_200")
        assert {k for k, d in latest.items() if d == stamp_later} == set(moved_unread + moved_read)
        # The rows read before they moved were emitted twice: two changes, two events.
        assert Counter(int(e["objectId"]) for e in events)[moved_read[0]] == 2
    finally:
        s.close()


def test_deletions_during_a_paged_read_hold_the_watermark(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_accounting", rows=450, rate_limit_per_minute=0)
    # The first cycle reads from T0, well after the change: a row it skipped would not
    # be read again by the lookback.
    reading = T1 + seconds(300)
    frozen_at(sbx, reading)
    config = poll_config(tmp_path, ["contacts"], delay=seconds(0), lookback=seconds(60), start=T0)
    keys = accounting_keys(sbx, "contacts")
    touch_accounting(sbx, "contacts", keys, T1)
    s = session(sbx, config)
    try:
        gone = keys[:10]  # on the first page (the API pages in insertion order)

        def delete_mid_read() -> None:
            for key in gone:
                requests.delete(
                    f"{sbx.base_url}/contacts/{key}",
                    headers={"Authorization": f"Bearer {sbx.token()['access_token']}"},
                    timeout=10,
                )

        _window_responses(s, "updated_or_created_since", 1, delete_mid_read)
        first = _cycle(s)
        assert "read again" in first[0].note
        frozen_at(sbx, reading + seconds(5))
        _cycle(s)
        _cycle(s)
        events = jsonl_events(tmp_path / "events.jsonl")
        _no_repeats(events)
        updated = {e["objectId"] for e in events if e["eventType"] != "DELETED"}
        deleted = {e["objectId"] for e in events if e["eventType"] == "DELETED"}
        assert set(keys) - set(gone) <= updated  # none of the shifted rows lost
        assert deleted == set(gone)
        status = s.store.load("test", "contacts")
        assert status.held_upper is None and status.watermark == "2026-01-01T12:05:15Z"
    finally:
        s.close()


def test_late_visible_rows_are_caught_by_the_lookback(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_200", rows=40, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    requests.post(sbx.url + "/_sandbox/lag", json={"seconds": 30}, timeout=10)
    config = poll_config(tmp_path, ["customers"], delay=seconds(1), lookback=seconds(90))
    s = session(sbx, config)
    try:
        _cycle(s)
        keys = sage200_keys(sbx, "customers")[:7]
        touch_sage200(sbx, "customers", keys, T1)
        for step in (5, 20, 35, 60):  # visible only from T1 + 30 s
            frozen_at(sbx, T1 + seconds(step))
            _cycle(s)
            if step < 30:
                assert jsonl_events(tmp_path / "events.jsonl") == []
        assert s.store.load("test", "customers").watermark > T1.isoformat()
        events = jsonl_events(tmp_path / "events.jsonl")
        _no_repeats(events)
        assert sorted(int(e["objectId"]) for e in events) == sorted(keys)
    finally:
        s.close()


@pytest.mark.parametrize("offset", [3600, -3600])
def test_server_clock_ahead_or_behind_the_pollers(start_sandbox, tmp_path, offset) -> None:
    import time
    from datetime import datetime, timezone

    sbx = start_sandbox("sage_crm", rows=30, rate_limit_per_minute=0)
    server = datetime.fromtimestamp(time.time() + offset, timezone.utc).replace(microsecond=0)
    frozen_at(sbx, server)
    config = poll_config(tmp_path, ["accounts"], delay=seconds(2))
    s = session(sbx, config)
    auth = ("admin", "sandbox")
    base = sbx.base_url
    try:
        _cycle(s)
        expected = []
        for step in range(1, 4):
            server += seconds(3)
            frozen_at(sbx, server)
            for key in (step, step + 10):
                answer = requests.patch(
                    f"{base}/Company('{key}')",
                    json={"comp_status": f"S{step}"},
                    auth=auth,
                    timeout=10,
                )
                assert answer.status_code == 200, answer.text
                expected.append((str(key), answer.json()["comp_updateddate"]))
            _cycle(s)
            state = s.store.load("test", "accounts")
            # The watermark never passes the server's time (minus the delay).
            assert state.watermark <= (server - seconds(2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        server += seconds(10)
        frozen_at(sbx, server)
        _cycle(s)
        events = jsonl_events(tmp_path / "events.jsonl")
        _no_repeats(events)
        got = {e["objectId"] for e in events}
        assert got == {k for k, _ in expected}
        assert len(events) == len(expected)
    finally:
        s.close()


def test_deletes_become_deleted_events(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_accounting", rows=20, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    config = poll_config(tmp_path, ["contacts"], delay=seconds(0))
    s = session(sbx, config)
    headers = {"Authorization": f"Bearer {sbx.token()['access_token']}"}
    try:
        _cycle(s)
        frozen_at(sbx, T1)
        victim = accounting_keys(sbx, "contacts")[3]
        assert (
            requests.delete(f"{sbx.base_url}/contacts/{victim}", headers=headers).status_code == 204
        )
        frozen_at(sbx, T1 + seconds(2))
        _cycle(s)
        _cycle(s)
        events = jsonl_events(tmp_path / "events.jsonl")
        assert [(e["eventType"], e["objectId"]) for e in events] == [("DELETED", victim)]
        assert events[0]["eventDate"] == "2026-01-01T12:00:10Z"
    finally:
        s.close()


def test_crm_deletes_found_by_comparing_id_sets(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_crm", rows=30, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    entry = TableConfig(origin="t", name="accounts", table="accounts", compare_every=seconds(0))
    config = poll_config(tmp_path, [entry], delay=seconds(0))
    s = session(sbx, config)
    auth = ("admin", "sandbox")
    try:
        _cycle(s)  # baseline of the ids
        frozen_at(sbx, T1)
        answer = requests.delete(f"{sbx.base_url}/Company('7')", auth=auth)
        assert answer.status_code == 204
        made = requests.post(f"{sbx.base_url}/Company", json={"comp_name": "Brief"}, auth=auth)
        new = str(made.json()["comp_companyid"])
        frozen_at(sbx, T1 + seconds(1))
        _cycle(s)
        # Created after one comparison and deleted before the next: still reported.
        frozen_at(sbx, T1 + seconds(2))
        assert requests.delete(f"{sbx.base_url}/Company('{new}')", auth=auth).status_code == 204
        frozen_at(sbx, T1 + seconds(3))
        _cycle(s)
        events = jsonl_events(tmp_path / "events.jsonl")
        assert [(e["eventType"], e["objectId"]) for e in events] == [
            ("CREATED", new),
            ("DELETED", "7"),
            ("DELETED", new),
        ]
    finally:
        s.close()


def test_created_and_updated_are_told_apart(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_accounting", rows=20, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    config = poll_config(tmp_path, ["contacts"], delay=seconds(0))
    s = session(sbx, config)
    headers = {"Authorization": f"Bearer {sbx.token()['access_token']}"}
    try:
        _cycle(s)
        frozen_at(sbx, T1)
        made = requests.post(
            f"{sbx.base_url}/contacts",
            json={"contact": {"name": "Polling Test Ltd", "contact_type_ids": ["CUSTOMER"]}},
            headers=headers,
        )
        assert made.status_code == 201, made.text
        other = accounting_keys(sbx, "contacts")[0]
        changed = requests.put(
            f"{sbx.base_url}/contacts/{other}",
            json={"contact": {"notes": "changed"}},
            headers=headers,
        )
        assert changed.status_code == 200, changed.text
        frozen_at(sbx, T1 + seconds(1))
        _cycle(s)
        kinds = {e["objectId"]: e["eventType"] for e in jsonl_events(tmp_path / "events.jsonl")}
        assert kinds == {made.json()["id"]: "CREATED", other: "UPDATED"}
    finally:
        s.close()


def test_a_filter_the_api_cannot_apply_exactly_keeps_keyset_chunks(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_200", rows=120, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    entry = TableConfig(origin="t", name="customers", table="customers", filter="name LIKE 'N%'")
    config = poll_config(tmp_path, [entry], page_size=25, delay=seconds(0))
    s = session(sbx, config)
    try:
        assert s.poller.windows["customers"].keyset == (True, True)
        _cycle(s)
        keys = sage200_keys(sbx, "customers")
        touch_sage200(sbx, "customers", keys, T1)
        frozen_at(sbx, T1 + seconds(1))
        result = _cycle(s)[0]
        assert result.requests >= 5  # 120 rows in chunks of 25
        events = jsonl_events(tmp_path / "events.jsonl")
        scope = sage200_scope(sbx)
        expected = {
            str(k)
            for k in keys
            if sbx.app.store.get(scope, "customers", k)["name"].upper().startswith("N")
        }
        assert expected and {e["objectId"] for e in events} == expected
        assert all(e["raw"]["name"].upper().startswith("N") for e in events)
    finally:
        s.close()


def test_tables_without_an_updated_column_are_compared_by_snapshot(
    start_sandbox, tmp_path, caplog
) -> None:
    sbx = start_sandbox("sage_200", rows=10, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    config = poll_config(tmp_path, ["product_views"])
    with caplog.at_level("WARNING", logger="sagesql.poll"):
        s = session(sbx, config)
    assert "every cycle reads every row" in caplog.text
    store, scope = sbx.app.store, sage200_scope(sbx)
    try:
        _cycle(s)
        assert jsonl_events(tmp_path / "events.jsonl") == []
        keys = sage200_keys(sbx, "product_views")
        record = store.get(scope, "product_views", keys[0])
        record["name"] = "Renamed"
        store.replace(scope, "product_views", str(keys[0]), record)
        store.remove(scope, "product_views", str(keys[1]))
        fresh = dict(record, id=99999, name="New")
        store.insert(scope, "product_views", fresh)
        frozen_at(sbx, T1)
        _cycle(s)
        _cycle(s)
        got = [(e["eventType"], e["objectId"]) for e in jsonl_events(tmp_path / "events.jsonl")]
        assert sorted(got) == sorted(
            [("UPDATED", str(keys[0])), ("DELETED", str(keys[1])), ("CREATED", "99999")]
        )
    finally:
        s.close()


@pytest.mark.parametrize(
    ("product", "table", "idle_requests", "compares"),
    [
        ("sage_accounting", "customers", 2, False),  # the window and deleted_since
        ("sage_200", "customers", 1, True),
        ("sage_crm", "accounts", 1, True),
    ],
)
def test_an_idle_cycle_makes_one_request_per_table(
    start_sandbox, tmp_path, product, table, idle_requests, compares
) -> None:
    sbx = start_sandbox(product, rows=20, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    s = session(sbx, poll_config(tmp_path, [table], delay=seconds(0)))
    try:
        _cycle(s)  # cycle 1: the start (and the first id set)
        frozen_at(sbx, T1)
        _cycle(s)  # warm: first window after the start
        for cycle in (3, 4, 5):
            frozen_at(sbx, T1 + seconds(cycle - 2))  # small steps: no clock jump to re-read
            request_log(sbx, clear=True)
            _cycle(s)
            api = [r for r in request_log(sbx) if not r["path"].startswith("/oauth")]
            # Without a deletion feed, every third cycle also reads the ids: one page.
            extra = 1 if compares and cycle == 4 else 0
            assert len(api) == idle_requests + extra, api
        assert jsonl_events(tmp_path / "events.jsonl") == []
    finally:
        s.close()
