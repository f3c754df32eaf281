"""The service on PostgreSQL: schema versions, the state store, claims and fencing, tokens
under a row lock, the shared request budget, and workers polling instances end to end.

Against the real PostgreSQL server (tests/postgresql.py: a database per test, dropped
after; skipped with how to provide one on a developer machine, a failure under CI).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from cryptography.fernet import Fernet
from service_helpers import aimed_at, wait_for
from test_poll_helpers import Receiver, frozen_at, seconds, utc
from typer.testing import CliRunner

from sagesql.activities.polling.events import Message
from sagesql.activities.polling.state import Mark, TableState
from sagesql.cli.main import app
from sagesql.connector.tokenstore import PostgresTokenStore, TokenSet, open_store
from sagesql.service import migrations
from sagesql.service.operations import create_org
from sagesql.service.pg_state import LeaseLost, PostgresStateStore
from sagesql.service.schedule import Schedule, each_stale
from sagesql.service.server import RunningService, open_service
from sagesql.service.shared_limit import SharedBucket
from sagesql.service.storage import ServiceDatabase, postgresql_url
from sagesql.service.wakeups import DUE, notify
from sagesql.service.worker import Worker

T0 = utc(2025, 3, 1, 10)


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(postgresql_url(url))


def _instance(db: ServiceDatabase, instance_id: str = "i1") -> None:
    """An org and a bare instance row (schedule rows reference it)."""
    with db.engine.begin() as conn:
        if conn.execute(sa.text("SELECT 1 FROM service_orgs WHERE id = 'o1'")).first() is None:
            conn.execute(
                sa.text("INSERT INTO service_orgs VALUES ('o1', 'org', 'h-o1', 0)"),
            )
        conn.execute(
            sa.text(
                "INSERT INTO service_instances VALUES (:i, 'o1', 'n', 'sageone', :t, '[]', "
                "'\\x00', 0, 1)"
            ),
            {"i": instance_id, "t": f"tok-{instance_id}"},
        )
        conn.execute(
            sa.text("INSERT INTO service_tokens (instance, lease_until) VALUES (:i, 0)"),
            {"i": instance_id},
        )


# -- schema ------------------------------------------------------------------------------------


def test_schema_upgrades_from_the_first_version(pg_url: str) -> None:
    engine = _engine(pg_url)
    with engine.begin() as conn:
        assert migrations.upgrade(conn, target=1) == [1]
        assert migrations.version(conn) == 1
        conn.execute(sa.text("INSERT INTO service_orgs VALUES ('o1', 'kept', 'h', 0)"))
    engine.dispose()
    result = CliRunner().invoke(app, ["db", "upgrade", "--database", pg_url])
    assert result.exit_code == 0, result.output
    assert "schema version 3" in result.output
    db = ServiceDatabase(pg_url, upgrade=False)
    try:
        assert db.schema_version() == migrations.LATEST
        with db.engine.begin() as conn:
            assert conn.execute(sa.text("SELECT name FROM service_orgs")).scalar() == "kept"
            names = set(sa.inspect(conn).get_table_names())
        assert {"poll_tables", "poll_deliveries", "service_schedule", "service_buckets"} <= names
    finally:
        db.close()
    # Upgrading again changes nothing; a database newer than this sagesql is refused.
    again = ServiceDatabase(pg_url)
    with again.engine.begin() as conn:
        assert migrations.upgrade(conn) == []
        conn.execute(sa.text("UPDATE service_meta SET value = '99' WHERE key = 'schema'"))
    again.close()
    result = CliRunner().invoke(app, ["db", "upgrade", "--database", pg_url])
    assert "schema version 99, this sagesql knows up to 3" in str(result.exception)


def test_an_old_schema_is_refused_without_upgrade(pg_url: str) -> None:
    engine = _engine(pg_url)
    with engine.begin() as conn:
        migrations.upgrade(conn, target=1)
    engine.dispose()
    with pytest.raises(Exception, match="sagesql db upgrade"):
        ServiceDatabase(pg_url, upgrade=False)


# -- the state store ---------------------------------------------------------------------------


def _message(n: int) -> Message:
    return Message(f"m{n}", "contacts", ({"eventId": f"e{n}", "objectId": str(n)},))


def test_the_state_store_commits_a_step_in_one_transaction_and_keeps_the_outbox(
    pg_url: str,
) -> None:
    db = ServiceDatabase(pg_url)
    store = db.state_store("i1")
    assert isinstance(store, PostgresStateStore)
    state = TableState("contacts", watermark="2025-03-01T10:00:00Z")
    marks = [Mark("u", "k1", "2025-03-01T10:00:00"), Mark("u", "k2", "2025-03-01T10:00:01")]
    store.commit(
        "i1",
        "contacts",
        messages=[_message(1), _message(2)],
        marks=marks,
        sinks=["hook"],
        now=1.0,
        state=state,
    )
    # The same marks again (a re-read): nothing new, and a repeated mark is no error.
    assert store.unseen("i1", "contacts", [*marks, Mark("u", "k3", "x")]) == {Mark("u", "k3", "x")}
    store.commit("i1", "contacts", messages=[], marks=marks, sinks=["hook"], now=2.0)
    assert store.load("i1", "contacts").watermark == "2025-03-01T10:00:00Z"
    assert [lane.table for lane in store.lanes("i1")] == ["contacts"]
    first, second = store.pending("i1", "contacts", "hook", 10)
    assert [first.message_id, second.message_id] == ["m1", "m2"]
    store.park(first, attempts=3, error="receiver said 400", now=3.0)
    store.delivered(second, now=4.0)
    assert [d.message_id for d in store.dead_letters("i1")] == ["m1"]
    (status,) = store.status("i1", ["contacts"])
    assert (status.pending, status.dead, status.delivered) == (0, 1, 1)
    assert store.replay("i1") == 1
    assert [d.message_id for d in store.pending("i1", "contacts", "hook", 10)] == ["m1"]
    # A failing commit leaves nothing of its step.
    with pytest.raises(sa.exc.DataError):
        store.commit(
            "i1",
            "contacts",
            messages=[_message(3)],
            marks=[Mark("u", "k9", "s")],
            sinks=["hook"],
            now=5.0,
            state=TableState("contacts", cycles="x"),  # type: ignore[arg-type]
        )
    assert store.unseen("i1", "contacts", [Mark("u", "k9", "s")]) == {Mark("u", "k9", "s")}
    assert [d.message_id for d in store.pending("i1", "contacts", "hook", 10)] == ["m1"]
    # Old marks forgotten per kind, each below its own stamp, in one commit.
    old = [Mark("u", "a", "1"), Mark("u", "b", "3"), Mark("d", "a", "1"), Mark("d", "b", "3")]
    store.commit("i1", "contacts", messages=[], marks=old, sinks=["hook"], now=6.0)
    store.commit(
        "i1",
        "contacts",
        messages=[],
        marks=[],
        sinks=["hook"],
        now=7.0,
        forget={"u": "2", "d": "4"},
    )
    assert store.unseen("i1", "contacts", old) == {old[0], old[2], old[3]}
    db.forget_state("i1")
    assert store.lanes("i1") == [] and store.load("i1", "contacts").watermark is None
    db.close()


# -- claims, leases, fencing -------------------------------------------------------------------


def test_each_due_poll_is_claimed_once_and_an_expired_lease_cannot_commit(pg_url: str) -> None:
    db = ServiceDatabase(pg_url)
    for n in range(20):
        _instance(db, f"i{n}")
        Schedule(db.engine).sync(f"i{n}", 1.0, ["contacts", "invoices"], 60.0)
    schedules = [Schedule(_engine(pg_url)) for _ in range(4)]
    claimed: list[list[Any]] = [[] for _ in schedules]

    def claim(k: int) -> None:
        for _ in range(5):
            claimed[k] += schedules[k].claim(f"w{k}", 3, 30.0)

    threads = [threading.Thread(target=claim, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = [(d.claim.instance, d.claim.resource) for got in claimed for d in got]
    assert len(rows) == len(set(rows)) == 40  # every due row, each by one worker
    # A lease that expires is taken by another worker; the first one's commit is refused.
    schedule = Schedule(db.engine)
    with db.engine.begin() as conn:  # a PATCH: i0 polls contacts only
        conn.execute(sa.text("UPDATE service_instances SET updated = 2.0 WHERE id = 'i0'"))
    schedule.sync("i0", 2.0, ["contacts"], 60.0)
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE service_schedule SET owner = NULL, due_at = now() WHERE instance = 'i0'"
            )
        )
    (old,) = schedule.claim("slow", 40, 0.5)
    time.sleep(0.7)
    (new,) = schedule.claim("fast", 1, 30.0)
    assert new.claim.fence == old.claim.fence + 1 and new.claim.instance == "i0"
    store = PostgresStateStore(db.engine)
    with store.claimed(old.claim), pytest.raises(LeaseLost):
        store.commit(
            "i0",
            "contacts",
            messages=[_message(1)],
            marks=[],
            sinks=["hook"],
            now=1.0,
            state=TableState("contacts", watermark="late"),
        )
    with store.claimed(new.claim):
        store.commit(
            "i0",
            "contacts",
            messages=[],
            marks=[],
            sinks=["hook"],
            now=1.0,
            state=TableState("contacts", watermark="on time"),
        )
    assert store.load("i0", "contacts").watermark == "on time"
    assert store.lanes("i0") == []
    assert not schedule.release(old.claim, poll_in=60, deliver_at=None)  # not its row any more
    assert schedule.release(new.claim, poll_in=60, deliver_at=time.time() + 5)

    def due_in() -> tuple[float, float]:
        with db.engine.begin() as conn:
            return conn.execute(
                sa.text(
                    "SELECT CAST(extract(epoch FROM due_at - now()) AS float),"
                    " CAST(extract(epoch FROM poll_at - now()) AS float)"
                    " FROM service_schedule WHERE instance = 'i0'"
                )
            ).one()

    # due_at is the earlier of the next poll and the next delivery, or the poll alone.
    assert 3 < due_in()[0] <= 5 and 58 < due_in()[1] <= 60
    others = [f"i{n}" for n in range(1, 20)]
    assert schedule.claim("fast", 1, 30.0, skip=others) == []  # not due yet
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE service_schedule SET due_at = now() WHERE instance = 'i0'"))
    (again,) = schedule.claim("fast", 1, 30.0, skip=others)
    assert schedule.release(again.claim, poll_in=None, deliver_at=None)
    assert 58 < due_in()[0] <= 60 and due_in()[0] == pytest.approx(due_in()[1], abs=0.01)
    for s in schedules:
        s.engine.dispose()
    db.close()


def test_an_instance_left_without_rows_is_read_once_per_version(pg_url: str) -> None:
    db = ServiceDatabase(pg_url)
    _instance(db, "empty")  # polls no resource: no rows, so it stays stale
    _instance(db, "full")
    schedule = Schedule(db.engine)
    asked: list[str] = []

    def resources_of(instance_id: str) -> tuple[list[str], float] | None:
        asked.append(instance_id)
        return ([], 60.0) if instance_id == "empty" else (["contacts"], 60.0)

    settled: dict[str, float] = {}
    assert each_stale(schedule, resources_of, settled) == 2
    assert each_stale(schedule, resources_of, settled) == 0
    assert sorted(asked) == ["empty", "full"]
    with db.engine.begin() as conn:  # a PATCH: a new version is read again
        conn.execute(sa.text("UPDATE service_instances SET updated = updated + 1"))
    assert each_stale(schedule, resources_of, settled) == 2
    assert sorted(asked) == ["empty", "empty", "full", "full"]
    db.close()


# -- tokens ------------------------------------------------------------------------------------


def test_a_refresh_holds_the_token_row_against_other_machines(pg_url: str) -> None:
    from sagesql.service.secrets import SecretBox
    from sagesql.service.tokens import DatabaseTokenStore

    db = ServiceDatabase(pg_url)
    _instance(db, "i1")
    box = SecretBox(Fernet.generate_key().decode())
    store = DatabaseTokenStore(db, box, "i1")
    store.save(TokenSet("a1", "r1", expires_at=time.time() + 60))
    other = ServiceDatabase(pg_url)  # another process's connection pool
    order: list[str] = []

    def other_refresh() -> None:
        with other.token_row("i1") as conn:  # waits for the row
            order.append("other locked")
            assert box.open(ServiceDatabase.read_token(conn, "i1"))["access_token"] == "a2"

    with store.locked():
        assert store.load().access_token == "a1"
        thread = threading.Thread(target=other_refresh)
        thread.start()
        time.sleep(0.5)
        order.append("refreshed")
        store.save(TokenSet("a2", "r2", expires_at=time.time() + 60))
    thread.join(10)
    assert order == ["refreshed", "other locked"]
    other.close()
    db.close()


def test_oauth_settings_location_postgresql_shares_tokens(pg_url: str, start_sandbox) -> None:
    from sagesql.connector.client import SageClient
    from sagesql.connector.sources import load_settings
    from sagesql.engine.pipeline import run

    sbx = start_sandbox("sage_accounting", rows=5, rate_limit_per_minute=0, access_token_lifetime=2)
    location = f"{pg_url}#acme"
    assert isinstance(open_store(location), PostgresTokenStore)
    props = {**sbx.connection_properties(), "OAuthSettingsLocation": location, "RateLimit": "0"}
    first = SageClient(load_settings(None, use_environment=False, defaults=props))
    assert len(list(run(first, "SELECT id FROM contacts LIMIT 2"))) == 2
    stored = open_store(location).load()
    assert stored is not None and stored.refresh_token
    time.sleep(2.2)  # the access token expired: the next query refreshes under the row lock
    second = SageClient(load_settings(None, use_environment=False, defaults=props))
    assert len(list(run(second, "SELECT id FROM contacts LIMIT 2"))) == 2
    assert open_store(location).load().access_token != stored.access_token
    log = requests.get(sbx.url + "/_sandbox/requests", timeout=10).json()
    assert not [e for e in log if e["status"] == 400 and "token" in e["path"]]
    first.close()
    second.close()


# -- the shared request budget -----------------------------------------------------------------


def test_the_request_budget_is_shared_by_every_process(pg_url: str) -> None:
    ServiceDatabase(pg_url).close()
    buckets = [
        SharedBucket(_engine(pg_url), "sage_accounting|x|lead", 600, burst=5) for _ in range(3)
    ]
    grants: list[float] = []
    lock = threading.Lock()

    def use(bucket: SharedBucket) -> None:
        for _ in range(10):
            bucket.acquire()
            with lock:
                grants.append(time.monotonic())

    threads = [threading.Thread(target=use, args=(b,)) for b in buckets]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 30 requests, 5 at once, then (600 - 5) / 60 a second: at least 2.5 s together.
    assert time.monotonic() - began >= (30 - 5) / (595 / 60) - 0.2
    for b in buckets:
        b.engine.dispose()


# -- end to end: the API and workers on PostgreSQL ---------------------------------------------


CODE = "1c6ff4089d58d80e86482ab7d5b97f15dd7b041d"  # the published body's providerData.code


class PgRunning:
    """The service on a thread, on PostgreSQL, with an in-process worker (--workers N)."""

    def __init__(self, url: str, **options: Any) -> None:
        self.key = Fernet.generate_key().decode()
        self.service = open_service(url, self.key, **options)
        self.server = RunningService(self.service).start()
        self.url = self.server.url

    def org(self, name: str) -> dict[str, Any]:
        made = create_org(self.service.database, name)
        made["headers"] = {
            "Authorization": f"User {made['user_secret']}, "
            f"Organization {made['organization_secret']}"
        }
        return made

    def stop(self) -> None:
        self.server.stop()


def _status(running: PgRunning, org: dict, iid: str) -> dict[str, Any]:
    answer = requests.get(f"{running.url}/instances/{iid}/status", headers=org["headers"])
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_workers_poll_deliver_replay_and_stop_on_delete(pg_url: str, start_sandbox) -> None:
    sbx = start_sandbox("sage_accounting", rows=30, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    receiver = Receiver()
    running = PgRunning(pg_url, workers=2)
    try:
        org = running.org("acme")
        body = aimed_at(sbx, "sage_accounting", receiver.url, code=CODE)
        made = requests.post(f"{running.url}/instances", json=body, headers=org["headers"])
        assert made.status_code == 200, made.text
        iid = made.json()["id"]
        wait_for(
            lambda: all(r["watermark"] for r in _status(running, org, iid)["resources"]),
            what="a first poll",
        )
        headers = {"Authorization": f"Bearer {sbx.token()['access_token']}"}
        frozen_at(sbx, T0 + seconds(60))
        created = requests.post(
            f"{sbx.base_url}/contacts",
            json={"contact": {"name": "Scale Out Ltd", "contact_type_ids": ["CUSTOMER"]}},
            headers=headers,
        ).json()
        frozen_at(sbx, T0 + seconds(70))
        wait_for(lambda: receiver.events(), what="the event at the receiver")
        (event,) = receiver.events()
        assert (event["eventType"], event["objectId"]) == ("CREATED", created["id"])
        # A refused delivery becomes a dead letter; replay sends it again, in order.
        receiver.status = 400
        requests.put(
            f"{sbx.base_url}/contacts/{created['id']}",
            json={"contact": {"name": "Scale Out Two"}},
            headers=headers,
        )
        frozen_at(sbx, T0 + seconds(80))
        dead = f"{running.url}/instances/{iid}/events?state=dead"
        wait_for(lambda: requests.get(dead, headers=org["headers"]).json(), what="a dead letter")
        receiver.status = 200
        replayed = requests.post(
            f"{running.url}/instances/{iid}/events/replay", headers=org["headers"]
        )
        assert replayed.json() == {"replayed": 1}
        wait_for(lambda: len(receiver.events()) == 2, what="the replayed event")
        assert receiver.events()[1]["eventType"] == "UPDATED"
        rows = Schedule(running.service.database.engine).rows()
        assert rows and all(r["polls"] >= 1 for r in rows)
        # DELETE: the schedule rows, tokens and poll state go; no request after that.
        assert (
            requests.delete(f"{running.url}/instances/{iid}", headers=org["headers"]).status_code
            == 204
        )
        assert Schedule(running.service.database.engine).rows() == []
        assert running.service.database.token_data(iid) is None
        time.sleep(1.0)
        before = len(requests.get(sbx.url + "/_sandbox/requests", timeout=10).json())
        time.sleep(2.5)
        assert len(requests.get(sbx.url + "/_sandbox/requests", timeout=10).json()) == before
    finally:
        running.stop()
        receiver.stop()


# -- idle workers: sleep until the next due row, woken by NOTIFY ------------------------------


def test_a_claim_says_when_the_next_row_is_due_or_its_lease_expires(pg_url: str) -> None:
    db = ServiceDatabase(pg_url)
    schedule = Schedule(db.engine)
    assert schedule.claim_next("w", 4, 30.0) == ([], None)  # no rows: nothing to wait for
    _instance(db, "i0")
    schedule.sync("i0", 1.0, ["contacts", "invoices"], 60.0)
    with db.engine.begin() as conn:  # invoices is due in a minute, contacts now
        conn.execute(
            sa.text(
                "UPDATE service_schedule SET due_at = now() + interval '60 seconds'"
                " WHERE resource = 'invoices'"
            )
        )
    (dead,) = schedule.claim("dead", 4, 20.0)  # a worker that dies holding contacts
    taken, due_in = schedule.claim_next("w", 4, 30.0)
    # contacts comes back when its lease expires, before invoices is due.
    assert taken == [] and due_in is not None and 19 < due_in <= 20
    assert schedule.release(dead.claim, poll_in=None, deliver_at=None) is not None
    ((mine,), _) = schedule.claim_next("w", 1, 30.0)
    assert mine.claim.resource == "contacts"
    assert 29 < (schedule.claim_next("w", 4, 30.0)[1] or 0) <= 30  # w's own lease
    assert schedule.release(mine.claim, poll_in=120.0, deliver_at=None) is not None
    assert 59 < (schedule.claim_next("w", 4, 30.0)[1] or 0) <= 60  # then invoices
    db.close()


def test_an_idle_worker_sleeps_and_wakes_for_a_new_instance_and_an_expired_lease(
    pg_url: str, start_sandbox
) -> None:
    sbx = start_sandbox("sage_accounting", rows=5, rate_limit_per_minute=0)
    receiver = Receiver()
    running = PgRunning(pg_url, workers=0)  # the API alone: a worker of our own below
    database = ServiceDatabase(pg_url)
    claims = [0]

    def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        claims[0] += statement.lstrip().startswith("WITH due AS")

    sa.event.listen(database.engine, "before_cursor_execute", count)
    # Looking every 30 s at most: whatever happens sooner below is a wake-up.
    worker = Worker(database, running.service.box, concurrency=2, idle=30.0, refresh=30.0)
    worker.start()
    try:
        wait_for(worker._listener.listening.is_set, what="the worker listening")
        time.sleep(0.5)  # its first look, at the connection
        before = claims[0]
        time.sleep(2.0)
        assert claims[0] - before <= 1  # it was 10: a claim every 0.2 s
        org = running.org("acme")
        body = aimed_at(sbx, "sage_accounting", receiver.url, code=CODE)
        body["configuration"]["event.poller.refresh_interval"] = "10m"
        made = requests.post(f"{running.url}/instances", json=body, headers=org["headers"])
        assert made.status_code == 200, made.text
        engine = running.service.database.engine

        def polls() -> int:
            with engine.begin() as conn:
                found = conn.execute(sa.text("SELECT min(polls) FROM service_schedule")).scalar()
            return int(found or 0)

        wait_for(lambda: polls() >= 1, timeout=10.0, what="a first poll, woken by NOTIFY")
        time.sleep(0.5)
        before = claims[0]
        time.sleep(2.0)
        assert claims[0] - before <= 1  # every row due in 10 minutes: asleep
        # Rows due now but claimed by a worker that then dies, its lease ending in a
        # second; ours looks at that moment (the NOTIFY), then sleeps until the lease ends.
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE service_schedule SET owner = 'dead', fence = fence + 1,"
                    " lease_until = now() + interval '1 second', due_at = now(), poll_at = now()"
                )
            )
            notify(conn, DUE)
        wait_for(lambda: polls() >= 2, timeout=10.0, what="the expired lease's poll")
    finally:
        worker.stop()
        database.close()
        running.stop()
        receiver.stop()
