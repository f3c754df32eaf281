"""Benchmark: a join of sales_invoices and contacts under 150 ms of latency, against the
slower of its two scans.

Run: python bench/join_latency.py [--rows 10000] [--latency 150] [--repeat 3] [--url URL]

The server is the one of bench/latency.py (``sagesql sandbox serve``, Accounting,
``--rows`` per table, ``latency=150``). The join matches the invoices' and the contacts'
main-address postcodes, a column the API cannot filter contacts on, so neither side can
be narrowed by the other: the two sides are read at once (engine/query.py). Each
repetition times the two single scans and the join (``engine.pipeline.run``, every
row read, default settings); the medians are compared. Target (issue 17): the join
at most 1.2x the slower scan.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency import scan_seconds
from scan import RESULTS, seed, start_server, token_of

TARGET = 1.2
INVOICES = "SELECT si.id, si.main_address_postal_code FROM sales_invoices si"
CONTACTS = "SELECT c.name, c.main_address_postal_code FROM contacts c"
# Counted: the demo data shares postcodes widely (nine million pairs), and the point is
# the reading of both sides, not SQLite's writing out of the pairs.
JOIN = (
    "SELECT count(*) FROM sales_invoices si "
    "JOIN contacts c ON c.main_address_postal_code = si.main_address_postal_code"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--latency", type=int, default=150, help="milliseconds per answer")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", help="a running Accounting sandbox's API URL (…/v3.1)")
    args = parser.parse_args()
    server = None
    url = args.url
    if url is None:
        server, url = start_server(args.rows, RESULTS / f"latency-{args.rows}")
    root = url.rsplit("/v3.1", 1)[0]
    try:
        token = token_of(url)
        seed(url, token)
        requests.post(root + "/_sandbox/faults", json={"spec": f"latency={args.latency}"})
        times: dict[str, list[float]] = {INVOICES: [], CONTACTS: [], JOIN: []}
        for _ in range(args.repeat):
            for sql in times:
                times[sql].append(scan_seconds(url, token, sql, 4)[0])
        medians = {sql: statistics.median(t) for sql, t in times.items()}
        slower = max(medians[INVOICES], medians[CONTACTS])
        ratio = medians[JOIN] / slower
        print(
            f"{args.latency} ms a request, MaxConcurrency=4, {args.repeat} runs each; load "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared: noisy)"
        )
        for sql, median in medians.items():
            print(f"  {median:6.2f} s  {sql}")
        ok = ratio <= TARGET
        print(
            f"join / slower scan: {ratio:.2f} (sum of the scans would be "
            f"{(medians[INVOICES] + medians[CONTACTS]) / slower:.2f}); target <= {TARGET}: "
            f"{'ok' if ok else 'MISSED'}"
        )
    finally:
        requests.post(root + "/_sandbox/faults", json={"spec": ""})
        if server is not None:
            server.terminate()
            server.wait()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
