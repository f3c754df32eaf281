"""The platforms' published instance bodies: read as published, and carrying their connection.

The three bodies in ``activities/polling/examples/`` are the platforms' documentation's,
byte for byte. These tests read them as the platforms' pollers do (hub field names, Sage
parameters written as conditions, a quote never closed, a url naming another resource)
and check that the instance is the connection: product, OAuth client, the code exchanged
once against the sandbox's OAuth server, Sage 200's company by name, CRM's server and
user, the subscription key, with ``-c`` winning over all of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from sagesql.activities.polling import loading
from sagesql.activities.polling.tables import resolve
from sagesql.connector.sources import load_settings
from sagesql.errors import ConfigurationError
from sagesql.schemas.catalog import default_catalog

PUBLISHED = Path(__file__).resolve().parent.parent / "activities" / "polling" / "examples"
# SHA-256 of the bodies as the platforms' documentation publishes them.
DIGESTS = {
    "sage-accounting.instance.json": (
        "5a3f1c442eb42ac32da948f9e2f8298efd593bab1d34ab1f7ff6ef9d178b8467"
    ),
    "sage-200.instance.json": "896c5248d6881810dc67667987adc17f7578083f5a6a5232beaddebcdf933596",
    "sage-crm.instance.json": "1dec538a5840f7b3640736cfec6789d0161d2186b1876576c9f0fc8843f6e10e",
}
CODE = "1c6ff4089d58d80e86482ab7d5b97f15dd7b041d"  # the Accounting body's providerData.code


def _specs(name: str, product: str) -> dict[str, Any]:
    config = loading.load(PUBLISHED / name)
    return {s.name: s for s in resolve(config, default_catalog(), product)}


def test_the_published_bodies_are_kept_byte_for_byte() -> None:
    for name, digest in DIGESTS.items():
        assert hashlib.sha256((PUBLISHED / name).read_bytes()).hexdigest() == digest, name
    assert sorted(p.name for p in PUBLISHED.glob("*.json")) == sorted(DIGESTS)


def test_accounting_reads_the_hub_s_names_its_parameter_and_its_open_quote(caplog) -> None:
    caplog.set_level(logging.WARNING, "sagesql.poll")
    spec = _specs("sage-accounting.instance.json", "sage_accounting")["customers"]
    assert spec.table.name == "customers" and spec.updated == "updated_at"
    assert spec.created == "created_at" and spec.id_field == "id"
    assert spec.filter is None  # attributes= is a parameter, not a condition
    # attributes='created_at,updated_at': those fields and the three every item carries.
    tops = {spec.table.column(c).path[0] for c in spec.columns}
    assert tops == {"id", "displayed_as", "$path", "created_at", "updated_at"}
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "last single quote is never closed; read as if closed at the end" in warning


def test_sage_200_maps_the_hub_s_dates_hyphens_and_follows_a_url_to_another_table(caplog) -> None:
    caplog.set_level(logging.WARNING, "sagesql.poll")
    specs = _specs("sage-200.instance.json", "sage_200")
    assert {n: s.table.name for n, s in specs.items()} == {
        "customers": "customers",
        "payments": "sales_posted_transactions",
        "invoices": "sales_posted_transactions",
        "products": "products",
        "transactions": "customers",
        "warehouse-holdings": "warehouse_holdings",
        "warehouses": "warehouses",
    }
    for spec in specs.values():
        assert (spec.updated, spec.created) == ("date_time_updated", "date_time_created")
        assert spec.deletes == "compare"
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "'transactions' is not a table" in warning and "polls 'customers'" in warning


def test_a_body_read_again_does_not_warn_again(caplog) -> None:
    # The service reads an instance's body each time its session opens: 200 instances
    # gave ~400 copies of the same two lines.
    caplog.set_level(logging.WARNING, "sagesql.poll")
    for _ in range(3):
        _specs("sage-accounting.instance.json", "sage_accounting")
        _specs("sage-200.instance.json", "sage_200")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert "never closed" in warnings[0] and "'transactions' is not a table" in warnings[1]


def test_crm_reads_its_own_column_names_in_any_case_and_key_as_the_key() -> None:
    specs = _specs("sage-crm.instance.json", "sage_crm")
    assert specs["leads"].created == "lead_createddate"
    assert specs["accounts"].updated == "comp_updateddate"
    assert {n: s.id_field for n, s in specs.items()} == {
        "accounts": "comp_companyid",
        "contacts": "pers_personid",
        "leads": "lead_leadid",
        "opportunities": "oppo_opportunityid",
        "users": "user_userid",
    }


def _instance(tmp_path: Path, where: str, element: str = "sageone") -> Path:
    body = {
        "element": {"key": element},
        "configuration": {
            "event.notification.enabled": True,
            "event.notification.callback.url": "https://hooks.example.com/x",
            "event.poller.configuration": {
                "customers": {"url": f"/hubs/finance/customers?where={where}"}
            },
        },
    }
    path = tmp_path / "instance.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def test_sage_parameters_written_as_conditions_are_what_they_stand_for(tmp_path) -> None:
    since = "lastModifiedDate >= '${gmtDate:yyyy-MM-dd}'"
    path = _instance(tmp_path, f"{since} and search='acme' and attributes='all'")
    (spec,) = resolve(loading.load(path), default_catalog(), "sage_accounting")
    # search: a substring of any column Sage searches; attributes=all: every column.
    assert spec.filter == """((("name" LIKE '%acme%' OR "reference" LIKE '%acme%')))"""
    assert spec.columns is None


def test_a_parameter_naming_no_field_is_refused_with_the_closest(tmp_path) -> None:
    path = _instance(tmp_path, "lastModifiedDate >= '${gmtDate:yyyy}' and attributes='nmae'")
    with pytest.raises(ConfigurationError) as info:
        resolve(loading.load(path), default_catalog(), "sage_accounting")
    assert "attributes names 'nmae', which is not a field of customers" in str(info.value)
    assert "did you mean name" in str(info.value)


def _settings(name: str, connection: str | None = None, *, state: Path | None = None) -> Any:
    config = loading.load(PUBLISHED / name, state=state)
    return config, load_settings(
        connection, defaults=config.connection_defaults(), use_environment=False
    )


def test_each_body_is_its_connection(tmp_path) -> None:
    _, accounting = _settings("sage-accounting.instance.json", state=tmp_path / "a.sqlite")
    assert accounting.product == "SageAccounting" and accounting.initiate_oauth == "GETANDREFRESH"
    assert accounting.oauth_client_id == "xxxxxxxxxxxxxxxxxx"
    assert accounting.oauth_client_secret == "xxxxxxxxxxxxxxxxxxxxxx"
    assert accounting.callback_url == "https://mycoolapp.com"
    assert accounting.oauth_code == CODE
    assert accounting.subscription_key == "xxxxxxxxxxxxxxxxxxxxxxxxx"
    assert accounting.oauth_settings_location == str(tmp_path / "a.tokens.json")
    _, sage200 = _settings("sage-200.instance.json")
    assert sage200.product == "Sage200" and sage200.company == "Cloud-Elements Demodata"
    assert sage200.subscription_key == "X" * 32 and sage200.oauth_code is None
    _, crm = _settings("sage-crm.instance.json")
    assert (crm.product, crm.url) == ("SageCRM", "https://sagecrm-0.cloud-elements.com")
    assert (crm.user, crm.password) == ("xxxxx", "xxxxxxxxxxxxxxxxxxxxxx")
    # -c wins over the instance.
    _, mine = _settings("sage-crm.instance.json", "URL=http://127.0.0.1:9;User=admin")
    assert (mine.url, mine.user, mine.password) == ("http://127.0.0.1:9", "admin", crm.password)


def test_a_connection_property_may_be_written_under_its_own_name(tmp_path) -> None:
    body = json.loads((PUBLISHED / "sage-crm.instance.json").read_text())
    body["configuration"].update({"Timeout": "7", "crmfilteroperators": "extended"})
    path = tmp_path / "crm.json"
    path.write_text(json.dumps(body))
    config = loading.load(path)
    settings = load_settings(defaults=config.connection_defaults(), use_environment=False)
    assert (settings.timeout, settings.crm_filter_operators) == (7, "extended")


# -- against the sandbox, through the CLI ------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGESQL_")}
    env["SAGESQL_DATA_DIR"] = str(cwd / "data")
    return subprocess.run(
        [sys.executable, "-m", "sagesql.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


def _token_posts(sbx: Any) -> int:
    log = requests.get(sbx.url + "/_sandbox/requests", timeout=10).json()
    return sum(1 for r in log if r["path"] == "/oauth/token")


def test_the_code_is_exchanged_once_with_no_token_given_anywhere(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_accounting", rows=10, rate_limit_per_minute=0)
    consent = {"code": CODE, "redirect_uri": "https://mycoolapp.com"}
    assert requests.post(sbx.url + "/_sandbox/code", json=consent, timeout=10).ok
    point = (
        f"URL={sbx.base_url};OAuthTokenURL={sbx.token_url};"
        "OAuthClientId=sandbox-client;OAuthClientSecret=sandbox-secret;RateLimit=0"
    )
    state = tmp_path / "acct.poll.sqlite"
    common = ["poll", "--config", str(PUBLISHED / "sage-accounting.instance.json")]
    common += ["--state", str(state), "-c", point]
    first = _cli(*common, "--once", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    tokens = tmp_path / "acct.tokens.json"
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    stored = json.loads(tokens.read_text())
    assert stored["origin"].startswith("code:") and CODE not in tokens.read_text()
    assert _token_posts(sbx) == 1
    # The next run uses the stored pair: the code (single-use) is not sent again.
    second = _cli(*common, "--once", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert _token_posts(sbx) == 1
    # Every request carried the instance's subscription key to the gateway.
    log = requests.get(sbx.url + "/_sandbox/requests", timeout=10).json()
    assert all(r["subscription_key"] for r in log if r["path"].startswith("/v3.1/"))
    for run in (first, second):
        assert CODE not in run.stdout + run.stderr


def test_a_refused_code_is_one_line_naming_it(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_accounting", rows=10, rate_limit_per_minute=0)
    point = (
        f"URL={sbx.base_url};OAuthTokenURL={sbx.token_url};"
        "OAuthClientId=sandbox-client;OAuthClientSecret=sandbox-secret"
    )
    run = _cli(
        "poll",
        "--config",
        str(PUBLISHED / "sage-accounting.instance.json"),
        "--state",
        str(tmp_path / "s.sqlite"),
        "-c",
        point,
        "--once",
        cwd=tmp_path,
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    said = "the authorization code (OAuthCode, an instance's providerData.code) was refused"
    assert any(said in line and "invalid_grant" in line for line in run.stderr.splitlines())
    assert CODE not in run.stderr and not (tmp_path / "s.tokens.json").exists()


def test_sage_200_s_company_is_chosen_by_name(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_200", rows=10, rate_limit_per_minute=0)
    props = sbx.connection_properties()
    props["OAuthSettingsLocation"] = f"memory://by-name-{sbx.server.port}"

    def names(company: str) -> list[str]:
        conn = ";".join(f"{k}={v}" for k, v in {**props, "Company": company}.items())
        run = _cli(
            "query", "-c", conn, "--format", "json", "SELECT name FROM customers", cwd=tmp_path
        )
        assert run.returncode == 0, run.stderr
        return [r["name"] for r in json.loads(run.stdout)]

    by_name = names("cloud-elements demodata")
    assert by_name == names("3") and by_name != names("1")
    conn = ";".join(f"{k}={v}" for k, v in {**props, "Company": "Nobody Ltd"}.items())
    run = _cli("query", "-c", conn, "SELECT name FROM customers", cwd=tmp_path)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert "Cloud-Elements Demodata (id 3)" in run.stderr and "Company=Nobody Ltd" in run.stderr


def test_an_instance_s_secrets_never_reach_the_log(start_sandbox, tmp_path) -> None:
    """Every request's headers and bodies logged (Verbosity=5, -vv): the instance's
    subscription key, signing secret and code, and the tokens, appear nowhere."""
    sbx = start_sandbox("sage_accounting", rows=5, rate_limit_per_minute=0)
    body = json.loads((PUBLISHED / "sage-accounting.instance.json").read_text())
    secrets = {
        "apim.subscription.key": "subkey-ZZ123456789",
        "signature.secret": "sigsecret-YY987654",
    }
    body["configuration"].update(secrets)
    body["providerData"]["code"] = "code-QQ55555"
    path = tmp_path / "instance.json"
    path.write_text(json.dumps(body))
    consent = {"code": "code-QQ55555", "redirect_uri": "https://mycoolapp.com"}
    assert requests.post(sbx.url + "/_sandbox/code", json=consent, timeout=10).ok
    point = (
        f"URL={sbx.base_url};OAuthTokenURL={sbx.token_url};OAuthClientId=sandbox-client;"
        "OAuthClientSecret=sandbox-secret;Verbosity=5"
    )
    run = _cli(
        "poll",
        "--config",
        str(path),
        "--once",
        "-vv",
        "--sink",
        "stdout",
        "-c",
        point,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    said = run.stdout + run.stderr
    assert "Ocp-Apim-Subscription-Key': '***'" in said  # sent, and masked
    tokens = json.loads((tmp_path / "instance.tokens.json").read_text())
    for secret in [*secrets.values(), "code-QQ55555", "sandbox-secret"]:
        assert secret not in said, secret
    assert tokens["access_token"] not in said and tokens["refresh_token"] not in said
