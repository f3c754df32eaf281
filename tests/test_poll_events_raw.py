"""Events as the platforms send them: ``raw`` is the record as the API returned it.

The engine hands the record back through a column no table lists (``sagesql_record``),
filled only when a statement names it; the poller's window names it. Every test runs a
real poller (or statement) against a sandbox over HTTP and compares ``raw`` with what
the API itself answers for the same record.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from test_poll_helpers import (
    Receiver,
    accounting_keys,
    frozen_at,
    jsonl_events,
    poll_config,
    request_log,
    seconds,
    session,
    touch_accounting,
    touch_sage200,
    utc,
)

from sagesql.activities.clients import connected
from sagesql.activities.polling.config import SinkConfig, TableConfig
from sagesql.engine.names import RECORD_COLUMN
from sagesql.engine.pipeline import run
from sagesql.errors import UnknownColumnError

T0 = utc(2026, 4, 1, 8, 0, 0)
T1 = T0 + seconds(20)


def _cycle(s: Any) -> None:
    results = s.poller.cycle()
    s.deliverer.deliver_due()
    assert not [r.error for r in results if r.error]


def _rows(sbx: Any, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with connected(**sbx.client_properties()) as client:
        result = run(client, sql)
        try:
            return [c.name for c in result.columns], list(result)
        finally:
            result.close()


def _bearer(sbx: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {sbx.token()['access_token']}"}


def _sage200_session(sbx: Any) -> requests.Session:
    s = requests.Session()
    s.headers.update(_bearer(sbx))
    site = s.get(sbx.base_url + "/sites", timeout=10).json()[0]
    s.headers.update({"X-Site": str(site["site_id"]), "X-Company": str(site["company_id"])})
    return s


def _api_queries(sbx: Any, path_end: str) -> list[dict[str, list[str]]]:
    return [
        parse_qs(r["query"])
        for r in request_log(sbx)
        if r["path"].endswith(path_end) and r["method"] == "GET"
    ]


# -- the engine's record column ---------------------------------------------------------


def test_the_record_column_is_the_api_s_record_and_only_when_named(start_sandbox) -> None:
    sbx = start_sandbox("sage_accounting", rows=10, rate_limit_per_minute=0)

    def listed(attributes: str) -> dict[str, Any]:
        answer = requests.get(
            f"{sbx.base_url}/contacts?attributes={attributes}&items_per_page=200",
            headers=_bearer(sbx),
        )
        return {r["id"]: r for r in answer.json()["$items"]}

    # Alone: the whole record, as the list sent it ($path, nested main_address, links).
    request_log(sbx, clear=True)
    columns, rows = _rows(sbx, "SELECT sagesql_record FROM contacts")
    assert columns == [RECORD_COLUMN]
    (query,) = _api_queries(sbx, "/contacts")
    assert query["attributes"] == ["all"]
    whole = listed("all")
    assert sorted(json.loads(t)["id"] for (t,) in rows) == sorted(whole)
    assert all(json.loads(t) == whole[json.loads(t)["id"]] for (t,) in rows)
    # Beside other columns: the fields they need, as the API returned them.
    request_log(sbx, clear=True)
    _, rows = _rows(sbx, "SELECT id, name, sagesql_record FROM contacts")
    (query,) = _api_queries(sbx, "/contacts")
    assert query["attributes"] == ["name"]
    narrow = listed("name")
    assert all(json.loads(t) == narrow[key] for key, _, t in rows)
    assert set(json.loads(rows[0][2])) == {"id", "displayed_as", "$path", "name"}
    # A star never includes it; with a star, every field.
    star, _ = _rows(sbx, "SELECT * FROM contacts LIMIT 1")
    assert RECORD_COLUMN not in star and "path" in star
    request_log(sbx, clear=True)
    both, _ = _rows(sbx, "SELECT *, sagesql_record FROM contacts LIMIT 1")
    assert both == [*star, RECORD_COLUMN]
    (query,) = _api_queries(sbx, "/contacts")
    assert query["attributes"] == ["all"]
    # A line table's record is the line, as its document's list sent it.
    _, lines = _rows(sbx, "SELECT sales_invoice_id, sagesql_record FROM sales_invoice_lines")
    invoices = requests.get(
        f"{sbx.base_url}/sales_invoices?attributes=invoice_lines&items_per_page=200",
        headers=_bearer(sbx),
    ).json()["$items"]
    expected = [(i["id"], line) for i in invoices for line in i["invoice_lines"]]
    assert [(k, json.loads(t)) for k, t in lines] == expected
    with pytest.raises(UnknownColumnError, match="sagesql_record"):
        _rows(sbx, "SELECT sagesql_recrod FROM contacts")


def test_the_record_column_costs_nothing_unless_named(start_sandbox) -> None:
    sbx = start_sandbox("sage_200", rows=10, rate_limit_per_minute=0)
    api = _sage200_session(sbx)
    request_log(sbx, clear=True)
    _rows(sbx, "SELECT id FROM customers")
    (plain,) = _api_queries(sbx, "/customers")
    assert plain["$select"] == ["id"]  # projection as before
    request_log(sbx, clear=True)
    _, rows = _rows(sbx, "SELECT r.id, r.name, r.sagesql_record FROM customers r WHERE r.id < 4")
    (narrow,) = _api_queries(sbx, "/customers")
    assert narrow["$select"] == ["id,name"]  # the record: what the API sent for them
    sent = {r["id"]: r for r in api.get(sbx.base_url + "/customers?$select=id,name").json()}
    assert [json.loads(t) for _, _, t in rows] == [sent[k] for k, _, _ in rows]
    request_log(sbx, clear=True)
    _, rows = _rows(sbx, "SELECT sagesql_record FROM customers WHERE id < 4")
    (whole,) = _api_queries(sbx, "/customers")
    assert "$select" not in whole  # alone: the whole record
    every = {r["id"]: r for r in api.get(sbx.base_url + "/customers").json()}
    assert [json.loads(t) for (t,) in rows] == [every[k] for k in (1, 2, 3)]
    # With the key alone it is still the whole record; through a derived table, too (its
    # star carries the column the inner query named).
    columns, rows = _rows(
        sbx, "SELECT * FROM (SELECT id, sagesql_record FROM customers) AS t WHERE id = 2"
    )
    assert columns == ["id", RECORD_COLUMN] and json.loads(rows[0][1]) == every[2]


# -- events -------------------------------------------------------------------------------


def test_accounting_events_carry_the_list_record_and_the_tombstone(start_sandbox, tmp_path):
    sbx = start_sandbox("sage_accounting", rows=20, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    receiver = Receiver()
    hook = SinkConfig(kind="webhook", name="hook", url=receiver.url)
    lines = SinkConfig(kind="jsonl", name="jsonl", path=tmp_path / "events.jsonl")
    config = poll_config(
        tmp_path, ["contacts", "bank_accounts"], sinks=[hook, lines], delay=seconds(0)
    )
    s = session(sbx, config)
    try:
        _cycle(s)
        keys = accounting_keys(sbx, "contacts")
        changed, gone = keys[2], keys[5]
        touch_accounting(sbx, "contacts", [changed], T1)
        banks = accounting_keys(sbx, "bank_accounts")
        touch_accounting(sbx, "bank_accounts", banks[:1], T1)
        frozen_at(sbx, T1)
        answer = requests.delete(f"{sbx.base_url}/contacts/{gone}", headers=_bearer(sbx))
        assert answer.status_code == 204
        frozen_at(sbx, T1 + seconds(2))
        _cycle(s)
        events = {(e["objectType"], e["eventType"]): e for e in jsonl_events(lines.path)}
        listed = requests.get(
            f"{sbx.base_url}/contacts?attributes=all&items_per_page=200", headers=_bearer(sbx)
        ).json()["$items"]
        record = next(r for r in listed if r["id"] == changed)
        raw = events[("contacts", "UPDATED")]["raw"]
        assert raw == record
        assert raw["$path"] == f"/contacts/{changed}" and "path" not in raw
        assert isinstance(raw["main_address"], dict) and "address_line_1" in raw["main_address"]
        # A bank account's main_address is a link in lists: raw keeps the link as sent.
        bank = events[("bank_accounts", "UPDATED")]["raw"]
        assert set(bank["main_address"]) == {"id", "displayed_as", "$path"}
        tombstones = requests.get(
            f"{sbx.base_url}/contacts?deleted_since={T0.isoformat()}", headers=_bearer(sbx)
        ).json()["$items"]
        deleted = events[("contacts", "DELETED")]
        assert deleted["objectId"] == gone
        assert deleted["raw"] == next(t for t in tombstones if t["id"] == gone)
        # The webhook's notification: raw per objectType, the same records.
        messages = receiver.messages()
        sent = [r for m in messages for r in m["raw"].get("contacts", [])]
        assert record in sent and deleted["raw"] in sent
    finally:
        s.close()
        receiver.stop()


def test_sage200_events_carry_its_record_and_a_deletion_its_key(start_sandbox, tmp_path):
    sbx = start_sandbox("sage_200", rows=20, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    config = poll_config(tmp_path, ["customers"], delay=seconds(0))
    s = session(sbx, config)
    api = _sage200_session(sbx)
    try:
        _cycle(s)  # the start, and the first id set
        touch_sage200(sbx, "customers", [3], T1)
        assert api.delete(f"{sbx.base_url}/customers/7").status_code == 204
        for step in (1, 2, 3):  # the id set is compared again on the 4th cycle
            frozen_at(sbx, T1 + seconds(step))
            _cycle(s)
        events = jsonl_events(tmp_path / "events.jsonl")
        assert [(e["eventType"], e["objectId"]) for e in events] == [
            ("UPDATED", "3"),
            ("DELETED", "7"),
        ]
        record = api.get(f"{sbx.base_url}/customers?$filter=id eq 3").json()[0]
        assert events[0]["raw"] == record and "date_time_updated" in record
        assert events[1]["raw"] == {"id": 7}  # the key as Sage 200 spells it (a number)
    finally:
        s.close()


def test_crm_events_carry_its_record_and_a_deletion_its_key(start_sandbox, tmp_path):
    sbx = start_sandbox("sage_crm", rows=20, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    entry = TableConfig(origin="t", name="accounts", table="accounts", compare_every=seconds(0))
    s = session(sbx, poll_config(tmp_path, [entry], delay=seconds(0)))
    auth = ("admin", "sandbox")
    try:
        _cycle(s)
        frozen_at(sbx, T1)
        changed = requests.patch(
            f"{sbx.base_url}/Company('4')", json={"comp_status": "Active"}, auth=auth
        )
        assert changed.status_code == 200
        assert requests.delete(f"{sbx.base_url}/Company('9')", auth=auth).status_code == 204
        frozen_at(sbx, T1 + seconds(2))
        _cycle(s)
        events = jsonl_events(tmp_path / "events.jsonl")
        assert [(e["eventType"], e["objectId"]) for e in events] == [
            ("UPDATED", "4"),
            ("DELETED", "9"),
        ]
        listed = requests.get(
            f"{sbx.base_url}/Company?where=comp_companyid eq 4", auth=auth
        ).json()["$resources"]
        assert events[0]["raw"] == listed[0] and events[0]["raw"]["$key"] == "4"
        assert events[1]["raw"] == {"comp_companyid": 9}
    finally:
        s.close()
