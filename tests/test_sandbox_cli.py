"""`sagesql sandbox serve`: options, one-line errors, and a real foreground process."""

from __future__ import annotations

import importlib.util
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import typer.main
from test_sandbox_core import fake_products  # noqa: F401  (a fixture)
from typer.testing import CliRunner

from sagesql.cli import main
from sagesql.sandbox.products import SITES, ProductSite

# A request that answers 200 with valid credentials, per product's emulator.
PROBES = {"SageAccounting": "/businesses", "Sage200": "/sites", "SageCRM": "/Company"}
INSTALLED = [
    product
    for product, site in SITES.items()
    if importlib.util.find_spec(f"sagesql.sandbox.{site.module}") is not None
]


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Run ``sagesql ARGS`` in this process through the console-script entry point."""
    monkeypatch.setattr(sys, "argv", ["sagesql", *args])
    with pytest.raises(SystemExit) as exited:
        main.run()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def interrupt_when_serving() -> threading.Thread:
    """SIGINT this process once ``serve`` has put its own handler in place."""
    before = signal.getsignal(signal.SIGINT)

    def interrupt() -> None:
        deadline = time.monotonic() + 10
        while signal.getsignal(signal.SIGINT) is before and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    return thread


def connection_strings(out: str) -> dict[str, dict[str, str]]:
    """Product -> connection properties, from serve's printout."""
    found = {}
    for line in out.splitlines():
        if line.strip().startswith("connection "):
            text = line.split(None, 1)[1]
            props = dict(part.split("=", 1) for part in text.split(";"))
            found[props["Product"]] = props
    return found


def test_sandbox_is_a_command_group_with_serve() -> None:
    result = CliRunner().invoke(main.app, ["sandbox", "serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in (
        "--product",
        "--port",
        "--rows",
        "--seed",
        "--db",
        "--faults",
        "--token-lifetime",
        "--rate-limit",
        "--host",
    ):
        assert option in result.stdout


def test_the_cli_does_not_import_the_sandbox_until_asked() -> None:
    code = (
        "import sys; import sagesql.cli.main; "
        "print(sorted(m for m in sys.modules if m.startswith('sagesql.sandbox') or "
        "m.startswith('werkzeug')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "errors=2,foo=1"], "error: bad --faults: bad value '2' for errors; unknown"),
        (["--product", "Sage300"], "error: unknown product 'Sage300'"),
        (["--rows", "0"], "error: --rows 0 must be at least 1"),
        (["--token-lifetime", "0", "--rate-limit", "-1"], "--rate-limit -1 must be 0 (off)"),
        (["--port", "65535"], "error: --port 65535 is out of range (0 to 65533)"),
    ],
)
def test_bad_options_are_one_line_errors_with_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "sandbox", "serve", *args)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert out == ""


@pytest.mark.usefixtures("fake_products")
def test_a_port_in_use_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_cli(
            monkeypatch, capsys, "sandbox", "serve", "-p", "sageaccounting", "--port", str(port)
        )
    assert code == 2
    assert err == (
        f"error: port {port} on 127.0.0.1 is already in use. "
        "choose another --port, or 0 for a free one\n"
    )


def test_a_product_without_an_emulator_fails_cleanly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(
        SITES, "sage_200", ProductSite("sage_200", "_no_such_module", "Sage200App", "/uk")
    )
    code, _, err = run_cli(monkeypatch, capsys, "sandbox", "serve", "--product", "sage200")
    assert code == 2
    assert err.startswith("error: the sandbox has no emulator for Sage200 yet")
    assert err.count("\n") == 1


@pytest.mark.usefixtures("fake_products")
def test_serve_prints_urls_and_connection_strings_and_stops_on_sigint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    interrupt_when_serving()
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "sandbox",
        "serve",
        "--seed",
        "4",
        "--rows",
        "9",
        "--token-lifetime",
        "77",
        "--db",
        str(tmp_path / "data"),
    )
    assert (code, err) == (0, "")
    assert out.count("sandbox (seed 4, 9 rows, data in ") == 3
    assert "access tokens last 77 s" in out and "Press Ctrl-C to stop." in out
    found = connection_strings(out)
    assert sorted(found) == ["Sage200", "SageAccounting", "SageCRM"]
    accounting = found["SageAccounting"]
    assert accounting["InitiateOAuth"] == "REFRESH"
    assert accounting["OAuthTokenURL"] in out and accounting["OAuthAuthorizationURL"] in out
    assert found["SageCRM"]["User"] == "admin" and "OAuthAccessToken" not in found["SageCRM"]
    # The same --db again: seed and rows come from the files; others are refused.
    interrupt_when_serving()
    code, out, err = run_cli(
        monkeypatch, capsys, "sandbox", "serve", "-p", "Sage200", "--db", str(tmp_path / "data")
    )
    assert code == 0 and "seed 4, 9 rows" in out
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "sandbox",
        "serve",
        "-p",
        "Sage200",
        "--seed",
        "5",
        "--db",
        str(tmp_path / "data" / "sage_200.sqlite"),
    )
    assert code == 2 and "was made with seed 4 (not 5)" in err and err.count("\n") == 1


def read_until(stream: queue.Queue[str | None], marker: str, deadline: float) -> str:
    text = ""
    while marker not in text:
        try:
            line = stream.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {marker!r} in time; got:\n{text}") from None
        if line is None:
            raise AssertionError(f"the process ended; it said:\n{text}")
        text += line
    return text


@pytest.mark.slow
@pytest.mark.skipif(not INSTALLED, reason="no product emulator is installed yet")
def test_serve_as_a_real_process() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sagesql.cli.main", "sandbox", "serve", "--rows", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        out = read_until(lines, "Press Ctrl-C", time.monotonic() + 30)
        found = connection_strings(out)
        assert len(found) == len(INSTALLED), out
        for product, props in found.items():
            url = props["URL"] + PROBES[product]
            assert requests.get(url, timeout=10).status_code == 401
            if "OAuthAccessToken" in props:
                bearer = {"Authorization": f"Bearer {props['OAuthAccessToken']}"}
                assert requests.get(url, headers=bearer, timeout=10).status_code == 200
                refreshed = requests.post(
                    props["OAuthTokenURL"],
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": props["OAuthRefreshToken"],
                        "client_id": props["OAuthClientId"],
                        "client_secret": props["OAuthClientSecret"],
                    },
                    timeout=10,
                )
                assert refreshed.status_code == 200, refreshed.text
            else:
                basic = (props["User"], props["Password"])
                assert requests.get(url, auth=basic, timeout=10).status_code == 200
        process.send_signal(signal.SIGINT)
        started = time.monotonic()
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - started < 3
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def readme_sandbox_section() -> str:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    return text.split("## Sandbox\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_documents_every_serve_option_and_its_examples_parse() -> None:
    command = typer.main.get_command(main.app)
    serve = command.commands["sandbox"].commands["serve"]  # type: ignore[attr-defined]
    options = {o for p in serve.params for o in p.opts if o.startswith("--")} - {"--help"}
    section = readme_sandbox_section()
    documented = set(re.findall(r"^\| `(--[a-z-]+)", section, re.M))
    assert documented == options
    examples = re.search(r"```sh\n(.*?)```", section, re.S)
    assert examples
    for line in examples.group(1).splitlines():
        args = line.split()
        assert args[:3] == ["sagesql", "sandbox", "serve"]
        with serve.make_context("serve", args[3:]) as ctx:  # parses and checks types only
            assert ctx.params["host"] == "127.0.0.1"
