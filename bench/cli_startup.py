"""Benchmark: how long ``sagesql --help`` takes to start (lazy imports keep it short).

Run: python bench/cli_startup.py [--repeat 10]

Runs the installed console script (next to this Python) ``repeat`` times for each
command line below and prints the best and median wall times, then the modules that
``python -X importtime`` shows as the slowest to import for ``--help``. Target
(issue 5): ``sagesql --help`` under 0.3 s.

Then ``sagesql query -c ... "SELECT id, name FROM contacts LIMIT 1"`` against an
Accounting sandbox started here: its wall time, and its import time (the sum of the
top-level imports ``-X importtime`` reports for the whole run, median of ``repeat``).
Target (issue 17): import time at most 0.25 s.

Interleaved with those runs, the import time of the libraries the statement cannot run
without (sqlglot parses it, requests sends it, typer reads the command line, msgspec
decodes the answer, filelock guards the token store, platformdirs finds it): the floor
no lazy import in sagesql can go below. sagesql's own part is the difference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = str(Path(sys.executable).parent / "sagesql")
COMMANDS = (("--help",), ("query", "--help"), ("tables", "--help"))
TARGET = 0.3
QUERY_IMPORT_TARGET = 0.25
QUERY = "SELECT id, name FROM contacts LIMIT 1"
LIBRARIES = ("sqlglot", "requests", "typer", "msgspec", "filelock", "platformdirs")


def child_env() -> dict[str, str]:
    """The environment of the measured runs: no SAGESQL_ settings, and bytecode cached.

    An installed package has its .pyc files; with PYTHONDONTWRITEBYTECODE set (as on
    some CI machines) an editable checkout would be compiled on every run instead.
    """
    skip = ("SAGESQL_", "PYTHONDONTWRITEBYTECODE")
    return {k: v for k, v in os.environ.items() if not k.startswith(skip)}


def timed(args: tuple[str, ...]) -> float:
    started = time.perf_counter()
    done = subprocess.run([SCRIPT, *args], capture_output=True, env=child_env(), check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sagesql {' '.join(args)} failed: {done.stderr.decode()[:200]}")
    return elapsed


def slowest_imports(count: int = 8) -> list[tuple[int, str]]:
    """(cumulative microseconds, module) of the slowest imports of ``sagesql --help``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import sagesql.cli.main"],
        capture_output=True,
        text=True,
        env=child_env(),
        check=True,
    )
    found = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            found.append((int(parts[1]), parts[2].rstrip()))
    return sorted(found, reverse=True)[:count]


def import_seconds(stderr: str) -> float:
    """The sum of the top-level imports in ``-X importtime`` output, in seconds."""
    total = 0
    for line in stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
            total += int(parts[1])
    return total / 1e6


def query_startup(repeat: int) -> None:
    from sagesql.sandbox.config import SandboxConfig
    from sagesql.sandbox.runner import Sandbox

    config = SandboxConfig(product="sage_accounting", rate_limit_per_minute=0)
    with Sandbox("sage_accounting", config) as sbx:
        props = sbx.connection_properties()
        connection = ";".join(f"{k}={v}" for k, v in props.items())
        env = child_env()
        walls, imports, floors = [], [], []
        for _ in range(repeat + 1):
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-X", "importtime", SCRIPT, "query", "-c", connection, QUERY],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            walls.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise SystemExit(f"sagesql query failed: {done.stderr[-400:]}")
            imports.append(import_seconds(done.stderr))
            libraries = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", f"import {', '.join(LIBRARIES)}"],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            floors.append(import_seconds(libraries.stderr))
        # the first run of each warms the caches
        walls, imports, floors = walls[1:], imports[1:], floors[1:]
        median = statistics.median(imports)
        floor = statistics.median(floors)
        verdict = "ok" if median <= QUERY_IMPORT_TARGET else "NO"
        print(
            f"sagesql query -c ... {QUERY!r}: wall median {statistics.median(walls):.3f} s "
            f"(with -X importtime); import time median {median:.3f} s (best {min(imports):.3f})"
            f"; target <= {QUERY_IMPORT_TARGET} s: {verdict}"
            f" (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: shared, noisy)"
        )
        print(
            f"  the libraries alone ({', '.join(LIBRARIES)}): median {floor:.3f} s"
            f"{' (over the target by themselves)' if floor > QUERY_IMPORT_TARGET else ''}"
            f"; sagesql's own part: {median - floor:.3f} s"
            f" ({(median - floor) / median:.0%} of the import time)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    timed(("--help",))  # warm the file cache
    print(f"{'best':>7} {'median':>7}  command")
    for command in COMMANDS:
        times = [timed(command) for _ in range(args.repeat)]
        best, median = min(times), statistics.median(times)
        verdict = ""
        if command == ("--help",):
            verdict = f"  target < {TARGET} s: {'ok' if median < TARGET else 'NO'}"
        print(f"{best:6.3f}s {median:6.3f}s  sagesql {' '.join(command)}{verdict}")
    query_startup(args.repeat)
    print("slowest imports (cumulative) of the command-line module:")
    for micros, module in slowest_imports():
        print(f"  {micros / 1000:7.1f} ms  {module}")


if __name__ == "__main__":
    main()
