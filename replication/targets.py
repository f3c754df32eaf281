"""Where a replica lives: a target database named by URL, and what replication asks of it.

``sqlite:///PATH`` (sqlite-utils; ``sqlite_target.py``) and ``postgresql://...``
(psycopg; ``postgres_target.py``). A target:

- creates a table from the catalog (its columns and types, the primary key, indexes on
  the key and the updated column) and adds the columns a later schema brings, never
  dropping one;
- writes a page in one transaction (``Batch``): rows upserted by key, rows deleted, a
  parent's lines replaced, and the table's position (``state.SyncState``);
- answers the keys it holds (id-set comparison), its row counts and positions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol
from urllib.parse import urlsplit

from sagesql.engine.replica import shown
from sagesql.errors import ConfigurationError
from sagesql.replication import postgres_target, sqlite_target
from sagesql.replication.shapes import Shape
from sagesql.replication.state import SyncState


class Batch(Protocol):
    """The writes of one transaction."""

    def upsert(self, shape: Shape, rows: Sequence[Sequence[Any]]) -> None: ...

    def delete(self, shape: Shape, column: str, values: Iterable[Any]) -> int: ...

    def save(self, state: SyncState) -> None: ...


class Target(Protocol):
    """A replica database."""

    url: str  # as shown: no password

    def ensure(self, shape: Shape) -> list[str]:
        """Create the table or add its new columns; the columns added."""
        ...

    def transaction(self) -> AbstractContextManager[Batch]: ...

    def lock(self) -> AbstractContextManager[None]:
        """Held for a whole sync: one sync writes a replica at a time."""
        ...

    def load(self, name: str) -> SyncState | None: ...

    def states(self) -> list[SyncState]: ...

    def keys(self, shape: Shape) -> Iterator[Any]: ...

    def count(self, shape: Shape) -> int: ...

    def close(self) -> None: ...


def open_target(url: str, *, create: bool = True) -> Target:
    """The target a URL names: ``sqlite:///PATH`` or ``postgresql://...``."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        return sqlite_target.SQLiteTarget.open(url, create=create)
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        return postgres_target.PostgresTarget.open(url, create=create)
    raise ConfigurationError(
        f"the replica {shown(url)!r} is not a sqlite:/// or postgresql:// URL",
        hint="write --to sqlite:///copy.sqlite or --to postgresql://user@host/db",
    )
