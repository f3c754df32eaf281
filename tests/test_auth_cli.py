"""`sagesql properties` and `sagesql auth login|status|logout`, through typer's runner and
real processes, against the sandbox's OAuth server over real HTTP."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pty
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from test_properties import PROPERTY_NAMES, SECRETS
from typer.testing import CliRunner

from sagesql.cli.main import app
from sagesql.connector import connection_string, login
from sagesql.connector.client import open_client
from sagesql.connector.properties import PROPERTIES

runner = CliRunner()


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Own config and data directories, no SAGESQL_ variable of the machine, no browser."""
    for name in [n for n in os.environ if n.startswith("SAGESQL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SAGESQL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("SAGESQL_DATA_DIR", str(tmp_path / "data"))
    # webbrowser finds no browser it may use: the login prints the URL instead.
    monkeypatch.setenv("BROWSER", "/bin/false")
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def login_properties(sbx: Any, port: int) -> dict[str, str]:
    """What a user of GETANDREFRESH writes: the app's id and secret, the endpoints, no token."""
    client_id, secret = next(iter(sbx.config.clients.items()))
    return {
        "Product": "SageAccounting",
        "URL": sbx.base_url,
        "OAuthClientId": client_id,
        "OAuthClientSecret": secret,
        "OAuthTokenURL": sbx.token_url,
        "OAuthAuthorizationURL": sbx.authorization_url,
        "CallbackURL": f"http://localhost:{port}",
    }


def sagesql(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagesql.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def sign_in(url: str) -> str:
    """What the user's browser does at the sandbox: the redirect to the callback URL."""
    answer = requests.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return str(answer.headers["Location"])


def token_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "tokens").glob("*.json"))


def contacts_status(sbx: Any, access_token: str) -> int:
    answer = requests.get(
        sbx.base_url + "/contacts",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )
    return answer.status_code


def status_json(text: str) -> dict[str, Any]:
    result = runner.invoke(app, ["auth", "status", "-c", text, "--format", "json"])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


# -- sagesql properties --------------------------------------------------------------------


def test_properties_json_lists_every_property() -> None:
    result = runner.invoke(app, ["properties", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == PROPERTY_NAMES
    defaults = {p.name: p.default for p in PROPERTIES}
    for row in rows:
        assert row["default"] == defaults[row["name"]]
        assert row["description"].strip()
    assert {r["name"] for r in rows if r["secret"]} == SECRETS
    product = next(r for r in rows if r["name"] == "Product")
    assert product["values"] == ["SageAccounting", "Sage200", "SageCRM"]


def test_properties_table_piped_is_one_plain_line_per_property() -> None:
    result = runner.invoke(app, ["properties"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split("\t") == ["property", "default", "values", "description"]
    rows = {cells[0]: cells for cells in (line.split("\t") for line in lines[1:])}
    assert all(len(cells) == 4 for cells in rows.values())
    assert list(rows) == PROPERTY_NAMES
    assert rows["Product"][1] == "SageAccounting"
    assert rows["InitiateOAuth"][1:3] == ["OFF", "OFF, GETANDREFRESH, REFRESH"]
    assert rows["CallbackURL"][1] == "http://localhost:33333"
    assert (rows["Timeout"][1], rows["MaxRows"][1], rows["Verbosity"][1]) == ("60", "-1", "1")
    assert rows["URL"][1] == ""  # no default: Sage's public API for the product
    for name, cells in rows.items():
        assert cells[3], name  # a description
        assert ("(secret)" in cells[2]) == (name in SECRETS), name
    assert rows["Password"][2] == "text (secret)"


# -- sagesql auth status -------------------------------------------------------------------


def test_auth_status_shows_store_and_expiry_never_a_token(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_accounting", rows=5)
    props = sbx.connection_properties()
    with open_client(**props) as conn:
        conn.transport.get_json("/contacts")
        # The token expires at Sage; the next call refreshes it and stores the new pair.
        requests.post(sbx.url + "/_sandbox/clock", json={"advance": 301}, timeout=10)
        conn.transport.get_json("/contacts")
        assert conn.auth.refreshes == 1
        store = Path(conn.store.location)
    stored = json.loads(store.read_text())
    secrets = [
        stored["access_token"],
        stored["refresh_token"],
        props["OAuthAccessToken"],
        props["OAuthRefreshToken"],
        props["OAuthClientSecret"],
    ]
    text = connection_string.compose(props)

    info = status_json(text)
    assert info["token_store"] == str(store)
    assert info["logged_in"] is True and info["has_refresh_token"] is True
    assert info["initiate_oauth"] == "REFRESH" and info["api"] == sbx.base_url
    assert 240 < info["expires_in_seconds"] <= 300
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["expires_at"])

    table = runner.invoke(app, ["auth", "status", "-c", text], env={"COLUMNS": "400"})
    assert table.exit_code == 0, table.output
    assert str(store) in table.stdout
    # Each status checks the refresh token the only way Sage allows, a refresh: this
    # pair is newer than the JSON's, by the time between the two calls.
    shown = re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", table.stdout)
    assert shown is not None, table.stdout
    later = datetime.fromisoformat(shown.group(0).replace("Z", "+00:00"))
    earlier = datetime.fromisoformat(info["expires_at"].replace("Z", "+00:00"))
    assert timedelta(0) <= later - earlier <= timedelta(seconds=60)
    for output in (json.dumps(info), table.output):
        for secret in secrets:
            assert secret not in output


def test_auth_status_without_tokens_needs_no_mode() -> None:
    # The connection 'auth login' was given (no InitiateOAuth, no token) is enough.
    info = status_json("Product=SageAccounting;OAuthClientId=my-app")
    assert info["logged_in"] is False and info["initiate_oauth"] == "GETANDREFRESH"
    assert Path(info["token_store"]).parent.parent == Path(os.environ["SAGESQL_DATA_DIR"])


# -- sagesql auth login --------------------------------------------------------------------


def _lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):
        into.put(line)


class LoginProcess:
    """`sagesql auth login` (or ``args``) in a process of its own, its stderr read line by
    line."""

    def __init__(self, text: str, stdin: Any, args: list[str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sagesql.cli.main", *(args or ["auth", "login", "-c", text])],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(
            target=_lines, args=(self.process.stderr, self.lines), daemon=True
        )
        self.reader.start()

    def printed_url(self) -> str:
        """The authorization URL the login printed (waits at most 30 s)."""
        while True:
            line = self.lines.get(timeout=30).strip()
            if line.startswith("http"):
                return line

    def finish(self) -> tuple[int, str]:
        """The exit code and the rest of stderr."""
        code = self.process.wait(timeout=30)
        self.reader.join(timeout=10)
        rest = ""
        while not self.lines.empty():
            rest += self.lines.get_nowait()
        return code, rest


@contextlib.contextmanager
def login_process(
    text: str, stdin: Any = subprocess.DEVNULL, args: list[str] | None = None
) -> Iterator[LoginProcess]:
    login = LoginProcess(text, stdin, args)
    try:
        yield login
    finally:
        process = login.process
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _check_logged_in(sbx: Any, data_dir: Path, text: str, output: str) -> None:
    [file] = token_files(data_dir)
    stored = json.loads(file.read_text())
    assert f"tokens stored in {file}" in output
    assert stored["access_token"] not in output and stored["refresh_token"] not in output
    assert contacts_status(sbx, stored["access_token"]) == 200
    # status finds the tokens with the same connection string.
    info = status_json(text)
    assert info["token_store"] == str(file) and info["logged_in"] is True
    assert 240 < info["expires_in_seconds"] <= 300


def test_auth_login_through_the_listener(start_sandbox: Any, data_dir: Path) -> None:
    sbx = start_sandbox("sage_accounting", rows=5)
    port = free_port()
    text = connection_string.compose(login_properties(sbx, port))
    with login_process(text) as process:
        url = process.printed_url()
        assert url.startswith(sbx.authorization_url)
        assert "code_challenge=" in url and "code_challenge_method=S256" in url  # PKCE
        redirect = sign_in(url)
        assert redirect.startswith(f"http://localhost:{port}?code=")
        # The browser follows the redirect to the listener, which ends the login.
        page = requests.get(redirect, timeout=10)
        assert page.status_code == 200 and "login complete" in page.text
        code, rest = process.finish()
    assert code == 0, rest
    _check_logged_in(sbx, data_dir, text, rest)


def test_auth_login_with_the_pasted_redirect_url(start_sandbox: Any, data_dir: Path) -> None:
    sbx = start_sandbox("sage_accounting", rows=5)
    text = connection_string.compose(login_properties(sbx, free_port()))
    main, terminal = pty.openpty()  # a terminal on stdin: the login asks for the paste
    try:
        with login_process(text, stdin=terminal) as process:
            redirect = sign_in(process.printed_url())
            os.write(main, redirect.encode() + b"\n")  # pasted, the listener never called
            code, rest = process.finish()
    finally:
        os.close(main)
        os.close(terminal)
    assert code == 0, rest
    _check_logged_in(sbx, data_dir, text, rest)


def test_auth_login_with_a_browser(
    start_sandbox: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, with the browser injected into the CLI's own call of run_login."""
    sbx = start_sandbox("sage_accounting", rows=5)
    text = connection_string.compose(login_properties(sbx, free_port()))
    opened: list[str] = []

    def browser(url: str) -> bool:
        opened.append(url)
        requests.get(sign_in(url), timeout=10)  # the browser follows it to the listener
        return True

    monkeypatch.setattr(login, "run_login", functools.partial(login.run_login, opener=browser))
    result = runner.invoke(app, ["auth", "login", "-c", text])
    assert result.exit_code == 0, result.output
    assert len(opened) == 1 and "Open this URL" not in result.output  # nothing to paste
    _check_logged_in(sbx, data_dir, text, result.stderr)


def test_auth_login_on_a_busy_callback_port(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_accounting", rows=5)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = sagesql(
            "auth", "login", "-c", connection_string.compose(login_properties(sbx, port))
        )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert f"cannot listen on http://localhost:{port}" in line and "CallbackURL" in line


# -- GETANDREFRESH without a token: a terminal logs in, anything else fails at once ----------


def test_a_run_without_a_terminal_fails_at_once_with_the_ways_to_a_token(
    start_sandbox: Any, data_dir: Path
) -> None:
    """cron, CI, an integration agent: no terminal on stdin or stderr and no stored token.
    The query fails in one line, at once (nothing waits for a browser), with the
    authorization URL and the ways to a token without a browser here; the first of them
    (sign in, then EXEC GetOAuthAccessToken with the redirect URL) then makes the same
    command work."""
    sbx = start_sandbox("sage_accounting", rows=5)
    port = free_port()
    text = connection_string.compose(
        {**login_properties(sbx, port), "InitiateOAuth": "GETANDREFRESH"}
    )
    started = time.monotonic()
    failed = sagesql("query", "-c", text, "SELECT id FROM contacts")
    assert time.monotonic() - started < 15, "it failed at once, not after a login timeout"
    assert failed.returncode == 1 and failed.stdout == ""
    [line] = failed.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("error: not logged in, and no terminal to log in from")
    assert "InitiateOAuth=GETANDREFRESH" in line
    for way in (
        "'sagesql auth login'",
        "OAuthSettingsLocation",
        "InitiateOAuth=REFRESH with OAuthRefreshToken",
        "EXEC GetOAuthAccessToken @AuthMode='WEB', @Verifier='<redirect URL>'",
        "EXEC GetOAuthAuthorizationURL",
    ):
        assert way in line, way
    url = line.rsplit(" ", 1)[1]
    assert url.startswith(sbx.authorization_url + "?") and "client_id=" in url
    assert not token_files(data_dir)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # no listener was left on the callback port
    # The hint works: sign in at the URL, hand the redirect to GetOAuthAccessToken.
    redirect = sign_in(url)
    exchanged = sagesql(
        "query", "-c", text, f"EXEC GetOAuthAccessToken @AuthMode='WEB', @Verifier='{redirect}'"
    )
    assert exchanged.returncode == 0, exchanged.stderr
    assert len(token_files(data_dir)) == 1
    done = sagesql("query", "-c", text, "--format", "json", "SELECT count(*) AS n FROM contacts")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"n": 5}]


def test_a_run_at_a_terminal_still_logs_in(start_sandbox: Any, data_dir: Path) -> None:
    """With a terminal on stdin the query logs in as before: the URL is printed and the
    pasted redirect (or the browser reaching the listener) completes the login."""
    sbx = start_sandbox("sage_accounting", rows=5)
    text = connection_string.compose(
        {**login_properties(sbx, free_port()), "InitiateOAuth": "GETANDREFRESH"}
    )
    args = ["query", "-c", text, "--format", "json", "SELECT count(*) AS n FROM contacts"]
    main, terminal = pty.openpty()
    try:
        with login_process(text, stdin=terminal, args=args) as process:
            redirect = sign_in(process.printed_url())
            os.write(main, redirect.encode() + b"\n")
            code, rest = process.finish()
            out = process.process.stdout.read() if process.process.stdout else ""
    finally:
        os.close(main)
        os.close(terminal)
    assert code == 0, rest
    assert json.loads(out) == [{"n": 5}]
    assert len(token_files(data_dir)) == 1


def test_an_injected_no_terminal_fails_the_connection_and_exec_app_at_once(
    start_sandbox: Any,
) -> None:
    """In process: whether a person can sign in is an object the connection is handed."""
    from sagesql.connector.client import SageClient
    from sagesql.connector.properties import validate
    from sagesql.engine import pipeline
    from sagesql.errors import AuthError

    sbx = start_sandbox("sage_accounting", rows=5)
    props = {
        **login_properties(sbx, free_port()),
        "InitiateOAuth": "GETANDREFRESH",
        "OAuthSettingsLocation": "memory://no-terminal",
    }
    with SageClient(validate(props), interactive=lambda: False) as conn:
        started = time.monotonic()
        with pytest.raises(AuthError, match="no terminal to log in from") as caught:
            list(pipeline.run(conn, "SELECT id FROM contacts"))
        with pytest.raises(AuthError, match="no terminal to log in from"):
            pipeline.run(conn, "EXEC GetOAuthAccessToken")  # AuthMode APP: the browser login
        assert time.monotonic() - started < 5
    assert sbx.authorization_url in str(caught.value)
    assert not [r for r in sbx.app.requests if "/contacts" in r["path"]]


# -- sagesql auth logout -------------------------------------------------------------------


def test_auth_logout_revokes_and_forgets(start_sandbox: Any, data_dir: Path) -> None:
    sbx = start_sandbox("sage_accounting", rows=5)
    props = sbx.connection_properties()
    with open_client(**props) as conn:
        conn.transport.get_json("/contacts")
        store = Path(conn.store.location)
    stored = json.loads(store.read_text())
    assert contacts_status(sbx, stored["access_token"]) == 200
    text = connection_string.compose(props)

    result = sagesql("auth", "logout", "-c", text)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "logged out; tokens revoked at Sage"
    assert not store.exists() and token_files(data_dir) == []
    # Revoked at the sandbox: the refresh token no longer works, nor the access token.
    answer = requests.post(
        sbx.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": stored["refresh_token"],
            "client_id": props["OAuthClientId"],
            "client_secret": props["OAuthClientSecret"],
        },
        timeout=10,
    )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    assert contacts_status(sbx, stored["access_token"]) == 401
    for secret in (stored["access_token"], stored["refresh_token"], props["OAuthClientSecret"]):
        assert secret not in result.stdout + result.stderr

    again = runner.invoke(app, ["auth", "logout", "-c", text])
    assert again.exit_code == 0 and "no tokens were stored" in again.stderr


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["auth", "status", "-c", "Product=Sage300;Timeout=soon"],
            ["Product='Sage300'", "Timeout='soon'"],
        ),
        (
            ["auth", "login", "-c", "Product=SageCRM;URL=http://127.0.0.1:9;User=u;Password=pw-42"],
            ["SageCRM uses User and Password, not OAuth"],
        ),
        (["auth", "logout", "-c", "User=u;Password=abc;hunter2-xyz"], ["after Password"]),
        (["auth", "status", "--profile", "nope"], ["no profile 'nope'"]),
    ],
)
def test_errors_exit_2_with_one_line(args: list[str], expected: list[str]) -> None:
    result = sagesql(*args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    for text in expected:
        assert text in line
    assert "hunter2" not in line and "pw-42" not in line
