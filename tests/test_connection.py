"""The connection object against the sandboxes over real HTTP: base URLs, token files,
product headers (X-Business, X-Site/X-Company), CRM basic auth, lazy transport, closing,
and ``sagesql.connect``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import sagesql
from sagesql import AuthError, ConfigurationError, InterfaceError
from sagesql.connector import connection_string
from sagesql.connector.client import SageClient, open_client
from sagesql.connector.properties import validate
from sagesql.connector.tokenstore import FileTokenStore, MemoryTokenStore
from sagesql.sandbox.oauth import TokenProblem


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No SAGESQL_ variable of the machine; config and data directories of the test's own."""
    for name in [n for n in os.environ if n.startswith("SAGESQL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SAGESQL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("SAGESQL_DATA_DIR", str(tmp_path / "data"))
    yield tmp_path / "data"


def requests_to(sbx: Any) -> list[str]:
    """The paths the sandbox was asked for, from its request log (over HTTP)."""
    log = requests.get(sbx.url + "/_sandbox/requests", timeout=10).json()
    return [entry["path"] for entry in log]


def names(page: Any) -> list[str]:
    return [record["displayed_as"] for record in page["$items"]]


# -- base URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({}, "https://api.accounting.sage.com/v3.1"),
        ({"URL": "http://127.0.0.1:9/v3.1/"}, "http://127.0.0.1:9/v3.1"),
        ({"Product": "Sage200"}, "https://api.columbus.sage.com/uk/sage200/accounts/v1"),
        (
            {"Product": "Sage200", "Schema": "StandardUK"},
            "https://api.columbus.sage.com/uk/sage200/accounts/v1",
        ),
        (
            {"Product": "Sage200", "Schema": "professionaluk"},
            "https://api.columbus.sage.com/uk/sage200extra/accounts/v1",
        ),
        (
            {"Product": "Sage200", "Schema": "ProfessionalUK", "URL": "http://127.0.0.1:9/s200"},
            "http://127.0.0.1:9/s200",
        ),
    ],
)
def test_base_url_of_oauth_products(props: dict[str, str], expected: str) -> None:
    conn = SageClient(validate({"OAuthAccessToken": "t", **props}))
    assert conn.base_url == expected and conn.oauth
    if conn.product.id == "sage_accounting":  # Sage 200's transport would ask /sites
        assert conn.transport.base_url == expected
    conn.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://crm.example.com", "https://crm.example.com/sdata/crmj/sagecrm2/-"),
        ("https://crm.example.com/", "https://crm.example.com/sdata/crmj/sagecrm2/-"),
        (
            "https://crm.example.com/sdata/salesj/sagecrm2/-",
            "https://crm.example.com/sdata/salesj/sagecrm2/-",
        ),
    ],
)
def test_base_url_of_crm(url: str, expected: str) -> None:
    conn = SageClient(validate({"Product": "SageCRM", "URL": url, "User": "u", "Password": "p"}))
    assert conn.base_url == expected
    assert not conn.oauth and conn.store is None and conn.endpoints is None


def test_default_oauth_endpoints_are_sages() -> None:
    accounting = SageClient(validate({"OAuthAccessToken": "t"}))
    assert accounting.endpoints is not None
    assert accounting.endpoints.token_url == "https://oauth.accounting.sage.com/token"
    sage200 = SageClient(validate({"Product": "Sage200", "OAuthAccessToken": "t"}))
    assert sage200.endpoints is not None
    assert sage200.endpoints.token_url == "https://id.sage.com/oauth/token"
    assert sage200.endpoints.extra == {"audience": "s200ukipd/sage200"}


def test_crm_server_root_gets_the_sdata_path(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_crm", rows=5)
    props = {**sbx.connection_properties(), "URL": sbx.url + "/"}  # the server root
    with open_client(**props) as conn:
        assert conn.base_url == sbx.base_url
        page = conn.transport.get_json("/Company")
        assert page["$resources"]


def test_url_override_reaches_the_sandbox(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_200", rows=5)
    standard = sbx.url + "/uk/sage200/accounts/v1"
    props = {**sbx.connection_properties(), "URL": standard, "Schema": "ProfessionalUK"}
    with open_client(**props) as conn:
        assert conn.base_url == standard  # the URL wins over the Schema's public URL
        assert conn.transport.get_json("/customers")
    assert "/uk/sage200/accounts/v1/customers" in requests_to(sbx)


# -- token files ---------------------------------------------------------------------------


def test_two_sandboxes_never_share_a_token_file(start_sandbox: Any, data_dir: Path) -> None:
    one = start_sandbox("sage_accounting", rows=5)
    two = start_sandbox("sage_accounting", rows=5)
    with (
        open_client(**one.connection_properties()) as a,
        open_client(**two.connection_properties()) as b,
    ):
        assert isinstance(a.store, FileTokenStore) and isinstance(b.store, FileTokenStore)
        assert a.store.path != b.store.path
        for conn in (a, b):
            assert conn.store.path.parent == data_dir / "tokens"
            assert conn.store.path.name.startswith("default-sage_accounting-")
            assert conn.transport.get_json("/contacts")["$items"]
        stored_a = json.loads(a.store.path.read_text())["access_token"]
        stored_b = json.loads(b.store.path.read_text())["access_token"]
    # Each file holds the tokens of its own sandbox.
    assert one.app.oauth.validate(stored_a).client_id == "sandbox-client"
    assert two.app.oauth.validate(stored_b).client_id == "sandbox-client"
    with pytest.raises(TokenProblem):
        two.app.oauth.validate(stored_a)
    with pytest.raises(TokenProblem):
        one.app.oauth.validate(stored_b)


def test_default_token_file_is_per_profile_product_api_and_client(data_dir: Path) -> None:
    base = {"InitiateOAuth": "GETANDREFRESH", "OAuthClientId": "app", "URL": "http://127.0.0.1:9/a"}

    def location(profile: str | None = None, **props: str) -> Path:
        conn = SageClient(validate({**base, **props}, profile=profile))
        assert isinstance(conn.store, FileTokenStore)
        return conn.store.path

    first = location()
    assert first.parent == data_dir / "tokens"
    assert location() == first  # the same connection finds its tokens again
    others = [
        location(profile="acme"),
        location(Product="Sage200"),
        location(URL="http://127.0.0.1:9/b"),
        location(OAuthClientId="other-app"),
    ]
    assert len({first, *others}) == 5
    assert others[0].name.startswith("acme-sage_accounting-")
    assert others[1].name.startswith("default-sage_200-")


def test_oauth_settings_location_names_the_store(tmp_path: Path) -> None:
    file = tmp_path / "mine.json"
    given = SageClient(validate({"OAuthAccessToken": "t", "OAuthSettingsLocation": str(file)}))
    assert isinstance(given.store, FileTokenStore) and given.store.path == file
    memory = SageClient(validate({"OAuthAccessToken": "t", "OAuthSettingsLocation": "memory://x"}))
    assert isinstance(memory.store, MemoryTokenStore) and memory.store.location == "memory://x"


# -- Sage Accounting: X-Business -----------------------------------------------------------


def test_business_id_sends_x_business(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_accounting", rows=5)
    props = sbx.connection_properties()
    with open_client(**props) as lead, open_client(**props, BusinessId=sbx.app.second) as second:
        assert "X-Business" not in lead.transport.session.headers
        assert second.transport.session.headers["X-Business"] == sbx.app.second
        lead_names = names(lead.transport.get_json("/contacts"))
        second_names = names(second.transport.get_json("/contacts"))
        assert lead_names and second_names and set(lead_names).isdisjoint(second_names)
        # The lead business answers the same without the header and with its id.
        with open_client(**props, BusinessId=sbx.app.lead) as explicit:
            assert names(explicit.transport.get_json("/contacts")) == lead_names
    # A business the login cannot see is refused by Sage, and said so.
    with open_client(**props, BusinessId="not-mine") as stranger, pytest.raises(AuthError) as err:
        stranger.transport.get_json("/contacts")
    assert "X-Business" in str(err.value) and "MultiUserAccessDenied" in str(err.value)


# -- Sage 200: X-Site and X-Company --------------------------------------------------------


def test_site_and_company_resolved_from_sites(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_200", rows=5)
    sites = requests.get(
        sbx.base_url + "/sites",
        headers={"Authorization": f"Bearer {sbx.token()['access_token']}"},
        timeout=10,
    ).json()
    site, first, other = (
        sites[0]["site_id"],
        str(sites[0]["company_id"]),
        str(sites[1]["company_id"]),
    )
    props = sbx.connection_properties()
    with open_client(**props) as conn:
        headers = conn.transport.session.headers
        assert (headers["X-Site"], headers["X-Company"]) == (site, first)
        first_customers = conn.transport.get_json("/customers")
    with open_client(**props, Company=other) as conn:
        headers = conn.transport.session.headers
        assert (headers["X-Site"], headers["X-Company"]) == (site, other)
        other_customers = conn.transport.get_json("/customers")
    assert first_customers and other_customers and first_customers != other_customers
    # Both given: /sites is not asked.
    requests.delete(sbx.url + "/_sandbox/requests", timeout=10)
    with open_client(**props, Site=site, Company=other) as conn:
        assert conn.transport.get_json("/customers") == other_customers
    assert not any(path.endswith("/sites") for path in requests_to(sbx))


@pytest.mark.parametrize("props", [{"Site": "no-such-site"}, {"Company": "99"}])
def test_site_or_company_that_matches_nothing(start_sandbox: Any, props: dict[str, str]) -> None:
    sbx = start_sandbox("sage_200", rows=5)
    with open_client(**sbx.connection_properties(), **props) as conn:
        for _ in range(2):  # the failure repeats: no request goes out without the headers
            with pytest.raises(ConfigurationError) as err:
                _ = conn.transport
            message = str(err.value)
            assert "no Sage 200 site and company match" in message
            assert "Site=" in message and "Company=" in message and "\n" not in message
    assert not any(path.endswith("/customers") for path in requests_to(sbx))


# -- Sage CRM: basic auth ------------------------------------------------------------------


def test_crm_basic_auth(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_crm", rows=5)
    props = sbx.connection_properties()
    with open_client(**props) as conn:
        assert conn.transport.get_json("/Company")["$resources"]
    wrong = {**props, "Password": "wrong-pass-123"}
    with open_client(**wrong) as conn, pytest.raises(AuthError) as err:
        conn.transport.get_json("/Company")
    message = str(err.value)
    assert "User" in message and "Password" in message
    assert "wrong-pass-123" not in message and "\n" not in message


# -- life of a connection ------------------------------------------------------------------


def test_transport_is_built_on_first_use(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_200", rows=5)
    requests.delete(sbx.url + "/_sandbox/requests", timeout=10)
    conn = open_client(**sbx.connection_properties())
    assert requests_to(sbx) == []  # opening sends nothing, not even GET /sites
    transport = conn.transport
    assert conn.transport is transport
    assert [p for p in requests_to(sbx) if not p.startswith("/_sandbox")] == [
        "/uk/sage200extra/accounts/v1/sites"
    ]
    conn.close()


def test_a_closed_connection_refuses_use(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_accounting", rows=5)
    with open_client(**sbx.connection_properties()) as conn:
        transport = conn.transport
        transport.get_json("/contacts")
    assert conn.closed
    with pytest.raises(InterfaceError, match="closed"):
        _ = conn.transport
    conn.close()  # twice is fine
    never_used = open_client(**sbx.connection_properties())
    never_used.close()
    with pytest.raises(InterfaceError, match="closed"):
        _ = never_used.transport


def test_sagesql_connect_with_a_connection_string(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_accounting", rows=5)
    text = connection_string.compose(sbx.connection_properties())
    with sagesql.connect(text) as db:
        cursor = db.cursor()
        cursor.execute("SELECT id, name FROM contacts ORDER BY name LIMIT 3")
        rows = cursor.fetchall()
        assert len(rows) == 3 and all(isinstance(r[1], str) for r in rows)
        assert [d[0] for d in cursor.description] == ["id", "name"]


def test_sagesql_connect_crm_with_keywords_over_the_string(start_sandbox: Any) -> None:
    sbx = start_sandbox("sage_crm", rows=5)
    props = sbx.connection_properties()
    text = connection_string.compose({**props, "Password": "wrong"})
    with sagesql.connect(text, Password=props["Password"]) as db:  # keywords win
        cursor = db.cursor()
        cursor.execute("SELECT COUNT(*) FROM company")
        assert cursor.fetchone()[0] > 0
