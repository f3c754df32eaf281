"""Benchmark: a join of sales_invoices and contacts under 150 ms of latency, against the
slower of its two scans.

Run: python bench/join_latency.py [--rows 10000] [--latency 150] [--repeat 3] [--url URL]

The server is the one of bench/latency.py (``sagesql sandbox serve``, Accounting,
``--rows`` per table, ``latency=150``). The join matches each invoice's contact
with the contacts by their ``displayed_as`` ("Name (REF)"), a column the API cannot
filter contacts on, so neither side can be narrowed by the other: the two sides
are read at once (engine/query.py). Each repetition times the two single scans and
the join (``engine.pipeline.run``, every row read, default settings); the medians are
compared. Target (issue 17): the join at most 1.2x the slower scan.

Also printed, not judged: the join on the main-address postcodes (what this benchmark
measured before): the demo data shares postcodes widely, so SQLite counts nine million
pairs, and that count alone (timed here over the same rows in memory) is most of the
difference from the slower scan: local evaluation, not reading.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency import rows_of, scan_seconds
from scan import RESULTS, seed, start_server, token_of

TARGET = 1.2
INVOICES = "SELECT si.id, si.contact_displayed_as FROM sales_invoices si"
CONTACTS = "SELECT c.name, c.displayed_as FROM contacts c"
# Counted: the point is the reading of both sides, not the writing out of the pairs.
JOIN = (
    "SELECT count(*) FROM sales_invoices si "
    "JOIN contacts c ON c.displayed_as = si.contact_displayed_as"
)
PAIRS = (
    "SELECT count(*) FROM sales_invoices si "
    "JOIN contacts c ON c.main_address_postal_code = si.main_address_postal_code"
)


def sqlite_count_seconds(url: str, token: str) -> float:
    """How long SQLite alone takes to count PAIRS' pairs over rows already read."""
    import sqlite3
    import time

    from sagesql.engine import local

    database = sqlite3.connect(":memory:")
    local.register_functions(database)
    for name, sql in (("si", "SELECT si.main_address_postal_code FROM sales_invoices si"),
                      ("c", "SELECT c.main_address_postal_code FROM contacts c")):  # fmt: skip
        database.execute(f"CREATE TABLE {name} (main_address_postal_code TEXT)")
        database.executemany(f"INSERT INTO {name} VALUES (?)", rows_of(url, token, sql))
    started = time.perf_counter()
    database.execute(
        "SELECT count(*) FROM si JOIN c ON c.main_address_postal_code = si.main_address_postal_code"
    ).fetchone()
    return time.perf_counter() - started


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
        times: dict[str, list[float]] = {INVOICES: [], CONTACTS: [], JOIN: [], PAIRS: []}
        counting = []
        for _ in range(args.repeat):
            for sql in times:
                times[sql].append(scan_seconds(url, token, sql, 4)[0])
            counting.append(sqlite_count_seconds(url, token))
        medians = {sql: statistics.median(t) for sql, t in times.items()}
        slower = max(medians[INVOICES], medians[CONTACTS])
        ratio = medians[JOIN] / slower
        print(
            f"{args.latency} ms a request, MaxConcurrency=4, {args.repeat} runs each; load "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared: noisy)"
        )
        for sql, median in medians.items():
            print(f"  {median:6.2f} s  {sql}")
        print(
            f"  postcode join / slower scan: {medians[PAIRS] / slower:.2f}; SQLite's count of "
            f"its pairs alone: {statistics.median(counting):.2f} s (not judged)"
        )
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
