"""Benchmark: a scan streamed to JSON lines by ``sagesql query``, against a hand-written loop.

Run: python bench/scan.py [--rows 100000] [--repeat 3] [--url URL] [--db DIR]
     [--sql star|columns|both] [--concurrency N]

The server is ``sagesql sandbox serve`` (Sage Accounting) in a process of its own,
started here with its data kept in ``--db`` (bench/results/scan-ROWS by default; the
first run seeds it, a few minutes at a million rows), or the one at ``--url`` (its
admin endpoint hands out tokens). Both clients read the same server, one after the
other, each in a child process of its own, output to /dev/null:

- ``hand``: a requests session reading the very pages sagesql asks for
  (``items_per_page=200``, the same ``attributes=``), one after the other, each item
  written with ``json.dumps`` as one line: the whole record for ``SELECT *``, the two
  fields for ``SELECT id, name``;
- ``sagesql``: the console script, ``sagesql query -c ... -f jsonl -o /dev/null SQL``,
  default settings (MaxConcurrency=4) unless ``--concurrency``.

Each repetition runs both, in alternating order; the ratio is taken per pair and the
median of the pairs is what is asserted (the machine is shared and noisy). Peak RSS is
the child's ``ru_maxrss`` (from ``wait4``, what ``/usr/bin/time -v`` reports).

Targets (issue 17): ``SELECT *`` at most 1.25x the hand loop, ``SELECT id, name`` at
most 1.1x; the peak RSS of sagesql under 120 MB at a million rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SCRIPT = str(Path(sys.executable).parent / "sagesql")
QUERIES = {
    "star": ("SELECT * FROM contacts", "attributes=all", None, 1.25),
    "columns": ("SELECT id, name FROM contacts", "attributes=name", ("id", "name"), 1.10),
}
PEAK_TARGET_MB = 120.0

HAND = r"""
import json, sys, requests
url, token, query, fields = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
fields = fields.split(",") if fields else None
session = requests.Session()
session.headers["Authorization"] = "Bearer " + token
params = dict(p.split("=", 1) for p in query.split("&"))
rows, page = 0, 1
with open("/dev/null", "w", encoding="utf-8") as out:
    while True:
        body = session.get(url + "/contacts", params={**params, "page": page}).json()
        for item in body["$items"]:
            record = item if fields is None else {f: item.get(f) for f in fields}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            rows += 1
        if not body.get("$next"):
            break
        page += 1
print(rows)
"""


def token_of(url: str) -> str:
    import requests

    root = url.rsplit("/v3.1", 1)[0]
    answer = requests.post(root + "/_sandbox/token", json={}, timeout=30)
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def measured(args: list[str]) -> tuple[float, float, float, str]:
    """(wall seconds, peak RSS MB, CPU seconds, stdout): the child's own rusage."""
    started = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    out = process.stdout.read()
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(args[:2])} failed ({process.returncode}): {err[-600:]!r}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, out.decode()


def start_server(rows: int, db: Path) -> tuple[subprocess.Popen[str], str]:
    db.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            SCRIPT, "sandbox", "serve", "-p", "SageAccounting", "--rows", str(rows),
            "--db", str(db), "--rate-limit", "0", "--token-lifetime", "86400",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip().startswith("API"):
            return process, line.split()[-1]
    raise SystemExit("the sandbox did not start")


def seed(url: str, token: str) -> int:
    import requests

    started = time.perf_counter()
    answer = requests.get(
        url + "/contacts",
        params={"items_per_page": 1},
        headers={"Authorization": "Bearer " + token},
        timeout=3600,
    )
    answer.raise_for_status()
    if time.perf_counter() - started > 5:
        print(f"(seeded the store in {time.perf_counter() - started:.0f} s)")
    return int(answer.json()["$total"])


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", help="a running Accounting sandbox's API URL (…/v3.1)")
    parser.add_argument("--db", type=Path, help="the sandbox's data directory")
    parser.add_argument("--sql", choices=("star", "columns", "both"), default="both")
    parser.add_argument("--concurrency", type=int, help="MaxConcurrency (default: the default)")
    args = parser.parse_args()
    server = None
    url = args.url
    if url is None:
        server, url = start_server(args.rows, args.db or RESULTS / f"scan-{args.rows}")
    failed = False
    try:
        token = token_of(url)
        total = seed(url, token)
        connection = f"Product=SageAccounting;URL={url};OAuthAccessToken={token};" + (
            "OAuthSettingsLocation=memory://bench;RateLimit=0"
        )
        if args.concurrency:
            connection += f";MaxConcurrency={args.concurrency}"
        print(
            f"{total:,} contacts at {url}; {args.repeat} paired runs; machine: {os.cpu_count()} "
            f"cores, load {os.getloadavg()[0]:.1f} (shared with other work: figures are noisy)"
        )
        for key in ("star", "columns") if args.sql == "both" else (args.sql,):
            sql, query, fields, target = QUERIES[key]
            hand = [
                sys.executable, "-c", HAND, url, token, query + "&items_per_page=200",
                ",".join(fields or ()),
            ]  # fmt: skip
            ours = [SCRIPT, "query", "-c", connection, "-f", "jsonl", "-o", "/dev/null", sql]
            ratios, figures = [], []
            for n in range(args.repeat):
                pair: dict[str, tuple[float, float, float, str]] = {}
                for who in ("hand", "sagesql") if n % 2 == 0 else ("sagesql", "hand"):
                    pair[who] = measured(hand if who == "hand" else ours)
                ratios.append(pair["sagesql"][0] / pair["hand"][0])
                figures.append(pair)
                h, s = pair["hand"], pair["sagesql"]
                print(
                    f"  {sql}: hand {h[0]:6.1f} s (CPU {h[2]:5.1f} s, {h[1]:4.0f} MB)  "
                    f"sagesql {s[0]:6.1f} s (CPU {s[2]:5.1f} s, {s[1]:4.0f} MB)  "
                    f"ratio {ratios[-1]:.2f}"
                )
            ratio = statistics.median(ratios)
            peak = max(p["sagesql"][1] for p in figures)
            hand_s = statistics.median(p["hand"][0] for p in figures)
            ours_s = statistics.median(p["sagesql"][0] for p in figures)
            ok = ratio <= target and (total < 1_000_000 or peak < PEAK_TARGET_MB)
            failed = failed or not ok
            print(
                f"{sql}: median hand {hand_s:.1f} s ({total / hand_s:,.0f} rows/s), sagesql "
                f"{ours_s:.1f} s ({total / ours_s:,.0f} rows/s); median ratio {ratio:.2f} "
                f"(target <= {target}); sagesql peak RSS {peak:.0f} MB"
                + (f" (target < {PEAK_TARGET_MB:.0f} MB)" if total >= 1_000_000 else "")
                + f": {'ok' if ok else 'MISSED'}"
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
