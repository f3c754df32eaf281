"""Benchmark: a page of 200 contacts with attributes=all from a sandbox of a million contacts.

Run: python bench/sandbox_page.py [--rows 1000000] [--db PATH] [--repeat 9]. Builds the
Sage Accounting sandbox's store (or reuses the file given with --db, made with the
same rows), then times ``GET /v3.1/contacts?items_per_page=200&attributes=all`` over
real HTTP for the first, a middle and the last page: the first request of each (cold:
a deep page finds its bookmark) and the median of the following ones; the very first
list request, which counts ``$total``, is timed apart. The target is under 50 ms per page.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from sagesql.sandbox.config import SandboxConfig
from sagesql.sandbox.runner import Sandbox

PAGE_SIZE = 200
TARGET_MS = 50.0


def timed_get(session: requests.Session, url: str, params: dict[str, object]) -> float:
    start = time.perf_counter()
    response = session.get(url, params=params, timeout=120)
    elapsed = (time.perf_counter() - start) * 1000
    response.raise_for_status()
    body = response.json()
    assert len(body["$items"]) > 0 and "name" in body["$items"][0], "not a full page"
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="contacts in the store")
    parser.add_argument("--db", type=Path, help="store file to build or reuse")
    parser.add_argument("--repeat", type=int, default=9, help="timed requests per page")
    args = parser.parse_args(argv)
    scratch = None
    if args.db is None:
        scratch = tempfile.TemporaryDirectory(prefix="sagesql-bench-")
        args.db = Path(scratch.name) / "accounting.db"
    config = SandboxConfig(
        product="sage_accounting", rows=args.rows, db=args.db, rate_limit_per_minute=0
    )
    with Sandbox("sage_accounting", config) as sbx:
        app = sbx.app
        start = time.perf_counter()
        app.store.ensure(app.lead, "contacts")  # seeds the contacts unless the file has them
        seeded = time.perf_counter() - start
        print(f"store: {args.db} ({args.rows:,} contacts); seeding or opening: {seeded:.1f} s")
        session = requests.Session()
        session.headers["Authorization"] = "Bearer " + sbx.token()["access_token"]
        url = sbx.base_url + "/contacts"
        start = time.perf_counter()
        total = session.get(url, timeout=600).json()["$total"]
        counted = (time.perf_counter() - start) * 1000
        last = -(-total // PAGE_SIZE)
        print(f"$total: {total:,} (first list request, counting: {counted:.1f} ms)")
        print(f"pages of {PAGE_SIZE}: {last:,}")
        worst = 0.0
        for label, page in (("first", 1), ("middle", last // 2), ("last", last)):
            params = {"items_per_page": PAGE_SIZE, "attributes": "all", "page": page}
            cold = timed_get(session, url, params)
            times = [timed_get(session, url, params) for _ in range(args.repeat)]
            median = statistics.median(times)
            worst = max(worst, median)
            print(
                f"{label:>6} page {page:>6,}: median {median:6.1f} ms "
                f"(min {min(times):.1f}, max {max(times):.1f}; first request {cold:.1f} ms)"
            )
        verdict = "meets" if worst < TARGET_MS else "MISSES"
        print(f"slowest median {worst:.1f} ms: {verdict} the {TARGET_MS:.0f} ms target")
    if scratch is not None:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
