"""The service's database: organizations, users, instances and their tokens, behind one interface.

Tables (SQLAlchemy Core, so that one implementation speaks SQLite now and PostgreSQL
in the scale-out)::

    service_meta        key -> value: the schema version, the secret key's check value
    service_orgs        id, name, secret hash, created
    service_users       id, org, secret hash, created
    service_instances   id, org, name, element key, token hash, tags (JSON), the body
                        (encrypted: it holds the instance's credentials), created, updated
    service_tokens      instance -> its OAuth token pair (encrypted), a lease for refreshes
    service_deliveries  the last messages delivered per instance (event ids and types):
                        the outbox keeps only what is pending or dead

Secrets of the organizations, users and instances are stored hashed (they are random
and long, so SHA-256 is enough); instance bodies and tokens are encrypted by the
caller (secrets.SecretBox) before they get here. Poll state (watermarks, marks,
outbox) is the polling library's StateStore: :meth:`ServiceDatabase.state_store`
gives one per instance (for SQLite, a file per instance beside the database).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from sagesql.activities.polling.sqlite_state import SQLiteStateStore
from sagesql.activities.polling.state import StateStore
from sagesql.connector import files
from sagesql.errors import ConfigurationError, RetriableAPIError
from sagesql.service import migrations
from sagesql.service.pg_state import PostgresStateStore
from sagesql.service.wakeups import INSTANCES, notify

SQLITE = "sqlite:///"
POSTGRESQL = ("postgresql://", "postgresql+psycopg://", "postgres://")

metadata = migrations.v1
meta, orgs, users = migrations.meta, migrations.orgs, migrations.users
instances, tokens, deliveries = migrations.instances, migrations.tokens, migrations.deliveries
KEEP_DELIVERED = 200  # recent deliveries kept per instance (the outbox forgets them)


@dataclass(frozen=True)
class InstanceRow:
    """One stored instance (its body still encrypted)."""

    id: str
    org: str
    name: str
    element_key: str
    tags: list[str]
    body: bytes
    created: float
    updated: float


def _instance(row: Any) -> InstanceRow:
    return InstanceRow(
        row.id,
        row.org,
        row.name,
        row.element_key,
        list(row.tags or []),
        bytes(row.body),
        row.created,
        row.updated,
    )


def lock_not_available(exc: sa.exc.OperationalError) -> bool:
    """PostgreSQL refused a lock at once (NOWAIT) or within ``lock_timeout``: SQLSTATE 55P03."""
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code == "55P03"


class ServiceDatabase:
    """Every read and write of the service's own tables; each method one transaction."""

    def __init__(self, url: str, *, upgrade: bool = True) -> None:
        """Open the database; ``upgrade`` creates or migrates its schema (else a schema
        that is missing or older is refused: ``sagesql db upgrade``)."""
        self.url = url
        self.engine: Engine = _engine(url)
        self.postgresql = self.engine.dialect.name == "postgresql"
        try:
            with self.engine.begin() as conn:
                if upgrade:
                    migrations.upgrade(conn, where=f"the service database {self.describe()}")
                elif migrations.version(conn) != migrations.LATEST:
                    raise ConfigurationError(
                        f"the service database {self.describe()} has schema version "
                        f"{migrations.version(conn)}, this sagesql needs {migrations.LATEST}",
                        hint=f"run: sagesql db upgrade --database {self.describe()}",
                    )
        except sa.exc.DatabaseError as exc:  # unreachable, refused, or not a database file
            self.engine.dispose()
            raise ConfigurationError(
                f"the service database {self.describe()} cannot be opened: {_reason(exc)}",
                hint="check the URL, that the server runs and that the database exists "
                "(a SQLite file: a new one, or one `sagesql serve` created)",
            ) from None
        except BaseException:
            self.engine.dispose()
            raise

    def schema_version(self) -> int | None:
        with self._begin() as conn:
            return migrations.version(conn)

    def describe(self) -> str:
        """The URL without a password."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # -- meta ------------------------------------------------------------------------------

    def meta_value(self, key: str) -> str | None:
        with self._begin() as conn:
            return conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar()

    def set_meta_value(self, key: str, value: str) -> None:
        with self._begin() as conn:
            conn.execute(sa.delete(meta).where(meta.c.key == key))
            conn.execute(sa.insert(meta).values(key=key, value=value))

    # -- organizations and users -----------------------------------------------------------

    def create_org(
        self, org_id: str, name: str, org_hash: str, user_id: str, user_hash: str
    ) -> None:
        now = time.time()
        taken = ConfigurationError(
            f"an organization named {name!r} already exists in {self.describe()}",
            hint="choose another name",
        )
        try:
            with self._begin() as conn:
                if conn.execute(sa.select(orgs.c.id).where(orgs.c.name == name)).first():
                    raise taken
                conn.execute(
                    sa.insert(orgs).values(id=org_id, name=name, secret_hash=org_hash, created=now)
                )
                conn.execute(
                    sa.insert(users).values(
                        id=user_id, org=org_id, secret_hash=user_hash, created=now
                    )
                )
        except sa.exc.IntegrityError:  # created by another process since the check
            raise taken from None

    def org_of(self, org_hash: str, user_hash: str) -> tuple[str, str] | None:
        """(org id, org name) when the user belongs to the organization with these secrets."""
        query = (
            sa.select(orgs.c.id, orgs.c.name)
            .join(users, users.c.org == orgs.c.id)
            .where(orgs.c.secret_hash == org_hash, users.c.secret_hash == user_hash)
        )
        with self._begin() as conn:
            row = conn.execute(query).first()
        return (row.id, row.name) if row else None

    # -- instances -------------------------------------------------------------------------

    def add_instance(self, row: InstanceRow, token_hash: str, token_data: bytes | None) -> None:
        """The instance and its first tokens, together or not at all."""
        with self._begin() as conn:
            conn.execute(
                sa.insert(instances).values(
                    id=row.id,
                    org=row.org,
                    name=row.name,
                    element_key=row.element_key,
                    token_hash=token_hash,
                    tags=row.tags,
                    body=row.body,
                    created=row.created,
                    updated=row.updated,
                )
            )
            conn.execute(sa.insert(tokens).values(instance=row.id, data=token_data))
            notify(conn, INSTANCES)  # workers sync its schedule rows at once

    def instance(self, org: str | None, instance_id: str) -> InstanceRow | None:
        """The instance, when it belongs to ``org`` (None: any organization's)."""
        query = sa.select(instances).where(instances.c.id == instance_id)
        if org is not None:
            query = query.where(instances.c.org == org)
        with self._begin() as conn:
            row = conn.execute(query).first()
        return _instance(row) if row else None

    def instance_by_token(self, org: str, token_hash: str) -> str | None:
        query = sa.select(instances.c.id).where(
            instances.c.org == org, instances.c.token_hash == token_hash
        )
        with self._begin() as conn:
            return conn.execute(query).scalar()

    def instances(self, org: str | None = None) -> list[InstanceRow]:
        query = sa.select(instances).order_by(instances.c.created, instances.c.id)
        if org is not None:
            query = query.where(instances.c.org == org)
        with self._begin() as conn:
            return [_instance(r) for r in conn.execute(query)]

    def versions(self) -> dict[str, float]:
        """Every instance's id and last change: what the scheduler compares each tick."""
        with self._begin() as conn:
            return {
                r.id: r.updated
                for r in conn.execute(sa.select(instances.c.id, instances.c.updated))
            }

    def update_instance(self, org: str, row: InstanceRow) -> bool:
        with self._begin() as conn:
            done = conn.execute(
                sa.update(instances)
                .where(instances.c.id == row.id, instances.c.org == org)
                .values(name=row.name, tags=row.tags, body=row.body, updated=row.updated)
            )
            notify(conn, INSTANCES)
        return bool(done.rowcount)

    def delete_instance(self, org: str, instance_id: str) -> bool:
        """The instance and its tokens gone; its poll state is dropped by forget_state."""
        with self._begin() as conn:
            done = conn.execute(
                sa.delete(instances).where(instances.c.id == instance_id, instances.c.org == org)
            )
            if done.rowcount:
                conn.execute(sa.delete(tokens).where(tokens.c.instance == instance_id))
                conn.execute(sa.delete(deliveries).where(deliveries.c.instance == instance_id))
                notify(conn, INSTANCES)
        return bool(done.rowcount)

    # -- tokens ----------------------------------------------------------------------------

    def token_data(self, instance_id: str) -> bytes | None:
        with self._begin() as conn:
            data = conn.execute(
                sa.select(tokens.c.data).where(tokens.c.instance == instance_id)
            ).scalar()
        return bytes(data) if data is not None else None

    def set_token_data(self, instance_id: str, data: bytes | None) -> None:
        """Write an existing instance's tokens (a deleted instance's are not brought back)."""
        with self._begin() as conn:
            conn.execute(
                sa.update(tokens).where(tokens.c.instance == instance_id).values(data=data)
            )

    @contextmanager
    def token_row(self, instance_id: str) -> Iterator[Connection]:
        """The instance's token row locked (``SELECT ... FOR UPDATE``) for the life of the
        block, in one transaction: a refresh re-reads the stored pair and writes the new
        one under it, so two workers on two machines never refresh the same token."""
        with self.engine.connect() as conn:
            conn.execute(
                sa.select(tokens.c.instance)
                .where(tokens.c.instance == instance_id)
                .with_for_update()
            )
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    @staticmethod
    def read_token(conn: Connection, instance_id: str) -> bytes | None:
        data = conn.execute(
            sa.select(tokens.c.data).where(tokens.c.instance == instance_id)
        ).scalar()
        return bytes(data) if data is not None else None

    @staticmethod
    def write_token(conn: Connection, instance_id: str, data: bytes | None) -> None:
        conn.execute(sa.update(tokens).where(tokens.c.instance == instance_id).values(data=data))

    @staticmethod
    def take_answers(
        conn: Connection, instance_id: str, parent: str, *, wait: float
    ) -> tuple[bytes, float] | None:
        """Every refresh mark of the instance deleted (under its token row's lock); the
        answer a refresh relay recorded for ``parent`` (the stored refresh token's
        fingerprint) returned, when its worker died before storing it. A relay holds its
        mark's row lock from before it sends the grant until its answer is committed, so
        the DELETE waits for a grant in flight (up to ``wait`` seconds) and returns the
        recorded answer; a mark no relay has locked yet is deleted, and the relay then
        finds it gone and sends nothing."""
        # For the rest of the token row's transaction (which a timeout aborts anyway);
        # at least 1 ms, since 0 would mean no limit.
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {max(1, int(wait * 1000))}")
        try:
            rows = conn.execute(
                sa.text(
                    "DELETE FROM service_token_answers WHERE instance = :i"
                    " RETURNING parent, data, at"
                ),
                {"i": instance_id},
            ).all()
        except sa.exc.OperationalError as exc:
            if not lock_not_available(exc):
                raise
            raise RetriableAPIError(
                f"a refresh of instance {instance_id}'s tokens by another worker's refresh "
                f"relay was still running after {wait:g} s",
                hint="it is tried again at the next poll",
            ) from None
        done = sorted((r for r in rows if r[0] == parent and r[1] is not None), key=lambda r: r[2])
        return (bytes(done[-1][1]), float(done[-1][2])) if done else None

    @staticmethod
    def drop_answers(conn: Connection, instance_id: str) -> None:
        """The instance's refresh marks deleted: its pair was just stored by the lock holder."""
        conn.execute(
            sa.text("DELETE FROM service_token_answers WHERE instance = :i"), {"i": instance_id}
        )

    def take_lease(self, instance_id: str, owner: str, seconds: float) -> bool:
        """The refresh lease of the instance's tokens, when it is free or expired: one
        conditional UPDATE, so it holds across threads, processes and machines."""
        now = time.time()
        with self._begin() as conn:
            done = conn.execute(
                sa.update(tokens)
                .where(
                    tokens.c.instance == instance_id,
                    sa.or_(tokens.c.lease_until < now, tokens.c.lease_owner == owner),
                )
                .values(lease_owner=owner, lease_until=now + seconds)
            )
        return bool(done.rowcount)

    def drop_lease(self, instance_id: str, owner: str) -> None:
        with self._begin() as conn:
            conn.execute(
                sa.update(tokens)
                .where(tokens.c.instance == instance_id, tokens.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=0.0)
            )

    # -- recent deliveries -----------------------------------------------------------------

    def record_delivery(
        self, instance_id: str, message_id: str, resource: str, sink: str, events: list[Any]
    ) -> None:
        with self._begin() as conn:
            conn.execute(
                sa.insert(deliveries).values(
                    instance=instance_id,
                    message_id=message_id,
                    resource=resource,
                    sink=sink,
                    delivered=time.time(),
                    events=events,
                )
            )
            oldest_kept = (
                sa.select(deliveries.c.seq)
                .where(deliveries.c.instance == instance_id)
                .order_by(deliveries.c.seq.desc())
                .offset(KEEP_DELIVERED)
                .limit(1)
                .scalar_subquery()
            )
            conn.execute(
                sa.delete(deliveries).where(
                    deliveries.c.instance == instance_id, deliveries.c.seq <= oldest_kept
                )
            )

    def recent_deliveries(self, instance_id: str, limit: int) -> list[dict[str, Any]]:
        query = (
            sa.select(deliveries)
            .where(deliveries.c.instance == instance_id)
            .order_by(deliveries.c.seq.desc())
            .limit(limit)
        )
        with self._begin() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # -- poll state ------------------------------------------------------------------------

    def state_path(self, instance_id: str) -> Path:
        if self.postgresql:  # named in messages only: the state is in the database
            return Path(f"postgresql-state-{instance_id}")
        return _state_dir(self.url) / f"{instance_id}.sqlite"

    def state_store(self, instance_id: str, *, write: bool = True) -> StateStore:
        """The polling library's state store for one instance (``write=False``: to read
        while its poller writes). On PostgreSQL, every instance's state is in the
        service database's poll tables."""
        if self.postgresql:
            return PostgresStateStore(self.engine)
        return SQLiteStateStore(self.state_path(instance_id), write=write)

    def forget_state(self, instance_id: str) -> None:
        if self.postgresql:
            PostgresStateStore(self.engine).forget(instance_id)
            return
        for suffix in ("", "-wal", "-shm"):
            path = Path(str(self.state_path(instance_id)) + suffix)
            path.unlink(missing_ok=True)

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_path(url: str) -> Path:
    return Path(url[len(SQLITE) :]).expanduser()


def _state_dir(url: str) -> Path:
    path = _sqlite_path(url)
    return path.with_name(path.name + ".state")


def _reason(exc: sa.exc.DatabaseError) -> str:
    """The driver's own words, without SQLAlchemy's statement and background link."""
    return str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__


def _engine(url: str) -> Engine:
    if url.startswith(SQLITE) and len(url) > len(SQLITE):
        path = _sqlite_path(url)
        try:
            files.create_private(path)  # 0600: it holds encrypted secrets and hashes
            files.private_dir(_state_dir(url))
        except OSError as exc:
            raise ConfigurationError(
                f"--database {url!r}: cannot create {exc.filename or path}: {exc.strerror}",
                hint="name a file in a folder you can write",
            ) from None
        engine = sa.create_engine(
            f"sqlite:///{path}", connect_args={"timeout": 30, "check_same_thread": False}
        )

        @sa.event.listens_for(engine, "connect")
        def _wal(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

        return engine
    if url.startswith(POSTGRESQL):
        # psycopg 3 (the service extra); a pool per process, checked before use so that
        # a restarted server or a dropped connection costs one reconnect, not an error.
        return sa.create_engine(
            postgresql_url(url), pool_pre_ping=True, pool_size=10, max_overflow=20
        )
    raise ConfigurationError(
        f"--database {url!r} is not a database URL sagesql serves from",
        hint="write sqlite:///PATH (an absolute path has four slashes: sqlite:////var/lib/x.db) "
        "or postgresql://USER@HOST/DATABASE",
    )


def postgresql_url(url: str) -> str:
    """The SQLAlchemy URL of a postgresql:// one (the psycopg 3 driver)."""
    for prefix in POSTGRESQL:
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def default_url(data_dir: Path) -> str:
    return f"{SQLITE}{data_dir / 'service.sqlite'}"
