"""Benchmark: 10,000 changes polled in one cycle and delivered to a local webhook receiver.

Run: python bench/poll_throughput.py [--changes 10000] [--product sage_200 ...]. For each
product a sandbox with that many rows of the polled table is started (its clock
frozen), the poller takes its start, every row is changed in the same second, and the
clock jumps ahead (the cycle's first read, frozen by the poller's stale estimate of the
server's time, sees the jump in the Date header and reads again). Then one cycle is
timed (the window read through the planner and the transport, 10,000 events written to
the SQLite outbox with their marks and the watermark), and the delivery of the outbox to
a local receiver (werkzeug, over HTTP, one POST per message of ten events) until the
receiver holds every event. The target is under 30 s from the start of the cycle to the
last event received.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests
from werkzeug.wrappers import Request, Response

from sagesql.activities.polling.config import PollConfig, SinkConfig, TableConfig
from sagesql.activities.polling.runner import open_session
from sagesql.connector.sources import load_settings
from sagesql.engine.values import datetime_text
from sagesql.sandbox.clock import iso, sortable
from sagesql.sandbox.config import SandboxConfig
from sagesql.sandbox.runner import Sandbox
from sagesql.sandbox.server import RunningServer

TARGET_S = 30.0
TABLES = {"sage_200": "customers", "sage_accounting": "contacts", "sage_crm": "accounts"}
T0 = datetime(2026, 6, 1, 9, 0, 0, tzinfo=timezone.utc)


class Receiver:
    """Counts the events of the notifications POSTed to it."""

    def __init__(self) -> None:
        self.events = 0
        self.messages = 0
        self.lock = threading.Lock()
        self.server = RunningServer(self.app, "127.0.0.1", 0, quiet=True)
        self.server.start()

    def app(self, environ: dict[str, Any], start_response: Any) -> Any:
        body = json.loads(Request(environ).get_data())
        with self.lock:
            self.messages += 1
            self.events += len(body["message"]["events"])
        return Response("", status=200)(environ, start_response)


def change_everything(sbx: Sandbox, product: str, when: datetime) -> int:
    """Change every row of the polled table in the store, as the API would, at ``when``."""
    app: Any = sbx.app
    store = app.store
    if product == "sage_200":
        scope, resource, field = str(app.demo.companies[0].id), "customers", "date_time_updated"
        text = datetime_text(when, "sage_200")
    elif product == "sage_accounting":
        scope, resource, field, text = app.lead, "contacts", "updated_at", iso(when)
    else:
        from sagesql.sandbox.crm_data import local_text

        scope, resource, field = "crm", "Company", "comp_updateddate"
        text = local_text(when, app.local)
    rows = store.select(scope, resource, columns="key, data")
    with store.transaction():
        for key, data in rows:
            record = json.loads(data)
            record[field] = text
            store.replace(scope, resource, key, record, updated=sortable(when))
    if product == "sage_accounting":
        app.pages.changed(scope, resource)
    return len(rows)


def run(product: str, changes: int, workdir: Path) -> dict[str, Any]:
    receiver = Receiver()
    config = SandboxConfig(product=product, rows=changes, rate_limit_per_minute=0)
    with Sandbox(product, config) as sbx:
        admin = sbx.url + "/_sandbox/clock"
        requests.post(admin, json={"set": iso(T0), "frozen": True}, timeout=10)
        props = sbx.connection_properties()
        if sbx.uses_oauth:
            props["OAuthSettingsLocation"] = f"memory://bench-{product}"
        props["RateLimit"] = "0"
        settings = load_settings(
            ";".join(f"{k}={v}" for k, v in props.items()), use_environment=False
        )
        table = TABLES[product]
        poll = PollConfig(
            source=None,
            instance_id="bench",
            instance_name="bench",
            state=workdir / f"{product}.sqlite",
            tables=(TableConfig(origin="bench", name=table, table=table, deletes="off"),),
            sinks=(SinkConfig(kind="webhook", name="webhook", url=receiver.server.url + "/"),),
        )
        poll = replace(poll, delay=timedelta(0))
        session = open_session(poll, settings)
        try:
            session.poller.cycle()  # the start
            when = T0 + timedelta(seconds=10)
            changed = change_everything(sbx, product, when)
            requests.post(admin, json={"set": iso(when + timedelta(seconds=5)), "frozen": True})
            began = time.perf_counter()
            (result,) = session.poller.cycle()
            polled = time.perf_counter() - began
            assert result.error is None, result.error
            while receiver.events < changed:
                session.deliverer.deliver_due()
                if time.perf_counter() - began > 300:
                    break
            total = time.perf_counter() - began
        finally:
            session.close()
            receiver.server.stop()
    return {
        "product": product,
        "table": table,
        "changes": changed,
        "events": result.events,
        "requests": result.requests,
        "messages": receiver.messages,
        "received": receiver.events,
        "poll_s": round(polled, 2),
        "deliver_s": round(total - polled, 2),
        "total_s": round(total, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--product", action="append", choices=sorted(TABLES))
    args = parser.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for product in args.product or ["sage_200", "sage_accounting", "sage_crm"]:
            numbers = run(product, args.changes, Path(tmp))
            good = numbers["received"] >= numbers["changes"] and numbers["total_s"] < TARGET_S
            ok = ok and good
            print(
                f"{numbers['product']:16} {numbers['table']:10} {numbers['changes']} changes: "
                f"cycle {numbers['poll_s']} s ({numbers['requests']} requests), delivery "
                f"{numbers['deliver_s']} s ({numbers['messages']} POSTs), total "
                f"{numbers['total_s']} s {'OK' if good else 'OVER TARGET'} "
                f"(target < {TARGET_S:.0f} s)"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
