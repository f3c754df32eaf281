"""``sagesql query`` as users run it: the console script in a subprocess.

Against ``--sandbox`` for each product, and against a sandbox this test starts, reached
with ``-c`` (so that its request log shows what the command sent): the four formats,
named and positional parameters, SQL from stdin, ``--output``, ``--max-rows``,
``--explain``, the exit codes (0 rows, 2 bad input, 1 API failure), the table format
on a terminal, and the README's first command run as a shell command.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_readme import readme_commands

from sagesql.sandbox.config import SandboxConfig
from sagesql.sandbox.runner import Sandbox

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
SAGESQL = str(BIN / "sagesql")


def clean_env(tmp: Path) -> dict[str, str]:
    """The environment without the user's sagesql settings, and config and data dirs of
    the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGESQL_")}
    env.update(SAGESQL_CONFIG_DIR=str(tmp / "config"), SAGESQL_DATA_DIR=str(tmp / "data"))
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


def sagesql(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SAGESQL, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(home),
        cwd=home,
    )


def jsonl(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def accounting() -> Iterator[Sandbox]:
    """A sandbox of the test's own, reached with -c: its request log shows what was sent."""
    sbx = Sandbox("sage_accounting", SandboxConfig(rate_limit_per_minute=10**6)).start()
    yield sbx
    sbx.stop()


def connection_string(sbx: Sandbox) -> str:
    props = {**sbx.connection_properties(), "OAuthSettingsLocation": "memory://cli"}
    return sbx.connection_string(props)


# -- --sandbox, per product ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("product", "sql", "key"),
    [
        (None, "SELECT id, name FROM customers ORDER BY name LIMIT 3", "id"),
        ("Sage200", "SELECT id, name FROM customers ORDER BY id LIMIT 3", "id"),
        ("SageCRM", "SELECT comp_companyid, comp_name FROM company LIMIT 3", "comp_companyid"),
    ],
)
def test_sandbox_query_prints_json_lines_when_piped(
    home: Path, product: str | None, sql: str, key: str
) -> None:
    args = ["query", "--sandbox", *(["-p", product] if product else []), sql]
    done = sagesql(home, *args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress indicator when stderr is not a terminal
    rows = jsonl(done.stdout)
    assert len(rows) == 3
    assert all(key in row and len(row) == 2 for row in rows)
    if product == "Sage200":
        assert [row["id"] for row in rows] == [1, 2, 3]


# -- formats ---------------------------------------------------------------------------------

SQL = "SELECT id, name, balance, is_active FROM contacts ORDER BY name LIMIT 4"


def test_the_four_formats_carry_the_same_rows(home: Path, accounting: Sandbox) -> None:
    conn = connection_string(accounting)
    out = {
        fmt: sagesql(home, "query", "-c", conn, "-f", fmt, SQL)
        for fmt in ("json", "jsonl", "csv", "table")
    }
    for fmt, done in out.items():
        assert done.returncode == 0, (fmt, done.stderr)
    array = json.loads(out["json"].stdout)
    lines = jsonl(out["jsonl"].stdout)
    assert array == lines and len(lines) == 4
    assert [row["name"] for row in lines] == sorted(row["name"] for row in lines)
    # Money keeps its digits: a JSON number written from the Decimal, not a float's noise.
    assert all(isinstance(row["balance"], (int, float)) for row in lines)
    assert all(isinstance(row["is_active"], bool) for row in lines)
    table = list(csv.reader(io.StringIO(out["csv"].stdout)))
    assert table[0] == ["id", "name", "balance", "is_active"]
    assert [r[1] for r in table[1:]] == [row["name"] for row in lines]
    assert {r[3] for r in table[1:]} <= {"true", "false"}
    for row in lines:
        assert str(row["name"]) in out["table"].stdout


def test_the_table_format_is_the_default_on_a_terminal(home: Path, accounting: Sandbox) -> None:
    main, child = pty.openpty()
    process = subprocess.Popen(
        [SAGESQL, "query", "-c", connection_string(accounting), SQL],
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=child,
        env={**clean_env(home), "COLUMNS": "150"},
        cwd=home,
    )
    os.close(child)
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(main)
    assert process.wait(timeout=30) == 0
    text = output.decode("utf-8", "replace")
    assert "name" in text and "balance" in text
    assert not any(line.startswith("{") for line in text.splitlines())  # not JSON lines


# -- parameters, stdin, output file, max rows ---------------------------------------------------


def test_named_and_positional_parameters(home: Path, accounting: Sandbox) -> None:
    conn = connection_string(accounting)
    named = sagesql(
        home,
        "query",
        "-c",
        conn,
        "--param",
        "city=York",
        "--param",
        "floor=0",
        "SELECT name, main_address_city FROM contacts WHERE main_address_city = :city "
        "AND balance >= :floor",
    )
    assert named.returncode == 0, named.stderr
    rows = jsonl(named.stdout)
    assert rows and {row["main_address_city"] for row in rows} == {"York"}
    positional = sagesql(
        home,
        "query",
        "-c",
        conn,
        "--param",
        "2=0",
        "--param",
        "1=York",
        "SELECT name, main_address_city FROM contacts WHERE main_address_city = ? AND balance >= ?",
    )
    assert positional.returncode == 0, positional.stderr
    assert jsonl(positional.stdout) == rows
    # A value is a value: quotes in it cannot change the statement.
    hostile = sagesql(
        home,
        "query",
        "-c",
        conn,
        "--param",
        "city=York' OR '1'='1",
        "SELECT name FROM contacts WHERE main_address_city = :city",
    )
    assert hostile.returncode == 0 and hostile.stdout == ""
    missing = sagesql(home, "query", "-c", conn, "SELECT name FROM contacts WHERE name = :n")
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")


def test_sql_from_stdin_output_file_and_max_rows(home: Path, accounting: Sandbox) -> None:
    conn = connection_string(accounting)
    target = home / "rows.csv"
    done = sagesql(
        home,
        "query",
        "-c",
        conn,
        "-f",
        "csv",
        "--output",
        str(target),
        "--max-rows",
        "7",
        "-",
        stdin="SELECT id, name\n  FROM contacts\n  ORDER BY id;\n",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    with target.open(encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["id", "name"] and len(rows) == 1 + 7
    assert [r[0] for r in rows[1:]] == sorted(r[0] for r in rows[1:])


def test_max_rows_stops_the_paging(home: Path, accounting: Sandbox) -> None:
    accounting.app.requests.clear()
    done = sagesql(
        home,
        "query",
        "-c",
        connection_string(accounting) + ";Pagesize=5",
        "--max-rows",
        "3",
        "SELECT id FROM contacts",
    )
    assert done.returncode == 0, done.stderr
    assert len(jsonl(done.stdout)) == 3
    pages = [r for r in accounting.app.requests if r["path"] == "/v3.1/contacts"]
    assert len(pages) == 1  # 50 contacts are 10 pages of 5; three rows need the first


# -- --explain -------------------------------------------------------------------------------------


def test_explain_prints_the_plan_and_sends_nothing(home: Path, accounting: Sandbox) -> None:
    accounting.app.requests.clear()
    done = sagesql(
        home,
        "query",
        "-c",
        connection_string(accounting),
        "--explain",
        "SELECT id, name FROM customers WHERE updated_at > '2025-01-01' AND name LIKE '%Ltd'",
    )
    assert done.returncode == 0, done.stderr
    plan = done.stdout
    assert "GET /contacts?" in plan and "contact_type_id=CUSTOMER" in plan
    assert "updated_or_created_since=2025-01-01T00:00:01Z" in plan
    assert "applied by the API: updated_at >" in plan
    assert "re-checked locally: name LIKE '%Ltd'" in plan
    assert "local (SQLite):" in plan
    assert [r for r in accounting.app.requests if not r["path"].startswith("/oauth/")] == []


def test_explain_with_sandbox(home: Path) -> None:
    done = sagesql(
        home,
        "query",
        "--sandbox",
        "-p",
        "SageCRM",
        "--explain",
        "SELECT comp_name FROM company WHERE comp_type = 'Customer' LIMIT 2",
    )
    assert done.returncode == 0, done.stderr
    assert "GET /Company?where=comp_type eq 'Customer'" in done.stdout


# -- exit codes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    ["SELECT * FROM nosuchtable", "SELECT id FROM contacts WHERE updated_at > 'soon'", "SELEC 1"],
)
def test_bad_input_exits_2_with_one_line(home: Path, sql: str) -> None:
    done = sagesql(home, "query", "--sandbox", sql)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_an_unreachable_api_exits_1(home: Path) -> None:
    done = sagesql(
        home,
        "query",
        "-c",
        "Product=SageAccounting;URL=http://127.0.0.1:9/v3.1;OAuthAccessToken=x;Timeout=2",
        "SELECT id FROM contacts LIMIT 1",
    )
    assert done.returncode == 1
    assert done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "unreachable" in last
    assert "Traceback" not in done.stderr


def test_refused_credentials_exit_1(home: Path, accounting: Sandbox) -> None:
    done = sagesql(
        home,
        "query",
        "-c",
        f"Product=SageAccounting;URL={accounting.base_url};OAuthAccessToken=wrong;"
        "InitiateOAuth=OFF;OAuthSettingsLocation=memory://bad",
        "SELECT id FROM contacts LIMIT 1",
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1


# -- the README ----------------------------------------------------------------------------------


def test_the_readme_first_command_prints_rows(home: Path) -> None:
    """The quick start's first command, run by a shell. Its install steps (a fresh venv and
    ``pip install .``) are the packaging tests' and CI's; here the installed script runs
    the rest of the line as written."""
    command = readme_commands()[0]
    query = command.split("&&")[-1].strip()
    assert query.startswith("sagesql query")
    done = subprocess.run(
        query,
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(home),
        cwd=home,
    )
    assert done.returncode == 0, done.stderr
    rows = jsonl(done.stdout)
    assert rows and all("id" in row for row in rows)
