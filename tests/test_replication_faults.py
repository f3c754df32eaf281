"""sagesql sync interrupted: SIGKILL at random moments, and the API's quota running out mid-table.

Both run the real command in a subprocess. After a kill, the next run continues from
the last page committed with its position (the replica and its position are one
transaction): in the end the replica equals the API by key, with changes made while
the runs were being killed. When Sage keeps answering 429 past the retry budget, the
run stops with exit code 3 and a clear message; the next run (the quota renewed)
continues from the last committed page, not from the start.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from replication_helpers import assert_same, client
from test_poll_helpers import connection_string, request_log

from sagesql.engine.pipeline import run
from sagesql.sandbox.config import Faults

pytestmark = pytest.mark.slow


def _command(sbx: Any, url: str, tables: list[str], *extra: str) -> tuple[list[str], dict]:
    conn = connection_string(sbx, "sync") + ";Pagesize=25;Timeout=3"
    env = {**os.environ, "SAGESQL_CONNECTION": conn}
    return [sys.executable, "-m", "sagesql.cli.main", "sync", "--to", url, *tables, *extra], env


def _writer(sbx: Any, table: str, key: str, stop: threading.Event, seed: int) -> threading.Thread:
    """Updates (and, for tables that allow it, deletes) while the syncs run."""
    rng = random.Random(seed)

    def work() -> None:
        with client(sbx, "writer") as c:
            keys = [r[0] for r in run(c, f'SELECT "{key}" FROM "{table}"')]
            while not stop.is_set() and keys:
                victim = keys.pop(rng.randrange(len(keys)))
                if rng.random() < 0.2:
                    list(run(c, f'DELETE FROM "{table}" WHERE "{key}" = ?', [victim]))
                else:
                    column = "name" if table != "company" else "comp_name"
                    sql = f'UPDATE "{table}" SET "{column}" = ? WHERE "{key}" = ?'
                    list(run(c, sql, [f"w{rng.randrange(10**6)}", victim]))
                time.sleep(rng.uniform(0.01, 0.08))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("product", "table", "key"),
    [
        ("sage_accounting", "contacts", "id"),
        ("sage_200", "customers", "id"),
        # CRM: its window read newest first by offset, rows deleted while it reads.
        ("sage_crm", "company", "comp_companyid"),
    ],
)
def test_sigkill_at_random_moments_then_the_replica_equals_the_api(
    start_sandbox, tmp_path, product, table, key
) -> None:
    sbx = start_sandbox(
        product,
        rows=1500,
        rate_limit_per_minute=0,
        access_token_lifetime=3600,
        faults=Faults(latency_ms=5),
    )
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    command, env = _command(sbx, url, [table])
    log = (tmp_path / "sync.log").open("ab")
    stop = threading.Event()
    writer = _writer(sbx, table, key, stop, seed=3)
    rng = random.Random(5)
    kills = 0
    try:
        for _ in range(12):
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
            time.sleep(rng.uniform(0.3, 2.5))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait(timeout=30)
    finally:
        stop.set()
        writer.join(timeout=30)
        log.close()
    assert kills >= 6, "the syncs finished too fast to be killed"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_same(sbx, url, [table])


def test_quota_exhausted_mid_table_then_the_next_run_completes_it(start_sandbox, tmp_path) -> None:
    # Each round moves the clock a minute on: the token must outlive them all.
    sbx = start_sandbox(
        "sage_accounting", rows=300, rate_limit_per_minute=5, access_token_lifetime=10**6
    )
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    command, env = _command(sbx, url, ["contacts"])
    replica = Path(tmp_path / "replica.sqlite")
    copied: list[int] = []
    for attempt in range(40):
        request_log(sbx, clear=True)
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            break
        assert done.returncode == 3, done.stderr
        assert "429" in done.stderr and "run the same command again to continue" in done.stderr
        conn = sqlite3.connect(replica)
        (rows,) = conn.execute("SELECT count(*) FROM contacts").fetchone()
        conn.close()
        copied.append(rows)
        if attempt:
            # It continued where the last one stopped: its first page is not the first.
            pages = [
                r["query"]
                for r in request_log(sbx)
                if r["path"].endswith("/contacts") and r["status"] == 200
            ]
            assert not pages or "page=1&" not in pages[0] + "&", pages
        # The next minute: the quota is renewed.
        requests.post(sbx.url + "/_sandbox/clock", json={"advance": 61}, timeout=10)
    else:
        pytest.fail(f"never completed: {copied}")
    assert len(copied) >= 2 and copied == sorted(copied) and copied[0] < 300, copied
    requests.post(sbx.url + "/_sandbox/clock", json={"advance": 61}, timeout=10)
    sbx.app.limiter.per_minute = 0
    assert_same(sbx, url, ["contacts"])
