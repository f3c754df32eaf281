"""Sage's rate limit shared by every worker: a token bucket per business kept in PostgreSQL.

Sage counts requests per business (Accounting), company (Sage 200) or user on a
server (CRM), whoever sends them. :class:`SharedBucket` is the connector's
:class:`~sagesql.connector.throttle.TokenBucket` with its state in a row of
``service_buckets`` instead of process memory: each request reserves a token with
one ``UPDATE ... RETURNING`` (refill by the database's clock, so every machine
agrees), and waits the deficit when the bucket went below zero, as the in-process
bucket does. Burst and refill keep the in-process rule: no sliding minute ever sees
more than ``per_minute`` requests, whichever workers send them. A 429's Retry-After
pauses every worker of that business (``not_before``).

:func:`bucket_key` names the budget: product, API base URL and the scope that
Sage's limit counts (business id, site/company, or the CRM user).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sagesql.connector.properties import Settings
from sagesql.connector.throttle import TokenBucket


def bucket_key(settings: Settings, base_url: str) -> str:
    """The budget a connection's requests count against."""
    scope = settings.business_id or "/".join(filter(None, [settings.site, settings.company]))
    if str(settings.product_id) == "sage_crm":
        scope = settings.user or ""
    return f"{settings.product_id}|{base_url.rstrip('/')}|{scope or 'lead'}"


class SharedBucket(TokenBucket):
    """A token bucket whose tokens live in the database, shared across processes."""

    def __init__(
        self,
        engine: Engine,
        key: str,
        per_minute: int,
        *,
        burst: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(per_minute, burst=burst, sleep=sleep)
        self.engine = engine
        self.key = key
        self.queries = 0
        if self.enabled:
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO service_buckets (key, per_minute, burst, tokens, stamp)"
                        " VALUES (:k, :p, :b, :b, extract(epoch from clock_timestamp()))"
                        " ON CONFLICT (key) DO UPDATE SET per_minute = least("
                        "service_buckets.per_minute, excluded.per_minute),"
                        " burst = least(service_buckets.burst, excluded.burst)"
                    ),
                    {"k": key, "p": self.per_minute, "b": self.burst},
                )

    def _reserve(self) -> float:
        """Take a token in the database; the seconds to wait before using it."""
        if not self.enabled:
            return 0.0
        with self.engine.begin() as conn:
            self.queries += 1
            row = conn.execute(
                sa.text(
                    "WITH now AS (SELECT extract(epoch from clock_timestamp()) AS t) "
                    "UPDATE service_buckets AS b SET"
                    " tokens = CASE WHEN greatest(now.t, b.not_before) > b.stamp"
                    "   THEN least(b.burst::double precision, b.tokens + (greatest(now.t,"
                    "   b.not_before) - b.stamp) * greatest(b.per_minute - b.burst, 1) / 60.0)"
                    "   ELSE b.tokens END - 1,"
                    " stamp = greatest(b.stamp, now.t, b.not_before) "
                    "FROM now WHERE b.key = :k "
                    "RETURNING b.tokens, b.stamp - now.t, greatest(b.per_minute - b.burst, 1)"
                ),
                {"k": self.key},
            ).first()
        if row is None:
            return 0.0
        tokens, ahead, rate_per_minute = float(row[0]), float(row[1]), float(row[2])
        deficit = 0.0 if tokens >= 0 else -tokens / (rate_per_minute / 60.0)
        return max(0.0, ahead) + deficit

    def pause(self, seconds: float) -> None:
        """Hold every worker of this budget for ``seconds`` (the server said Retry-After)."""
        if seconds <= 0 or not self.enabled:
            return
        with self.engine.begin() as conn:
            self.queries += 1
            conn.execute(
                sa.text(
                    "UPDATE service_buckets SET not_before = greatest(not_before,"
                    " extract(epoch from clock_timestamp()) + :s) WHERE key = :k"
                ),
                {"k": self.key, "s": seconds},
            )
