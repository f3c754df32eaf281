"""Benchmark: sync's initial copy of 100,000 contacts, then the incremental cost after a 1% change.

Run: python bench/sync.py [--rows 100000] [--product sage_accounting] [--to URL]. A sandbox
with that many rows of the table (contacts; customers on Sage 200, companies on CRM)
is started without a rate limit. Timed, with the requests each sends:

1. the initial copy into a new SQLite file (or --to, e.g. a PostgreSQL database);
2. an idle run (nothing changed: one request per table, two where deletions are polled);
3. a run after 1% of the rows changed (in the store, as the API would, at the
   server's now) and 0.1% were deleted.

With --scan, a plain ``SELECT *`` of the table is timed first, for comparison.

The replica's row count is checked against the API's after each run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from sagesql.connector.client import SageClient
from sagesql.connector.sources import load_settings
from sagesql.engine.values import datetime_text
from sagesql.replication.runs import replicate
from sagesql.sandbox.clock import iso, sortable
from sagesql.sandbox.config import SandboxConfig
from sagesql.sandbox.runner import Sandbox

TABLES = {"sage_accounting": "contacts", "sage_200": "customers", "sage_crm": "company"}


def _client(sbx: Sandbox) -> SageClient:
    props = sbx.connection_properties()
    if sbx.uses_oauth:
        props["OAuthSettingsLocation"] = f"memory://bench-{sbx.server.port}"
    props["RateLimit"] = "0"
    text = ";".join(f"{k}={v}" for k, v in props.items())
    return SageClient(load_settings(text, use_environment=False))


def _scope_resource(sbx: Sandbox) -> tuple[str, str]:
    app: Any = sbx.app
    if sbx.product == "sage_accounting":
        return app.lead, "contacts"
    if sbx.product == "sage_200":
        return str(app.demo.companies[0].id), "customers"
    return "crm", "Company"


def change(sbx: Sandbox, share: float, delete_share: float) -> tuple[int, int]:
    """Change ``share`` of the rows and delete ``delete_share`` of them, at the server's now."""
    app: Any = sbx.app
    store = app.store
    scope, resource = _scope_resource(sbx)
    when = app.clock.now().replace(microsecond=0)
    rows = store.select(scope, resource, columns="key, data")
    step = max(1, round(1 / share))
    changed = rows[::step]
    with store.transaction():
        for key, data in changed:
            record = json.loads(data)
            if sbx.product == "sage_accounting":
                record["updated_at"] = iso(when)
                record["notes"] = f"changed at {iso(when)}"
            elif sbx.product == "sage_200":
                record["date_time_updated"] = datetime_text(when, "sage_200")
                record["name"] = f"changed {key}"
            else:
                from sagesql.sandbox.crm_data import local_text

                record["comp_updateddate"] = local_text(when, app.local)
                record["comp_name"] = f"changed {key}"
            store.replace(scope, resource, str(key), record, updated=sortable(when))
    if hasattr(app, "pages"):
        app.pages.changed(scope, resource)
    # Deletions through the API, as a user would make them.
    from sagesql.engine.pipeline import run
    from sagesql.schemas.catalog import default_catalog

    key = default_catalog().table(TABLES[sbx.product], sbx.product).key
    gone = [k for k, _ in rows[1 :: max(1, round(1 / delete_share))]] if delete_share else []
    deleted = 0
    with _client(sbx) as client:
        for k in gone:
            value: Any = int(k) if sbx.product != "sage_accounting" else k
            result = run(client, f"DELETE FROM {TABLES[sbx.product]} WHERE {key} = ?", [value])
            deleted += sum(1 for _ in result)
    return len(changed), deleted


def timed(sbx: Sandbox, url: str, table: str) -> tuple[float, int, int]:
    with _client(sbx) as client:
        sent = client.transport.sent
        start = time.perf_counter()
        outcomes = replicate(client, url, [table])
        seconds = time.perf_counter() - start
        requests = client.transport.sent - sent
    assert all(o.complete for o in outcomes), [o.summary() for o in outcomes]
    return seconds, requests, outcomes[0].rows


def api_count(sbx: Sandbox, table: str) -> int:
    from sagesql.engine.pipeline import run

    with _client(sbx) as client:
        return int(next(iter(run(client, f"SELECT count(*) FROM {table}")))[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--product", default="sage_accounting", choices=sorted(TABLES))
    parser.add_argument("--to", default=None, help="the replica (default: a new SQLite file)")
    parser.add_argument("--scan", action="store_true", help="also time a plain SELECT *")
    args = parser.parse_args()
    table = TABLES[args.product]
    config = SandboxConfig(product=args.product, rows=args.rows, rate_limit_per_minute=0)
    with tempfile.TemporaryDirectory() as tmp, Sandbox(args.product, config) as sbx:
        url = args.to or f"sqlite:///{Path(tmp) / 'replica.sqlite'}"
        started = time.perf_counter()
        truth = api_count(sbx, table)  # seeds the sandbox's rows before the timing
        seeded = time.perf_counter() - started
        print(f"{args.product} {table}: {truth:,} rows (sandbox seeded in {seeded:.1f} s)")
        if args.scan:
            from sagesql.engine.pipeline import run

            with _client(sbx) as c:
                start = time.perf_counter()
                n = sum(1 for _ in run(c, f"SELECT * FROM {table}"))
                scan = time.perf_counter() - start
            print(f"plain scan (SELECT *): {scan:6.1f} s  {n / scan:9,.0f} rows/s (for comparison)")
        seconds, requests, rows = timed(sbx, url, table)
        assert rows == truth, (rows, truth)
        print(f"initial copy:        {seconds:8.1f} s  {requests:6d} requests  "
              f"{rows / seconds:9,.0f} rows/s")  # fmt: skip
        seconds, requests, rows = timed(sbx, url, table)
        print(f"idle incremental:    {seconds:8.2f} s  {requests:6d} requests")
        changed, deleted = change(sbx, 0.01, 0.001)
        seconds, requests, rows = timed(sbx, url, table)
        truth = api_count(sbx, table)
        assert rows == truth, (rows, truth)
        print(f"after {changed:,} changed, {deleted:,} deleted: "
              f"{seconds:8.2f} s  {requests:6d} requests")  # fmt: skip
        print(f"replica rows {rows:,} == API rows {truth:,}")


if __name__ == "__main__":
    main()
