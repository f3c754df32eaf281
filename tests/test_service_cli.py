"""``sagesql org create`` and ``sagesql serve`` as operators run them: real subprocesses.

The organization's secrets printed as JSON (and a taken name refused in one line);
``serve --port 0`` printing its URL once listening, polling an instance POSTed to it,
draining and exiting 0 on SIGTERM, with no secret of the instance in its log; bad
``--database`` URLs and a missing or bad ``SAGESQL_SECRET_KEY`` as one line, exit 2.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import requests
from cryptography.fernet import Fernet
from service_helpers import aimed_at, wait_for
from test_poll_helpers import Receiver

from sagesql.service.secrets import SecretBox, secret_values
from sagesql.service.storage import ServiceDatabase

pytestmark = pytest.mark.slow

SAGESQL = str(Path(sys.executable).parent / "sagesql")
CODE = "1c6ff4089d58d80e86482ab7d5b97f15dd7b041d"
KEY = Fernet.generate_key().decode()


def _env(home: Path, **extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SAGESQL_")}
    environ.update(SAGESQL_CONFIG_DIR=str(home / "config"), SAGESQL_DATA_DIR=str(home / "data"))
    environ.update(extra)
    return environ


def run(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SAGESQL, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(home, **env),
        cwd=home,
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in done.stderr
    return lines[0]


def test_org_create_prints_the_secrets_once_and_refuses_a_taken_name(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'service.sqlite'}"
    made = run(tmp_path, "org", "create", "acme", "--database", url)
    assert made.returncode == 0, made.stderr
    org = json.loads(made.stdout)
    assert org["name"] == "acme" and org["organization_secret"] and org["user_secret"]
    # stored hashed: neither secret is in the file
    stored = (tmp_path / "service.sqlite").read_bytes()
    assert org["organization_secret"].encode() not in stored
    assert org["user_secret"].encode() not in stored
    again = run(tmp_path, "org", "create", "acme", "--database", url)
    assert "already exists" in one_line_error(again) and again.stdout == ""
    other = run(tmp_path, "org", "create", "other", "--database", url)
    assert other.returncode == 0 and json.loads(other.stdout)["name"] == "other"


def _bad_urls(tmp: Path) -> list[tuple[str, str]]:
    (tmp / "a-file").write_text("x")
    (tmp / "not-a-db.sqlite").write_bytes(b"this is not a database file, not at all " * 30)
    return [
        ("bogus://x", "not a database URL"),
        ("sqlite:///", "not a database URL"),
        (str(tmp / "plain.sqlite"), "not a database URL"),
        (f"sqlite:///{tmp / 'a-file' / 'service.sqlite'}", "cannot create"),
        (f"sqlite:///{tmp / 'not-a-db.sqlite'}", "cannot be opened"),
        # a PostgreSQL server that cannot be reached (no network beyond loopback here)
        ("postgresql://db.invalid/sagesql", "cannot be opened"),
    ]


def test_a_bad_database_url_is_one_line_exit_2(tmp_path) -> None:
    for url, said in _bad_urls(tmp_path):
        created = run(tmp_path, "org", "create", "acme", "--database", url)
        assert said in one_line_error(created), url
        served = run(tmp_path, "serve", "--port", "0", "--database", url, SAGESQL_SECRET_KEY=KEY)
        assert said in one_line_error(served), url


def test_serve_refuses_to_start_without_a_good_secret_key(tmp_path) -> None:
    """Instance secrets are never stored unencrypted: no key, no service."""
    url = f"sqlite:///{tmp_path / 'service.sqlite'}"
    missing = one_line_error(run(tmp_path, "serve", "--port", "0", "--database", url))
    assert "SAGESQL_SECRET_KEY is not set" in missing and "Fernet.generate_key()" in missing
    bad = one_line_error(
        run(tmp_path, "serve", "--port", "0", "--database", url, SAGESQL_SECRET_KEY="hunter2")
    )
    assert "not a Fernet key" in bad and "hunter2" not in bad
    # A database is bound to the key it was first served with.
    with Server(tmp_path, url, KEY) as first:
        first.stop()
    other = Fernet.generate_key().decode()
    wrong = one_line_error(
        run(tmp_path, "serve", "--port", "0", "--database", url, SAGESQL_SECRET_KEY=other)
    )
    assert "is not the key" in wrong and other not in wrong and KEY not in wrong


class Server:
    """``sagesql serve --port 0 --verbose`` in a subprocess; its stderr read as it comes."""

    def __init__(self, home: Path, database: str, key: str, *extra: str) -> None:
        self.process = subprocess.Popen(
            [SAGESQL, "serve", "--port", "0", "--database", database, "--verbose", *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(home, SAGESQL_SECRET_KEY=key),
            cwd=home,
        )
        self.stderr: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self._lines.put)),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr.append)),
        ]
        for reader in self._readers:
            reader.start()
        try:
            line = self._lines.get(timeout=60)
        except queue.Empty:
            self.process.kill()
            raise AssertionError("sagesql serve printed no URL: " + "".join(self.stderr)) from None
        assert line.startswith("sagesql serving on http://127.0.0.1:"), line
        self.url = line.split()[-1]

    @staticmethod
    def _read(stream: IO[str], put: Any) -> None:
        for line in stream:
            put(line)

    def stop(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took)."""
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        took = time.monotonic() - began
        for reader in self._readers:
            reader.join(5)
        return code, took

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for reader in self._readers:
            reader.join(5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def test_serve_polls_drains_on_sigterm_and_logs_no_secret(
    tmp_path, start_sandbox, receiver
) -> None:
    sbx = start_sandbox("sage_accounting", rows=10, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path / 'service.sqlite'}"
    made = run(tmp_path, "org", "create", "acme", "--database", url)
    org = json.loads(made.stdout)
    headers = {
        "Authorization": f"User {org['user_secret']}, Organization {org['organization_secret']}"
    }
    body = aimed_at(sbx, "sage_accounting", receiver.url, code=CODE)
    with Server(tmp_path, url, KEY) as server:
        assert requests.get(server.url + "/health", timeout=10).json() == {"status": "ok"}
        answer = requests.post(server.url + "/instances", json=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        instance = answer.json()
        status = f"{server.url}/instances/{instance['id']}/status"

        def polled() -> bool:
            resources = requests.get(status, headers=headers, timeout=10).json()["resources"]
            return bool(resources) and all(r["watermark"] for r in resources)

        wait_for(polled, 60, "a first cycle")
        code, took = server.stop()
    assert code == 0, "".join(server.stderr)
    assert took < 8, f"SIGTERM took {took:.1f} s"
    log = "".join(server.stderr)
    assert f"instance {instance['id']}" in log and "created" in log  # --verbose logs
    assert "Traceback" not in log
    database = ServiceDatabase(url)
    try:
        tokens = SecretBox(KEY).open(database.token_data(instance["id"]))
    finally:
        database.close()
    secrets = [
        *secret_values(body),
        org["organization_secret"],
        org["user_secret"],
        instance["token"],
        tokens["access_token"],
        tokens["refresh_token"],
        body["configuration"]["OAuthClientSecret"],
        KEY,
    ]
    assert len(secret_values(body)) >= 5
    for secret in secrets:
        assert secret not in log, "a secret is in the log of sagesql serve"
