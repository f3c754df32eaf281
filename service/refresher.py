"""The refresh relay: a worker's OAuth refresh grants sent by a process that outlives the worker.

Sage retires a refresh token the moment it answers a refresh. A worker killed (SIGKILL,
the OOM killer) after Sage answered and before the new pair was committed would lose
the pair, and the instance would be signed out (``invalid_grant`` on the next try). So
a worker does not send refresh grants itself: :class:`RefreshRelay` hands each one to a
small child process (started once per worker, ``python -m``-less: ``-c`` runs
:func:`main`). The child is not killed with its worker: it finishes the grant in
flight, records it, and exits when its input closes.

The protocol, each step committed before the next (``service_token_answers``):

1. the worker, holding the instance's token row ``FOR UPDATE``, inserts a mark for the
   refresh token (its fingerprint, no answer) and only then hands the grant to the relay;
2. the relay locks the mark (``FOR UPDATE NOWAIT``); gone or locked, the next holder of
   the token row has withdrawn it and nothing is sent; otherwise it sends the grant and
   writes the answer into the mark, committed before it replies;
3. the next holder of the token row deletes every mark of the instance: a DELETE waits
   for a mark a relay holds (a grant in flight) and returns its answer, which it adopts
   (tokens.py) when it is for the stored refresh token.

So a refresh token is never sent twice: either the dead worker's relay sends it and its
answer is adopted, or the mark is withdrawn before the relay took it and the relay sends
nothing. The worker normally stores the pair itself (which also deletes the marks).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from typing import IO, Any

import sqlalchemy as sa

from sagesql.connector import token_endpoint
from sagesql.connector.auth import fingerprint
from sagesql.connector.token_endpoint import AnswerLost, TokenRefused
from sagesql.errors import AuthError, Error, RetriableAPIError
from sagesql.service.instances import prepare
from sagesql.service.secrets import SecretBox
from sagesql.service.storage import ServiceDatabase, lock_not_available
from sagesql.service.tokens import RELAY_WAIT


class RefreshRelay:
    """The worker's side: one child process, one grant at a time through its pipes."""

    def __init__(self, database_url: str, secret_key: str) -> None:
        self.database_url = database_url
        self.secret_key = secret_key
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._child is None or self._child.poll() is not None:
            self._child = subprocess.Popen(
                [sys.executable, "-c", "from sagesql.service.refresher import main; main()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={
                    **os.environ,
                    "SAGESQL_SECRET_KEY": self.secret_key,
                    "SAGESQL_DATABASE": self.database_url,
                },
                start_new_session=True,  # a signal to the worker's group leaves it be
            )
        return self._child

    def grant_for(
        self,
        database: ServiceDatabase,
        instance_id: str,
        token_url: str,
        *,
        wait: float = RELAY_WAIT,
    ) -> Any:
        """The ``grant`` of the instance's OAuthAuth: refresh token -> token answer. A
        reply is waited for ``wait`` seconds (longer than the grant's own deadline)."""

        def grant(refresh_token: str) -> dict[str, Any]:
            return self.refresh(database, instance_id, token_url, refresh_token, wait=wait)

        return grant

    def refresh(
        self,
        database: ServiceDatabase,
        instance_id: str,
        token_url: str,
        refresh_token: str,
        *,
        wait: float = RELAY_WAIT,
    ) -> dict[str, Any]:
        # Committed before the relay can see the request: a worker killed from here on
        # leaves a mark the next holder of the token row withdraws or waits for.
        mark = in_flight(database, instance_id, fingerprint(refresh_token) or "")
        request = {
            "mark": mark,
            "instance": instance_id,
            "url": token_url,
            "refresh_token": refresh_token,
        }
        with self._lock:
            child = self._start()
            assert child.stdin is not None and child.stdout is not None
            try:
                child.stdin.write((json.dumps(request) + "\n").encode())
                child.stdin.flush()
                # Bounded: a hung relay must not hold this worker (and the token row).
                ready = select.select([child.stdout], [], [], wait)[0]
                line = child.stdout.readline() if ready else None
            except OSError:
                line = b""
            if not line:
                self._child = None
                if line is None:  # hung past the grant's deadline: ours to end
                    child.kill()
                    child.wait()
                    child.stdin.close()
                    child.stdout.close()
                what = "ended without an answer" if line == b"" else f"gave no answer in {wait:g} s"
                raise AnswerLost(
                    f"refreshing the access token: the refresh relay {what}",
                    cause="relay ended" if line == b"" else "relay hung",
                    hint="the next refresh adopts its answer if it got one",
                )
        return _answer(json.loads(line))

    def close(self) -> None:
        with self._lock:
            if self._child is not None:
                if self._child.stdin is not None:
                    self._child.stdin.close()
                try:
                    self._child.wait(10)
                except subprocess.TimeoutExpired:
                    self._child.kill()
                    self._child.wait()
                if self._child.stdout is not None:
                    self._child.stdout.close()
                self._child = None


def _answer(reply: dict[str, Any]) -> dict[str, Any]:
    if "answer" in reply:
        return dict(reply["answer"])
    kind, message, hint = reply.get("kind"), str(reply.get("message")), reply.get("hint")
    if kind == "TokenRefused":
        raise TokenRefused(message, error=str(reply.get("error")), hint=hint)
    if kind == "AnswerLost":
        raise AnswerLost(message, cause=str(reply.get("cause")), hint=hint)
    if kind == "AuthError":
        raise AuthError(message, hint=hint)
    if kind == "RetriableAPIError":
        raise RetriableAPIError(message, hint=hint)
    raise Error(message, hint=hint)


def in_flight(database: ServiceDatabase, instance_id: str, parent: str) -> int:
    """A mark for a grant of ``parent`` (the refresh token's fingerprint), committed."""
    with database.engine.begin() as conn:
        return int(
            conn.execute(
                sa.text(
                    "INSERT INTO service_token_answers (instance, parent, data, at)"
                    " VALUES (:i, :p, NULL, :t) RETURNING id"
                ),
                {"i": instance_id, "p": parent, "t": time.time()},
            ).scalar_one()
        )


def send(
    database: ServiceDatabase, box: SecretBox, mark: int, settings: Any, url: str, token: str
) -> dict[str, Any]:
    """The grant of ``token`` under its mark's row lock, the answer written into the mark
    and committed before it is returned (a refused or failed grant deletes the mark)."""
    with database.engine.connect() as conn:
        try:
            held = conn.execute(
                sa.text(
                    "SELECT instance, parent FROM service_token_answers"
                    " WHERE id = :m AND data IS NULL FOR UPDATE NOWAIT"
                ),
                {"m": mark},
            ).first()
        except sa.exc.OperationalError as exc:
            if not lock_not_available(exc):  # else the next holder is withdrawing it
                raise
            held = None
        if held is None:
            conn.rollback()
            raise RetriableAPIError(
                "refreshing the access token: the grant was withdrawn by the next holder of "
                "the token row; nothing was sent",
                hint="the next refresh uses the stored tokens",
            )
        # An answer already recorded for this refresh token (a relay that died before
        # replying): Sage retired the token, so that answer is the one to use.
        recorded = conn.execute(
            sa.text(
                "SELECT data, at FROM service_token_answers WHERE instance = :i"
                " AND parent = :p AND data IS NOT NULL ORDER BY at DESC LIMIT 1"
            ),
            {"i": held[0], "p": held[1]},
        ).first()
        if recorded is not None:
            conn.commit()
            answer = dict(box.open(bytes(recorded[0])))
            if isinstance(answer.get("expires_in"), (int, float)):
                answer["expires_in"] = max(0, answer["expires_in"] - (time.time() - recorded[1]))
            return answer
        try:
            answer = token_endpoint.refresh(settings, url, token)
        except BaseException:
            conn.execute(sa.text("DELETE FROM service_token_answers WHERE id = :m"), {"m": mark})
            conn.commit()
            raise
        conn.execute(
            sa.text("UPDATE service_token_answers SET data = :d, at = :t WHERE id = :m"),
            {"m": mark, "d": box.seal(answer), "t": time.time()},
        )
        conn.commit()
        return dict(answer)


def serve(database: ServiceDatabase, box: SecretBox, lines: IO[bytes], out: IO[bytes]) -> None:
    """The child's loop: one grant per input line, answered on ``out`` once recorded."""
    settings: dict[str, Any] = {}
    for line in lines:
        request = json.loads(line)
        instance_id = str(request["instance"])
        try:
            if instance_id not in settings:
                row = database.instance(None, instance_id)
                if row is None:
                    raise AuthError(f"instance {instance_id} is gone")
                prepared = prepare(
                    box.open(row.body), instance_id, database.state_path(instance_id)
                )
                settings[instance_id] = prepared.settings
            answer = send(
                database,
                box,
                int(request["mark"]),
                settings[instance_id],
                str(request["url"]),
                str(request["refresh_token"]),
            )
            reply: dict[str, Any] = {"answer": answer}
        except Error as exc:
            reply = {"kind": type(exc).__name__, "message": exc.message, "hint": exc.hint}
            reply.update({k: getattr(exc, k) for k in ("error", "cause") if hasattr(exc, k)})
            if not isinstance(exc, (TokenRefused, AnswerLost, AuthError, RetriableAPIError)):
                reply["kind"] = "Error"
        except Exception as exc:  # a bug: said, not hidden
            reply = {"kind": "Error", "message": f"the refresh relay failed: {type(exc).__name__}"}
        try:
            out.write((json.dumps(reply) + "\n").encode())
            out.flush()
        except OSError:  # the worker is gone; the answer is recorded for the next one
            pass


def main() -> None:
    database = ServiceDatabase(os.environ["SAGESQL_DATABASE"], upgrade=False)
    box = SecretBox(os.environ.get("SAGESQL_SECRET_KEY"))
    try:
        serve(database, box, sys.stdin.buffer, sys.stdout.buffer)
    finally:
        database.close()
