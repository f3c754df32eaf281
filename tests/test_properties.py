"""Connection properties: names, values, one error for every problem, secrets kept out of sight;
and where they come from (profile file < environment < connection string < keywords)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.pretty import pretty_repr

from sagesql import ConfigurationError
from sagesql.connector import connection_string
from sagesql.connector.properties import PROPERTIES, Settings, lookup, validate
from sagesql.connector.sources import environment_properties, load_settings, profiles_file

# The properties issue 4 lists, with the names commercial drivers use.
ISSUE_PROPERTIES = [
    "Product",
    "URL",
    "InitiateOAuth",
    "OAuthClientId",
    "OAuthClientSecret",
    "OAuthAccessToken",
    "OAuthRefreshToken",
    "OAuthSettingsLocation",
    "CallbackURL",
    "Scope",
    "OAuthAuthorizationURL",
    "OAuthTokenURL",
    "BusinessId",
    "Schema",
    "Site",
    "Company",
    "User",
    "Password",
    "CRMFilterOperators",
    "Timeout",
    "Pagesize",
    "MaxRows",
    "MaxConcurrency",
    "RateLimit",
    "ProxyServer",
    "ProxyPort",
    "ProxyUser",
    "ProxyPassword",
    "Verbosity",
    "Logfile",
]
# Every property in order: the issue's, and those added since (MaxResponseSize: the
# largest answer accepted, from the reliability issue; OAuthCode and SubscriptionKey:
# what an integration platform's instance carries, from the seed-instances issue).
AFTER_REFRESH = ISSUE_PROPERTIES.index("OAuthRefreshToken") + 1
AFTER_TIMEOUT = ISSUE_PROPERTIES.index("Timeout") + 1
AFTER_RATE = ISSUE_PROPERTIES.index("RateLimit") + 1
PROPERTY_NAMES = [
    *ISSUE_PROPERTIES[:AFTER_REFRESH],
    "OAuthCode",
    *ISSUE_PROPERTIES[AFTER_REFRESH:AFTER_TIMEOUT],
    "MaxResponseSize",
    *ISSUE_PROPERTIES[AFTER_TIMEOUT:AFTER_RATE],
    "SubscriptionKey",
    *ISSUE_PROPERTIES[AFTER_RATE:],
    # The replication issue (19): answer from a copy sagesql sync keeps.
    "Offline",
    "Replica",
]
SECRETS = {
    "OAuthClientSecret",
    "OAuthAccessToken",
    "OAuthRefreshToken",
    "OAuthCode",
    "SubscriptionKey",
    "Password",
    "ProxyPassword",
}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No SAGESQL_ variable of the machine, and config and data directories of the test's own."""
    for name in [n for n in os.environ if n.startswith("SAGESQL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SAGESQL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("SAGESQL_DATA_DIR", str(tmp_path / "data"))
    yield tmp_path


def write_profiles(text: str) -> Path:
    path = profiles_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigurationError) as err:
        validate(raw)
    message = str(err.value)
    assert "\n" not in message
    return message


# -- the catalogue -------------------------------------------------------------------------


def test_every_property_of_the_issue_exists_with_its_name() -> None:
    assert [p.name for p in PROPERTIES] == PROPERTY_NAMES
    assert {p.name for p in PROPERTIES if p.secret} == SECRETS
    defaults = Settings()
    for prop in PROPERTIES:
        assert prop.help.strip(), prop.name
        # The Settings field and the catalogue agree on the default.
        assert getattr(defaults, prop.attribute) == prop.default, prop.name
    by_name = {p.name: p for p in PROPERTIES}
    assert by_name["Product"].choices == ("SageAccounting", "Sage200", "SageCRM")
    assert by_name["InitiateOAuth"].choices == ("OFF", "GETANDREFRESH", "REFRESH")
    assert by_name["Schema"].choices == ("StandardUK", "ProfessionalUK")
    assert by_name["CallbackURL"].default == "http://localhost:33333"
    assert (by_name["Verbosity"].minimum, by_name["Verbosity"].maximum) == (1, 5)


@pytest.mark.parametrize(
    ("written", "name"),
    [
        ("product", "Product"),
        ("PRODUCT", "Product"),
        ("oauth_client_id", "OAuthClientId"),
        ("OAUTH-CLIENT-ID", "OAuthClientId"),
        ("oauthclientid", "OAuthClientId"),
        ("max_rows", "MaxRows"),
        ("Max Concurrency", "MaxConcurrency"),
        ("callbackurl", "CallbackURL"),
        ("proxy_password", "ProxyPassword"),
    ],
)
def test_names_match_in_any_case_and_snake_case(written: str, name: str) -> None:
    prop = lookup(written)
    assert prop is not None and prop.name == name


def test_values_are_typed_and_choices_normalised() -> None:
    s = validate(
        {
            "product": "sage200",
            "initiateoauth": "getandrefresh",
            "oauth_client_id": "app",
            "schema": "professionaluk",
            "timeout": " 30 ",
            "MAXROWS": "-1",
            "url": "http://127.0.0.1:9/uk/sage200/accounts/v1/",
            "verbosity": 5,
        }
    )
    assert (s.product, s.initiate_oauth, s.schema) == ("Sage200", "GETANDREFRESH", "ProfessionalUK")
    assert (s.timeout, s.max_rows, s.verbosity) == (30, -1, 5)
    assert s.url == "http://127.0.0.1:9/uk/sage200/accounts/v1"  # trailing / dropped
    assert s.oauth_client_id == "app" and s.product_id == "sage_200"


# -- connection strings --------------------------------------------------------------------


def test_quoted_values_hold_semicolons_equals_and_doubled_quotes() -> None:
    text = (
        'Product=SageCRM; URL = http://crm.local/x?a=b ;User="o""brien; jr";'
        "Password='p;w=d''s' ;Scope=  spaced  "
    )
    pairs = connection_string.parse(text)
    assert pairs == {
        "Product": "SageCRM",
        "URL": "http://crm.local/x?a=b",
        "User": 'o"brien; jr',
        "Password": "p;w=d's",
        "Scope": "spaced",
    }
    settings = validate(pairs)
    assert settings.password == "p;w=d's" and settings.user == 'o"brien; jr'
    # compose quotes what needs it, so that the pairs come back unchanged.
    tricky = {"Password": "a;b='c'\"", "User": " edge ", "URL": "http://h/?a=b", "Scope": None}
    assert connection_string.parse(connection_string.compose(tricky)) == {
        k: v for k, v in tricky.items() if v is not None
    }


def test_a_later_repeat_of_a_name_wins() -> None:
    assert validate(connection_string.parse("Timeout=5;OAuthAccessToken=t;timeout=7")).timeout == 7


def test_connection_string_errors_are_listed_together_without_secrets() -> None:
    with pytest.raises(ConfigurationError) as err:
        connection_string.parse("Product;User='never closed")
    message = str(err.value)
    assert "'Product' has no '='" in message and "no closing '" in message
    assert "never closed" not in message and "\n" not in message


@pytest.mark.parametrize(
    "text",
    [
        "Password='hunter2-xyz",  # no closing quote
        "Password='x'hunter2-xyz;User=u",  # text after the quoted value
        "User=u;Password=abc;hunter2-xyz",  # an unquoted ';' cut the password
        "User=u;Password hunter2-xyz",  # a missing '='
        "OAuthClientSecret=abc;hunter2=xyz;User=u",  # the cut-off part looks like a pair
    ],
)
def test_a_bad_password_in_a_connection_string_is_never_echoed(text: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        connection_string.parse(text)
    assert "hunter2" not in str(err.value)
    assert "\n" not in str(err.value)


# -- validation ----------------------------------------------------------------------------


def test_unknown_names_and_bad_values_are_one_error_on_one_line() -> None:
    message = problems_of(
        {
            "Prodcut": "Sage200",
            "Timeout": "soon",
            "Verbosity": "9",
            "InitiateOAuth": "SOMETIMES",
            "URL": "ftp://example.com",
            "ProxyPort": "70000",
            "Password": "hunter2-secret",
            "OAuthAccessToken": "tok-secret-value",
        }
    )
    assert "unknown property 'Prodcut'" in message and "Product" in message  # did you mean
    assert "Timeout='soon': expected a whole number" in message
    assert "Verbosity='9': must be at most 5" in message
    assert "InitiateOAuth='SOMETIMES': expected one of OFF, GETANDREFRESH, REFRESH" in message
    assert "URL='ftp://example.com': expected an http:// or https:// URL" in message
    assert "ProxyPort='70000': must be at most 65535" in message
    assert "hunter2-secret" not in message and "tok-secret-value" not in message
    assert "sagesql properties" in message  # the hint says where to look


def test_an_unknown_name_never_echoes_its_value() -> None:
    message = problems_of({"Pasword": "hunter2-secret", "OAuthAccessToken": "t"})
    assert "unknown property 'Pasword'" in message and "Password" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"Product": "SageCRM"}, ["SageCRM needs URL", "SageCRM needs User"]),
        ({"Product": "SageCRM", "URL": "http://crm.local"}, ["SageCRM needs User"]),
        ({"Product": "SageCRM", "User": "admin"}, ["SageCRM needs URL"]),
        ({}, ["InitiateOAuth=OFF needs OAuthAccessToken"]),
        (
            {"Product": "Sage200", "InitiateOAuth": "OFF"},
            ["InitiateOAuth=OFF needs OAuthAccessToken"],
        ),
        (
            {"InitiateOAuth": "REFRESH", "OAuthClientId": "app"},
            ["InitiateOAuth=REFRESH needs OAuthRefreshToken"],
        ),
        (
            # An access token alone would work until it expires, then fail: refused at once.
            {"InitiateOAuth": "REFRESH", "OAuthClientId": "app", "OAuthAccessToken": "a"},
            ["InitiateOAuth=REFRESH needs OAuthRefreshToken"],
        ),
        (
            {"InitiateOAuth": "REFRESH", "OAuthRefreshToken": "r"},
            ["InitiateOAuth=REFRESH needs OAuthClientId"],
        ),
        ({"InitiateOAuth": "GETANDREFRESH"}, ["InitiateOAuth=GETANDREFRESH needs OAuthClientId"]),
        ({"OAuthAccessToken": "t", "ProxyPort": "8080"}, ["ProxyPort needs ProxyServer"]),
    ],
)
def test_properties_that_do_not_fit_together(raw: dict[str, Any], expected: list[str]) -> None:
    message = problems_of(raw)
    for problem in expected:
        assert problem in message
    assert message.count(";") == len(expected) - 1  # nothing else reported


@pytest.mark.parametrize(
    "raw",
    [
        {"OAuthAccessToken": "t"},
        {"InitiateOAuth": "REFRESH", "OAuthClientId": "app", "OAuthRefreshToken": "r"},
        {"InitiateOAuth": "GETANDREFRESH", "OAuthClientId": "app"},
        {"Product": "SageCRM", "URL": "http://crm.local", "User": "admin", "Password": "pw"},
        {"OAuthAccessToken": "t", "ProxyServer": "proxy.local", "ProxyPort": "3128"},
    ],
)
def test_consistent_properties_pass(raw: dict[str, Any]) -> None:
    assert isinstance(validate(raw), Settings)


def test_settings_repr_and_str_never_show_a_secret() -> None:
    secrets = {
        "OAuthClientSecret": "cs-very-secret",
        "OAuthAccessToken": "at-very-secret",
        "OAuthRefreshToken": "rt-very-secret",
        "Password": "pw-very-secret",
        "ProxyPassword": "pp-very-secret",
    }
    s = validate(
        {
            "InitiateOAuth": "REFRESH",
            "OAuthClientId": "my-app",
            "User": "admin",
            "ProxyServer": "proxy.local",
            "ProxyUser": "me",
            **secrets,
        }
    )
    shown = [repr(s), str(s), f"{s}", f"{s!r}", repr([s]), str({"s": s}), str(s.public())]
    shown.append(pretty_repr(s))  # rich asks __rich_repr__, not __repr__
    for text in shown:
        for value in secrets.values():
            assert value not in text
        assert "my-app" in text and "admin" in text  # what is not secret is shown
    assert s.public()["Password"] == "********"
    assert sorted(s.secrets()) == sorted(secrets.values())  # what the logs redact
    with pytest.raises(AttributeError):
        s.password = "x"  # type: ignore[misc]


def test_proxies() -> None:
    assert validate({"OAuthAccessToken": "t"}).proxies() is None
    plain = validate({"OAuthAccessToken": "t", "ProxyServer": "proxy.local"})
    assert plain.proxies() == {"http": "http://proxy.local", "https": "http://proxy.local"}
    full = validate(
        {
            "OAuthAccessToken": "t",
            "ProxyServer": "http://proxy.local",  # a scheme given is not doubled
            "ProxyPort": "3128",
            "ProxyUser": "me@corp",
            "ProxyPassword": "p:w/d",
        }
    )
    url = "http://me%40corp:p%3Aw%2Fd@proxy.local:3128"
    assert full.proxies() == {"http": url, "https": url}
    assert "p:w/d" not in repr(full) and "p%3Aw%2Fd" not in repr(full)


# -- sources and precedence ----------------------------------------------------------------


def test_later_sources_win(monkeypatch: pytest.MonkeyPatch) -> None:
    write_profiles(
        """
        [profiles.acme]
        timeout = 10
        MaxRows = 10
        Pagesize = 10
        Verbosity = 1
        RateLimit = 10
        OAuthAccessToken = "from-profile"
        """
    )
    monkeypatch.setenv("SAGESQL_CONNECTION", "maxrows=20;PAGESIZE=20;Verbosity=2;RateLimit=20")
    monkeypatch.setenv("SAGESQL_PAGESIZE", "30")
    monkeypatch.setenv("SAGESQL_VERBOSITY", "3")
    monkeypatch.setenv("SAGESQL_RATE_LIMIT", "30")
    s = load_settings("verbosity=4;rate_limit=40", profile="acme", RateLimit=50)
    assert s.timeout == 10  # profile only
    assert s.max_rows == 20  # SAGESQL_CONNECTION over the profile
    assert s.pagesize == 30  # SAGESQL_<PROPERTY> over SAGESQL_CONNECTION
    assert s.verbosity == 4  # the connection string over the environment
    assert s.rate_limit == 50  # keywords over everything
    assert s.oauth_access_token == "from-profile" and s.profile == "acme"
    # Without the environment, the profile's values show through.
    quiet = load_settings(profile="acme", use_environment=False)
    assert (quiet.max_rows, quiet.pagesize, quiet.verbosity) == (10, 10, 1)


def test_keywords_of_none_do_not_hide_other_sources() -> None:
    s = load_settings("OAuthAccessToken=t;Timeout=9", Timeout=None)
    assert s.timeout == 9


def test_sagesql_profile_picks_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    write_profiles(
        '[profiles.one]\nOAuthAccessToken = "t"\nTimeout = 11\n'
        '[profiles.two]\nOAuthAccessToken = "t"\nTimeout = 22\n'
    )
    monkeypatch.setenv("SAGESQL_PROFILE", "two")
    assert load_settings().timeout == 22 and load_settings().profile == "two"
    assert load_settings(profile="one").timeout == 11  # the argument wins over the variable


def test_unknown_profile_lists_the_profiles_there_are() -> None:
    path = write_profiles("[profiles.books]\nTimeout = 5\n[profiles.acme]\nTimeout = 6\n")
    with pytest.raises(ConfigurationError) as err:
        load_settings(profile="nope")
    message = str(err.value)
    assert "no profile 'nope'" in message and str(path) in message
    assert "profiles: acme, books" in message and "\n" not in message


def test_no_profile_file_says_there_are_none() -> None:
    with pytest.raises(ConfigurationError, match=r"profiles: none"):
        load_settings(profile="acme")


def test_malformed_profile_file_is_a_one_line_error() -> None:
    path = write_profiles('[profiles.acme]\nTimeout = = 5\nPassword = "hunter2"\n')
    with pytest.raises(ConfigurationError) as err:
        load_settings(profile="acme")
    message = str(err.value)
    assert f"profile file {path} is not valid TOML" in message
    assert "line 2" in message and "\n" not in message and "hunter2" not in message


def test_a_profile_that_is_not_a_table() -> None:
    write_profiles("[profiles]\nacme = 3\n")
    with pytest.raises(ConfigurationError, match=r"profile .acme. .* is not a table"):
        load_settings(profile="acme")


def test_profile_values_are_validated_with_the_rest() -> None:
    write_profiles('[profiles.acme]\nTimeout = "soon"\nColour = "blue"\n')
    with pytest.raises(ConfigurationError) as err:
        load_settings(profile="acme", OAuthAccessToken="t")
    assert "Timeout='soon'" in str(err.value) and "unknown property 'Colour'" in str(err.value)


def test_environment_variables_per_property(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGESQL_OAUTH_CLIENT_ID", "app")
    monkeypatch.setenv("SAGESQL_INITIATEOAUTH", "GETANDREFRESH")
    monkeypatch.setenv("SAGESQL_PRODUCT", "Sage200")
    monkeypatch.setenv("SAGESQL_SCHEMA", "ProfessionalUK")
    s = load_settings()
    assert s.oauth_client_id == "app" and s.initiate_oauth == "GETANDREFRESH"
    assert (s.product, s.schema) == ("Sage200", "ProfessionalUK")
    # The variables of sagesql itself are not properties.
    env = {"SAGESQL_DATA_DIR": "/x", "SAGESQL_CONFIG_DIR": "/y", "SAGESQL_PROFILE": "p"}
    assert environment_properties(env) == {}


def test_an_unknown_sagesql_variable_is_an_unknown_property(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SAGESQL_FOO", "1")
    monkeypatch.setenv("SAGESQL_TIMEOUT", "later")
    with pytest.raises(ConfigurationError) as err:
        load_settings(OAuthAccessToken="t")
    message = str(err.value)
    # Named as the variable, so that the user can find it; reported with the other problem.
    assert "unknown property 'SAGESQL_FOO'" in message and "Timeout='later'" in message
    assert load_settings(OAuthAccessToken="t", use_environment=False).timeout == 60


def test_defaults_are_below_every_source(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = {"InitiateOAuth": "GETANDREFRESH", "OAuthClientId": "default-app"}
    assert load_settings(defaults=defaults).initiate_oauth == "GETANDREFRESH"
    write_profiles('[profiles.acme]\nInitiateOAuth = "OFF"\nOAuthAccessToken = "t"\n')
    assert load_settings(profile="acme", defaults=defaults).initiate_oauth == "OFF"
    monkeypatch.setenv("SAGESQL_OAUTHCLIENTID", "env-app")
    assert load_settings(defaults=defaults).oauth_client_id == "env-app"


def test_offline_and_replica() -> None:
    """Offline=True needs only a Replica (no credentials); its URL's password is a secret."""
    url = "postgresql://me:hunter2@db.example.com/sage"
    settings = validate({"Product": "Sage200", "offline": "yes", "Replica": url})
    assert settings.offline is True and settings.replica == url
    assert "hunter2" in settings.secrets()
    assert "hunter2" not in repr(settings) and "me:***@db" in repr(settings)
    assert validate({"Offline": "0", "OAuthAccessToken": "t"}).offline is False
    with pytest.raises(ConfigurationError) as caught:
        validate({"Offline": "maybe", "Replica": "ftp://x/hunter2"})
    message = str(caught.value)
    assert "Offline='maybe': expected True or False" in message
    assert "sqlite:///PATH or postgresql://" in message


def test_a_replica_url_s_passwords_never_show_and_its_scheme_is_exact() -> None:
    # libpq reads a password in the query as well as the user's: both are secrets.
    url = "postgresql://sync:pw-user@db/replica?password=pw-query&sslmode=require"
    settings = validate({"Product": "SageAccounting", "Offline": "True", "Replica": url})
    assert set(settings.secrets()) >= {"pw-user", "pw-query"}
    for text in (repr(settings), str(settings.public())):
        assert "pw-user" not in text and "pw-query" not in text
        assert "sslmode=require" in text
    with pytest.raises(ConfigurationError) as refused:
        validate({"Product": "SageAccounting", "Replica": "postgresq://u:pw-typo@db/x"})
    assert "expected a sqlite:///PATH or postgresql://" in str(refused.value)
    assert "pw-typo" not in str(refused.value)
