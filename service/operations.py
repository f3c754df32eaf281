"""What each endpoint does, for one organization: the service's library side (HTTP is thin over it).

Every method takes the caller's organization and answers only about its instances:
another organization's instance is :class:`NotFound`, exactly like one that does not
exist. Answers are JSON-ready; secrets never leave (masked configuration, no tokens).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sagesql.activities import Create, Delete, Execute, Query, Update
from sagesql.activities.polling import runner
from sagesql.activities.polling.state import StateStore
from sagesql.activities.results import ActivityResult
from sagesql.connector.client import SageClient
from sagesql.engine.procedures import SECRET_RESULTS
from sagesql.errors import AuthError, ConfigurationError, Error, ProgrammingError
from sagesql.service.instances import BodyProblems, Prepared, connect, exchange_code, prepare
from sagesql.service.polling import Scheduler
from sagesql.service.schedule import Schedule
from sagesql.service.secrets import (
    MASK,
    SecretBox,
    digest,
    masked,
    new_id,
    new_secret,
)
from sagesql.service.storage import InstanceRow, ServiceDatabase
from sagesql.service.tokens import DatabaseTokenStore

log = logging.getLogger("sagesql.service")

TARGETS = {"create": Create, "update": Update, "delete": Delete}
EVENT_STATES = ("pending", "dead", "delivered")
READ_ATTEMPTS = 5


# JSON rows answered by the API (the class has a method named list).
Rows = list[dict[str, Any]]


class NotFound(Error):
    """No such instance for this organization."""


class CodeRefused(Error):
    """The instance's authorization code was refused by the provider."""


@dataclass(frozen=True)
class Org:
    id: str
    name: str


def create_org(database: ServiceDatabase, name: str) -> dict[str, str]:
    """A new organization and its first user; the secrets are shown this once."""
    org_secret, user_secret = new_secret(), new_secret()
    org_id, user_id = new_id(), new_id()
    database.create_org(org_id, name, digest(org_secret), user_id, digest(user_secret))
    return {
        "id": org_id,
        "name": name,
        "user_id": user_id,
        "organization_secret": org_secret,
        "user_secret": user_secret,
    }


class Operations:
    """The instances API of one service database."""

    def __init__(
        self, database: ServiceDatabase, box: SecretBox, scheduler: Scheduler | None = None
    ) -> None:
        self.database = database
        self.box = box
        self.scheduler = scheduler
        self._clients: dict[str, tuple[float, SageClient]] = {}
        self._clients_lock = threading.Lock()
        # Each instance's body read once per version: status and the activities do not
        # decrypt and parse it (nor log its warnings) on every request.
        self._read: dict[str, tuple[float, Prepared]] = {}

    # -- who is asking ---------------------------------------------------------------------

    def authenticate(self, org_secret: str, user_secret: str) -> Org | None:
        found = self.database.org_of(digest(org_secret), digest(user_secret))
        return Org(*found) if found else None

    def instance_of_token(self, org: Org, token: str) -> str | None:
        return self.database.instance_by_token(org.id, digest(token))

    # -- instances -------------------------------------------------------------------------

    def _row(self, org: Org, instance_id: str) -> InstanceRow:
        row = self.database.instance(org.id, instance_id)
        if row is None:
            raise NotFound(f"no instance {instance_id}", hint="GET /instances lists yours")
        return row

    def _prepare(self, body: Any, instance_id: str) -> Prepared:
        return prepare(body, instance_id, self.database.state_path(instance_id))

    def _view(self, row: InstanceRow, body: Mapping[str, Any]) -> dict[str, Any]:
        element = body.get("element") if isinstance(body.get("element"), Mapping) else {}
        conf = body.get("configuration")
        view: dict[str, Any] = {
            "id": row.id,
            "name": row.name,
            "element": {"key": (element or {}).get("key", row.element_key)},
            "tags": row.tags,
            "configuration": masked(conf) if isinstance(conf, Mapping) else {},
            "createdDate": _iso(row.created),
            "updatedDate": _iso(row.updated),
        }
        if isinstance(body.get("providerData"), Mapping):
            view["providerData"] = {k: MASK for k in body["providerData"]}
        return view

    def create(self, org: Org, body: Any) -> dict[str, Any]:
        """Check the whole body, exchange its code, then store it (or nothing)."""
        instance_id = new_id()
        prepared = self._prepare(body, instance_id)
        try:
            tokens = exchange_code(prepared)
        except AuthError as exc:
            raise CodeRefused(exc.message, hint=exc.hint) from None
        token = new_secret()
        now = time.time()
        row = InstanceRow(
            id=instance_id,
            org=org.id,
            name=prepared.config.instance_name,
            element_key=str(prepared.config.element_key),
            tags=_tags(body),
            body=self.box.seal(body),
            created=now,
            updated=now,
        )
        sealed = self.box.seal(tokens.to_json()) if tokens else None
        self.database.add_instance(row, digest(token), sealed)
        log.info(
            "organization %s: instance %s (%s, %s) created",
            org.id,
            instance_id,
            row.element_key,
            row.name,
        )
        self._changed()
        return {**self._view(row, body), "token": token}

    def list(self, org: Org) -> Rows:
        return [self._view(r, self.box.open(r.body)) for r in self.database.instances(org.id)]

    def get(self, org: Org, instance_id: str) -> dict[str, Any]:
        row = self._row(org, instance_id)
        return self._view(row, self.box.open(row.body))

    def patch(self, org: Org, instance_id: str, changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into the body (configuration and providerData merged key by
        key; a masked value sent back means unchanged, null removes), check the result
        whole, store it. A new authorization code (providerData.code or OAuthCode) is
        exchanged first: refused, nothing changes. The poll state is keyed by instance
        and resource: watermarks survive the change."""
        row = self._row(org, instance_id)
        if not isinstance(changes, Mapping):
            raise BodyProblems(["the body is not a JSON object"])
        before = self._prepared_row(row)
        body = dict(self.box.open(row.body))
        for key, value in changes.items():
            if key in ("configuration", "providerData") and isinstance(value, Mapping):
                merged = dict(body.get(key) or {})
                for name, new in value.items():
                    if new == MASK:
                        continue
                    if new is None:
                        merged.pop(name, None)
                    else:
                        merged[name] = new
                body[key] = merged
            elif key not in ("id", "token"):
                body[key] = value
        prepared = self._prepare(body, instance_id)
        code = prepared.settings.oauth_code
        if code and code != before.settings.oauth_code:
            try:
                tokens = exchange_code(prepared)
            except AuthError as exc:
                raise CodeRefused(exc.message, hint=exc.hint) from None
            if tokens is not None:
                self.database.set_token_data(instance_id, self.box.seal(tokens.to_json()))
        updated = InstanceRow(
            id=row.id,
            org=row.org,
            name=prepared.config.instance_name,
            element_key=row.element_key,
            tags=_tags(body),
            body=self.box.seal(body),
            created=row.created,
            updated=max(time.time(), row.updated + 1e-6),
        )
        self.database.update_instance(org.id, updated)
        log.info("organization %s: instance %s changed (%s)", org.id, instance_id, sorted(changes))
        self._changed(instance_id)
        return self._view(updated, body)

    def delete(self, org: Org, instance_id: str) -> None:
        """Gone with its tokens; its polling stops within one scheduler refresh."""
        if not self.database.delete_instance(org.id, instance_id):
            raise NotFound(f"no instance {instance_id}", hint="GET /instances lists yours")
        log.info("organization %s: instance %s deleted", org.id, instance_id)
        self._forget_client(instance_id)
        self._changed(instance_id)
        if self.scheduler is None:
            self.database.forget_state(instance_id)
        else:
            self._forget_state_after_stop(instance_id)

    def _forget_state_after_stop(self, instance_id: str) -> None:
        scheduler = self.scheduler
        assert scheduler is not None

        def forget() -> None:
            deadline = time.monotonic() + 60
            while scheduler.running(instance_id) is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            self.database.forget_state(instance_id)

        threading.Thread(target=forget, name="sagesql-forget", daemon=True).start()

    def _changed(self, instance_id: str | None = None) -> None:
        if self.scheduler is not None:
            self.scheduler.wake(instance_id)

    # -- events, replay, status ------------------------------------------------------------

    def _prepared(self, org: Org, instance_id: str) -> Prepared:
        return self._prepared_row(self._row(org, instance_id))

    def _prepared_row(self, row: InstanceRow) -> Prepared:
        with self._clients_lock:
            cached = self._read.get(row.id)
            if cached and cached[0] == row.updated:
                return cached[1]
        prepared = self._prepare(self.box.open(row.body), row.id)
        with self._clients_lock:
            self._read[row.id] = (row.updated, prepared)
        return prepared

    def events(self, org: Org, instance_id: str, state: str | None, limit: int) -> Rows:
        """Recent notifications: pending and dead ones from the outbox, delivered ones
        from the service's note of them; newest first within each state."""
        if state is not None and state not in EVENT_STATES:
            raise ProgrammingError(
                f"unknown state {state!r}", hint=f"use one of {', '.join(EVENT_STATES)}"
            )
        self._row(org, instance_id)
        out: Rows = []
        store = self._reader(instance_id)
        try:
            if state in (None, "pending"):
                for lane in store.lanes(instance_id):
                    for d in store.pending(instance_id, lane.table, lane.sink, limit):
                        out.append(_delivery(d, "pending"))
            if state in (None, "dead"):
                out += [_delivery(d, "dead") for d in store.dead_letters(instance_id)]
        finally:
            store.close()
        if state in (None, "delivered"):
            for sent in self.database.recent_deliveries(instance_id, limit):
                out.append(
                    {
                        "messageId": sent["message_id"],
                        "resource": sent["resource"],
                        "sink": sent["sink"],
                        "state": "delivered",
                        "attempts": None,
                        "time": _iso(sent["delivered"]),
                        "error": None,
                        "events": sent["events"],
                    }
                )
        return out[:limit]

    def _reader(self, instance_id: str) -> StateStore:
        """The instance's poll state, to read; a poller creating it at this moment holds
        it a few milliseconds, so opening is tried again rather than answered 400."""
        for _ in range(READ_ATTEMPTS - 1):
            try:
                return self.database.state_store(instance_id, write=False)
            except ConfigurationError:
                time.sleep(0.2)
        return self.database.state_store(instance_id, write=False)

    def replay(self, org: Org, instance_id: str, resource: str | None) -> dict[str, Any]:
        self._row(org, instance_id)
        store = self.database.state_store(instance_id)
        try:
            count = store.replay(instance_id, resource)
        finally:
            store.close()
        if self.scheduler is not None:
            self.scheduler.wake(instance_id)
        return {"replayed": count}

    def status(self, org: Org, instance_id: str) -> dict[str, Any]:
        prepared = self._prepared(org, instance_id)
        store = self._reader(instance_id)
        try:
            resources = runner.status(prepared.config, store)
        finally:
            store.close()
        polled = self.scheduler.running(instance_id) if self.scheduler else None
        polling, error = (
            polled is not None and polled.session is not None,
            (polled.error if polled else None),
        )
        if self.database.postgresql:  # the workers' schedule rows say it
            rows = [
                r for r in Schedule(self.database.engine).rows() if r["instance"] == instance_id
            ]
            polling = bool(rows)
            error = next((str(r["last_error"]) for r in rows if r["last_error"]), None)
        late = list(polled.lags) if polled else []
        return {
            "id": instance_id,
            "polling": polling,
            "error": error,
            "interval_seconds": prepared.config.interval.total_seconds(),
            # this process's schedule: cycles run, the last one's duration, and how late
            # the last one started after it was due (the worker pool's backlog)
            "cycles": polled.cycles if polled else 0,
            "last_cycle_seconds": polled.last_cycle_seconds if polled else None,
            "late_seconds": late[-1] if late else None,
            "resources": resources,
        }

    # -- activities ------------------------------------------------------------------------

    def client(self, org: Org, instance_id: str) -> SageClient:
        """The instance's connection, kept while the instance is unchanged."""
        row = self._row(org, instance_id)
        with self._clients_lock:
            cached = self._clients.get(instance_id)
            if cached and cached[0] == row.updated:
                return cached[1]
        prepared = self._prepared_row(row)
        client = connect(prepared, DatabaseTokenStore(self.database, self.box, instance_id))
        with self._clients_lock:
            old = self._clients.pop(instance_id, None)
            self._clients[instance_id] = (row.updated, client)
        if old:
            old[1].close()
        return client

    def _forget_client(self, instance_id: str) -> None:
        with self._clients_lock:
            old = self._clients.pop(instance_id, None)
            self._read.pop(instance_id, None)
        if old:
            old[1].close()

    def activity(
        self, org: Org, instance_id: str, activity: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Create, update, delete or execute: one result per record, as the Python API."""
        client = self.client(org, instance_id)
        records = body.get("records")
        if not isinstance(records, list):
            raise ProgrammingError(
                "records must be a list of objects", hint='{"table": "...", "records": [{...}]}'
            )
        stop = bool(body.get("stop_on_first_error", False))
        runner_: Any
        if activity == "execute":
            runner_ = Execute(client, str(body.get("procedure") or ""), stop_on_first_error=stop)
        else:
            runner_ = TARGETS[activity](
                client, str(body.get("table") or ""), stop_on_first_error=stop
            )
        results = [_result(r, activity) for r in runner_.run(records)]
        return {"results": results}

    def query(
        self, org: Org, instance_id: str, body: Mapping[str, Any]
    ) -> Iterator[dict[str, Any]]:
        """The Query activity's records (a statement, or table + fields + conditions...)."""
        client = self.client(org, instance_id)
        known = {
            "statement",
            "params",
            "table",
            "fields",
            "conditions",
            "order_by",
            "limit",
            "offset",
        }
        unknown = sorted(set(body) - known)
        if unknown:
            raise ProgrammingError(
                f"unknown member {unknown[0]!r} of the query",
                hint=f"use {', '.join(sorted(known))}",
            )
        query = Query(client, **{k: v for k, v in body.items()})
        return query.records()

    def close(self) -> None:
        with self._clients_lock:
            clients = [c for _, c in self._clients.values()]
            self._clients.clear()
        for client in clients:
            client.close()


def _result(result: ActivityResult, activity: str) -> dict[str, Any]:
    data = result.to_dict()
    if activity == "execute" and data["record"]:
        data["record"] = {
            k: (MASK if k in SECRET_RESULTS and v else v) for k, v in data["record"].items()
        }
    return data


def _delivery(d: Any, state: str) -> dict[str, Any]:
    return {
        "messageId": d.message_id,
        "resource": d.table,
        "sink": d.sink,
        "state": state,
        "attempts": d.attempts,
        "time": _iso(d.next_at) if state == "pending" else None,
        "error": d.last_error,
        "events": [
            {k: e.get(k) for k in ("eventId", "eventType", "objectType", "objectId")}
            for e in d.events
        ],
    }


def _tags(body: Mapping[str, Any]) -> list[str]:
    tags = body.get("tags")
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
