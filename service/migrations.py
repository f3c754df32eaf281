"""The service database's schema, versioned: each version a step, applied in order by upgrade().

Version 1 is the first service schema (organizations, users, instances, tokens, recent
deliveries). Version 2 adds, on PostgreSQL, what many workers on many machines share:
every instance's poll state (the polling library's tables, one set for all instances),
the schedule of (instance, resource) polls with their leases, and the request buckets
of Sage's per-business rate limit. SQLite keeps each instance's poll state in a file of
its own (sqlite_state.py), so version 2 adds nothing there. Version 3 (PostgreSQL) adds
the refresh answers the refresh relay records (refresher.py).

:func:`upgrade` runs under a lock (PostgreSQL: a transaction-scoped advisory lock;
SQLite: its write lock), so API processes and workers starting together migrate once.
The version is ``service_meta``'s ``schema`` row. A database newer than this sagesql is
refused, never downgraded.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sagesql.errors import ConfigurationError

ADVISORY_LOCK = 0x5A6E5351  # pg_advisory_xact_lock key of schema changes ("sagesql")

# -- version 1: the first service schema ---------------------------------------------------

v1 = sa.MetaData()
meta = sa.Table(
    "service_meta",
    v1,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
orgs = sa.Table(
    "service_orgs",
    v1,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created", sa.Float, nullable=False),
)
users = sa.Table(
    "service_users",
    v1,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("org", sa.String(32), sa.ForeignKey("service_orgs.id"), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created", sa.Float, nullable=False),
)
instances = sa.Table(
    "service_instances",
    v1,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("org", sa.String(32), sa.ForeignKey("service_orgs.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("element_key", sa.String(64), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)
tokens = sa.Table(
    "service_tokens",
    v1,
    sa.Column("instance", sa.String(32), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=False, default=0.0),
)
deliveries = sa.Table(
    "service_deliveries",
    v1,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("instance", sa.String(32), nullable=False, index=True),
    sa.Column("message_id", sa.String(200), nullable=False),
    sa.Column("resource", sa.String(200), nullable=False),
    sa.Column("sink", sa.String(200), nullable=False),
    sa.Column("delivered", sa.Float, nullable=False),
    sa.Column("events", sa.JSON, nullable=False),
)


def _v1(conn: Connection) -> None:
    v1.create_all(conn)


# -- version 2: PostgreSQL's shared poll state, schedule and rate buckets -------------------

_V2_POSTGRESQL = [
    # The polling library's tables (sqlite_state.py's, with PostgreSQL types).
    """CREATE TABLE IF NOT EXISTS poll_tables (
        instance text NOT NULL, name text NOT NULL,
        watermark text, deleted_watermark text, baseline text, held_upper text, cursor text,
        compared_at text, compared_cycle integer, last_cycle text, last_server_now text,
        last_result text, last_error text, cycles integer NOT NULL DEFAULT 0,
        events integer NOT NULL DEFAULT 0,
        PRIMARY KEY (instance, name))""",
    """CREATE TABLE IF NOT EXISTS poll_marks (
        instance text NOT NULL, name text NOT NULL, kind text NOT NULL, key text NOT NULL,
        stamp text NOT NULL, PRIMARY KEY (instance, name, kind, key, stamp))""",
    "CREATE INDEX IF NOT EXISTS poll_marks_stamp ON poll_marks (instance, name, kind, stamp)",
    """CREATE TABLE IF NOT EXISTS poll_snapshots (
        instance text NOT NULL, name text NOT NULL, kind text NOT NULL, key text NOT NULL,
        hash text NOT NULL, PRIMARY KEY (instance, name, kind, key))""",
    """CREATE TABLE IF NOT EXISTS poll_messages (
        message_id text PRIMARY KEY, instance text NOT NULL, name text NOT NULL,
        created double precision NOT NULL, events text NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS poll_deliveries (
        seq bigserial PRIMARY KEY, message_id text NOT NULL, instance text NOT NULL,
        name text NOT NULL, sink text NOT NULL, state text NOT NULL,
        attempts integer NOT NULL DEFAULT 0, next_at double precision NOT NULL DEFAULT 0,
        last_error text, created double precision NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS poll_deliveries_lane "
    "ON poll_deliveries (instance, name, sink, state, seq)",
    "CREATE INDEX IF NOT EXISTS poll_deliveries_message ON poll_deliveries (message_id)",
    """CREATE TABLE IF NOT EXISTS poll_lanes (
        instance text NOT NULL, name text NOT NULL, sink text NOT NULL,
        failing_since double precision, delivered integer NOT NULL DEFAULT 0,
        last_delivered double precision, last_error text, PRIMARY KEY (instance, name, sink))""",
    # One row per (instance, resource): when its next poll (and next delivery) is due,
    # and who holds it until when. ``fence`` grows with every claim: a commit carries
    # the fence it was claimed with and is refused once another claim took the row.
    """CREATE TABLE IF NOT EXISTS service_schedule (
        instance varchar(32) NOT NULL REFERENCES service_instances (id) ON DELETE CASCADE,
        resource text NOT NULL,
        version double precision NOT NULL,
        interval_seconds double precision NOT NULL,
        poll_at timestamptz NOT NULL DEFAULT now(),
        deliver_at timestamptz,
        due_at timestamptz NOT NULL DEFAULT now(),
        owner text, lease_until timestamptz, fence bigint NOT NULL DEFAULT 0,
        polls bigint NOT NULL DEFAULT 0, last_poll timestamptz, last_error text,
        PRIMARY KEY (instance, resource))""",
    "CREATE INDEX IF NOT EXISTS service_schedule_due ON service_schedule (due_at)",
    # Sage's request budget per business / company / CRM server, shared by every worker.
    """CREATE TABLE IF NOT EXISTS service_buckets (
        key text PRIMARY KEY, per_minute integer NOT NULL, burst integer NOT NULL,
        tokens double precision NOT NULL, stamp double precision NOT NULL,
        not_before double precision NOT NULL DEFAULT 0)""",
]


def _v2(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        for statement in _V2_POSTGRESQL:
            conn.exec_driver_sql(statement)


# -- version 3: refresh answers recorded by the refresh relay (PostgreSQL) ------------------

_V3_POSTGRESQL = [
    # No foreign key: the relay inserts while a worker holds the token row FOR UPDATE.
    # ``data`` is NULL while the grant is in flight (written before it is sent).
    """CREATE TABLE IF NOT EXISTS service_token_answers (
        id bigserial PRIMARY KEY, instance varchar(32) NOT NULL, parent text NOT NULL,
        data bytea, at double precision NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS service_token_answers_instance"
    " ON service_token_answers (instance, parent)",
]


def _v3(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        for statement in _V3_POSTGRESQL:
            conn.exec_driver_sql(statement)


STEPS: list[tuple[int, Callable[[Connection], None]]] = [(1, _v1), (2, _v2), (3, _v3)]
LATEST = STEPS[-1][0]


def version(conn: Connection) -> int | None:
    """The schema version of the database (None: no service schema yet)."""
    if not sa.inspect(conn).has_table("service_meta"):
        return None
    found = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema")).scalar()
    return None if found is None else int(found)


def upgrade(conn: Connection, target: int = LATEST, *, where: str = "the database") -> list[int]:
    """Apply the missing steps up to ``target`` in ``conn``'s transaction; the versions applied."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
    current = version(conn) or 0
    if current > LATEST:
        raise ConfigurationError(
            f"{where} has schema version {current}, this sagesql knows up to {LATEST}",
            hint="run the sagesql version that upgraded it (or a newer one)",
        )
    applied = []
    for number, step in STEPS:
        if current < number <= target:
            step(conn)
            conn.execute(sa.delete(meta).where(meta.c.key == "schema"))
            conn.execute(sa.insert(meta).values(key="schema", value=str(number)))
            applied.append(number)
    return applied
