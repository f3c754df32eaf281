"""Benchmark: DB-API executemany against one multi-row INSERT of the same rows.

Run: python bench/executemany.py [--rows 1000] [--latency 50] [--runs 3]

A fresh Accounting sandbox per run (rate limit off, each answer delayed by ``--latency``
ms to stand for the network) takes ROWS contacts, alternately through
``cursor.executemany("INSERT ... VALUES (?, ...)", rows)`` and one
``INSERT ... VALUES (...), (...)`` with the same values, at the default MaxConcurrency.
Prints the medians and the ratio executemany / INSERT, which the performance issue bounds
at 1.15, and asserts it (and that both wrote every row once).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import sagesql
from sagesql.sandbox.config import Faults, SandboxConfig
from sagesql.sandbox.runner import Sandbox

TARGET = 1.15
COLUMNS = ("name", "contact_types", "reference", "credit_limit")


def rows(count: int, tag: str) -> list[tuple[Any, ...]]:
    return [
        (f"Bench {tag} {n:05d}", json.dumps([{"id": "CUSTOMER"}]), f"{tag}{n:05d}", 1000 + n)
        for n in range(count)
    ]


def one_run(count: int, latency: int, many: bool) -> float:
    config = SandboxConfig(
        product="sage_accounting",
        rows=10,
        rate_limit_per_minute=0,
        faults=Faults(latency_ms=latency),
    )
    with Sandbox("sage_accounting", config) as sbx:
        props = {**sbx.client_properties(), "RateLimit": "0"}
        data = rows(count, "M" if many else "I")
        holes = "(" + ", ".join("?" for _ in COLUMNS) + ")"
        head = f"INSERT INTO contacts ({', '.join(COLUMNS)}) VALUES "
        with sagesql.connect(**props) as conn:
            cursor = conn.cursor()
            started = time.perf_counter()
            if many:
                cursor.executemany(head + holes, data)
            else:
                cursor.execute(head + ", ".join([holes] * count), [v for r in data for v in r])
            elapsed = time.perf_counter() - started
            assert cursor.rowcount == count, cursor.rowcount
        posts = [e for e in sbx.app.requests if e["method"] == "POST"]
        assert len(posts) == count, len(posts)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--latency", type=int, default=50, help="ms added to each answer")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    many: list[float] = []
    insert: list[float] = []
    for _ in range(args.runs):  # paired, alternating: this machine is noisy
        many.append(one_run(args.rows, args.latency, True))
        insert.append(one_run(args.rows, args.latency, False))
    ratio = statistics.median(many) / statistics.median(insert)
    print(f"{args.rows} contacts at {args.latency} ms per answer, median of {args.runs} runs")
    print(f"  executemany        {statistics.median(many):7.2f} s")
    print(f"  multi-row INSERT   {statistics.median(insert):7.2f} s")
    print(f"  ratio              {ratio:7.2f}  (target <= {TARGET})")
    assert ratio <= TARGET, f"executemany is {ratio:.2f}x the multi-row INSERT"


if __name__ == "__main__":
    main()
