"""Helpers of the polling tests: a webhook receiver, sandbox changes, configurations, a poller.

No tests here; the test_poll_* modules import what they need.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests
from werkzeug.wrappers import Request, Response

from sagesql.activities.polling.config import PollConfig, SinkConfig, TableConfig
from sagesql.activities.polling.runner import Session, open_session
from sagesql.connector.sources import load_settings
from sagesql.sandbox.clock import iso, sortable
from sagesql.sandbox.server import RunningServer


class Receiver:
    """A local webhook receiver: records every notification; can be told to fail."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.status = 200
        self.lock = threading.Lock()
        self.server = RunningServer(self._app, "127.0.0.1", 0, quiet=True)
        self.server.start()
        self.url = self.server.url + "/hook"

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        with self.lock:
            status = self.status
            if status < 300:
                self.bodies.append(body)
                self.headers.append(dict(request.headers))
        return Response("", status=status)(environ, start_response)

    def messages(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(b)["message"] for b in self.bodies]

    def events(self) -> list[dict[str, Any]]:
        return [e for m in self.messages() for e in m["events"]]

    def stop(self) -> None:
        self.server.stop()


def connection_string(sbx: Any, name: str = "poll") -> str:
    """The sandbox's connection string, tokens in memory and no client-side rate limit."""
    props = sbx.connection_properties()
    if sbx.uses_oauth:
        props["OAuthSettingsLocation"] = f"memory://{name}-{sbx.server.port}"
    props["RateLimit"] = "0"
    return ";".join(f"{k}={v}" for k, v in props.items())


def poll_config(
    tmp: Path,
    tables: Iterable[str | TableConfig],
    *,
    sinks: Iterable[SinkConfig] = (),
    start: datetime | None = None,
    **changes: Any,
) -> PollConfig:
    entries = tuple(
        t if isinstance(t, TableConfig) else TableConfig(origin=f"tables[{i}]", name=t, table=t)
        for i, t in enumerate(tables)
    )
    sinks = tuple(sinks) or (SinkConfig(kind="jsonl", name="jsonl", path=tmp / "events.jsonl"),)
    config = PollConfig(
        source=None,
        instance_id="test",
        instance_name="test instance",
        state=tmp / "state.sqlite",
        tables=entries,
        sinks=sinks,
        start=start,
    )
    return replace(config, **changes)


def session(sbx: Any, config: PollConfig, name: str = "poll", **props: str) -> Session:
    text = ";".join([connection_string(sbx, name), *(f"{k}={v}" for k, v in props.items())])
    settings = load_settings(text, use_environment=False)
    return open_session(config, settings)


def jsonl_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def clock(sbx: Any, **body: Any) -> dict[str, Any]:
    return requests.post(sbx.url + "/_sandbox/clock", json=body, timeout=10).json()


def frozen_at(sbx: Any, when: datetime) -> None:
    clock(sbx, set=iso(when), frozen=True)


def request_log(sbx: Any, *, clear: bool = False) -> list[dict[str, Any]]:
    method = requests.delete if clear else requests.get
    return method(sbx.url + "/_sandbox/requests", timeout=10).json()


def sage200_scope(sbx: Any) -> str:
    return str(sbx.app.demo.companies[0].id)


def touch_sage200(sbx: Any, resource: str, keys: Iterable[int], when: datetime) -> list[str]:
    """Change records directly in the store, as a PUT would, at ``when``; their stamps."""
    from sagesql.engine.values import datetime_text

    store = sbx.app.store
    scope = sage200_scope(sbx)
    stamp = datetime_text(when, "sage_200")
    with store.transaction():
        for key in keys:
            record = store.get(scope, resource, key)
            assert record is not None, key
            record["date_time_updated"] = stamp
            record["spare_text_1"] = f"changed at {stamp}"
            store.replace(scope, resource, str(key), record, updated=sortable(when))
    return [stamp]


def touch_crm(sbx: Any, resource: str, keys: Iterable[int], when: datetime) -> None:
    """Change CRM records directly in the store (the sandbox writes local time with offset)."""
    from sagesql.sandbox.crm import SCOPE
    from sagesql.sandbox.crm_data import local_text

    store = sbx.app.store
    entity = sbx.app.entities[resource.lower()]
    with store.transaction():
        for key in keys:
            record = store.get(SCOPE, entity.name, key)
            assert record is not None, key
            record[entity.audit.updated] = local_text(when, sbx.app.local)
            store.replace(SCOPE, entity.name, str(key), record, updated=sortable(when))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)  # type: ignore[misc]


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def touch_accounting(sbx: Any, resource: str, keys: Iterable[str], when: datetime) -> None:
    """Change Accounting records directly in the store, as a PUT would, at ``when``."""
    app = sbx.app
    store = app.store
    scope = app.lead
    when = when.replace(microsecond=0)
    with store.transaction():
        for key in keys:
            record = store.get(scope, resource, key)
            assert record is not None, key
            record["updated_at"] = iso(when)
            record["notes"] = f"changed at {iso(when)}"
            store.replace(scope, resource, key, record, updated=sortable(when))
    app.pages.changed(scope, resource)


def accounting_keys(sbx: Any, resource: str) -> list[str]:
    store = sbx.app.store
    return [row[0] for row in store.select(sbx.app.lead, resource, columns="key")]


def sage200_keys(sbx: Any, resource: str) -> list[int]:
    store = sbx.app.store
    return [int(row[0]) for row in store.select(sage200_scope(sbx), resource, columns="key")]
