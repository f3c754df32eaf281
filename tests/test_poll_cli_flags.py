"""``sagesql poll`` as integration users run it, in real subprocesses against a sandbox.

A trial run's events go elsewhere (``--callback-url``, ``--sink``) without editing the
file; ``--once`` says in its exit code and one line what it could not deliver; every
subcommand takes the connection options; ``-v`` is a count and every line is printed
once; ``--explain`` starts from the stored watermark and says when ids are compared.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from test_poll_helpers import Receiver, connection_string, frozen_at, seconds, utc

pytestmark = pytest.mark.slow  # every test runs the CLI in subprocesses

T0 = utc(2026, 7, 1, 10, 0, 0)
T1 = T0 + seconds(30)
AUTH = ("admin", "sandbox")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def _cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SAGESQL_")}
    environ.update(SAGESQL_CONFIG_DIR=str(home / "config"), SAGESQL_DATA_DIR=str(home / "data"))
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sagesql.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        cwd=home,
    )


def _config(tmp_path: Path, *sinks: str, **settings: str) -> Path:
    """A CRM poller of accounts (deletes off: one request a cycle) with these sinks."""
    head = {"name": "flags", "delay": "0s", **settings}
    text = "".join(f'{k} = "{v}"\n' for k, v in head.items())
    text += '\n[[tables]]\ntable = "accounts"\ndeletes = "off"\n'
    text += "".join(f"\n[[sinks]]\n{s}\n" for s in sinks)
    path = tmp_path / "flags.toml"
    path.write_text(text, encoding="utf-8")
    return path


JSONL = 'type = "jsonl"\nname = "file"\npath = "configured.jsonl"'


def _webhook(url: str, **extra: str) -> str:
    lines = ['type = "webhook"', 'name = "hook"', f'url = "{url}"']
    return "\n".join(lines + [f'{k} = "{v}"' for k, v in extra.items()])


def _change(sbx: Any, key: int, when: Any) -> None:
    frozen_at(sbx, when)
    answer = requests.patch(
        f"{sbx.base_url}/Company('{key}')", json={"comp_status": f"S{key}"}, auth=AUTH
    )
    assert answer.status_code == 200, answer.text
    frozen_at(sbx, when + seconds(5))


def _started(sbx: Any, tmp_path: Path, config: Path) -> list[str]:
    """The first run (the baseline), then a change: the next run has one event."""
    frozen_at(sbx, T0)
    common = ["--config", str(config), "-c", connection_string(sbx)]
    first = _cli(tmp_path, "poll", *common, "--once")
    assert first.returncode == 0, first.stderr
    _change(sbx, 5, T1)
    return common


# -- trial runs ---------------------------------------------------------------------------


def test_sink_stdout_replaces_every_sink_for_the_run(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_crm", rows=20, rate_limit_per_minute=0)
    config = _config(tmp_path, JSONL, _webhook("http://127.0.0.1:9/never"))
    common = _started(sbx, tmp_path, config)
    done = _cli(tmp_path, "poll", *common, "--once", "--sink", "stdout")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    event = json.loads(line)
    assert (event["objectType"], event["eventType"], event["objectId"]) == (
        "accounts",
        "UPDATED",
        "5",
    )
    assert event["raw"]["comp_status"] == "S5"
    assert (tmp_path / "configured.jsonl").read_text() == ""  # the configured sinks: nothing
    # A file instead: jsonl:PATH, relative to where the command runs.
    _change(sbx, 6, T1 + seconds(10))
    done = _cli(tmp_path, "poll", *common, "--once", "--sink", "jsonl:trial/out.jsonl")
    assert done.returncode == 0, done.stderr
    (line,) = (tmp_path / "trial" / "out.jsonl").read_text().splitlines()
    assert json.loads(line)["objectId"] == "6" and done.stdout == ""
    status = json.loads(_cli(tmp_path, "poll", "status", *common, "-f", "json").stdout)
    assert status[0]["dead_letters"] == 0  # nothing of the real sinks was parked


def test_callback_url_replaces_the_webhook_url_keeping_its_signature(
    start_sandbox, tmp_path, receiver
) -> None:
    sbx = start_sandbox("sage_crm", rows=20, rate_limit_per_minute=0)
    hook = _webhook("http://127.0.0.1:9/never", signature_key="k3y")
    config = _config(tmp_path, hook, JSONL)
    common = _started(sbx, tmp_path, config)
    done = _cli(tmp_path, "poll", *common, "--once", "--callback-url", receiver.url)
    assert done.returncode == 0, done.stderr
    (message,) = receiver.messages()
    assert [e["objectId"] for e in message["events"]] == ["5"]
    assert message["raw"]["accounts"][0]["comp_companyid"] == 5
    assert receiver.headers[0]["Elements-Webhook-Signature"].startswith("sha256=")
    # The other sinks still get the run's events.
    (line,) = (tmp_path / "configured.jsonl").read_text().splitlines()
    assert json.loads(line)["objectId"] == "5"


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--callback-url", "http://x/h", "--sink", "stdout"], "--callback-url and --sink"),
        (["--sink", "kafka:topic"], "--sink 'kafka:topic' is not stdout or jsonl:PATH"),
        (["--sink", "jsonl"], "is not stdout or jsonl:PATH"),
        (["--callback-url", "ftp://x/h"], "--callback-url: a webhook needs url"),
    ],
)
def test_trial_flags_are_checked(tmp_path, args, problem) -> None:
    config = _config(tmp_path, _webhook("http://127.0.0.1:9/h"))
    done = _cli(tmp_path, "poll", "--config", str(config), "--once", *args)
    assert done.returncode == 2, done.stderr
    assert problem in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_callback_url_needs_a_webhook_sink(tmp_path) -> None:
    config = _config(tmp_path, JSONL)
    done = _cli(tmp_path, "poll", "--config", str(config), "--callback-url", "http://x/h")
    assert done.returncode == 2 and "has no webhook sink" in done.stderr


# -- --once: what it could not deliver ------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "left"),
    [(503, "1 wait for a retry, 0 parked"), (401, "0 wait for a retry, 1 parked")],
)
def test_once_exits_3_when_messages_are_left(start_sandbox, tmp_path, receiver, status, left):
    sbx = start_sandbox("sage_crm", rows=20, rate_limit_per_minute=0)
    config = _config(tmp_path, _webhook(receiver.url))
    common = _started(sbx, tmp_path, config)
    receiver.status = status
    done = _cli(tmp_path, "poll", *common, "--once")
    assert done.returncode == 3, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if "not delivered" in x]
    assert f"1 message(s) not delivered: {left}" in line


def test_once_still_exits_1_when_a_table_failed(tmp_path) -> None:
    config = _config(tmp_path, JSONL, start="2026-01-01T00:00:00Z")
    closed = "Product=SageCRM;URL=http://127.0.0.1:9/sdata/crmj/sagecrm2/-;User=a;Password=b"
    done = _cli(tmp_path, "poll", "--config", str(config), "-c", closed, "--once")
    assert done.returncode == 1, done.stderr
    assert "accounts: failed" in done.stderr


# -- subcommands, -v, explain -----------------------------------------------------------------


def test_every_subcommand_takes_the_connection_options(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_crm", rows=20, rate_limit_per_minute=0)
    config = _config(tmp_path, JSONL)
    profiles = tmp_path / "config" / "profiles.toml"
    profiles.parent.mkdir(parents=True)
    properties = dict(p.split("=", 1) for p in connection_string(sbx).split(";"))
    profiles.write_text(
        "[profiles.box]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in properties.items())
    )
    common = _started(sbx, tmp_path, config)
    for args in (
        ["status", *common],
        ["status", "--config", str(config), "--profile", "box"],
        ["replay", *common],
        ["replay", "--config", str(config), "--profile", "box"],
        ["reset", *common, "--table", "accounts", "--since", "2026-07-01T10:00:00Z"],
        [
            "reset",
            "--config",
            str(config),
            "--profile",
            "box",
            "--table",
            "accounts",
            "--since",
            "2026-07-01T10:00:00Z",
        ],
    ):
        done = _cli(tmp_path, "poll", *args)
        assert done.returncode == 0, (args, done.stderr)


def test_verbose_is_a_count_flag_and_every_line_is_printed_once(start_sandbox, tmp_path) -> None:
    help_text = _cli(tmp_path, "poll", "--help", env={"COLUMNS": "200"}).stdout
    (line,) = [x for x in help_text.splitlines() if "--verbose" in x]
    assert "-v" in line and "<int>" not in line and "INTEGER" not in line
    assert "default" not in line
    sbx = start_sandbox("sage_crm", rows=20, rate_limit_per_minute=0)
    config = _config(tmp_path, JSONL)
    common = _started(sbx, tmp_path, config)
    done = _cli(tmp_path, "poll", *common, "--once", "-v")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len([x for x in lines if "accounts: 1 UPDATED" in x]) == 1, done.stderr
    assert len(lines) == len(set(re.sub(r"^\S+ \S+ ", "", x) for x in lines)), done.stderr
    # Without -v: the table with events, once; with -vv the requests as well.
    _change(sbx, 6, T1 + seconds(10))
    quiet = _cli(tmp_path, "poll", *common, "--once")
    assert [x for x in quiet.stderr.splitlines() if "accounts:" in x] != []
    assert len(quiet.stderr.splitlines()) == 1, quiet.stderr
    loud = _cli(tmp_path, "poll", *common, "--once", "-vv")
    assert "sagesql.http: GET" in loud.stderr and loud.returncode == 0


def test_explain_starts_from_the_stored_watermark(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_200", rows=20, rate_limit_per_minute=0)
    config = tmp_path / "s200.toml"
    config.write_text(
        'name = "s200"\ndelay = "0s"\nlookback = "1m"\ntables = ["customers"]\n\n'
        '[[sinks]]\ntype = "jsonl"\npath = "out.jsonl"\n'
    )
    common = ["--config", str(config), "-c", connection_string(sbx)]
    before = _cli(tmp_path, "poll", *common, "--explain")
    assert before.returncode == 0, before.stderr
    assert "no state yet" in before.stdout
    assert "the next comparison runs at the next cycle" in before.stdout
    frozen_at(sbx, T0)
    assert _cli(tmp_path, "poll", *common, "--once").returncode == 0
    explain = _cli(tmp_path, "poll", *common, "--explain")
    assert explain.returncode == 0, explain.stderr
    out = explain.stdout
    assert "from the stored watermark 2026-07-01T10:00:00Z" in out
    # The window's lower bound is the watermark (the baseline: nothing before it).
    assert "date_time_updated ge 2026-07-01T10:00:00.000Z" in out
    assert "the next comparison runs at the 3rd cycle from now" in out
    assert "GET /customers?$orderby=id asc&$select=id" in out
