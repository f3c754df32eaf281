"""Benchmark: 200 instances on one ``sagesql serve`` against a sandbox that answers in 100 ms.

Run: python bench/service_instances.py [--instances 200] [--interval 10] [--workers 16]
[--latency 100] [--duration 60] [--product sage_accounting|sage_crm].

The sandbox runs in this process (``Faults(latency_ms=...)`` on every request); the
service is a real ``sagesql serve --database sqlite:///TMP --port 0`` subprocess. One
organization POSTs the published body of the product ``--instances`` times (each with
its own authorization code, the sandbox's URL and credentials, a ``--interval``
seconds refresh interval and a local receiver as the callback). Every few seconds a
record changes in the sandbox, so every instance has an event to deliver.

After a warm-up of two intervals, for ``--duration`` seconds:

- schedule: every instance's ``/status`` is read each interval: how late each cycle
  started after it was due (``late_seconds``), the data lag of each resource
  (``lag_seconds``: the watermark behind Sage's clock), and the cycles run against the
  cycles due;
- API: client threads call ``GET /instances`` and ``GET /instances/{id}/status`` in a
  loop; their latencies' p50/p95;
- memory: the serve process's RSS, sampled (psutil when installed, else
  /proc/PID/status), and its peak (VmHWM).

The machine is shared by the sandbox, the receiver, the API clients and the service:
on a small machine the numbers are the service's under that competition.

One run (2 cores, shared; Accounting, 200 instances every 10 s, --workers 16, 100 ms,
60 s measured, 4 API clients, a change every 5 s): 1,254 cycles run of 1,214 due;
cycle start late p50 0.06 s, p95 0.31 s (max 0.73 s); data lag p50/p95 5.0 s (the
poller's deliberate delay); 2,528 events delivered; API 20 requests/s, p50 165 ms,
p95 462 ms (GET /instances, 200 bodies decrypted, p95 595 ms; /status p95 365 ms);
serve RSS peak 460 MiB; SIGTERM: exit 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from cryptography.fernet import Fernet
from werkzeug.wrappers import Request, Response

from sagesql.sandbox.config import Faults, SandboxConfig
from sagesql.sandbox.runner import Sandbox
from sagesql.sandbox.server import RunningServer

EXAMPLES = Path(__file__).resolve().parent.parent / "activities" / "polling" / "examples"
BODIES = {"sage_accounting": "sage-accounting.instance.json", "sage_crm": "sage-crm.instance.json"}
SAGESQL = str(Path(sys.executable).parent / "sagesql")


class Receiver:
    """Counts the events POSTed to it."""

    def __init__(self) -> None:
        self.events = 0
        self.lock = threading.Lock()
        self.server = RunningServer(self.app, "127.0.0.1", 0, quiet=True)
        self.server.start()
        self.url = self.server.url + "/hook"

    def app(self, environ: dict[str, Any], start_response: Any) -> Any:
        body = json.loads(Request(environ).get_data())
        with self.lock:
            self.events += len(body["message"]["events"])
        return Response("", status=200)(environ, start_response)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rss_bytes(pid: int) -> tuple[int, int | None]:
    """(current RSS, peak RSS or None) of the process."""
    peak = None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss, peak
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024, peak
    return 0, peak


def body_for(sbx: Sandbox, product: str, index: int, receiver: str, interval: int) -> dict:
    body = json.loads((EXAMPLES / BODIES[product]).read_text(encoding="utf-8"))
    conf = body["configuration"]
    props = sbx.connection_properties() if not sbx.uses_oauth else None
    conf["URL"] = sbx.base_url
    conf["RateLimit"] = "0"
    conf["event.notification.callback.url"] = receiver
    conf["event.poller.refresh_interval"] = f"{interval}s"
    body["name"] = f"bench-{index}"
    if sbx.uses_oauth:
        client_id, secret = next(iter(sbx.config.clients.items()))
        conf["OAuthTokenURL"] = str(sbx.token_url)
        conf["OAuthClientId"], conf["OAuthClientSecret"] = client_id, secret
        code = f"bench-code-{index}"
        redirect = conf.get("oauth.callback.url") or "http://localhost:33333"
        consent = {"code": code, "redirect_uri": redirect}
        assert requests.post(sbx.url + "/_sandbox/code", json=consent, timeout=10).ok
        body["providerData"] = {"code": code}
    else:
        assert props is not None
        conf["User"], conf["Password"] = props["User"], props["Password"]
    return body


class Changer(threading.Thread):
    """A record changed in the sandbox every ``every`` seconds (an event for each instance)."""

    def __init__(self, sbx: Sandbox, product: str, every: float) -> None:
        super().__init__(daemon=True)
        self.sbx, self.product, self.every = sbx, product, every
        self.stop = threading.Event()
        self.changes = 0

    def run(self) -> None:
        session = requests.Session()
        if self.product == "sage_crm":
            session.auth = ("admin", "sandbox")
        while not self.stop.wait(self.every):
            try:
                if self.product == "sage_crm":
                    answer = session.patch(
                        f"{self.sbx.base_url}/Company('1')",
                        json={"comp_name": f"Bench {self.changes}"},
                        timeout=30,
                    )
                else:
                    token = self.sbx.token()["access_token"]
                    answer = session.post(
                        f"{self.sbx.base_url}/contacts",
                        json={
                            "contact": {
                                "name": f"Bench {self.changes}",
                                "contact_type_ids": ["CUSTOMER"],
                            }
                        },
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=30,
                    )
                if answer.ok:
                    self.changes += 1
            except requests.RequestException:
                pass


def api_load(
    url: str, headers: dict[str, str], ids: list[str], stop: threading.Event, clients: int
) -> dict[str, list[float]]:
    """``clients`` threads calling GET /instances and /status until ``stop``; latencies."""
    timings: dict[str, list[float]] = {"list": [], "status": [], "errors": []}
    lock = threading.Lock()

    def client(n: int) -> None:
        session = requests.Session()
        session.headers.update(headers)
        i = n
        while not stop.is_set():
            i += 1
            kind = "list" if i % 4 == 0 else "status"
            path = "/instances" if kind == "list" else f"/instances/{ids[i % len(ids)]}/status"
            began = time.perf_counter()
            try:
                ok = session.get(url + path, timeout=60).ok
            except requests.RequestException:
                ok = False
            took = time.perf_counter() - began
            with lock:
                timings[kind if ok else "errors"].append(took)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--interval", type=int, default=10, help="seconds between cycles")
    parser.add_argument("--workers", type=int, default=16, help="sagesql serve --workers")
    parser.add_argument("--latency", type=float, default=100.0, help="sandbox latency, ms")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--clients", type=int, default=4, help="concurrent API clients")
    parser.add_argument("--change-every", type=float, default=5.0, help="seconds")
    parser.add_argument("--product", choices=sorted(BODIES), default="sage_accounting")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sagesql-bench-service-"))
    config = SandboxConfig(
        product=args.product,
        rows=50,
        rate_limit_per_minute=0,
        faults=Faults(latency_ms=args.latency),
    )
    sbx = Sandbox(args.product, config).start()
    receiver = Receiver()
    database = f"sqlite:///{tmp / 'service.sqlite'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGESQL_")}
    env.update(
        SAGESQL_SECRET_KEY=Fernet.generate_key().decode(),
        SAGESQL_CONFIG_DIR=str(tmp / "config"),
        SAGESQL_DATA_DIR=str(tmp / "data"),
    )
    made = subprocess.run(
        [SAGESQL, "org", "create", "bench", "--database", database],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    org = json.loads(made.stdout)
    headers = {
        "Authorization": f"User {org['user_secret']}, Organization {org['organization_secret']}"
    }
    log = (tmp / "serve.log").open("w")
    command = [SAGESQL, "serve", "--port", "0", "--database", database, "--rate-limit", "0"]
    command += ["--workers", str(args.workers)]
    serve = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    changer = Changer(sbx, args.product, args.change_every)
    stop = threading.Event()
    memory: list[int] = []
    try:
        assert serve.stdout is not None
        url = serve.stdout.readline().split()[-1]
        print(
            f"sagesql serve (pid {serve.pid}) at {url}; sandbox {args.product} latency "
            f"{args.latency:.0f} ms; {args.instances} instances every {args.interval} s; "
            f"--workers {args.workers}"
        )

        began = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            bodies = [
                body_for(sbx, args.product, i, receiver.url, args.interval)
                for i in range(args.instances)
            ]
            answers = list(
                pool.map(
                    lambda b: requests.post(
                        url + "/instances", json=b, headers=headers, timeout=60
                    ),
                    bodies,
                )
            )
        failed = [a.text for a in answers if a.status_code != 200]
        if failed:
            raise SystemExit(f"{len(failed)} POSTs failed, e.g. {failed[0]}")
        ids = [a.json()["id"] for a in answers]
        created = time.perf_counter() - began
        print(
            f"created {len(ids)} instances in {created:.1f} s "
            f"({created / len(ids) * 1000:.0f} ms each, 8 at a time)"
        )

        def sample_memory() -> None:
            while not stop.wait(0.5):
                memory.append(rss_bytes(serve.pid)[0])

        threading.Thread(target=sample_memory, daemon=True).start()
        changer.start()
        warm = 2 * args.interval
        print(f"warming up {warm} s ...")
        time.sleep(warm)

        def statuses() -> list[dict[str, Any]]:
            session = requests.Session()
            session.headers.update(headers)
            with ThreadPoolExecutor(4) as pool:
                return list(
                    pool.map(
                        lambda i: session.get(f"{url}/instances/{i}/status", timeout=60).json(),
                        ids,
                    )
                )

        first = {s["id"]: s["cycles"] for s in statuses()}
        events_before = receiver.events
        timings = api_load(url, headers, ids, stop, args.clients)
        late: list[float] = []
        lag: list[float] = []
        polling_errors = 0
        measured_from = time.perf_counter()
        while time.perf_counter() - measured_from < args.duration:
            time.sleep(args.interval)
            for s in statuses():
                if s["late_seconds"] is not None:
                    late.append(s["late_seconds"])
                polling_errors += s["error"] is not None
                lag += [r["lag_seconds"] for r in s["resources"] if r["lag_seconds"] is not None]
        measured = time.perf_counter() - measured_from
        stop.set()
        last = {s["id"]: s["cycles"] for s in statuses()}
        cycles = sum(last[i] - first[i] for i in ids)
        due = len(ids) * measured / args.interval
        current, peak = rss_bytes(serve.pid)
        api = timings["list"] + timings["status"]

        print(
            f"measured {measured:.0f} s with {args.clients} API clients and a change every "
            f"{args.change_every:.0f} s ({changer.changes} changes)"
        )
        print(f"cycles: {cycles} run of {due:.0f} due ({cycles / due:.0%} on schedule)")
        print(
            f"cycle start late: p50 {percentile(late, 50):.2f} s, "
            f"p95 {percentile(late, 95):.2f} s, max {max(late, default=0):.2f} s"
        )
        print(
            f"data lag (watermark behind Sage): p50 {percentile(lag, 50):.1f} s, "
            f"p95 {percentile(lag, 95):.1f} s"
        )
        print(f"instances reporting a polling error: {polling_errors} (samples)")
        print(f"events delivered while measured: {receiver.events - events_before}")
        print(
            f"API under load: {len(api)} requests ({len(api) / measured:.0f}/s), "
            f"errors {len(timings['errors'])}; "
            f"p50 {percentile(api, 50) * 1000:.0f} ms, p95 {percentile(api, 95) * 1000:.0f} ms "
            f"(GET /instances p95 {percentile(timings['list'], 95) * 1000:.0f} ms, "
            f"/status p95 {percentile(timings['status'], 95) * 1000:.0f} ms)"
        )
        sampled = max(memory, default=current)
        print(
            f"serve RSS: now {current / 2**20:.0f} MiB, sampled max {sampled / 2**20:.0f} MiB"
            + (f", peak (VmHWM) {peak / 2**20:.0f} MiB" if peak else "")
        )
        print(f"    {statistics.mean(memory) / 2**20 if memory else 0:.0f} MiB on average")
    finally:
        stop.set()
        changer.stop.set()
        serve.send_signal(signal.SIGTERM)
        try:
            code = serve.wait(60)
            print(f"serve stopped on SIGTERM: exit {code}")
        except subprocess.TimeoutExpired:
            serve.kill()
            print("serve did not stop within 60 s of SIGTERM: killed")
        log.close()
        if serve.stdout is not None:
            serve.stdout.close()
        receiver.server.stop()
        sbx.stop()


if __name__ == "__main__":
    main()
