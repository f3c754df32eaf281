"""Benchmark: streaming a million rows to JSON lines: peak memory, and rows per second
against a minimal hand-written requests + json loop over the same pages.

Run: python bench/query_stream.py [--rows 1000000] [--server synthetic|sandbox]

The server runs in this process; each client runs in a child process of its own, so
that its peak memory (``ru_maxrss`` from ``wait4``) is the client's alone:

- ``hand``: a requests session reading the pages one after the other (the very URLs
  sagesql asks for) and writing each item's fields with ``json.dumps``;
- ``sagesql``: ``engine.pipeline.run("SELECT id, name, balance, updated_at FROM
  contacts")`` and ``cli.rows_output.write(result, "jsonl", out)``, as ``sagesql query``
  does, with MaxConcurrency=1 (the same sequential reading) and with the default 4.

Output goes to /dev/null. Targets (issue 5): peak memory under 200 MB; rows per second
at least 80% of the hand loop's.

``--server synthetic`` (the default) answers Accounting's contacts list from records
made on the fly, so that the clients are what is measured; ``--server sandbox`` uses
the Accounting sandbox store of bench/query_limit.py (bench/results/), whose pages deep
in a million rows take up to 200 ms each to serve (SQLite offsets), so that both
clients wait on the server and the comparison says little.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
SQL = "SELECT id, name, balance, updated_at FROM contacts"
PAGE = 200


# -- the clients (child processes) ----------------------------------------------------------------


def client_hand(url: str, token: str, query: str) -> int:
    """The minimal loop: the same pages, one after the other, json in, json lines out."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    params = dict(p.split("=", 1) for p in query.split("&") if p)
    rows = 0
    page = 1
    with open(os.devnull, "w", encoding="utf-8") as out:
        while True:
            body = session.get(f"{url}/contacts", params={**params, "page": page}).json()
            for item in body["$items"]:
                record = {
                    "id": item["id"],
                    "name": item["name"],
                    "balance": item["balance"],
                    "updated_at": item["updated_at"],
                }
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                rows += 1
            if not body.get("$next"):
                return rows
            page += 1


def client_sagesql(url: str, token: str, concurrency: int) -> int:
    from sagesql.cli import rows_output
    from sagesql.connector.client import SageClient
    from sagesql.connector.properties import validate
    from sagesql.engine.pipeline import run

    props = {
        "Product": "SageAccounting",
        "URL": url,
        "OAuthAccessToken": token,
        "OAuthSettingsLocation": "memory://stream",
        "RateLimit": "0",
        "MaxConcurrency": str(concurrency),
    }
    with SageClient(validate(props)) as connection:
        result = run(connection, SQL)
        try:
            with open(os.devnull, "w", encoding="utf-8") as out:
                return rows_output.write(result, "jsonl", out)
        finally:
            result.close()


def client_main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    if args.client == "hand":
        rows = client_hand(args.url, args.token, args.query)
    else:
        rows = client_sagesql(args.url, args.token, int(args.client.split("-")[1]))
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started}))


# -- the servers ----------------------------------------------------------------------------------


def synthetic_server(rows: int) -> tuple[Any, str, str]:
    """A ProductApp answering /v3.1/contacts with ``rows`` records made on the fly."""
    from werkzeug.wrappers import Request, Response

    from sagesql.sandbox.app import ProductApp, json_response
    from sagesql.sandbox.config import SandboxConfig
    from sagesql.sandbox.server import RunningServer

    class Contacts(ProductApp):
        product = "sage_accounting"

        def route(self, request: Request, principal: Any) -> Response:
            size = min(int(request.args.get("items_per_page", 20)), PAGE)
            page = int(request.args.get("page", 1))
            total = self.config.rows
            pages = math.ceil(total / size)
            first = (page - 1) * size
            items = [
                {
                    "id": f"{i:032x}",
                    "displayed_as": f"Contact {i} (C{i:07d})",
                    "$path": f"/contacts/{i:032x}",
                    "name": f"Contact {i} Ltd",
                    "balance": f"{(i * 7919) % 100000 / 100:.2f}",
                    "updated_at": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T10:{i % 60:02d}:00Z",
                }
                for i in range(first, min(first + size, total))
            ]
            query = "&".join(f"{k}={v}" for k, v in request.args.items() if k != "page")
            link = f"/contacts?page={page + 1}&{query}" if page < pages else None
            return json_response(
                {"$total": total, "$page": page, "$next": link, "$back": None, "$items": items}
            )

    app = Contacts(SandboxConfig(product="sage_accounting", rows=rows, rate_limit_per_minute=0))
    server = RunningServer(app).start()
    return server, server.url + "/v3.1", str(app.oauth.issue()["access_token"])


def sandbox_server(rows: int) -> tuple[Any, str, str]:
    from sagesql.sandbox.config import SandboxConfig
    from sagesql.sandbox.runner import Sandbox

    RESULTS.mkdir(exist_ok=True)
    db = RESULTS / f"sage_accounting-{rows}.sqlite3"
    if not db.exists():
        print(f"seeding {rows:,} contacts into {db} (once, a few minutes)...", flush=True)
    sbx = Sandbox(
        "sage_accounting", SandboxConfig(rows=rows, db=db, rate_limit_per_minute=0)
    ).start()
    return sbx, sbx.base_url, sbx.connection_properties()["OAuthAccessToken"]


# -- the orchestration ----------------------------------------------------------------------------


def run_child(args: list[str]) -> tuple[dict[str, Any], float, float]:
    """A client's figures, its peak resident memory in MB and its CPU seconds."""
    process = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"client {args[1]} failed ({process.returncode})")
    cpu = usage.ru_utime + usage.ru_stime
    return json.loads(output.strip().splitlines()[-1]), usage.ru_maxrss / 1024, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--server", choices=("synthetic", "sandbox"), default="synthetic")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--query", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    server, url, token = (synthetic_server if args.server == "synthetic" else sandbox_server)(
        args.rows
    )
    try:
        if args.server == "sandbox":  # the first request seeds the store
            import requests

            requests.get(
                url + "/contacts",
                params={"items_per_page": 1},
                headers={"Authorization": f"Bearer {token}"},
                timeout=3600,
            ).raise_for_status()
        # The pages sagesql asks for (its attributes=); the hand loop asks for the same.
        query = f"attributes=name,balance,updated_at&items_per_page={PAGE}"
        common = ["--url", url, "--token", token, "--query", query]
        print(f"{args.rows:,} rows, pages of {PAGE}, server: {args.server}; {SQL}")
        print(
            f"{'client':<28} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'vs hand':>8} "
            f"{'peak MB':>8} {'CPU s':>6}"
        )
        hand_rate = None
        for label, client in (
            ("hand-written loop", "hand"),
            ("sagesql, MaxConcurrency=1", "sagesql-1"),
            ("sagesql, MaxConcurrency=4", "sagesql-4"),
        ):
            figures, peak, cpu = run_child(["--client", client, *common])
            rate = figures["rows"] / figures["seconds"]
            hand_rate = hand_rate or rate
            print(
                f"{label:<28} {figures['rows']:>9,} {figures['seconds']:>8.1f} {rate:>9,.0f} "
                f"{rate / hand_rate:>8.0%} {peak:>8.0f} {cpu:>6.1f}"
            )
        print("targets: peak memory < 200 MB; rows/s >= 80% of the hand-written loop")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
