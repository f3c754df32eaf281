"""What the ``sync`` command runs: tables named or all, synced into a target; the target's status.

::

    with connected(profile="books") as client:
        outcomes = replicate(client, "sqlite:///books.sqlite", ["contacts"])
    rows = status("sqlite:///books.sqlite")
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from sagesql.activities.polling.poller import PollingClient
from sagesql.activities.polling.timeparse import parse_iso
from sagesql.engine.result import Result, ResultColumn
from sagesql.errors import ConfigurationError
from sagesql.replication.statements import read
from sagesql.replication.sync import (
    COMPARE_EVERY,
    DEFAULT_LOOKBACK,
    Progress,
    Replicated,
    Replicator,
    TableOutcome,
    default_tables,
    specs_for,
)
from sagesql.replication.targets import Target, open_target

# A sync that did not finish every table exits with this code (the rest is committed).
EXIT_PARTIAL = 3


def replicate(
    connection: PollingClient,
    url: str,
    tables: Sequence[str | Replicated] = (),
    *,
    full: bool = False,
    since: datetime | None = None,
    lookback: timedelta = DEFAULT_LOOKBACK,
    progress: Progress | None = None,
    compare_every: timedelta = COMPARE_EVERY,
) -> list[TableOutcome]:
    """Sync ``tables`` (default: the replica's tables of the connection's product, else
    every readable table with an updated-date column)."""
    if connection.settings.offline:
        # Offline reads the replica: a sync must read Sage itself.
        raise ConfigurationError(
            "sync reads Sage, but the connection is Offline=True",
            hint="drop Offline=True from the connection (or profile) sync uses",
        )
    product = connection.product.id
    wanted = [t if isinstance(t, Replicated) else Replicated(t) for t in tables]
    # Tables named are checked before the replica is opened (or created).
    specs = specs_for(wanted, connection.catalog, product, lookback=lookback) if wanted else []
    target = open_target(url)
    try:
        if not wanted:
            # Again: the tables this replica holds of the product (REPLICATE's names,
            # columns and WHERE kept), else every table.
            wanted = _held(target, product) or default_tables(connection.catalog, product)
            specs = specs_for(wanted, connection.catalog, product, lookback=lookback)
        with target.lock():
            replicator = Replicator(
                connection,
                target,
                specs,
                full=full,
                since=since,
                progress=progress,
                compare_every=compare_every,
            )
            return replicator.run()
    finally:
        target.close()


def _held(target: Target, product: str) -> list[Replicated]:
    """The tables a replica holds of ``product``, as they were asked for."""
    return [
        Replicated(s.source, s.name, s.filter, tuple(json.loads(s.columns)) if s.columns else None)
        for s in target.states()
        if s.product == product
    ]


def _age(text: str | None, now: datetime) -> str:
    if not text:
        return ""
    seconds = int((now - parse_iso(text)).total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def status(url: str) -> list[dict[str, Any]]:
    """Per replicated table: rows, last sync, position, lag (now less the watermark), and
    how long ago the ids were compared in full."""
    target = open_target(url, create=False)
    now = datetime.now(timezone.utc)
    try:
        return [
            {
                "table": s.name,
                "source": s.source,
                "rows": s.rows,
                "last_sync": s.last_sync or "",
                "position": s.describe_position(),
                "lag": _age(s.watermark, now),
                # Sage 200 / CRM: how long ago every id was last compared (--compare-every).
                "compared": _age(s.compared, now),
                "last_result": s.last_result or "",
                "error": s.last_error or "",
            }
            for s in target.states()
        ]
    finally:
        target.close()


OUTCOME_COLUMNS = ("table", "copied", "changed", "deleted", "rows", "requests", "status")


def outcome_rows(outcomes: Sequence[TableOutcome]) -> Result:
    """A sync's outcomes as result rows (what ``REPLICATE`` answers)."""
    rows = [
        (
            o.name,
            o.copied,
            o.upserted,
            o.deleted,
            o.rows,
            o.requests,
            "complete" if o.complete else f"partial: {o.error}",
        )
        for o in outcomes
    ]
    return Result([ResultColumn(c, None) for c in OUTCOME_COLUMNS], iter(rows))


def run_statement(connection: PollingClient, url: str, sql: str) -> tuple[Result, bool]:
    """``REPLICATE ...`` or ``CACHE ...`` into the replica at ``url``: the outcome rows,
    and whether every table finished."""
    statement = read(sql)
    outcomes = replicate(connection, url, [statement.table], full=statement.full)
    return outcome_rows(outcomes), all(o.complete for o in outcomes)
