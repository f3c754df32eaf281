"""``sagesql sync`` as a person sees it: the progress line on a terminal, and Ctrl-C.

Real ``sagesql`` processes on a pseudo-terminal (pexpect) against an in-process sandbox
(Sage CRM: basic auth, so no token store is shared between the processes).
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest
from replication_helpers import assert_same

from sagesql.sandbox.config import Faults
from sagesql.sandbox.runner import format_connection_string

pytestmark = pytest.mark.slow

SAGESQL = shutil.which("sagesql") or str(Path(sys.executable).with_name("sagesql"))


def _connection(sbx: Any) -> str:
    return format_connection_string({**sbx.client_properties(), "RateLimit": "0", "Pagesize": "50"})


def _interactive_signals() -> None:
    # As a terminal's shell starts a command: Ctrl-C interrupts it, even when this test
    # run itself was started in the background (which ignores SIGINT for its children).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spawn(args: list[str]) -> Any:
    env = {"PATH": str(Path(SAGESQL).parent), "HOME": str(Path.home()), "COLUMNS": "100"}
    return pexpect.spawn(
        SAGESQL,
        args,
        env=env,
        dimensions=(40, 100),
        encoding="utf-8",
        timeout=90,
        preexec_fn=_interactive_signals,
    )


def _state(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        cursor = conn.execute("SELECT * FROM _sagesql_sync WHERE name = 'company'")
        names = [d[0] for d in cursor.description]
        return dict(zip(names, cursor.fetchone(), strict=True))
    finally:
        conn.close()


def test_progress_per_table_on_a_terminal_and_none_when_piped(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_crm", rows=400, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/copy.sqlite"
    child = _spawn(["sync", "-c", _connection(sbx), "--to", url, "company", "person"])
    raw = child.read()
    child.close()
    assert child.exitstatus == 0, raw
    # The line is rewritten in place as pages arrive, per table, then cleared.
    assert "\r\x1b[Kcompany: copy 50 rows" in raw and "\r\x1b[Kcompany: copy 400 rows" in raw
    assert "\r\x1b[Kperson: copy" in raw
    last = raw.replace("\r\n", "\n").split("\n")
    shown = [line.split("\r")[-1].replace("\x1b[K", "") for line in last if line.strip()]
    assert shown[0].startswith("company: 400 copied"), shown
    assert shown[1].startswith("person: ") and "copied" in shown[1], shown
    # Piped: the summary only, no carriage returns or escapes.
    done = subprocess.run(
        [SAGESQL, "sync", "-c", _connection(sbx), "--to", url, "company"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    assert done.stderr.startswith("company: no changes"), done.stderr


def test_ctrl_c_mid_copy_keeps_what_was_committed_and_the_next_run_completes(
    start_sandbox, tmp_path
) -> None:
    # Slow answers: the copy of 2,000 rows in pages of 50 takes a few seconds.
    sbx = start_sandbox(
        "sage_crm", rows=2000, rate_limit_per_minute=0, faults=Faults(latency_ms=60)
    )
    path = tmp_path / "copy.sqlite"
    url = f"sqlite:///{path}"
    child = _spawn(["sync", "-c", _connection(sbx), "--to", url, "company"])
    child.expect(r"company: copy [0-9,]*[05]00 rows")  # a few pages in
    child.sendintr()  # Ctrl-C: SIGINT to the foreground process, as a terminal sends it
    rest = child.read()
    child.close()
    assert child.exitstatus == 130, rest
    lines = [line.split("\r")[-1].replace("\x1b[K", "") for line in rest.splitlines()]
    lines = [line for line in lines if line.strip() and line.strip() != "^C"]
    assert lines == [
        "sync interrupted: what was copied is committed: run the same command again to continue"
    ], rest
    assert "Traceback" not in rest
    # The position committed with the pages: a copy under way, after the last key written.
    state = _state(path)
    cursor = json.loads(state["cursor"])
    conn = sqlite3.connect(path)
    (held,) = conn.execute("SELECT count(*) FROM company").fetchone()
    (last,) = conn.execute("SELECT max(comp_companyid) FROM company").fetchone()
    conn.close()
    assert cursor["phase"] == "copy" and 0 < held < 2000, (cursor, held)
    assert cursor["ck"] == last
    # The next run continues there and ends with the API's rows.
    done = subprocess.run(
        [SAGESQL, "sync", "-c", _connection(sbx), "--to", url, "company"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    copied = int(done.stderr.split(": ", 1)[1].split(" copied")[0])
    assert copied == 2000 - held, done.stderr  # not from the start again
    assert _state(path)["cursor"] is None
    assert_same(sbx, url, ["company"])
