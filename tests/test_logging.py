"""Logfile and Verbosity reach the log through a connection; no secret ever does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from sagesql.sandbox.runner import format_connection_string


def test_logfile_at_verbosity_5_logs_statements_and_requests_but_no_secret(
    start_sandbox: Any, tmp_path: Path
) -> None:
    sbx = start_sandbox("sage_accounting", access_token_lifetime=2)
    props = sbx.connection_properties()
    logfile = tmp_path / "sagesql.log"
    conn = format_connection_string(
        {
            **props,
            "OAuthSettingsLocation": str(tmp_path / "tokens.json"),
            "Logfile": str(logfile),
            "Verbosity": "5",
        }
    )
    sbx.app.clock.advance(5)  # the given access token has expired: a refresh is logged too
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sagesql.cli.main",
            "query",
            "-c",
            conn,
            "-f",
            "jsonl",
            "SELECT id, name FROM customers WHERE name LIKE '%a%' LIMIT 3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    log = logfile.read_text(encoding="utf-8")
    assert "statement: SELECT id, name FROM customers" in log
    assert "GET http://127.0.0.1" in log and "/v3.1/contacts" in log
    stored = (tmp_path / "tokens.json").read_text(encoding="utf-8")
    secrets = [props["OAuthAccessToken"], props["OAuthRefreshToken"], props["OAuthClientSecret"]]
    secrets += [part.split('"')[0] for part in stored.split('"sbx_')[1:]]  # the refreshed pair
    assert len(secrets) >= 5
    for secret in secrets:
        secret = secret if secret.startswith(("sbx_", "sandbox")) else "sbx_" + secret
        assert secret not in log, "a secret reached the log"
        assert secret not in result.stdout + result.stderr
