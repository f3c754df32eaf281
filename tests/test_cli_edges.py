"""The console script at its edges, in real subprocesses: bad input is one line and exit 2,
never "internal error ... please report it"; files holding customer data are private;
usage errors are one line; SQL that starts with a comment is SQL."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_poll_helpers import connection_string

from sagesql.activities.polling import runner
from sagesql.activities.polling.loading import load
from sagesql.activities.polling.sqlite_state import SQLiteStateStore
from sagesql.cli.query_commands import _is_sql
from sagesql.errors import ConfigurationError

BIN = Path(sys.executable).parent
SAGESQL = str(BIN / "sagesql")


def run(
    home: Path,
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SAGESQL_")}
    environ.update(SAGESQL_CONFIG_DIR=str(home / "config"), SAGESQL_DATA_DIR=str(home / "data"))
    environ.update(env or {})
    done = subprocess.run(
        [SAGESQL, *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=60,
        env=environ,
        cwd=home,
        preexec_fn=lambda: os.umask(0o022),  # the usual umask: files would be 0644
    )
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def one_line_error(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The single stderr line of a failed command (exit ``code``), no traceback, no box."""
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    (line,) = lines
    assert line.startswith("error: ") and "internal error" not in line, line
    assert "Traceback" not in done.stderr and "╭" not in done.stderr
    return line


# -- item 7: bad input is one line and exit 2 ---------------------------------------------


def test_output_into_a_missing_folder(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "out.json"
    line = one_line_error(run(tmp_path, "query", "-o", str(target), "SELECT 1"))
    assert f"cannot write --output {target}" in line
    assert f"the folder {target.parent} does not exist" in line


def test_sql_on_stdin_that_is_not_utf8(tmp_path: Path) -> None:
    line = one_line_error(run(tmp_path, "query", "-", stdin=b"SELECT 'caf\xe9' AS x"))
    assert "the SQL on stdin is not UTF-8 text (byte 0xe9 at offset 11)" in line


TOKEN_FILES: list[tuple[str, Any]] = [
    ("expires_at is not a number", {"access_token": "a1", "expires_at": "tomorrow"}),
    ("access_token is int, not text", {"access_token": 12345}),
    ("refresh_token is list, not text", {"access_token": "a1", "refresh_token": ["r"]}),
    ("access_token is empty or holds spaces or control characters", {"access_token": "a1\nb2"}),
    (
        "refresh_token is empty or holds spaces or control characters",
        {"access_token": "a1", "refresh_token": "r1\r\nX-Evil: 1"},
    ),
]


@pytest.mark.parametrize(("problem", "content"), TOKEN_FILES, ids=[p for p, _ in TOKEN_FILES])
def test_a_token_file_with_wrong_types_or_a_newline(
    tmp_path: Path, problem: str, content: Any
) -> None:
    file = tmp_path / "tokens.json"
    file.write_text(json.dumps(content))
    conn = (
        "Product=SageAccounting;URL=http://127.0.0.1:9/v3.1;InitiateOAuth=GETANDREFRESH;"
        f"OAuthClientId=app;OAuthSettingsLocation={file}"
    )
    line = one_line_error(run(tmp_path, "query", "-c", conn, "SELECT id FROM contacts"))
    assert f"cannot read the token file {file}: {problem}" in line
    assert "sagesql auth login" in line


def test_a_symlink_at_the_token_store_s_lock_path(tmp_path: Path) -> None:
    file = tmp_path / "tokens.json"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "tokens.json.lock").symlink_to(victim)
    conn = f"Product=SageAccounting;OAuthClientId=app;OAuthSettingsLocation={file}"
    line = one_line_error(run(tmp_path, "auth", "logout", "-c", conn))
    assert f"the token store's lock file {file}.lock is a symbolic link" in line
    assert victim.read_text() == "precious"


def _poll_config(tmp_path: Path, **lines: str) -> Path:
    config = tmp_path / "edge.toml"
    settings = {"name": "edge", "start": "2020-01-01T00:00:00Z", "delay": "0s", **lines}
    head = "".join(f'{k} = "{v}"\n' for k, v in settings.items())
    config.write_text(
        f'{head}\n[[tables]]\ntable = "accounts"\ndeletes = "off"\n\n'
        '[[sinks]]\ntype = "jsonl"\npath = "out/events.jsonl"\n'
    )
    return config


CRM = "Product=SageCRM;URL=http://127.0.0.1:9/sdata/crmj/sagecrm2/-/;User=u;Password=p"


def test_a_symlink_at_the_poll_state_s_lock_path(tmp_path: Path) -> None:
    config = _poll_config(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "edge.poll.sqlite.lock").symlink_to(victim)
    line = one_line_error(run(tmp_path, "poll", "--once", "--config", str(config), "-c", CRM))
    assert "the poll state's lock file" in line and "is a symbolic link" in line
    assert victim.read_text() == "precious"


def test_a_corrupt_poll_state_file(tmp_path: Path) -> None:
    config = _poll_config(tmp_path)
    state = tmp_path / "edge.poll.sqlite"
    state.write_bytes(b"this is not a database, it is a shopping list\n" * 100)
    line = one_line_error(run(tmp_path, "poll", "status", "--config", str(config)))
    assert f"the poll state {state} is not a usable SQLite database" in line
    assert f"mv {state} {state}.damaged" in line
    # The writer's way in (poll, replay, reset) says the same.
    with pytest.raises(ConfigurationError, match="not a usable SQLite database"):
        SQLiteStateStore(state)


@pytest.mark.slow  # about 3.5 s: the 2 s wait for the lock, two interpreters starting
def test_a_poll_state_locked_by_another_process_fails_fast_naming_it(tmp_path: Path) -> None:
    config = _poll_config(tmp_path)
    state = tmp_path / "edge.poll.sqlite"
    SQLiteStateStore(state).close()  # as a first poller leaves it
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(state)!r}, isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE')\n"
            "c.execute(\"UPDATE poll_meta SET value = value WHERE name = 'format'\")\n"
            "print('holding', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        started = time.monotonic()
        reset = run(
            tmp_path, "poll", "reset", "--config", str(config),
            "--table", "accounts", "--since", "2026-01-01T00:00:00Z",
        )  # fmt: skip
        took = time.monotonic() - started
        line = one_line_error(reset)
        assert f"the poll state {state} is locked by another process" in line
        if Path("/proc/locks").exists():
            assert f"held by pid {holder.pid} (python" in line
        assert took < 10, took  # OPEN_WAIT (2 s) and the start-up, not the 30 s busy wait
        # Reading needs no write lock: status still answers.
        (row,) = runner.status(load(str(config)))
        assert row["table"] == "accounts"
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()


# -- item 8: customer data in private files ------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow  # about 3 s: a sandbox and a poller in a subprocess
def test_state_sinks_and_logfile_are_created_0600_in_0700_folders(
    start_sandbox: Any, tmp_path: Path
) -> None:
    sbx = start_sandbox("sage_crm", rows=5, rate_limit_per_minute=0)
    config = _poll_config(tmp_path, state="state/deeper/edge.sqlite")
    log = tmp_path / "logs" / "deeper" / "sagesql.log"
    conn = f"{connection_string(sbx)};Logfile={log};Verbosity=3"
    done = run(tmp_path, "poll", "--once", "--config", str(config), "-c", conn)
    assert done.returncode == 0, done.stderr
    events = tmp_path / "out" / "events.jsonl"
    assert len(events.read_text().splitlines()) == 5  # every record, as events
    state = tmp_path / "state" / "deeper" / "edge.sqlite"
    assert "/Company" in log.read_text()  # requests and bodies: Verbosity 3
    private_files = [state, events, log] + [
        p for p in (Path(f"{state}-wal"), Path(f"{state}-shm")) if p.exists()
    ]
    for file in private_files:
        assert mode(file) == 0o600, f"{file}: {oct(mode(file))}"
    for folder in (
        tmp_path / "state",
        tmp_path / "state" / "deeper",
        tmp_path / "out",
        tmp_path / "logs",
        tmp_path / "logs" / "deeper",
    ):
        assert mode(folder) == 0o700, f"{folder}: {oct(mode(folder))}"
    # The state is intact and private while a poller has it open, -wal and -shm included.
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT count(*) FROM poll_tables").fetchone()[0] == 1


# -- item 9: usage errors are one line; SQL may start with a comment -------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["query", "--frmat", "json", "SELECT 1"], "No such option: --frmat"),
        (["poll", "status", "--format"], "Option '--format' requires an argument"),
        (["nosuch"], "No such command 'nosuch'"),
        (["query", "--max-rows", "-3", "SELECT 1"], "Invalid value for '--max-rows'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    line = one_line_error(run(tmp_path, *args))
    assert words in line and "--help" in line


def test_sql_starting_with_a_comment_is_sql_not_an_option(tmp_path: Path) -> None:
    sql = "-- note\nSELECT count(*) AS n FROM contacts"
    done = run(tmp_path, "query", "--sandbox", "-f", "json", sql)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert isinstance(row["n"], int)
    # The same rule, without starting a sandbox: which arguments are SQL.
    assert _is_sql("-- note\nSELECT 1") and _is_sql("--note\nSELECT 1")
    assert not _is_sql("--param=name=a b") and not _is_sql("-") and not _is_sql("--format")
