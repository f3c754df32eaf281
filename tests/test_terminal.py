"""What a person sees: the sagesql command in a real pseudo-terminal, and piped.

Each command runs as a subprocess on a pty of a given size (pexpect), the way a
terminal runs it; the screen is the output with escape sequences dropped and each
carriage return overwriting its line, as a terminal does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pexpect
import pytest
from rich.cells import cell_len

from sagesql.cli import terminal
from sagesql.sandbox.config import Faults
from sagesql.sandbox.runner import format_connection_string
from sagesql.schemas.catalog import default_catalog

pytestmark = pytest.mark.slow

SAGESQL = shutil.which("sagesql") or str(Path(sys.executable).with_name("sagesql"))
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def screen(raw: str) -> list[str]:
    """The lines a terminal shows for ``raw``: escapes dropped, \\r overwrites the line."""
    lines = []
    for line in ANSI.sub("", raw).replace("\r\n", "\n").split("\n"):
        lines.append(line.split("\r")[-1] if "\r" in line else line)
    return lines


def on_pty(args: list[str], *, columns: int = 120, rows: int = 40, timeout: float = 60) -> Any:
    """Run sagesql on a pseudo-terminal of that size: (exit status, screen lines, raw)."""
    env = {"COLUMNS": str(columns), "LINES": str(rows), "PATH": str(Path(SAGESQL).parent)}
    env["HOME"] = str(Path.home())
    child = pexpect.spawn(
        SAGESQL, args, env=env, dimensions=(rows, columns), encoding="utf-8", timeout=timeout
    )
    raw = child.read()
    child.close()
    return child.exitstatus, screen(raw), raw


def piped(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SAGESQL, *args], capture_output=True, text=True, encoding="utf-8", timeout=120, **kw
    )


def connection(sbx: Any, **extra: str) -> str:
    return format_connection_string({**sbx.client_properties(), "RateLimit": "0", **extra})


# -- query rows at a terminal ----------------------------------------------------------


def test_select_star_on_120_columns_shows_every_column_as_records(
    start_sandbox: Callable[..., Any],
) -> None:
    sbx = start_sandbox("sage_accounting", rows=3)
    status, lines, _ = on_pty(["query", "-c", connection(sbx), "SELECT * FROM customers"])
    assert status == 0, lines
    assert all(cell_len(line) <= 120 for line in lines), max(lines, key=cell_len)
    assert sum(line.startswith("-[ RECORD ") for line in lines) == 3
    columns = [c.name for c in default_catalog().table("customers", "sage_accounting").columns]
    pairs = [line.split(" │", 1) for line in lines if " │" in line]
    values = {name.strip(): value.strip() for name, value in pairs}
    assert set(columns) <= set(values)  # every column by its whole name, none squeezed away
    assert values["deleted_at"] == "NULL"
    assert "None" not in values.values()
    assert re.fullmatch(r"-?\d+\.\d\d", values["balance"])  # the API's two places
    assert "(3 rows)" in lines


def test_rows_that_fit_are_a_grid_with_numbers_aligned(start_sandbox: Callable[..., Any]) -> None:
    sbx = start_sandbox("sage_accounting", rows=6)
    sql = "SELECT name, balance, deleted_at FROM contacts ORDER BY name LIMIT 4"
    status, lines, _ = on_pty(["query", "-c", connection(sbx), sql], columns=100)
    assert status == 0, lines
    header = next(i for i, line in enumerate(lines) if line.startswith(" name"))
    assert [c.strip() for c in lines[header].split("│")] == ["name", "balance", "deleted_at"]
    assert set(lines[header + 1]) <= {"─", "┼"}
    body = lines[header + 2 : header + 6]
    balances = [line.split("│")[1] for line in body]
    assert len({len(b) for b in balances}) == 1  # right-aligned in one width
    assert all(re.fullmatch(r" +-?\d+\.\d\d ", b) for b in balances), balances
    assert all(line.split("│")[2].strip() == "NULL" for line in body)
    assert "(4 rows)" in lines


def test_a_narrow_terminal_never_shows_an_empty_column(
    start_sandbox: Callable[..., Any],
) -> None:
    sbx = start_sandbox("sage_200", rows=3)
    sql = "SELECT reference, name, credit_limit, on_hold, account_opened FROM customers"
    status, lines, _ = on_pty(["query", "-c", connection(sbx), sql], columns=60)
    assert status == 0, lines
    assert all(cell_len(line) <= 60 for line in lines)
    names = [line.split(" │ ")[0].strip() for line in lines if " │ " in line]
    assert names[:5] == ["reference", "name", "credit_limit", "on_hold", "account_opened"]
    assert all(line.split(" │ ", 1)[1].strip() for line in lines if " │ " in line)


def test_records_cut_long_values_to_the_width() -> None:
    text = terminal.render(["id", "notes"], [(1, "word " * 100)], width=50)
    lines = text.splitlines()
    assert all(cell_len(line) <= 50 for line in lines)
    assert any(line.endswith("…") for line in lines)


# -- progress --------------------------------------------------------------------------


def test_a_long_read_shows_progress_on_the_terminal_and_nothing_when_piped(
    start_sandbox: Callable[..., Any],
) -> None:
    sbx = start_sandbox("sage_accounting", rows=200, faults=Faults.parse("latency=120"))
    conn = connection(sbx, Pagesize="20", MaxConcurrency="1")
    sql = "SELECT count(*) AS n FROM contacts WHERE name LIKE '%e%'"
    status, lines, raw = on_pty(["query", "-c", conn, sql])
    assert status == 0, lines
    drawn = [part for part in ANSI.sub("", raw).split("\r") if "rows read" in part]
    assert drawn, raw
    assert re.search(r"\d+ rows read · \d+ pages · [\d,]+ rows/s · \d+% · ETA \d+s", drawn[-1])
    assert not any("rows read" in line for line in lines)  # erased before the rows
    out = piped(["query", "-c", conn, sql])
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout.startswith('{"n":')


# -- piped listings --------------------------------------------------------------------


def test_piped_tables_and_describe_are_plain_lines_with_every_name() -> None:
    out = piped(["tables"])
    assert out.returncode == 0
    assert not set(out.stdout) & set("│┃━┏┗┡╇")
    names = {line.split("\t")[1].split(" (")[0] for line in out.stdout.splitlines()[1:]}
    assert names == {t.name for t in default_catalog().tables()}
    grep = subprocess.run(
        f"{SAGESQL} tables -p Sage200 | grep -c sales_", shell=True, capture_output=True, text=True
    )
    expected = sum("sales_" in t.name for t in default_catalog().tables("sage_200"))
    assert int(grep.stdout) == expected
    table = default_catalog().table("sales_invoices", "sage_accounting")
    out = piped(["describe", "sales_invoices"], env={"COLUMNS": "80", "PATH": ""})
    listed = [line.split("\t")[0] for line in out.stdout.splitlines() if "\t" in line]
    assert listed[1:] == [c.name for c in table.columns]
    assert max(len(line) for line in out.stdout.splitlines()) > 80  # nothing wrapped


def test_describe_at_a_terminal_keeps_names_and_types_whole() -> None:
    status, lines, _ = on_pty(["describe", "contacts"], columns=110)
    assert status == 0
    table = default_catalog().table("contacts", "sage_accounting")
    first = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
    assert [n for n in first if n] == [c.name for c in table.columns]
    types = {line.split("│")[2].strip() for line in lines if line.startswith("│")} - {""}
    assert types <= {"TEXT", "INTEGER", "DECIMAL", "BOOLEAN", "DATE", "DATETIME", "JSON"}


# -- version, test, -o -------------------------------------------------------------------


def test_version() -> None:
    from sagesql.version import __version__

    out = piped(["--version"])
    assert (out.returncode, out.stdout) == (0, f"sagesql {__version__}\n")


@pytest.mark.parametrize(
    ("product", "names"),
    [
        ("sage_accounting", ["business"]),
        ("sage_200", ["site", "company", "user"]),
        ("sage_crm", ["user"]),
    ],
)
def test_the_test_command_names_who_the_connection_is(
    start_sandbox: Callable[..., Any], product: str, names: list[str]
) -> None:
    sbx = start_sandbox(product, rows=2)
    status, lines, _ = on_pty(["test", "-c", connection(sbx)])
    assert status == 0, lines
    assert lines[0].startswith(f"ok: {sbx.connection_properties()['Product']} at {sbx.base_url}")
    shown = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    assert list(shown) == names
    if product == "sage_200":
        assert shown["company"] == "Demo Trading Ltd (1)"
    if product == "sage_crm":
        assert shown["user"].endswith("(admin)")


def test_the_test_command_explains_a_failure_in_one_line(
    start_sandbox: Callable[..., Any],
) -> None:
    sbx = start_sandbox("sage_crm", rows=2)
    wrong = connection(sbx, Password="wrong")
    out = piped(["auth", "test", "-c", wrong])
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1
    assert out.stderr.startswith("error: connection test failed (sign in): ")
    out = piped(["test", "-c", "Product=SageCRM;URL=http://127.0.0.1:9;User=a;Password=b"])
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "(reach the API)" in out.stderr and "127.0.0.1:9" in out.stderr


def test_output_file_format_follows_its_extension(
    start_sandbox: Callable[..., Any], tmp_path: Path
) -> None:
    sbx = start_sandbox("sage_crm", rows=3)
    sql = "SELECT comp_companyid, comp_name FROM company ORDER BY comp_companyid"
    for name, first in [
        ("out.csv", "comp_companyid,comp_name"),
        ("out.json", "["),
        ("out.jsonl", '{"comp_companyid":1'),
        ("out.txt", '{"comp_companyid":1'),
    ]:
        out = piped(["query", "-c", connection(sbx), sql, "-o", str(tmp_path / name)])
        assert out.returncode == 0, out.stderr
        assert (tmp_path / name).read_text(encoding="utf-8").startswith(first), name
