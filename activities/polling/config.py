"""Poller configuration: the native TOML/JSON file, read into one validated PollConfig.

A native file (TOML, or JSON of the same shape)::

    name = "acme-sage"                  # the instance (its id defaults to the name)
    connection = "Product=SageAccounting;..."   # or profile = "acme"; -c wins over both
    state = "acme.poll.sqlite"          # default: beside this file, <stem>.poll.sqlite
    interval = "15m"                    # time between cycles
    start = "now"                       # or an ISO date-time: where the first cycle starts
    lookback = "2m"                     # re-read this far behind the watermark (late rows)
    delay = "5s"                        # the window stops this far behind the server's now
    tolerance = "1s"                    # created within this of updated: CREATED

    [[tables]]
    table = "customers"                 # a table or alias (or a platform resource name)
    name = "customers"                  # objectType in events (default: as written)
    filter = "balance > 0"              # an SQL condition on the table's columns
    deletes = "auto"                    # auto | api | compare | off
    compare_every = "1h"                # id sets compared this often (tables without a
                                        # deletion feed); default: every 3rd cycle

    [[sinks]]
    type = "webhook"                    # webhook | jsonl | stdout
    url = "https://hooks.example.com/sage"
    username = "..."                    # basic auth
    password = "..."
    signature_key = "..."               # Elements-Webhook-Signature: sha256=<base64 HMAC>
    headers = { "X-Source" = "sage" }

    [delivery]
    give_up_after = "15m"               # retry for this long (exponential backoff, jitter)
    max_attempts = 12                   # ... or this many attempts, then park (dead letter)
    backoff = "2s"                      # first wait, doubling up to backoff_cap
    backoff_cap = "2m"
    events_per_message = 10             # at most 10

The integration platforms' instance JSON is read by :mod:`instance` into the same
object. Unknown keys are errors naming the closest known key, so a typing mistake
never silently turns a setting off.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sagesql.activities.polling.timeparse import duration, instant
from sagesql.errors import ConfigurationError
from sagesql.schemas.catalog import did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_INTERVAL = timedelta(minutes=15)
DEFAULT_LOOKBACK = timedelta(minutes=2)
DEFAULT_DELAY = timedelta(seconds=5)
DEFAULT_TOLERANCE = timedelta(seconds=1)
# Without compare_every, id sets are compared every this many cycles (the first one
# included), so that a deletion is reported within a few cycles.
COMPARE_EVERY_CYCLES = 3
SINK_KINDS = ("webhook", "jsonl", "stdout")
DELETE_MODES = ("auto", "api", "compare", "off")


@dataclass(frozen=True)
class SinkConfig:
    """Where messages go. ``repr`` hides the password and the signature key."""

    kind: str
    name: str
    url: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    signature_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    path: Path | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class DeliveryConfig:
    """Retries: exponential backoff with jitter, bounded by time and attempts, then parked."""

    give_up_after: timedelta = timedelta(minutes=15)
    max_attempts: int = 12
    backoff: timedelta = timedelta(seconds=2)
    backoff_cap: timedelta = timedelta(minutes=2)
    events_per_message: int = 10


@dataclass(frozen=True)
class TableConfig:
    """One polled table as configured (resolved against the catalog by :mod:`tables`)."""

    origin: str  # where it was configured, for messages: tables[2], event.poller...customers
    name: str  # objectType
    table: str  # table, alias or platform resource name
    filter: str | None = None
    lookback: timedelta | None = None
    delay: timedelta | None = None
    tolerance: timedelta | None = None
    page_size: int | None = None
    id_field: str | None = None
    updated_field: str | None = None
    created_field: str | None = None
    deletes: str = "auto"
    compare_every: timedelta | None = None
    # From a platform url: the where clause (placeholders replaced by :since) and the
    # placeholders as written, for messages and --explain.
    where: str | None = None
    placeholders: tuple[str, ...] = ()
    url: str | None = None
    date_timezone: str | None = None


@dataclass(frozen=True)
class PollConfig:
    """Everything ``sagesql poll`` needs besides the connection's credentials."""

    source: Path | None
    instance_id: str
    instance_name: str
    state: Path
    tables: tuple[TableConfig, ...]
    sinks: tuple[SinkConfig, ...]
    interval: timedelta = DEFAULT_INTERVAL
    start: datetime | None = None  # None: the first cycle starts at the server's now
    lookback: timedelta = DEFAULT_LOOKBACK
    delay: timedelta = DEFAULT_DELAY
    tolerance: timedelta = DEFAULT_TOLERANCE
    page_size: int | None = None
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    connection: str | None = field(default=None, repr=False)
    profile: str | None = None
    product: str | None = None  # what the file says the product is (platform element key)
    element_key: str | None = None
    platform: bool = False  # read from a platform instance JSON
    # Connection properties the file carries (a platform instance's credentials): below
    # the profile, the environment and -c, which win.
    properties: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def token_location(self) -> Path:
        """Where an instance keeps its token pair: beside its state (``<stem>.tokens.json``)."""
        stem = self.state.name
        for suffix in (".sqlite", ".poll"):
            stem = stem.removesuffix(suffix)
        return self.state.with_name(f"{stem}.tokens.json")

    def connection_defaults(self) -> dict[str, Any]:
        """The connection properties this configuration gives: an instance's own, with its
        token store beside the state file unless it names one."""
        out = dict(self.properties)
        if self.platform and not any(k.lower() == "oauthsettingslocation" for k in out):
            out["OAuthSettingsLocation"] = str(self.token_location)
        return out


# -- reading -----------------------------------------------------------------------------


def parse_text(text: str, path: Path) -> dict[str, Any]:
    """The file's data: JSON when it looks like JSON (or is named .json), else TOML."""
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                hint="fix the JSON syntax",
            ) from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(
                f"{path}: not valid TOML: {exc}", hint="fix the TOML syntax"
            ) from None
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{path}: the configuration must be an object", hint="see 'sagesql poll --help'"
        )
    return data


def check_keys(data: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = [k for k in data if k not in known]
    if unknown:
        key = unknown[0]
        raise ConfigurationError(
            f"{where}: unknown setting {key!r}",
            hint=did_you_mean(key, known) or f"known settings: {', '.join(sorted(known))}",
        )


def default_state(path: Path | None, instance_id: str) -> Path:
    """The state file beside the configuration: ``<stem>.poll.sqlite``."""
    if path is None:
        return Path(f"{instance_id}.poll.sqlite")
    return path.with_name(f"{path.stem}.poll.sqlite")


_TOP = {
    "name",
    "id",
    "connection",
    "profile",
    "product",
    "state",
    "interval",
    "start",
    "lookback",
    "delay",
    "tolerance",
    "page_size",
    "tables",
    "sinks",
    "delivery",
}
_TABLE = {
    "table",
    "name",
    "filter",
    "lookback",
    "delay",
    "tolerance",
    "page_size",
    "id",
    "updated",
    "created",
    "deletes",
    "compare_every",
}
_SINK = {
    "type",
    "name",
    "url",
    "username",
    "password",
    "signature_key",
    "headers",
    "path",
    "timeout",
}
_DELIVERY = {"give_up_after", "max_attempts", "backoff", "backoff_cap", "events_per_message"}


def from_native(data: Mapping[str, Any], path: Path | None) -> PollConfig:
    where = str(path) if path else "configuration"
    check_keys(data, _TOP, where)
    name = str(data.get("name") or (path.stem if path else "sagesql-poll"))
    instance_id = str(data.get("id") or name)
    tables_data = data.get("tables")
    if not tables_data:
        raise ConfigurationError(
            f"{where}: no tables to poll", hint='add tables = ["customers"] or [[tables]] entries'
        )
    if not isinstance(tables_data, list):
        raise ConfigurationError(
            f"{where}: tables must be a list", hint='write tables = ["customers"]'
        )
    tables = tuple(_table(entry, f"tables[{i}]") for i, entry in enumerate(tables_data))
    _unique_names(tables, where)
    sinks_data = data.get("sinks") or []
    if not isinstance(sinks_data, list) or not sinks_data:
        raise ConfigurationError(
            f"{where}: no sinks: events would go nowhere",
            hint='add [[sinks]] with type = "webhook", "jsonl" or "stdout"',
        )
    sinks = tuple(sink(entry, f"sinks[{i}]", base=path) for i, entry in enumerate(sinks_data))
    _unique_sinks(sinks, where)
    state = data.get("state")
    state_path = Path(state) if state else default_state(path, instance_id)
    if state and path is not None and not state_path.is_absolute():
        state_path = path.parent / state_path
    start = data.get("start")
    return PollConfig(
        source=path,
        instance_id=instance_id,
        instance_name=name,
        state=state_path,
        tables=tables,
        sinks=sinks,
        interval=duration(data.get("interval", DEFAULT_INTERVAL), what="interval"),
        start=None if start in (None, "now") else instant(start, what="start"),
        lookback=duration(data.get("lookback", DEFAULT_LOOKBACK), what="lookback"),
        delay=duration(data.get("delay", DEFAULT_DELAY), what="delay"),
        tolerance=duration(data.get("tolerance", DEFAULT_TOLERANCE), what="tolerance"),
        page_size=_positive(data.get("page_size"), "page_size"),
        delivery=delivery(data.get("delivery") or {}, "delivery"),
        connection=data.get("connection"),
        profile=data.get("profile"),
        product=data.get("product"),
    )


def _positive(value: Any, what: str) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or isinstance(value, bool):
        raise ConfigurationError(
            f"{what}: {value!r} is not a positive whole number", hint="write 200"
        )
    return number


def _table(entry: Any, origin: str) -> TableConfig:
    if isinstance(entry, str):
        return TableConfig(origin=origin, name=entry, table=entry)
    if not isinstance(entry, Mapping) or not entry.get("table"):
        raise ConfigurationError(
            f'{origin}: a table entry needs table = "NAME"', hint='write { table = "customers" }'
        )
    check_keys(entry, _TABLE, origin)
    deletes = str(entry.get("deletes", "auto")).lower()
    if deletes not in DELETE_MODES:
        raise ConfigurationError(
            f"{origin}: deletes = {deletes!r} is not one of {', '.join(DELETE_MODES)}",
            hint="auto uses the API's deletions where it reports them, else id-set comparison",
        )

    def maybe(key: str) -> timedelta | None:
        return duration(entry[key], what=f"{origin}.{key}") if key in entry else None

    return TableConfig(
        origin=origin,
        name=str(entry.get("name") or entry["table"]),
        table=str(entry["table"]),
        filter=entry.get("filter") or None,
        lookback=maybe("lookback"),
        delay=maybe("delay"),
        tolerance=maybe("tolerance"),
        page_size=_positive(entry.get("page_size"), f"{origin}.page_size"),
        id_field=entry.get("id"),
        updated_field=entry.get("updated"),
        created_field=entry.get("created"),
        deletes=deletes,
        compare_every=maybe("compare_every"),
    )


def _unique_names(tables: tuple[TableConfig, ...], where: str) -> None:
    seen: set[str] = set()
    for t in tables:
        if t.name.lower() in seen:
            raise ConfigurationError(
                f"{where}: {t.origin} polls {t.name!r} a second time",
                hint="give each entry its own name = ...",
            )
        seen.add(t.name.lower())


def _unique_sinks(sinks: tuple[SinkConfig, ...], where: str) -> None:
    names = [s.name for s in sinks]
    for name in names:
        if names.count(name) > 1:
            raise ConfigurationError(
                f"{where}: two sinks are named {name!r}", hint="give each sink its own name = ..."
            )


def sink(entry: Any, origin: str, *, base: Path | None = None) -> SinkConfig:
    if not isinstance(entry, Mapping):
        raise ConfigurationError(
            f"{origin}: a sink must be a table", hint='write { type = "stdout" }'
        )
    check_keys(entry, _SINK, origin)
    kind = str(entry.get("type", "")).lower()
    if kind not in SINK_KINDS:
        raise ConfigurationError(
            f"{origin}: type = {entry.get('type')!r} is not one of {', '.join(SINK_KINDS)}",
            hint='write type = "webhook", "jsonl" or "stdout"',
        )
    headers = entry.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise ConfigurationError(
            f"{origin}.headers must be a table of names and values",
            hint='headers = { "X-Key" = "v" }',
        )
    url = entry.get("url")
    if kind == "webhook" and (not url or not str(url).lower().startswith(("http://", "https://"))):
        raise ConfigurationError(
            f'{origin}: a webhook needs url = "https://..."', hint="give the receiver's URL"
        )
    path = entry.get("path")
    if kind == "jsonl":
        if not path:
            raise ConfigurationError(
                f'{origin}: a jsonl sink needs path = "events.jsonl"', hint="give a file path"
            )
        path = Path(path)
        if base is not None and not path.is_absolute():
            path = base.parent / path
    timeout = entry.get("timeout", 30)
    return SinkConfig(
        kind=kind,
        name=str(entry.get("name") or kind),
        url=str(url) if url else None,
        username=entry.get("username"),
        password=entry.get("password"),
        signature_key=entry.get("signature_key"),
        headers={str(k): str(v) for k, v in headers.items()},
        path=Path(path) if path else None,
        timeout=float(duration(timeout, what=f"{origin}.timeout", bare_unit="s").total_seconds()),
    )


def delivery(data: Any, origin: str) -> DeliveryConfig:
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{origin} must be a table", hint="[delivery]")
    check_keys(data, _DELIVERY, origin)
    base = DeliveryConfig()
    per_message = _positive(data.get("events_per_message"), f"{origin}.events_per_message")
    if per_message is not None and per_message > 10:
        raise ConfigurationError(
            f"{origin}.events_per_message = {per_message}: at most 10 events go in one message",
            hint="the integration platforms send up to 10 polled events per notification",
        )

    def get(key: str, default: timedelta) -> timedelta:
        return duration(data[key], what=f"{origin}.{key}") if key in data else default

    return DeliveryConfig(
        give_up_after=get("give_up_after", base.give_up_after),
        max_attempts=_positive(data.get("max_attempts"), f"{origin}.max_attempts")
        or base.max_attempts,
        backoff=get("backoff", base.backoff),
        backoff_cap=get("backoff_cap", base.backoff_cap),
        events_per_message=per_message or base.events_per_message,
    )
