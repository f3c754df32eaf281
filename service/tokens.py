"""An instance's OAuth tokens in the service database, encrypted: a connector TokenStore.

The store keeps :class:`~sagesql.connector.tokenstore.TokenStore`'s contract:
:meth:`locked` is exclusive across the threads of this process (a lock per instance)
and across processes and machines, so Sage's single-use refresh tokens are refreshed
once. On PostgreSQL it is the token row itself, locked with ``SELECT ... FOR UPDATE``
for the whole refresh (the stored pair re-read, the new one written, in that one
transaction; a worker killed meanwhile releases it with its connection). On SQLite
(one machine) it is a lease row, taken with one conditional UPDATE.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

from sqlalchemy.engine import Connection

from sagesql.connector import logs
from sagesql.connector.auth import fingerprint
from sagesql.connector.tokenstore import LOCK_WAIT, BadTokens, TokenSet
from sagesql.errors import ConfigurationError
from sagesql.service.secrets import SecretBox
from sagesql.service.storage import ServiceDatabase

LOCATION = "service://"
_POLL = 0.05  # seconds between attempts at a lease another process holds
# Seconds a grant in flight in a dead worker's refresh relay is waited for: longer than
# the grant's own deadline (Timeout, 60 s by default), so a slow answer is still adopted.
RELAY_WAIT = 75.0


class DatabaseTokenStore:
    """Tokens of one instance, sealed with the operator's key."""

    _thread_locks: ClassVar[dict[str, threading.RLock]] = {}
    _registry_lock = threading.Lock()

    def __init__(
        self,
        database: ServiceDatabase,
        box: SecretBox,
        instance_id: str,
        *,
        relay_wait: float = RELAY_WAIT,
    ) -> None:
        self.database = database
        self.relay_wait = relay_wait
        self.box = box
        self.instance_id = instance_id
        self.location = LOCATION + instance_id
        self._owner = f"{os.getpid()}:{id(self)}"
        self._depth = 0
        self._row: Connection | None = None  # the locked row's transaction (PostgreSQL)
        self._holder: int | None = None  # the thread holding it
        self._row_context: contextlib.AbstractContextManager[Connection] | None = None
        with self._registry_lock:
            self._thread_lock = self._thread_locks.setdefault(instance_id, threading.RLock())

    def _held(self) -> Connection | None:
        """The locked row's transaction, when this thread holds it."""
        return self._row if self._holder == threading.get_ident() else None

    def load(self) -> TokenSet | None:
        row = self._held()
        sealed = (
            self.database.read_token(row, self.instance_id)
            if row is not None
            else self.database.token_data(self.instance_id)
        )
        if sealed is None:
            return None
        try:
            tokens = TokenSet.from_json(self.box.open(sealed))
            if row is not None and self.database.postgresql:
                tokens = self._adopt(row, tokens)
        except BadTokens as exc:
            raise ConfigurationError(
                f"the stored tokens of instance {self.instance_id} are damaged: {exc}",
                hint="authorize the instance again (PATCH it with a new providerData.code)",
            ) from None
        logs.register_secret(tokens.access_token)
        logs.register_secret(tokens.refresh_token)
        return tokens

    def _adopt(self, row: Connection, stored: TokenSet) -> TokenSet:
        """The pair a dead worker's refresh got (recorded by the refresh relay), if any:
        Sage already retired ``stored``'s refresh token for it."""
        found = self.database.take_answers(
            row, self.instance_id, fingerprint(stored.refresh_token) or "", wait=self.relay_wait
        )
        if found is None:
            return stored
        sealed, at = found
        fresh = TokenSet.from_response(self.box.open(sealed), at)
        fresh = TokenSet(
            **{
                **fresh.to_json(),
                "refresh_token": fresh.refresh_token or stored.refresh_token,
                "origin": stored.origin,
            }
        )
        self.database.write_token(row, self.instance_id, self.box.seal(fresh.to_json()))
        logs.register_secret(fresh.access_token)
        logs.register_secret(fresh.refresh_token)
        return fresh

    def save(self, tokens: TokenSet) -> None:
        self._write(self.box.seal(tokens.to_json()))

    def clear(self) -> None:
        self._write(None)

    def _write(self, sealed: bytes | None) -> None:
        row = self._held()
        if row is not None:
            self.database.write_token(row, self.instance_id, sealed)
            if self.database.postgresql:  # stored by us: the relay's record is not needed
                self.database.drop_answers(row, self.instance_id)
        else:
            self.database.set_token_data(self.instance_id, sealed)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with self._thread_lock:
            if self._depth == 0:
                if self.database.postgresql:
                    self._row_context = self.database.token_row(self.instance_id)
                    self._row = self._row_context.__enter__()
                    self._holder = threading.get_ident()
                else:
                    self._take_lease()
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    if self._row_context is not None:
                        context, self._row_context, self._row = self._row_context, None, None
                        self._holder = None
                        context.__exit__(None, None, None)
                    else:
                        self.database.drop_lease(self.instance_id, self._owner)

    def _take_lease(self) -> None:
        deadline = time.monotonic() + LOCK_WAIT
        # The lease outlives a stuck holder by at most LOCK_WAIT: then it is taken over.
        while not self.database.take_lease(self.instance_id, self._owner, LOCK_WAIT):
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"the tokens of instance {self.instance_id} stayed locked for {LOCK_WAIT:g} s",
                    hint="a refresh in another process is stuck: end it, then try again",
                )
            time.sleep(_POLL)
