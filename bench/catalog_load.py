"""Benchmark: what listing and resolving tables costs at start-up.

Run: python bench/catalog_load.py. Prints the median of fresh-catalog timings for
listing every table (index only), resolving one table, and parsing every table file
(what listing would cost without the index).
"""

from __future__ import annotations

import statistics
import time

from sagesql.schemas.catalog import Catalog


def median_ms(action, repeat: int = 15) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    count = len(Catalog().tables())
    listing = median_ms(lambda: Catalog().tables())
    one = median_ms(lambda: Catalog().table("sales_invoices", "SageAccounting"))

    def parse_all() -> None:
        catalog = Catalog()
        for t in catalog.tables():
            catalog.table(t.name, t.product)

    everything = median_ms(parse_all, repeat=5)
    print(f"tables: {count}")
    print(f"list all tables (index only):   {listing:8.1f} ms")
    print(f"resolve one table (+ its file): {one:8.1f} ms")
    print(f"parse every table file:         {everything:8.1f} ms")


if __name__ == "__main__":
    main()
