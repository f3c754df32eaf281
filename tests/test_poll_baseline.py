"""Where polling begins, and how often id sets are compared, against the sandboxes.

A poller started at the server's now (no ``start``) sets a baseline: its lookback
reaches behind it in later cycles, but nothing changed (or deleted) at or before it is
ever emitted, while rows changed after it that only became visible late still are.
Tables without a deletion feed compare their id sets every third cycle by default,
reading keys only in the API's largest pages.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import requests
from test_poll_helpers import (
    accounting_keys,
    frozen_at,
    jsonl_events,
    poll_config,
    request_log,
    sage200_keys,
    seconds,
    session,
    touch_sage200,
    utc,
)

from sagesql.activities.polling.config import TableConfig

T0 = utc(2026, 6, 1, 9, 0, 0)


def _cycle(s: Any) -> None:
    results = s.poller.cycle()
    s.deliverer.deliver_due()
    assert not [r.error for r in results if r.error]


def test_changes_before_the_baseline_are_never_emitted(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_200", rows=30, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    config = poll_config(tmp_path, ["customers"], delay=seconds(0), lookback=seconds(120))
    s = session(sbx, config)
    try:
        _cycle(s)  # the baseline: T0
        assert s.store.load("test", "customers").baseline == "2026-06-01T09:00:00Z"
        keys = sage200_keys(sbx, "customers")
        # Committed late: stamped before the baseline, visible only after it.
        touch_sage200(sbx, "customers", keys[:4], T0 - seconds(30))
        touch_sage200(sbx, "customers", keys[4:5], T0)  # at the baseline: before it
        requests.post(sbx.url + "/_sandbox/lag", json={"seconds": 30}, timeout=10)
        touch_sage200(sbx, "customers", keys[5:7], T0 + seconds(5))  # visible at T0 + 35 s
        for step in (10, 40, 50):
            frozen_at(sbx, T0 + seconds(step))
            _cycle(s)
        events = jsonl_events(tmp_path / "events.jsonl")
        assert sorted(int(e["objectId"]) for e in events) == sorted(keys[5:7])
    finally:
        s.close()


def test_deletions_before_the_baseline_are_never_emitted(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_accounting", rows=20, rate_limit_per_minute=0)
    headers = {"Authorization": f"Bearer {sbx.token()['access_token']}"}
    keys = accounting_keys(sbx, "contacts")
    frozen_at(sbx, T0 - seconds(30))
    assert requests.delete(f"{sbx.base_url}/contacts/{keys[1]}", headers=headers).ok
    frozen_at(sbx, T0)
    s = session(sbx, poll_config(tmp_path, ["contacts"], delay=seconds(0)))
    try:
        _cycle(s)  # the baseline
        frozen_at(sbx, T0 + seconds(5))
        assert requests.delete(f"{sbx.base_url}/contacts/{keys[2]}", headers=headers).ok
        frozen_at(sbx, T0 + seconds(10))
        _cycle(s)
        events = jsonl_events(tmp_path / "events.jsonl")
        assert [(e["eventType"], e["objectId"]) for e in events] == [("DELETED", keys[2])]
    finally:
        s.close()


def _id_reads(sbx: Any) -> list[dict[str, list[str]]]:
    queries = [parse_qs(r["query"]) for r in request_log(sbx) if r["path"].endswith("/customers")]
    # Not the first cycle's one-key read that learns the server's time ($top=1).
    return [q for q in queries if "$select" in q and q.get("$orderby") == ["id asc"]]


def test_id_sets_are_compared_every_third_cycle_reading_ids_only(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_200", rows=30, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    # A small page_size is for whole records: the ids still come 5,000 a page.
    config = poll_config(tmp_path, ["customers"], delay=seconds(0), page_size=10)
    s = session(sbx, config)
    compared = []
    try:
        for cycle in range(1, 8):
            frozen_at(sbx, T0 + seconds(cycle))
            request_log(sbx, clear=True)
            _cycle(s)
            reads = _id_reads(sbx)
            if reads:
                compared.append(cycle)
                (query,) = reads
                assert query["$select"] == ["id"] and query["$top"] == ["5000"]
        assert compared == [1, 4, 7]
        state = s.store.load("test", "customers")
        assert state.compared_cycle == 7 and state.cycles == 7
    finally:
        s.close()


def test_an_explicit_compare_every_is_kept(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_200", rows=30, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    entry = TableConfig(
        origin="t", name="customers", table="customers", compare_every=seconds(3600)
    )
    s = session(sbx, poll_config(tmp_path, [entry], delay=seconds(0)))
    compared = []
    try:
        for cycle, at in enumerate((0, 1, 2, 3, 4, 3601), start=1):
            frozen_at(sbx, T0 + seconds(at))
            request_log(sbx, clear=True)
            _cycle(s)
            if _id_reads(sbx):
                compared.append(cycle)
        assert compared == [1, 6]
    finally:
        s.close()


def test_a_state_file_from_before_these_columns_is_read_and_upgraded(tmp_path) -> None:
    """``poll status`` (read-only) on a file an earlier sagesql wrote adds the columns."""
    import sqlite3

    from sagesql.activities.polling import runner
    from sagesql.activities.polling.sqlite_state import SQLiteStateStore

    config = poll_config(tmp_path, ["customers"])
    SQLiteStateStore(config.state).close()
    with sqlite3.connect(config.state) as db:
        for column in ("baseline", "compared_cycle"):
            db.execute(f"ALTER TABLE poll_tables DROP COLUMN {column}")
        db.execute(
            "INSERT INTO poll_tables (instance, name, watermark, cycles, events) "
            "VALUES ('test', 'customers', '2026-01-01T00:00:00Z', 3, 0)"
        )
    db.close()
    (row,) = runner.status(config)
    assert row["watermark"] == "2026-01-01T00:00:00Z" and row["cycles"] == 3
    store = SQLiteStateStore(config.state)
    try:
        state = store.load("test", "customers")
        assert state.baseline is None and state.compared_cycle is None
    finally:
        store.close()
