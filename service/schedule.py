"""The schedule on PostgreSQL: (instance, resource) polls due at intervals, claimed under leases.

One row of ``service_schedule`` per (instance, resource) says when its next poll is
due (``poll_at``), when its outbox next has a delivery due (``deliver_at``), and who
holds it until when (``owner``, ``lease_until``, ``fence``). ``due_at`` is the earlier
of the two due times: what workers look for.

- :meth:`Schedule.claim` takes up to ``n`` due rows that nobody holds or whose lease
  expired: ``SELECT ... FOR UPDATE SKIP LOCKED`` in ``due_at`` order, then one UPDATE
  that sets the owner and the lease and increments the fence. Two workers never take
  the same row (the row lock, then the owner check); a dead worker's rows come back
  when their lease expires, to whoever claims next. :meth:`Schedule.claim_next` also
  says, in the same statement, how long until the next row not taken is due (or its
  lease expires): how long an idle worker may sleep.
- :meth:`Schedule.renew` extends the leases a live worker holds (a heartbeat, every
  third of the lease), so a long backfill is not taken from a live worker.
- :meth:`Schedule.release` hands a row back with its next due times, only if it is
  still this claim's (same owner and fence), and says when it is due again.
- :meth:`Schedule.wake` and :meth:`Schedule.sync` make rows due sooner: they NOTIFY
  the idle workers in their transaction (wakeups.py).
- :meth:`Schedule.sync` keeps the rows in step with the instances: their resources and
  interval (a PATCH changes the instance's version), gone with a DELETE (a foreign key
  with ON DELETE CASCADE).

The state store's writes check the same row in their transaction (pg_state.py): that
is the fencing; this module only hands rows out and back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sagesql.service.pg_state import Claim
from sagesql.service.wakeups import DUE, notify


@dataclass(frozen=True)
class Due:
    """A claimed row: the claim, and whether its poll (not only a delivery) is due."""

    claim: Claim
    poll: bool
    version: float
    interval: float


class Schedule:
    """The schedule rows of the service database (PostgreSQL only)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(self, owner: str, n: int, lease: float, *, skip: Sequence[str] = ()) -> list[Due]:
        """Up to ``n`` due rows, held by ``owner`` for ``lease`` seconds; rows of the
        instances in ``skip`` (already running here) are left to others."""
        return self.claim_next(owner, n, lease, skip=skip)[0]

    def claim_next(
        self, owner: str, n: int, lease: float, *, skip: Sequence[str] = ()
    ) -> tuple[list[Due], float | None]:
        """:meth:`claim`, and in the same statement the seconds until the next row not
        taken now is due (a held row: when its lease expires; None: no rows)."""
        if n <= 0:
            return [], None
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.text(
                    "WITH due AS ("
                    " SELECT instance, resource FROM service_schedule"
                    " WHERE due_at <= now() AND (owner IS NULL OR lease_until < now())"
                    " AND NOT (instance = ANY(:skip))"
                    " ORDER BY due_at LIMIT :n FOR UPDATE SKIP LOCKED), "
                    "taken AS ("
                    "UPDATE service_schedule AS s SET owner = :o, fence = s.fence + 1,"
                    " lease_until = now() + make_interval(secs => :lease) "
                    "FROM due WHERE s.instance = due.instance AND s.resource = due.resource "
                    "RETURNING s.instance, s.resource, s.fence, s.poll_at <= now() AS poll,"
                    " s.version, s.interval_seconds), "
                    # The snapshot before the UPDATE: the rows just taken are left out.
                    "next AS ("
                    "SELECT CAST(extract(epoch FROM min(CASE WHEN s.owner IS NULL"
                    " THEN s.due_at ELSE greatest(s.due_at, s.lease_until) END) - now())"
                    " AS double precision) AS due_in"
                    " FROM service_schedule AS s WHERE NOT (s.instance = ANY(:skip))"
                    " AND NOT EXISTS (SELECT 1 FROM due"
                    " WHERE due.instance = s.instance AND due.resource = s.resource)) "
                    "SELECT taken.*, next.due_in FROM next LEFT JOIN taken ON true"
                ),
                {"o": owner, "n": n, "lease": lease, "skip": list(skip)},
            ).all()
        due_in = rows[0][-1] if rows else None
        taken = [
            Due(Claim(i, r, owner, int(f)), bool(p), float(v), float(s))
            for i, r, f, p, v, s, _ in rows
            if i is not None
        ]
        return taken, None if due_in is None else float(due_in)

    def renew(self, claims: Sequence[Claim], lease: float) -> set[Claim]:
        """Extend these leases; the claims still held (the others were lost)."""
        if not claims:
            return set()
        held: set[Claim] = set()
        with self.engine.begin() as conn:
            for claim in claims:
                done = conn.execute(
                    sa.text(
                        "UPDATE service_schedule SET"
                        " lease_until = now() + make_interval(secs => :lease)"
                        " WHERE instance = :i AND resource = :r AND owner = :o AND fence = :f"
                        " AND lease_until > now()"
                    ),
                    {
                        "lease": lease,
                        "i": claim.instance,
                        "r": claim.resource,
                        "o": claim.owner,
                        "f": claim.fence,
                    },
                )
                if done.rowcount:
                    held.add(claim)
        return held

    def release(
        self,
        claim: Claim,
        *,
        poll_in: float | None,
        deliver_at: float | None,
        error: str | None = None,
        polled: bool = False,
    ) -> float | None:
        """Hand the row back: next poll in ``poll_in`` seconds (None: when it was due),
        next delivery at epoch ``deliver_at`` (None: nothing pending). The seconds until
        the row is due again; None when it was not this claim's any more."""
        poll_at = (
            "CASE WHEN CAST(:poll_in AS double precision) IS NULL THEN poll_at"
            " ELSE now() + make_interval(secs => :poll_in) END"
        )
        deliver = (
            "CASE WHEN CAST(:deliver AS double precision) IS NULL THEN NULL"
            " ELSE to_timestamp(:deliver) END"
        )
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.text(
                    f"UPDATE service_schedule SET owner = NULL, lease_until = NULL,"
                    f" poll_at = {poll_at}, deliver_at = {deliver},"
                    # In the same statement (LEAST skips a NULL: no delivery pending).
                    f" due_at = least({poll_at}, {deliver}),"
                    " polls = polls + CASE WHEN :polled THEN 1 ELSE 0 END,"
                    " last_poll = CASE WHEN :polled THEN now() ELSE last_poll END,"
                    " last_error = :error"
                    " WHERE instance = :i AND resource = :r AND owner = :o AND fence = :f"
                    " RETURNING CAST(extract(epoch FROM due_at - now()) AS double precision)"
                ),
                {
                    "poll_in": poll_in,
                    "deliver": deliver_at,
                    "polled": polled,
                    "error": error,
                    "i": claim.instance,
                    "r": claim.resource,
                    "o": claim.owner,
                    "f": claim.fence,
                },
            ).first()
        return None if done is None else float(done[0])

    def wake(self, instance: str) -> None:
        """Deliver now (a replay): the instance's rows due at once."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE service_schedule SET deliver_at = now(), due_at = now()"
                    " WHERE instance = :i"
                ),
                {"i": instance},
            )
            notify(conn, DUE)

    def stale(self) -> list[tuple[str, float]]:
        """Instances whose rows are missing or of an older version: (id, version)."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT i.id, i.updated FROM service_instances AS i WHERE NOT EXISTS"
                    " (SELECT 1 FROM service_schedule AS s WHERE s.instance = i.id"
                    " AND s.version = i.updated)"
                )
            )
            return [(str(i), float(v)) for i, v in rows]

    def sync(
        self, instance: str, version: float, resources: Sequence[str], interval: float
    ) -> None:
        """The instance's rows: one per resource, of this version and interval; rows of
        resources no longer polled dropped (their state stays, as PATCH keeps it)."""
        with self.engine.begin() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM service_instances WHERE id = :i AND updated = :v"),
                {"i": instance, "v": version},
            ).first()
            if exists is None:  # changed or deleted meanwhile: the next sync sees it
                return
            conn.execute(
                sa.text(
                    "DELETE FROM service_schedule WHERE instance = :i AND NOT (resource = ANY(:r))"
                ),
                {"i": instance, "r": list(resources)},
            )
            for resource in resources:
                conn.execute(
                    sa.text(
                        "INSERT INTO service_schedule (instance, resource, version,"
                        " interval_seconds) VALUES (:i, :r, :v, :s)"
                        " ON CONFLICT (instance, resource) DO UPDATE SET"
                        " version = excluded.version,"
                        " interval_seconds = excluded.interval_seconds,"
                        " poll_at = least(service_schedule.poll_at, now()"
                        "   + make_interval(secs => excluded.interval_seconds)),"
                        " due_at = least(service_schedule.due_at, now()"
                        "   + make_interval(secs => excluded.interval_seconds))"
                    ),
                    {"i": instance, "r": resource, "v": version, "s": interval},
                )
            if resources:  # new rows are due now: idle workers may take them
                notify(conn, DUE)

    def rows(self) -> list[dict[str, object]]:
        """Every row, for status pages and tests."""
        with self.engine.begin() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(
                    sa.text("SELECT * FROM service_schedule ORDER BY instance, resource")
                )
            ]


def each_stale(
    schedule: Schedule,
    resources_of: Callable[[str], tuple[list[str], float] | None],
    settled: dict[str, float] | None = None,
) -> int:
    """Bring every stale instance's rows in step; ``resources_of`` says an instance's
    resources and interval (None: it cannot be read, left for later). How many synced.

    An instance that stays stale after its turn (no resources, so no rows; or unreadable)
    is kept in ``settled`` with its version and skipped until a PATCH changes that
    version: it would otherwise be decrypted, resolved and logged on every cycle."""
    synced = 0
    stale = schedule.stale()
    if settled is not None:
        current = dict(stale)
        for instance in [i for i, v in settled.items() if current.get(i) != v]:
            del settled[instance]
    for instance, version in stale:
        if settled is not None and settled.get(instance) == version:
            continue
        found = resources_of(instance)
        if found is not None:
            schedule.sync(instance, version, found[0], found[1])
            synced += 1
        if settled is not None and (found is None or not found[0]):
            settled[instance] = version
    return synced
