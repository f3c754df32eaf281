"""Benchmark: writing 1,000 contacts (Create activity or one INSERT), by MaxConcurrency.

Run: python bench/write_contacts.py [--rows 1000] [--latency 25] [--concurrency 1,4,8,16]
                                    [--sql]

For each MaxConcurrency a fresh Accounting sandbox (rate limit off, each answer delayed
by ``--latency`` ms to stand for the network) takes ROWS creates; then the sandbox's
request log is checked: POST requests made (must be ROWS), bodies sent more than once
(must be 0), results in input order. Prints the elapsed time and rows per second.
``--sql`` writes the same rows with one multi-row INSERT statement instead.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from typing import Any

from sagesql.activities import Create
from sagesql.connector.client import SageClient
from sagesql.connector.properties import validate
from sagesql.engine import pipeline
from sagesql.sandbox.config import Faults, SandboxConfig
from sagesql.sandbox.runner import Sandbox


def records(rows: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"Bench Contact {n:05d}",
            "contact_types": ["CUSTOMER" if n % 3 else "VENDOR"],
            "reference": f"BC{n:05d}",
            "credit_limit": 1000 + n,
            "main_address_city": "Leeds",
        }
        for n in range(rows)
    ]


def insert_statement(rows: list[dict[str, Any]]) -> tuple[str, list[Any]]:
    names = list(rows[0])
    holes = "(" + ", ".join("?" for _ in names) + ")"
    params: list[Any] = []
    for row in rows:
        params += [json.dumps(row[n]) if n == "contact_types" else row[n] for n in names]
    sql = f"INSERT INTO contacts ({', '.join(names)}) VALUES " + ", ".join([holes] * len(rows))
    return sql, params


def one_run(rows: int, concurrency: int, latency: int, sql: bool) -> dict[str, Any]:
    config = SandboxConfig(
        product="sage_accounting",
        rows=10,
        rate_limit_per_minute=0,
        faults=Faults(latency_ms=latency),
    )
    with Sandbox("sage_accounting", config) as sbx:
        props = {
            **sbx.connection_properties(),
            "OAuthSettingsLocation": f"memory://bench-{sbx.server.port}",
            "RateLimit": "0",
            "MaxConcurrency": str(concurrency),
        }
        data = records(rows)
        with SageClient(validate(props)) as conn:
            sbx.app.requests.clear()
            started = time.perf_counter()
            if sql:
                statement, params = insert_statement(data)
                table = list(pipeline.run(conn, statement, params))
                statuses = [row[2] for row in table]
                order_ok = [row[0] for row in table] == list(range(1, rows + 1))
            else:
                results = Create(conn, "contacts")(data)
                statuses = [r.status for r in results]
                order_ok = [r.index for r in results] == list(range(rows)) and all(
                    r.record["name"] == d["name"] for r, d in zip(results, data, strict=True)
                )
            elapsed = time.perf_counter() - started
            sent_by_client = conn.transport.sent
        posts = [e for e in sbx.app.requests if e["method"] == "POST"]
        bodies = Counter(e["body"]["contact"]["reference"] for e in posts)
    return {
        "concurrency": concurrency,
        "elapsed": elapsed,
        "per_second": rows / elapsed,
        "created": statuses.count("created"),
        "posts": len(posts),
        "repeated": sum(n - 1 for n in bodies.values() if n > 1),
        "distinct": len(bodies),
        "client_requests": sent_by_client,
        "order_ok": order_ok,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--latency", type=int, default=25, help="ms added to each answer")
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--sql", action="store_true", help="one INSERT statement instead")
    args = parser.parse_args()
    how = "INSERT ... VALUES" if args.sql else "Create activity"
    print(f"{args.rows} contacts, {how}, {args.latency} ms per answer")
    print(
        f"{'MaxConcurrency':>14} {'seconds':>8} {'rows/s':>8} {'created':>8} {'POSTs':>6} "
        f"{'repeated':>8} {'requests':>8} {'in order':>8}"
    )
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        r = one_run(args.rows, concurrency, args.latency, args.sql)
        print(
            f"{r['concurrency']:>14} {r['elapsed']:>8.2f} {r['per_second']:>8.0f} "
            f"{r['created']:>8} {r['posts']:>6} {r['repeated']:>8} {r['client_requests']:>8} "
            f"{'yes' if r['order_ok'] else 'NO':>8}"
        )
        assert r["posts"] == args.rows and r["repeated"] == 0 and r["distinct"] == args.rows


if __name__ == "__main__":
    main()
