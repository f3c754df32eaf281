"""Connection properties: their names, types, defaults and meaning, validated into Settings.

The names are those commercial drivers use (``InitiateOAuth``, ``OAuthSettingsLocation``,
``Pagesize``...), matched case-insensitively. :func:`validate` turns raw name/value
pairs into one frozen :class:`Settings`, reporting every problem at once; nothing
else in sagesql reads raw properties.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec

from sagesql.errors import ConfigurationError
from sagesql.schemas.catalog import default_catalog, did_you_mean

OAUTH_MODES = ("OFF", "GETANDREFRESH", "REFRESH")
SCHEMAS = ("StandardUK", "ProfessionalUK")
CRM_FILTER_OPERATORS = ("documented", "extended")


class Property(msgspec.Struct, frozen=True):
    """One connection property as users write it."""

    name: str
    kind: str  # text, secret, int, url, choice, path, bool, replica
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None

    @property
    def attribute(self) -> str:
        return ATTRIBUTES[self.name]

    @property
    def secret(self) -> bool:
        return self.kind == "secret"


PROPERTIES: tuple[Property, ...] = (
    Property(
        "Product",
        "choice",
        "SageAccounting",
        "Which Sage product to connect to.",
        choices=tuple(default_catalog().connection_names()),
    ),
    Property(
        "URL",
        "url",
        None,
        "Base URL of the API: a sandbox, a region, or the Sage CRM "
        "server (https://crm.example.com or its full /sdata/crmj/sagecrm2/- URL). "
        "Default: Sage's public API for the product.",
    ),
    Property(
        "InitiateOAuth",
        "choice",
        "OFF",
        "OFF: use OAuthAccessToken as given. "
        "GETANDREFRESH: use stored tokens, else log in with the browser, then refresh. "
        "REFRESH: start from the given tokens and refresh them.",
        choices=OAUTH_MODES,
    ),
    Property("OAuthClientId", "text", None, "Client id of your Sage developer application."),
    Property("OAuthClientSecret", "secret", None, "Client secret of your application."),
    Property("OAuthAccessToken", "secret", None, "An access token (InitiateOAuth OFF/REFRESH)."),
    Property("OAuthRefreshToken", "secret", None, "A refresh token (InitiateOAuth REFRESH)."),
    Property(
        "OAuthCode",
        "secret",
        None,
        "An authorization code from the consent page (an integration platform's "
        "providerData.code): exchanged once for a token pair when the token store is empty "
        "(InitiateOAuth GETANDREFRESH), never twice.",
    ),
    Property(
        "OAuthSettingsLocation",
        "path",
        None,
        "Where tokens are kept: a file path, "
        "memory://<id> to keep them in this process, or postgresql://USER@HOST/DB#<id> to "
        "share them with processes on other machines. Default: one file per profile and "
        "product in the user's data directory.",
    ),
    Property(
        "CallbackURL",
        "url",
        "http://localhost:33333",
        "Redirect URI registered for your application; the login listener runs there.",
    ),
    Property("Scope", "text", None, "OAuth scope. Default: the product's full-access scope."),
    Property(
        "OAuthAuthorizationURL",
        "url",
        None,
        "Authorization endpoint. Default: Sage's for the product.",
    ),
    Property("OAuthTokenURL", "url", None, "Token endpoint. Default: Sage's for the product."),
    Property(
        "BusinessId",
        "text",
        None,
        "Sage Accounting business (X-Business). Default: the lead business.",
    ),
    Property(
        "Schema",
        "choice",
        "StandardUK",
        "Sage 200 edition: StandardUK or ProfessionalUK.",
        choices=SCHEMAS,
    ),
    Property("Site", "text", None, "Sage 200 site id (X-Site). Default: from /sites."),
    Property(
        "Company",
        "text",
        None,
        "Sage 200 company (X-Company): its id or its name as /sites lists it. "
        "Default: the first in /sites.",
    ),
    Property("User", "text", None, "Sage CRM user name (basic auth)."),
    Property("Password", "secret", None, "Sage CRM password."),
    Property(
        "CRMFilterOperators",
        "choice",
        "documented",
        "Sage CRM where= forms sent to the server. documented: only those Sage documents "
        "for sagecrm2 (eq gt ge like in between, and/or); the rest is applied locally. "
        "extended: also lt le ne, not (...) and @...@ date literals, for a CRM version "
        "that takes them.",
        choices=CRM_FILTER_OPERATORS,
    ),
    Property(
        "Timeout",
        "int",
        60,
        "Seconds one request may take, from connecting to the last byte of the answer "
        "(each retry as long again; a request with its retries ends within twice this, "
        "at least 10 s).",
        minimum=1,
        maximum=3600,
    ),
    Property(
        "MaxResponseSize",
        "int",
        64,
        "Largest answer accepted, in MiB; a larger one is cut there and is an error "
        "(a Sage page is far smaller).",
        minimum=1,
        maximum=4096,
    ),
    Property(
        "Pagesize",
        "int",
        None,
        "Records per page request. Default: the API's maximum.",
        minimum=1,
        maximum=5000,
    ),
    Property(
        "MaxRows", "int", -1, "Stop after this many rows per query (-1: no limit).", minimum=-1
    ),
    Property(
        "MaxConcurrency",
        "int",
        4,
        "Page requests made in parallel when the total is known.",
        minimum=1,
        maximum=64,
    ),
    Property(
        "RateLimit",
        "int",
        150,
        "Requests per minute this connection makes at most "
        "(0: no client-side limit). Sage allows about 200 per business.",
        minimum=0,
    ),
    Property(
        "SubscriptionKey",
        "secret",
        None,
        "Key sent as Ocp-Apim-Subscription-Key to Sage's API gateway (the platforms' "
        "subscription.key; Sage 200 no longer requires it and ignores it).",
    ),
    Property("ProxyServer", "text", None, "HTTP proxy host name or address."),
    Property("ProxyPort", "int", None, "HTTP proxy port.", minimum=1, maximum=65535),
    Property("ProxyUser", "text", None, "User for the proxy."),
    Property("ProxyPassword", "secret", None, "Password for the proxy."),
    Property(
        "Verbosity",
        "int",
        1,
        "Log detail: 1 statements and timings, 2 requests, 3 "
        "headers and bodies, 4-5 everything (secrets are always redacted).",
        minimum=1,
        maximum=5,
    ),
    Property(
        "Logfile",
        "path",
        None,
        "Write the log to this file (default: no log unless --verbose is given, then stderr).",
    ),
    Property(
        "Offline",
        "bool",
        False,
        "True: answer queries from the Replica (a copy 'sagesql sync' keeps) and send "
        "nothing to Sage; writes are refused.",
    ),
    Property(
        "Replica",
        "replica",
        None,
        "The copy 'sagesql sync --to' writes: sqlite:///PATH or postgresql://USER@HOST/DB "
        "(read with Offline=True; REPLICATE and CACHE write into it).",
    ),
)

ATTRIBUTES = {
    "Product": "product",
    "URL": "url",
    "InitiateOAuth": "initiate_oauth",
    "OAuthClientId": "oauth_client_id",
    "OAuthClientSecret": "oauth_client_secret",
    "OAuthAccessToken": "oauth_access_token",
    "OAuthRefreshToken": "oauth_refresh_token",
    "OAuthCode": "oauth_code",
    "OAuthSettingsLocation": "oauth_settings_location",
    "CallbackURL": "callback_url",
    "Scope": "scope",
    "OAuthAuthorizationURL": "oauth_authorization_url",
    "OAuthTokenURL": "oauth_token_url",
    "BusinessId": "business_id",
    "Schema": "schema",
    "Site": "site",
    "Company": "company",
    "User": "user",
    "Password": "password",
    "CRMFilterOperators": "crm_filter_operators",
    "Timeout": "timeout",
    "MaxResponseSize": "max_response_size",
    "Pagesize": "pagesize",
    "MaxRows": "max_rows",
    "MaxConcurrency": "max_concurrency",
    "RateLimit": "rate_limit",
    "SubscriptionKey": "subscription_key",
    "ProxyServer": "proxy_server",
    "ProxyPort": "proxy_port",
    "ProxyUser": "proxy_user",
    "ProxyPassword": "proxy_password",
    "Verbosity": "verbosity",
    "Logfile": "logfile",
    "Offline": "offline",
    "Replica": "replica",
}

BY_KEY: dict[str, Property] = {p.name.lower(): p for p in PROPERTIES}
SECRET_NAMES = frozenset(p.name for p in PROPERTIES if p.secret)


def lookup(name: str) -> Property | None:
    """The property of that name: any case, and spaces, '_' or '-' ignored (oauth_client_id)."""
    key = name.strip().lower()
    if key in BY_KEY:
        return BY_KEY[key]
    squashed = key.replace("_", "").replace("-", "").replace(" ", "")
    for prop in PROPERTIES:
        if prop.name.lower() == squashed or prop.attribute.replace("_", "") == squashed:
            return prop
    return None


class Settings(msgspec.Struct, frozen=True):
    """Validated connection properties. ``repr`` never shows a secret."""

    product: str = "SageAccounting"
    url: str | None = None
    initiate_oauth: str = "OFF"
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = None
    oauth_access_token: str | None = None
    oauth_refresh_token: str | None = None
    oauth_code: str | None = None
    oauth_settings_location: str | None = None
    callback_url: str = "http://localhost:33333"
    scope: str | None = None
    oauth_authorization_url: str | None = None
    oauth_token_url: str | None = None
    business_id: str | None = None
    schema: str = "StandardUK"
    site: str | None = None
    company: str | None = None
    user: str | None = None
    password: str | None = None
    crm_filter_operators: str = "documented"
    timeout: int = 60
    max_response_size: int = 64  # MiB
    pagesize: int | None = None
    max_rows: int = -1
    max_concurrency: int = 4
    rate_limit: int = 150
    subscription_key: str | None = None
    proxy_server: str | None = None
    proxy_port: int | None = None
    proxy_user: str | None = None
    proxy_password: str | None = None
    verbosity: int = 1
    logfile: str | None = None
    offline: bool = False
    replica: str | None = None
    # Where the settings came from, for messages and the default token file.
    profile: str | None = None

    @property
    def product_id(self) -> str:
        """The catalog's product name (sage_accounting, sage_200, sage_crm)."""
        return default_catalog().resolve_product(self.product)

    def proxies(self) -> dict[str, str] | None:
        """The proxies mapping requests takes, or None when no proxy is set."""
        if not self.proxy_server:
            return None
        from urllib.parse import quote

        auth = ""
        if self.proxy_user:
            auth = quote(self.proxy_user, safe="")
            if self.proxy_password:
                auth += ":" + quote(self.proxy_password, safe="")
            auth += "@"
        host = self.proxy_server
        if "://" in host:
            host = host.split("://", 1)[1]
        url = f"http://{auth}{host}" + (f":{self.proxy_port}" if self.proxy_port else "")
        return {"http": url, "https": url}

    def secrets(self) -> list[str]:
        """Every secret value set, for redaction (the Replica URL's password among them)."""
        found = [v for p in PROPERTIES if p.secret and (v := getattr(self, p.attribute))]
        return found + (url_passwords(self.replica) if self.replica else [])

    def public(self) -> dict[str, Any]:
        """Property name -> value with secrets masked (for `auth status` and logs)."""
        out: dict[str, Any] = {}
        for p in PROPERTIES:
            value = getattr(self, p.attribute)
            out[p.name] = "********" if (p.secret and value) else value
        if self.replica:
            out["Replica"] = shown_url(self.replica)
        return out

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        # rich prefers this to __repr__, and a Struct's own lists every field, secrets too
        return [(k, v) for k, v in self.public().items() if v is not None]

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self.__rich_repr__())})"

    __str__ = __repr__


def _query_password(url: str) -> str | None:
    """A ``password=`` in the URL's query (libpq reads it as well as the user's)."""
    for pair in urlsplit(url).query.split("&"):
        name, _, value = pair.partition("=")
        if name.lower() == "password" and value:
            return unquote(value)
    return None


def url_passwords(url: str) -> list[str]:
    """The passwords a replica URL carries, for redaction."""
    parts = urlsplit(url)
    found = [parts.password, _query_password(url)]
    return [p for p in found if p]


def shown_url(url: str) -> str:
    """The URL without its passwords (for messages and `auth status`)."""
    parts = urlsplit(url)
    query = "&".join(
        f"{p.split('=', 1)[0]}=***" if p.split("=", 1)[0].lower() == "password" else p
        for p in parts.query.split("&")
    )
    if parts.password is None and query == parts.query:
        return url  # (geturl() would also drop sqlite:///'s empty host)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{netloc}")
    return parts._replace(query=query).geturl()


def is_postgres_url(url: str) -> bool:
    scheme = urlsplit(url).scheme.lower()
    return scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+")


TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def _convert(prop: Property, raw: Any) -> Any:
    """The typed value of one property, or ValueError with the reason."""
    if raw is None:
        return None
    if prop.kind == "int":
        if isinstance(raw, bool):
            raise ValueError("expected a whole number")
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        if prop.minimum is not None and value < prop.minimum:
            raise ValueError(f"must be at least {prop.minimum}")
        if prop.maximum is not None and value > prop.maximum:
            raise ValueError(f"must be at most {prop.maximum}")
        return value
    if prop.kind == "bool":
        if isinstance(raw, bool):
            return raw
        word = str(raw).strip().lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise ValueError("expected True or False")
    text = str(raw).strip()
    if prop.kind == "replica":
        if urlsplit(text).scheme.lower() != "sqlite" and not is_postgres_url(text):
            raise ValueError("expected a sqlite:///PATH or postgresql://USER@HOST/DB URL")
        return text
    if prop.kind == "choice":
        for choice in prop.choices:
            if text.lower() == choice.lower():
                return choice
        raise ValueError(f"expected one of {', '.join(prop.choices)}")
    if prop.kind == "url":
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("expected an http:// or https:// URL")
        return text.rstrip("/") if prop.name != "CallbackURL" else text
    if text == "":
        return None
    return text


def validate(raw: Mapping[str, Any], *, profile: str | None = None) -> Settings:
    """Settings from property name -> value pairs; every problem reported in one error."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name, value in raw.items():
        prop = lookup(name)
        if prop is None:
            hint = did_you_mean(name, [p.name for p in PROPERTIES])
            problems.append(f"unknown property {name!r}" + (f" ({hint})" if hint else ""))
            continue
        try:
            values[prop.attribute] = _convert(prop, value)
        except ValueError as exc:
            shown = (
                "********"
                if prop.secret
                else repr(shown_url(str(value)) if prop.kind == "replica" else str(value))
            )
            problems.append(f"{prop.name}={shown}: {exc}")
    values = {k: v for k, v in values.items() if v is not None}
    settings = Settings(**values, profile=profile)
    if not problems:  # checks across properties mean little while a value is wrong
        problems.extend(_consistency(settings))
    if problems:
        raise ConfigurationError(
            "bad connection properties: " + "; ".join(problems),
            hint="run 'sagesql properties' to see every property and its allowed values",
        )
    return settings


def _consistency(s: Settings) -> list[str]:
    """Problems that involve several properties."""
    problems: list[str] = []
    if s.offline:
        # Nothing is sent to Sage: no credentials are needed, only the copy to read.
        if not s.replica:
            problems.append("Offline=True needs Replica (sqlite:///PATH or postgresql://...)")
        return problems
    product = default_catalog().product(s.product)
    if product.auth.get("type") == "basic":
        name = product.connection_name
        # A product run on the customer's own server has no public URL to default to.
        if not s.url and "{server}" in product.base_urls.get("default", ""):
            problems.append(f"{name} needs URL (its server, e.g. https://crm.example.com)")
        if not s.user:
            problems.append(f"{name} needs User (and Password)")
        return problems
    if s.initiate_oauth == "OFF" and not s.oauth_access_token and not s.oauth_settings_location:
        problems.append(
            "InitiateOAuth=OFF needs OAuthAccessToken (or use InitiateOAuth="
            "GETANDREFRESH to log in, or REFRESH with OAuthRefreshToken)"
        )
    # REFRESH only refreshes: without a refresh token it would fail when the token expires.
    if s.initiate_oauth == "REFRESH" and not s.oauth_refresh_token:
        problems.append("InitiateOAuth=REFRESH needs OAuthRefreshToken")
    if s.initiate_oauth in ("REFRESH", "GETANDREFRESH") and not s.oauth_client_id:
        problems.append(
            f"InitiateOAuth={s.initiate_oauth} needs OAuthClientId (and OAuthClientSecret)"
        )
    if s.proxy_port and not s.proxy_server:
        problems.append("ProxyPort needs ProxyServer")
    return problems
