"""An instance body as the service keeps it: every problem found first, then its poller's parts.

The body is the platforms' instance JSON, unchanged. Reading it is the polling
library's (``instance.from_instance``, ``tables.resolve``, ``load_settings`` with the
instance's ``connection_defaults()``); this module only gathers every problem into one
list instead of stopping at the first, and places the instance in the service: its
poll state in the service's state store, its tokens in the service database, no
browser login, and none of the connection properties that name files on the server.

One setting is the service's own: ``configuration["event.notification.delivery"]``,
an object (or a JSON string holding one) with the retry policy of ``sagesql poll``'s
``[delivery]`` table (``max_attempts``, ``backoff``, ``backoff_cap``,
``give_up_after``, ``events_per_message``); without it the defaults (12 attempts over
at least 15 minutes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sagesql.activities.polling import instance
from sagesql.activities.polling.config import PollConfig, delivery
from sagesql.activities.polling.tables import resolve
from sagesql.connector.auth import OAuthAuth
from sagesql.connector.client import SageClient
from sagesql.connector.logs import register_secret
from sagesql.connector.properties import BY_KEY, Settings
from sagesql.connector.sources import load_settings
from sagesql.connector.throttle import TokenBucket
from sagesql.connector.tokenstore import MemoryTokenStore, TokenSet, TokenStore
from sagesql.errors import ConfigurationError, Error
from sagesql.schemas.catalog import default_catalog
from sagesql.service.secrets import secret_values


class BodyProblems(Error):
    """An instance body the service refuses, with every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "the instance has problems: " + " | ".join(problems),
            hint="fix them and send the instance again",
        )


@dataclass(frozen=True)
class Prepared:
    """An instance ready to poll: its configuration and connection settings."""

    config: PollConfig
    settings: Settings

    @property
    def product(self) -> str:
        return str(self.settings.product_id)


def _configuration(body: Mapping[str, Any]) -> Mapping[str, Any]:
    conf = body.get("configuration")
    return conf if isinstance(conf, Mapping) else {}


DELIVERY = "event.notification.delivery"


def _delivery(body: Mapping[str, Any], config: PollConfig) -> PollConfig:
    """The config with the body's delivery policy, if it sets one."""
    raw = _configuration(body).get(DELIVERY)
    if raw is None:
        return config
    where = f"configuration.{DELIVERY}"
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"{where} is not valid JSON: {exc.msg} at column {exc.colno}",
                hint='{"max_attempts": 5, "backoff": "10s"}',
            ) from None
    return replace(config, delivery=delivery(raw, where))


def _server_paths(body: Mapping[str, Any]) -> list[str]:
    """Connection properties naming files on the server (Logfile, OAuthSettingsLocation):
    an organization may not choose where the service reads or writes."""
    return [
        f"configuration.{key}: {prop.name} names a file on the server; the service decides it"
        for key in _configuration(body)
        if (prop := BY_KEY.get(str(key).lower())) is not None and prop.kind == "path"
    ]


def _entries(body: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The poller entries that read (name -> entry) and the problems of the others."""
    raw = _configuration(body).get(instance.POLLER)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return {}, []  # from_instance says what is wrong with it
    if not isinstance(raw, Mapping):
        return {}, []
    good: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in raw.items():
        try:
            instance.entry(str(name), value, "instance")
            good[str(name)] = value
        except Error as exc:
            problems.append(str(exc))
    return good, problems


def prepare(
    body: Any, instance_id: str, state: Path, *, token_location: str | None = None
) -> Prepared:
    """The instance's PollConfig and Settings; :class:`BodyProblems` listing every problem.

    Nothing here sends a request (tables are resolved against the catalog).
    """
    if not isinstance(body, Mapping):
        raise BodyProblems(["the body is not a JSON object"])
    for secret in secret_values(body):  # masked in every log line from now on
        register_secret(secret)
    if not instance.is_instance(body):
        raise BodyProblems(
            ["the body is not an instance: its configuration has no event.* settings"]
        )
    problems = _server_paths(body)
    good, entry_problems = _entries(body)
    problems += entry_problems
    readable = dict(body)
    if entry_problems and good:  # read the rest, to find their problems too
        readable["configuration"] = {**_configuration(body), instance.POLLER: good}
    readable["id"] = instance_id  # events carry the service's id for the instance
    config: PollConfig | None = None
    try:
        config = replace(instance.from_instance(readable, None), state=state)
    except Error as exc:
        if not entry_problems:
            problems.append(str(exc))
    settings: Settings | None = None
    if config is not None and config.product is None:
        problems.append("element.key is missing: it names the Sage product (sageone, sage200...)")
        config = None
    if config is not None:
        try:
            config = _delivery(body, config)
        except Error as exc:
            problems.append(str(exc))
        for table in config.tables:
            try:
                resolve(replace(config, tables=(table,)), default_catalog(), _product(config))
            except Error as exc:
                problems.append(str(exc))
        defaults = config.connection_defaults()
        defaults["OAuthSettingsLocation"] = token_location or f"memory://service-{instance_id}"
        try:
            settings = load_settings(None, use_environment=False, defaults=defaults)
        except Error as exc:
            problems.append(str(exc))
    if problems or config is None or settings is None:
        raise BodyProblems(problems or ["the instance cannot be read"])
    return Prepared(config, settings)


def _product(config: PollConfig) -> str:
    return default_catalog().resolve_product(str(config.product))


def connect(
    prepared: Prepared, store: TokenStore, limiter: TokenBucket | None = None
) -> SageClient:
    """The instance's connection: its tokens in ``store``, never a browser login; its
    requests counted by ``limiter`` when given (a budget shared across workers)."""
    client = SageClient(prepared.settings, store=store, interactive=lambda: False, limiter=limiter)
    return client


def exchange_code(prepared: Prepared) -> TokenSet | None:
    """The token pair for the instance's authorization code (providerData.code or
    OAuthCode), exchanged now; AuthError with the provider's reason when refused. None
    when the instance has no code."""
    if not prepared.settings.oauth_code:
        return None
    store = MemoryTokenStore(f"service-exchange-{id(prepared)}")
    client = connect(prepared, store)
    try:
        if not isinstance(client.auth, OAuthAuth):
            return None
        return client.auth.current()
    finally:
        client.close()
        store.clear()
