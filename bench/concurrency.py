"""Benchmark: parallel page fetching against a server that takes 50 ms per answer.

Run: python bench/concurrency.py [--pages 100] [--concurrency 8] [--latency 50].
A sandbox app (the ProductApp base with one Accounting-style list route and the
sandbox's latency fault) serves PAGES pages of 50 records; the transport reads them
one at a time and with ``pages_parallel``. Prints the elapsed times against the
ideal ceil(pages / concurrency) x latency, and the time spent parsing JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any

from werkzeug.wrappers import Request, Response

from sagesql.connector import paging
from sagesql.connector.properties import Settings
from sagesql.connector.transport import HTTPTransport
from sagesql.sandbox.app import ProductApp, json_response
from sagesql.sandbox.config import Faults, SandboxConfig
from sagesql.sandbox.server import RunningServer
from sagesql.schemas.catalog import default_catalog

PAGE = 50


class Contacts(ProductApp):
    """``/v3.1/contacts`` with Accounting's envelope over ``rows`` records."""

    product = "sage_accounting"

    def route(self, request: Request, principal: Any) -> Response:
        size = int(request.args.get("items_per_page", 20))
        page = int(request.args.get("page", 1))
        total = self.config.rows
        pages = math.ceil(total / size)
        first = (page - 1) * size
        items = [
            {
                "id": f"{i:032x}",
                "displayed_as": f"Contact {i}",
                "$path": f"/contacts/{i:032x}",
                "name": f"Contact {i}",
                "balance": f"{i * 7.5:.2f}",
                "updated_at": "2025-01-01T00:00:00Z",
            }
            for i in range(first, min(first + size, total))
        ]
        link = f"/contacts?page={page + 1}&items_per_page={size}" if page < pages else None
        return json_response({"$total": total, "$page": page, "$next": link, "$items": items})


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=50.0, help="milliseconds per answer")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    config = SandboxConfig(
        product="sage_accounting",
        rows=args.pages * PAGE,
        rate_limit_per_minute=0,
        faults=Faults(latency_ms=args.latency),
    )
    app = Contacts(config)
    server = RunningServer(app).start()
    settings = Settings(oauth_access_token="bench", rate_limit=0, max_concurrency=args.concurrency)
    auth_header = {"Authorization": f"Bearer {app.oauth.issue()['access_token']}"}
    product = default_catalog().product("sage_accounting")
    transport = HTTPTransport(
        settings, product, base_url=server.url + "/v3.1", auth=None, extra_headers=auth_header
    )
    pager = paging.PageNumber()
    try:

        def parallel() -> None:
            got = sum(
                len(p) for p in transport.pages_parallel("contacts", None, pager, page_size=PAGE)
            )
            assert got == args.pages * PAGE, got

        def sequential() -> None:
            got = sum(len(p) for p in transport.pages("contacts", None, pager, page_size=PAGE))
            assert got == args.pages * PAGE, got

        parallel()  # warm up connections
        par = statistics.median(timed(parallel) for _ in range(args.repeat))
        seq = timed(sequential)
        body = json.dumps(transport.get_json("contacts", params={"items_per_page": PAGE}))
        parse = timed(lambda: [json.loads(body) for _ in range(args.pages)])
    finally:
        transport.close()
        server.stop()

    latency = args.latency / 1000
    ideal = math.ceil(args.pages / args.concurrency) * latency
    # The first page is read alone: it tells the total.
    ideal_first = latency + math.ceil((args.pages - 1) / args.concurrency) * latency
    rows = [
        ("sequential", seq, ""),
        (f"parallel, MaxConcurrency={args.concurrency}", par, f"median of {args.repeat}"),
        (f"ideal ceil({args.pages}/{args.concurrency}) x {args.latency:.0f} ms", ideal, ""),
        ("ideal, first page read alone", ideal_first, "it tells the total"),
        (f"JSON parsing of {args.pages} pages", parse, ""),
    ]
    print(f"{args.pages} pages of {PAGE} records, {args.latency:.0f} ms per answer")
    for label, seconds, note in rows:
        print(f"  {label:<34} {seconds * 1000:7.0f} ms  {note}".rstrip())
    print(f"  {'parallel / ideal':<34} {par / ideal:7.2f} x   target <= 1.5 x plus parsing")
    print(f"  {'speed-up over sequential':<34} {seq / par:7.1f} x")


if __name__ == "__main__":
    main()
