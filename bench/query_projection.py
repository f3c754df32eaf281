"""Benchmark: bytes transferred by a projected query against the same pages with every field.

Run: python bench/query_projection.py [--rows 2000]

``SELECT id, name FROM contacts`` runs through sagesql against an Accounting sandbox
(kept in bench/results/); the sizes of the answers its transport received are summed.
The same pages are then read by hand with ``attributes=all``, as a driver without
projection would, and with Sage 200's ``$select`` on its customers for comparison.
Target (issue 5): at most a fifth of the bytes of ``attributes=all``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import requests

from sagesql.connector.client import SageClient
from sagesql.connector.properties import validate
from sagesql.engine.pipeline import run
from sagesql.sandbox.config import SandboxConfig
from sagesql.sandbox.runner import Sandbox

RESULTS = Path(__file__).resolve().parent / "results"


def sagesql_bytes(sbx: Sandbox, sql: str) -> tuple[int, int, list[dict[str, Any]], dict]:
    """(bytes of the answers, rows, the API requests, the scope headers) of one statement
    run through sagesql on a fresh connection."""
    props = {**sbx.connection_properties(), "OAuthSettingsLocation": "memory://b", "RateLimit": "0"}
    sizes: list[int] = []
    with SageClient(validate(props)) as connection:
        session = connection.transport.session  # Sage 200 resolves /sites here
        session.hooks["response"].append(lambda r, *a, **k: sizes.append(len(r.content)))
        sbx.app.requests.clear()
        result = run(connection, sql)
        rows = sum(1 for _ in result.rows)
        result.close()
        scope = {k: v for k, v in session.headers.items() if k.lower().startswith("x-")}
    made = [r for r in sbx.app.requests if not r["path"].startswith(("/oauth", "/_sandbox"))]
    return sum(sizes), rows, made, scope


def by_hand(sbx: Sandbox, made: list[dict[str, Any]], scope: dict, replace: dict[str, str]) -> int:
    """Bytes of the same requests with some parameters replaced (None: left out)."""
    session = requests.Session()
    session.headers.update(scope)
    session.headers["Authorization"] = "Bearer " + sbx.connection_properties()["OAuthAccessToken"]
    total = 0
    for entry in made:
        params: dict[str, Any] = dict(parse_qsl(entry["query"], keep_blank_values=True))
        for name, value in replace.items():
            if name in params or value is not None:
                params[name] = value  # None drops it
        answer = session.get(sbx.url + entry["path"], params=params, timeout=120)
        answer.raise_for_status()
        total += len(answer.content)
    return total


def compare(product: str, rows: int, sql: str, replace: dict[str, Any], label: str) -> float:
    RESULTS.mkdir(exist_ok=True)
    db = RESULTS / f"requests-{product}-{rows}.sqlite3"
    config = SandboxConfig(product=product, rows=rows, db=db, rate_limit_per_minute=0)
    with Sandbox(product, config) as sbx:
        sagesql_bytes(sbx, sql)  # the first request to a table seeds it
        projected, count, made, scope = sagesql_bytes(sbx, sql)
        everything = by_hand(sbx, made, scope, replace)
    ratio = projected / everything
    print(f"{product}: {sql}")
    print(f"  rows {count}, requests {len(made)}, e.g. {made[-1]['path']}?{made[-1]['query']}")
    print(f"  sagesql (projected) {projected / 1024:10.1f} KB")
    print(f"  {label:<19} {everything / 1024:10.1f} KB")
    verdict = "ok" if ratio <= 0.2 else "NO"
    print(f"  ratio {ratio:.3f} (1/{1 / ratio:.1f}); target <= 0.200: {verdict}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    compare(
        "sage_accounting",
        args.rows,
        "SELECT id, name FROM contacts",
        {"attributes": "all"},
        "attributes=all",
    )
    compare(
        "sage_200",
        args.rows,
        "SELECT id, name FROM customers",
        {"$select": None},
        "no $select (all)",
    )


if __name__ == "__main__":
    main()
