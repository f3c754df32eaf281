"""Benchmark: local evaluation of a million rows, streamed and materialized.

Run: python bench/local_stream.py [ROWS]. A generated source of customer-like rows
(ten columns, already in stored form) goes through engine.local.evaluate:

* the source alone (what producing the rows costs, the floor);
* a streaming ``SELECT *`` with a filter: rows per second and the process's peak
  memory (ru_maxrss), then the Python heap's peak under tracemalloc;
* ``LIMIT 10`` on the same source: rows pulled and time;
* a materialized ``ORDER BY`` over every row (the database moves to a temp file).
"""

from __future__ import annotations

import json
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import sqlglot

from sagesql.engine.local import LocalSource, evaluate

COLUMNS = [
    ("id", "INTEGER"),
    ("name", "TEXT"),
    ("email", "TEXT"),
    ("balance", "DECIMAL"),
    ("active", "BOOLEAN"),
    ("created_at", "DATETIME"),
    ("updated_at", "DATETIME"),
    ("country", "TEXT"),
    ("attributes", "JSON"),
    ("notes", "TEXT"),
]
COUNTRIES = ["GB", "IE", "FR", "DE", "ES"]
# Precomputed so that the source costs little next to what is measured.
ATTRIBUTES = [json.dumps({"tier": "gold" if i % 7 == 0 else "std", "n": i % 13}) for i in range(91)]
NOTES = ["Notes about this customer " * n for n in (1, 2, 3)]


class Counted:
    """The source's rows, generated on demand, counting what was pulled."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pulled = 0
        self._rows = self._generate()

    def _generate(self) -> Iterator[tuple[Any, ...]]:
        for i in range(self.count):
            self.pulled += 1
            day = 1 + i % 28
            yield (
                i,
                f"Customer {i}",
                f"customer{i}@example.com",
                (i % 100_000) / 100,
                i % 3 != 0,
                f"2024-{1 + i % 12:02d}-{day:02d}T10:{i % 60:02d}:00Z",
                f"2025-{1 + i % 9:02d}-{day:02d}T11:{i % 60:02d}:00Z",
                COUNTRIES[i % 5],
                ATTRIBUTES[i % 91],
                NOTES[i % 3],
            )

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self._rows

    def __next__(self) -> tuple[Any, ...]:
        return next(self._rows)

    def close(self) -> None:
        self._rows.close()


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def timed(action: Callable[[], int]) -> tuple[int, float]:
    start = time.perf_counter()
    rows = action()
    return rows, time.perf_counter() - start


def consume(sql: str, rows: int, source: Counted | None = None, **options: Any) -> int:
    source = source or Counted(rows)
    result = evaluate(
        sqlglot.parse_one(sql, read="sqlite"),
        [LocalSource("t0", COLUMNS, source)],
        **options,
    )
    count = 0
    for _ in result:
        count += 1
    result.close()
    return count


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    stream_sql = "SELECT * FROM t0 WHERE active AND country <> 'ES'"
    print(f"rows: {rows:,}; start: peak RSS {peak_rss_mb():.0f} MB")

    _, seconds = timed(lambda: sum(1 for _ in Counted(rows)))
    print(f"source alone:           {rows / seconds:>10,.0f} rows/s ({seconds:.2f} s)")

    before = peak_rss_mb()
    out, seconds = timed(lambda: consume(stream_sql, rows))
    print(
        f"streaming SELECT *:     {rows / seconds:>10,.0f} source rows/s ({seconds:.2f} s, "
        f"{out:,} rows out); peak RSS {peak_rss_mb():.0f} MB (was {before:.0f} MB)"
    )

    tracemalloc.start()
    consume(stream_sql, rows)
    _, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"streaming, Python heap peak (tracemalloc): {heap_peak / 2**20:.1f} MB")

    limited = Counted(rows)
    out, seconds = timed(lambda: consume("SELECT id, name FROM t0 LIMIT 10", rows, limited))
    print(f"LIMIT 10:               {out} rows, {limited.pulled} pulled, {seconds * 1000:.1f} ms")

    before = peak_rss_mb()
    out, seconds = timed(lambda: consume("SELECT id FROM t0 ORDER BY balance DESC, id", rows))
    print(
        f"materialized ORDER BY:  {rows / seconds:>10,.0f} source rows/s ({seconds:.2f} s); "
        f"peak RSS {peak_rss_mb():.0f} MB (was {before:.0f} MB)"
    )


if __name__ == "__main__":
    main()
