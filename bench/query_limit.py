"""Benchmark: LIMIT 10 on a 1,000,000-row table is one request, well under a second.

Run: python bench/query_limit.py [--rows 1000000] [--repeat 5]

An Accounting sandbox with ``rows`` contacts, its store kept in
bench/results/sage_accounting-<rows>.sqlite3 (seeding a million contacts takes a few
minutes, once; later runs reuse the file). Each statement runs on a fresh connection
to its last row; the script prints the requests the sandbox received and the elapsed
times (best and median of ``repeat`` runs). Target (issue 5): one request, well under
a second.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import requests

from sagesql.connector.client import SageClient
from sagesql.connector.properties import validate
from sagesql.engine.pipeline import run
from sagesql.sandbox.config import SandboxConfig
from sagesql.sandbox.runner import Sandbox

RESULTS = Path(__file__).resolve().parent / "results"
STATEMENTS = (
    "SELECT id, name FROM contacts LIMIT 10",
    "SELECT * FROM contacts LIMIT 10",
    "SELECT id, name FROM contacts WHERE updated_at >= '2025-06-01' LIMIT 10",
    "SELECT id, name FROM customers LIMIT 10 OFFSET 20",
)


def open_sandbox(rows: int) -> Sandbox:
    RESULTS.mkdir(exist_ok=True)
    db = RESULTS / f"sage_accounting-{rows}.sqlite3"
    fresh = not db.exists()
    config = SandboxConfig(rows=rows, db=db, rate_limit_per_minute=0)
    sbx = Sandbox("sage_accounting", config).start()
    if fresh:
        print(f"seeding {rows:,} contacts into {db} (once)...", flush=True)
    started = time.perf_counter()
    token = sbx.connection_properties()["OAuthAccessToken"]
    for path in ("/contacts", "/businesses"):
        answer = requests.get(
            sbx.base_url + path,
            params={"items_per_page": 1},
            headers={"Authorization": f"Bearer {token}"},
            timeout=3600,
        )
        answer.raise_for_status()
    if fresh:
        print(f"seeded in {time.perf_counter() - started:.0f} s", flush=True)
    return sbx


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sbx = open_sandbox(args.rows)
    try:
        props = {
            **sbx.connection_properties(),
            "OAuthSettingsLocation": "memory://bench",
            "RateLimit": "0",
        }
        print(f"{'best':>8} {'median':>8} {'requests':>8}  statement")
        for sql in STATEMENTS:
            times: list[float] = []
            made: list[str] = []
            for _ in range(args.repeat):
                with SageClient(validate(props)) as connection:
                    sbx.app.requests.clear()
                    started = time.perf_counter()
                    result = run(connection, sql)
                    rows = list(result.rows)
                    result.close()
                    times.append(time.perf_counter() - started)
                made = [
                    f"{r['path']}?{r['query']}"
                    for r in sbx.app.requests
                    if not r["path"].startswith(("/oauth", "/_sandbox"))
                ]
                assert len(rows) == 10, (sql, len(rows))
            best, median = min(times), statistics.median(times)
            print(f"{best * 1000:6.0f}ms {median * 1000:6.0f}ms {len(made):>8}  {sql}")
            for request in made:
                print(f"{'':28}{request}")
    finally:
        sbx.stop()


if __name__ == "__main__":
    main()
