"""Benchmark: a 10k-row scan under 150 ms of latency, against the latency bound.

Run: python bench/latency.py [--rows 10000] [--latency 150] [--repeat 5] [--url URL]
     [--sql "SELECT id, name FROM contacts"]

The server is ``sagesql sandbox serve`` (Sage Accounting, ``--rows``, data kept in
bench/results/latency-ROWS) in a process of its own, or the one at ``--url``; its
admin endpoint sets ``latency=150`` (every answer waits 150 ms). The client runs the
statement in this process (``engine.pipeline.run``, every row read) at MaxConcurrency
8 and 16, ``--repeat`` times each; the median is compared with the bound

    (1 + ceil((pages - 1) / C)) x latency

(the first page gives the total, then the other pages C at a time). Target (issue 17):
the median within 1.3x of the bound at both concurrencies.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scan import RESULTS, seed, start_server, token_of

TARGET = 1.3
PAGE = 200


def scan_seconds(url: str, token: str, sql: str, concurrency: int) -> tuple[float, int]:
    from sagesql.connector.client import SageClient
    from sagesql.connector.properties import validate
    from sagesql.engine.pipeline import run

    props = {
        "Product": "SageAccounting",
        "URL": url,
        "OAuthAccessToken": token,
        "OAuthSettingsLocation": "memory://latency",
        "RateLimit": "0",
        "MaxConcurrency": str(concurrency),
    }
    with SageClient(validate(props)) as connection:
        connection.transport  # noqa: B018 - opened before the clock starts
        started = time.perf_counter()
        result = run(connection, sql)
        rows = sum(1 for _ in result.rows)
        result.close()
        return time.perf_counter() - started, rows


def rows_of(url: str, token: str, sql: str) -> list[tuple[object, ...]]:
    """Every row of the statement (no latency matters here: for local timings)."""
    from sagesql.connector.client import SageClient
    from sagesql.connector.properties import validate
    from sagesql.engine.pipeline import run

    props = {
        "Product": "SageAccounting",
        "URL": url,
        "OAuthAccessToken": token,
        "OAuthSettingsLocation": "memory://latency",
        "RateLimit": "0",
    }
    with SageClient(validate(props)) as connection:
        result = run(connection, sql)
        try:
            return list(result.rows)
        finally:
            result.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--latency", type=int, default=150, help="milliseconds per answer")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--url", help="a running Accounting sandbox's API URL (…/v3.1)")
    parser.add_argument("--sql", default="SELECT id, name FROM contacts")
    args = parser.parse_args()
    server = None
    url = args.url
    if url is None:
        server, url = start_server(args.rows, RESULTS / f"latency-{args.rows}")
    root = url.rsplit("/v3.1", 1)[0]
    failed = False
    try:
        token = token_of(url)
        total = seed(url, token)
        requests.post(root + "/_sandbox/faults", json={"spec": f"latency={args.latency}"})
        pages = math.ceil(total / PAGE)
        print(
            f"{args.sql}: {total:,} rows, {pages} pages of {PAGE}, {args.latency} ms a request; "
            f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared: noisy)"
        )
        for concurrency in (8, 16):
            bound = (1 + math.ceil((pages - 1) / concurrency)) * args.latency / 1000
            times = []
            for _ in range(args.repeat):
                seconds, rows = scan_seconds(url, token, args.sql, concurrency)
                assert rows == total, (rows, total)
                times.append(seconds)
            median = statistics.median(times)
            ratio = median / bound
            ok = ratio <= TARGET
            failed = failed or not ok
            print(
                f"  MaxConcurrency={concurrency:>2}: median {median:.2f} s (min {min(times):.2f}, "
                f"max {max(times):.2f}); bound {bound:.2f} s; ratio {ratio:.2f} "
                f"(target <= {TARGET}): {'ok' if ok else 'MISSED'}"
            )
    finally:
        requests.post(root + "/_sandbox/faults", json={"spec": ""})
        if server is not None:
            server.terminate()
            server.wait()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
