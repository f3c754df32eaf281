"""Benchmark: polls a minute with 1, 2 and 4 workers on PostgreSQL, and queries per poll.

Run: python bench/scale_out.py [--postgresql URL] [--instances 60] [--seconds 30]
[--concurrency 4]. A fresh database is made on the server (dropped at the end), an
Accounting sandbox answers with ``latency=100`` (100 ms a request, no rate limit), and
``--instances`` instances are created through the API, each polling customers every
second: more than the workers can do, so the polls a minute measure the workers. For
1, 2 and 4 ``sagesql worker`` subprocesses (``--concurrency`` claims each), the polls
completed over ``--seconds`` (after a warm-up) are read from the schedule
(``service_schedule.polls``); the scaling ratio is polls/min with N workers over polls
with one. Then one in-process worker runs with a counter on its SQLAlchemy engine: the
PostgreSQL statements per poll cycle (claim, state, marks, outbox, tokens, the shared
request bucket, release), the token refreshes included. Then, light load: only
``--light`` instances due (the others parked an hour ahead), statements and claims per
poll; and idle: every row parked, the statements a second of a worker with nothing due
(claims, and the schedule sync).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import requests
import sqlalchemy as sa
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from service_helpers import aimed_at, register_code
from test_poll_helpers import Receiver

from sagesql.sandbox.config import Faults, SandboxConfig
from sagesql.sandbox.runner import Sandbox
from sagesql.service.operations import create_org
from sagesql.service.server import RunningService, open_service
from sagesql.service.worker import Worker

DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"


def polls(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(sa.text("SELECT coalesce(sum(polls), 0) FROM service_schedule")).scalar()
        )


def park(engine: sa.Engine, keep: list[str]) -> None:
    """Every row but those of ``keep`` due in an hour (nothing to deliver)."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE service_schedule SET poll_at = now() + interval '1 hour',"
                " deliver_at = NULL, due_at = now() + interval '1 hour'"
                " WHERE NOT (instance = ANY(:keep))"
            ),
            {"keep": keep},
        )


def worker_process(url: str, key: str, concurrency: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from sagesql.cli.main import run; run()",
            "worker",
            "--database",
            url,
            "--concurrency",
            str(concurrency),
        ],
        env={**os.environ, "SAGESQL_SECRET_KEY": key},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgresql", default=os.environ.get("SAGESQL_TEST_POSTGRESQL", DEFAULT))
    parser.add_argument("--instances", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--light", type=int, default=5)
    args = parser.parse_args()
    name = f"sagesql_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.postgresql, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = args.postgresql.rpartition("/")[0] + "/" + name
    config = SandboxConfig(product="sage_accounting", rows=20, rate_limit_per_minute=0)
    sbx = Sandbox("sage_accounting", config).start()
    receiver = Receiver()
    key = Fernet.generate_key().decode()
    api = open_service(url, key, workers=0)
    server = RunningService(api).start()
    try:
        org = create_org(api.database, "bench")
        headers = {
            "Authorization": f"User {org['user_secret']}, Organization {org['organization_secret']}"
        }
        for n in range(args.instances):
            body = aimed_at(sbx, "sage_accounting", receiver.url)
            body["providerData"]["code"] = f"bench-{n}"
            register_code(sbx, f"bench-{n}", body["configuration"]["oauth.callback.url"])
            answer = requests.post(
                f"{server.url}/instances", json=body, headers=headers, timeout=30
            )
            answer.raise_for_status()
        sbx.app.faults.reconfigure(Faults.parse("latency=100"))
        print(
            f"{args.instances} instances, each polling every 1 s; sandbox latency 100 ms; "
            f"{args.concurrency} claims at once per worker; {os.cpu_count()} CPUs"
        )
        rates: dict[int, float] = {}
        for count in (1, 2, 4):
            procs = [worker_process(url, key, args.concurrency) for _ in range(count)]
            time.sleep(args.warmup)
            before, began = polls(api.database.engine), time.monotonic()
            time.sleep(args.seconds)
            done, spent = polls(api.database.engine) - before, time.monotonic() - began
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(60)
            rates[count] = done / spent * 60
            print(
                f"{count} worker(s): {rates[count]:7.0f} polls/min "
                f"(x{rates[count] / rates[1]:.2f} of one worker)"
            )
        # Statements per poll: one worker in this process, every statement counted.
        statements, claims = [0], [0]

        def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
            statements[0] += 1
            claims[0] += statement.lstrip().startswith("WITH due AS")

        sa.event.listen(api.database.engine, "before_cursor_execute", count)

        def measure(seconds: float) -> tuple[int, int, int, float]:
            """Statements, claims and polls of one in-process worker over ``seconds``."""
            worker = Worker(api.database, api.box, concurrency=args.concurrency).start()
            time.sleep(args.warmup)
            statements[0], claims[0], before = 0, 0, worker.stats.polls
            began = time.monotonic()
            time.sleep(seconds)
            seen = statements[0], claims[0], worker.stats.polls - before
            spent = time.monotonic() - began
            worker.stop()
            return (*seen, spent)

        seen, _, polled, _ = measure(args.seconds / 2)
        print(
            f"PostgreSQL statements per poll cycle (claim to release, one worker): "
            f"{seen / max(1, polled):.1f} ({seen} statements, {polled} polls)"
        )
        # Light load: only a few instances due, every second; the others parked.
        with api.database.engine.begin() as conn:
            keep = [
                r[0]
                for r in conn.execute(
                    sa.text("SELECT DISTINCT instance FROM service_schedule ORDER BY 1 LIMIT :n"),
                    {"n": args.light},
                )
            ]
        park(api.database.engine, keep)
        seen, claimed, polled, _ = measure(args.seconds / 2)
        print(
            f"light load ({len(keep)} instances due every 1 s): "
            f"{seen / max(1, polled):.1f} statements and {claimed / max(1, polled):.1f} "
            f"claims per poll ({polled} polls)"
        )
        park(api.database.engine, [])
        seen, claimed, _, spent = measure(args.seconds / 3)
        print(
            f"idle (nothing due for an hour): {claimed / spent:.2f} claims and "
            f"{seen / spent:.2f} statements a second"
        )
    finally:
        server.stop()
        receiver.stop()
        sbx.stop()
        with psycopg.connect(args.postgresql, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
