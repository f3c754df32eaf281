"""The integration platforms' instance JSON, accepted as published and read into a PollConfig.

An instance (the body the platforms create it with, or its ``configuration`` map
alone) configures polling with these keys, all read here::

    event.notification.enabled          true / "true": without it nothing would be sent
    event.notification.callback.url     the webhook receiving the notifications
    event.notification.basic.username   basic auth for the webhook
    event.notification.basic.password
    event.notification.signature.key    HMAC key of Elements-Webhook-Signature
    signature.secret, signing.key       (the same, as some instances write it)
    event.poller.refresh_interval       minutes between polls
    event.poller.configuration          JSON (an object, or a string holding one):
        {"<resource>": {"url": "/hubs/<hub>/<resource>?where=<clause>",
                        "idField": "id",
                        "datesConfiguration": {"updatedDateField", "updatedDateFormat",
                            "updatedDateTimezone", "createdDateField", ...},
                        "pollDelay": 60, "createdCheckTolerance": 5, "pageSize": 200}}

Placeholders in the where clause: ``${date:FORMAT}`` (the last poll time in the
dates' time zone), ``${gmtDate:FORMAT}`` (in GMT) and ``${epoch}`` (milliseconds),
with Java date patterns. The comparison holding the placeholder names the updated-date
column (or its API parameter, such as ``updated_or_created_since``); sagesql replaces it
by its frozen window, ``>=`` even where the clause says ``>`` (rows sharing the last
poll's second would be lost). The rest of the clause is an SQL filter on the table,
where the platforms' field names stand for the table's columns (``lastModifiedDate``
is the updated-date column: the products' ``platform_fields``) and a Sage query
parameter written as a condition (``attributes='a,b'``, ``search='x'``) is applied as
that parameter (tables.py). A quote left open at the end of the clause, as published
examples have it, is closed there with a warning. ``pollDelay`` is the lookback;
``filterByCurrentDate`` is always on (the window has an upper bound).

The instance is also the connection: ``element.key`` names the product (sageone,
sageaccounting, sage200, sagecrm...), and the product maps the configuration's
credentials to connection properties (``oauth.api.key`` is OAuthClientId,
``company.name`` Company, CRM's ``subdomain``/``username``/``password`` URL, User and
Password: ``SageProduct.instance_properties``); ``providerData.code`` is exchanged once
for a token pair kept beside the state file; a connection property may also be written
in ``configuration`` under its own name. ``-c`` and ``--profile`` win over all of it.
Tags and everything else of the platform's are ignored.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo

from sagesql.activities.polling.config import (
    DEFAULT_DELAY,
    DEFAULT_LOOKBACK,
    DEFAULT_TOLERANCE,
    DeliveryConfig,
    PollConfig,
    SinkConfig,
    TableConfig,
    default_state,
)
from sagesql.activities.polling.javadate import compile_pattern
from sagesql.activities.polling.timeparse import duration
from sagesql.connector import products
from sagesql.connector.properties import BY_KEY
from sagesql.errors import ConfigurationError
from sagesql.schemas.catalog import did_you_mean

log = logging.getLogger("sagesql.poll")


@functools.lru_cache(maxsize=4096)
def warn_once(message: str) -> None:
    """Log a warning about a body the first time only: the service parses an instance's
    body each time its session opens, and the same line hundreds of times hides others.
    Bounded, so a long-running service forgets the oldest."""
    log.warning("%s", message)


POLLER = "event.poller.configuration"
PLACEHOLDER = re.compile(r"\$\{(?P<kind>[A-Za-z]+)(?::(?P<format>[^}]*))?\}")
SINCE = "since"  # the bind parameter that stands for the placeholder
_ENTRY = {
    "url",
    "idField",
    "datesConfiguration",
    "pollDelay",
    "filterByCurrentDate",
    "createdCheckTolerance",
    "pageSize",
}
_DATES = {
    "updatedDateField",
    "updatedDateFormat",
    "updatedDateTimezone",
    "createdDateField",
    "createdDateFormat",
    "createdDateTimezone",
}


def _configuration(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    inner = data.get("configuration")
    if isinstance(inner, Mapping) and any(str(k).startswith("event.") for k in inner):
        return inner
    if any(str(k).startswith("event.") for k in data):
        return data
    return None


def is_instance(data: Mapping[str, Any]) -> bool:
    """Whether the data is a platform instance (or its configuration map)."""
    return _configuration(data) is not None


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "on")


def from_instance(data: Mapping[str, Any], path: Path | None) -> PollConfig:
    where = str(path) if path else "instance"
    conf = _configuration(data)
    assert conf is not None
    element = data.get("element")
    element_key = (
        str(element.get("key")) if isinstance(element, Mapping) and element.get("key") else None
    )
    product = None
    if element_key:
        wanted = element_key.lower().replace("-", "").replace("_", "")
        known = {key: p.id for p in products.all_products() for key in p.element_keys}
        product = known.get(wanted)
        if product is None:
            raise ConfigurationError(
                f"{where}: element {element_key!r} is not a Sage element sagesql polls",
                hint=f"use one of {', '.join(sorted(known))}",
            )
    vendor = conf.get("event.vendor.type")
    if vendor and str(vendor).lower() not in ("polling", "poller"):
        raise ConfigurationError(
            f"{where}: event.vendor.type is {vendor!r}: the instance expects webhooks, not polling",
            hint='set "event.vendor.type": "polling"',
        )
    if not _truthy(conf.get("event.notification.enabled", "false")):
        raise ConfigurationError(
            f"{where}: event.notification.enabled is not true: the instance sends no events",
            hint='set "event.notification.enabled": "true"',
        )
    url = conf.get("event.notification.callback.url")
    if not url or not str(url).lower().startswith(("http://", "https://")):
        raise ConfigurationError(
            f"{where}: event.notification.callback.url is missing or not an http(s) URL",
            hint="give the URL that receives the notifications",
        )
    headers = conf.get("event.notification.headers") or {}
    if isinstance(headers, str):
        headers = json.loads(headers) if headers.strip() else {}
    sink = SinkConfig(
        kind="webhook",
        name="webhook",
        url=str(url),
        username=conf.get("event.notification.basic.username") or None,
        password=conf.get("event.notification.basic.password") or None,
        signature_key=conf.get("event.notification.signature.key")
        or conf.get("signature.secret")
        or conf.get("signing.key")
        or data.get("signature.secret")
        or None,
        headers={str(k): str(v) for k, v in dict(headers).items()},
    )
    interval = duration(
        conf.get("event.poller.refresh_interval", 15),
        what="event.poller.refresh_interval",
        bare_unit="m",
    )
    raw = conf.get(POLLER)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"{where}: {POLLER} is not valid JSON: {exc.msg} at column {exc.colno}",
                hint="write it as a JSON object (or a string holding one)",
            ) from None
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigurationError(
            f"{where}: {POLLER} names no resources to poll",
            hint='add {"customers": {"url": "/hubs/finance/customers?where=..."}}',
        )
    tables = tuple(entry(str(name), value, where) for name, value in raw.items())
    instance_id = str(
        data.get("id") or conf.get("instance.id") or (path.stem if path else "instance")
    )
    name = str(data.get("name") or instance_id)
    return PollConfig(
        properties=connection_properties(data, conf, product),
        source=path,
        instance_id=instance_id,
        instance_name=name,
        state=default_state(path, instance_id),
        tables=tables,
        sinks=(sink,),
        interval=interval,
        lookback=DEFAULT_LOOKBACK,
        delay=DEFAULT_DELAY,
        tolerance=DEFAULT_TOLERANCE,
        delivery=DeliveryConfig(),
        product=product,
        element_key=element_key,
        platform=True,
    )


def connection_properties(
    data: Mapping[str, Any], conf: Mapping[str, Any], product: str | None
) -> dict[str, Any]:
    """The connection the instance carries, as connection properties (see the module
    docstring); ``-c``/``--profile`` are layered over these by the caller."""
    out: dict[str, Any] = {}
    if product is None:
        return out
    sage = products.get(product)
    out["Product"] = sage.connection_name
    out.update(sage.instance_properties(conf))
    provider = data.get("providerData")
    code = provider.get("code") if isinstance(provider, Mapping) else None
    if code:
        out["OAuthCode"] = str(code)
    if sage.uses_oauth:
        # Stored tokens first, else the code: a platform instance never opens a browser.
        out["InitiateOAuth"] = "GETANDREFRESH"
    for key, value in conf.items():
        prop = BY_KEY.get(str(key).lower())  # a property under its own name (any case)
        if prop is not None and value not in (None, ""):
            out[prop.name] = value
    return out


def entry(name: str, value: Any, where: str) -> TableConfig:
    """One ``event.poller.configuration`` entry as a TableConfig (the where clause unparsed)."""
    origin = f"{POLLER}.{name}"
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{where}: {origin} must be an object", hint='{"url": "/hubs/..."}'
        )
    unknown = [k for k in value if k not in _ENTRY]
    if unknown:
        raise ConfigurationError(
            f"{where}: {origin}: unknown setting {unknown[0]!r}",
            hint=did_you_mean(unknown[0], _ENTRY) or f"known: {', '.join(sorted(_ENTRY))}",
        )
    url = value.get("url")
    if not url:
        raise ConfigurationError(
            f"{where}: {origin} has no url", hint=f'"url": "/hubs/finance/{name}?where=..."'
        )
    resource, clause, page_size = split_url(str(url), f"{where}: {origin}")
    dates = value.get("datesConfiguration") or {}
    if not isinstance(dates, Mapping):
        raise ConfigurationError(
            f"{where}: {origin}.datesConfiguration must be an object", hint="{}"
        )
    unknown = [k for k in dates if k not in _DATES]
    if unknown:
        raise ConfigurationError(
            f"{where}: {origin}.datesConfiguration: unknown setting {unknown[0]!r}",
            hint=did_you_mean(unknown[0], _DATES) or f"known: {', '.join(sorted(_DATES))}",
        )
    for key in ("updatedDateFormat", "createdDateFormat"):
        if dates.get(key):
            compile_pattern(str(dates[key]), what=f"{origin}.datesConfiguration.{key}")
    timezone_name = dates.get("updatedDateTimezone") or dates.get("createdDateTimezone")
    if timezone_name:
        zone(str(timezone_name), f"{origin}.datesConfiguration")
    where_sql: str | None = None
    placeholders: tuple[str, ...] = ()
    if clause:
        where_sql, placeholders = substitute(clause, f"{where}: {origin}")
    if value.get("pageSize") is not None:
        page_size = int(value["pageSize"])

    def seconds(key: str) -> timedelta | None:
        if value.get(key) is None:
            return None
        return duration(value[key], what=f"{origin}.{key}", bare_unit="s")

    return TableConfig(
        origin=origin,
        name=name,
        table=resource,
        lookback=seconds("pollDelay"),
        tolerance=seconds("createdCheckTolerance"),
        page_size=page_size,
        id_field=value.get("idField") or None,
        updated_field=dates.get("updatedDateField") or None,
        created_field=dates.get("createdDateField") or None,
        where=where_sql,
        placeholders=placeholders,
        url=str(url),
        date_timezone=str(timezone_name) if timezone_name else None,
    )


def split_url(url: str, where: str) -> tuple[str, str | None, int | None]:
    """(resource, where clause, pageSize) of ``/hubs/<hub>/<resource>?where=...``."""
    parts = urlsplit(url)
    segments = [s for s in unquote(parts.path).split("/") if s]
    if len(segments) >= 3 and segments[0] == "hubs":
        resource = segments[2]
        rest = segments[3:]
    elif len(segments) == 1:
        resource, rest = segments[0], []
    else:
        raise ConfigurationError(
            f"{where}: url {url!r} does not name a resource",
            hint="write /hubs/<hub>/<resource>?where=<clause>",
        )
    if rest:
        raise ConfigurationError(
            f"{where}: url {url!r} polls a nested resource ({'/'.join(segments[2:])})",
            hint="poll the resource itself: /hubs/<hub>/<resource>",
        )
    clause = None
    page_size = None
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "where":
            clause = value
        elif key == "pageSize":
            page_size = int(value)
        else:
            raise ConfigurationError(
                f"{where}: url parameter {key!r} is not understood",
                hint="the url takes where= (and pageSize=)",
            )
    return resource, clause, page_size


def substitute(clause: str, where: str) -> tuple[str, tuple[str, ...]]:
    """The clause with each placeholder (and the quotes around it) as ``:since``."""
    out: list[str] = []
    found: list[str] = []
    position = 0
    for match in PLACEHOLDER.finditer(clause):
        kind, fmt = match.group("kind"), match.group("format")
        if kind not in ("date", "gmtDate", "epoch"):
            raise ConfigurationError(
                f"{where}: unknown placeholder {match.group(0)!r} in the where clause",
                hint="use ${date:FORMAT}, ${gmtDate:FORMAT} or ${epoch}",
            )
        if kind != "epoch":
            if not fmt:
                raise ConfigurationError(
                    f"{where}: {match.group(0)!r} has no date format",
                    hint="write ${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}",
                )
            compile_pattern(fmt, what=f"{where}: the format of {match.group(0)}")
        start, end = match.start(), match.end()
        quote = clause[start - 1 : start] if start > 0 else ""
        if quote in ("'", '"') and clause[end : end + 1] == quote:
            start, end = start - 1, end + 1
        out.append(clause[position:start])
        out.append(f":{SINCE}")
        found.append(match.group(0))
        position = end
    out.append(clause[position:])
    return close_quote("".join(out), where), tuple(found)


def close_quote(clause: str, where: str) -> str:
    """The clause with a string left open at its end closed there, and a warning: the
    platforms' published examples end ``attributes='created_at,updated_at`` so, and
    their poller reads them as if closed."""
    quote: str | None = None
    for char in clause:
        if quote is None and char in ("'", '"'):
            quote = char
        elif char == quote:
            quote = None  # a doubled quote ('') closes and reopens: the same in the end
    if quote is None:
        return clause
    kind = "single" if quote == "'" else "double"
    warn_once(
        f"{where}: the where clause's last {kind} quote is never closed; "
        "read as if closed at the end"
    )
    return clause + quote


def zone(name: str, where: str) -> Any:
    """The tzinfo of a platform time zone name (GMT, UTC, Europe/London...)."""
    if name.upper() in ("GMT", "UTC", "Z"):
        return timezone.utc
    try:
        return ZoneInfo(name)
    except Exception:
        raise ConfigurationError(
            f"{where}: unknown time zone {name!r}", hint="use GMT, UTC or a name like Europe/London"
        ) from None


def render(placeholder: str, since: Any, timezone_name: str | None) -> str:
    """What the platform would have put in place of a placeholder for ``since``."""
    match = PLACEHOLDER.fullmatch(placeholder)
    assert match is not None
    kind, fmt = match.group("kind"), match.group("format")
    if kind == "epoch":
        return str(int(since.timestamp() * 1000))
    zone_info = timezone.utc if kind == "gmtDate" else zone(timezone_name or "UTC", "render")
    return compile_pattern(fmt).format(since.astimezone(zone_info))
