"""The refresh relay: a worker's OAuth refresh grants sent by a process that outlives the worker.

Sage retires a refresh token the moment it answers a refresh. A worker killed (SIGKILL,
the OOM killer) after Sage answered and before the new pair was committed would lose
the pair, and the instance would be signed out (``invalid_grant`` on the next try). So
a worker does not send refresh grants itself: :class:`RefreshRelay` hands each one to a
small child process (started once per worker, ``python -m``-less: ``-c`` runs
:func:`main`), which sends the grant, records the answer sealed in
``service_token_answers`` (committed), and only then replies. The child is not killed
with its worker: it finishes the grant in flight, records it, and exits when its
input closes.

The worker normally stores the pair itself (under the token row's lock, which also
deletes the recorded answer). When it died first, the next holder of the row lock finds
the recorded answer of the stored refresh token and adopts it (tokens.py), so the chain
goes on. The child holds no lock: it only inserts into a table nothing references.
"""

from __future__ import annotations

import json
import os
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
from sagesql.service.storage import ServiceDatabase


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

    def grant_for(self, instance_id: str, token_url: str) -> Any:
        """The ``grant`` of the instance's OAuthAuth: refresh token -> token answer."""

        def grant(refresh_token: str) -> dict[str, Any]:
            return self.refresh(instance_id, token_url, refresh_token)

        return grant

    def refresh(self, instance_id: str, token_url: str, refresh_token: str) -> dict[str, Any]:
        request = {"instance": instance_id, "url": token_url, "refresh_token": refresh_token}
        with self._lock:
            child = self._start()
            assert child.stdin is not None and child.stdout is not None
            try:
                child.stdin.write((json.dumps(request) + "\n").encode())
                child.stdin.flush()
                line = child.stdout.readline()
            except OSError:
                line = b""
            if not line:
                self._child = None
                raise AnswerLost(
                    "refreshing the access token: the refresh relay ended without an answer",
                    cause="relay ended",
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
    """A grant of ``parent`` (the refresh token's fingerprint) about to be sent, committed
    first: whoever takes the token row next waits for its answer rather than sending the
    same refresh token again."""
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


def record(database: ServiceDatabase, box: SecretBox, mark: int, answer: Any | None) -> None:
    """The grant's answer, committed (None: it failed, Sage rotated nothing)."""
    with database.engine.begin() as conn:
        if answer is None:
            conn.execute(sa.text("DELETE FROM service_token_answers WHERE id = :m"), {"m": mark})
        else:
            conn.execute(
                sa.text("UPDATE service_token_answers SET data = :d, at = :t WHERE id = :m"),
                {"m": mark, "d": box.seal(answer), "t": time.time()},
            )


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
            token = str(request["refresh_token"])
            mark = in_flight(database, instance_id, fingerprint(token) or "")
            try:
                answer = token_endpoint.refresh(settings[instance_id], str(request["url"]), token)
            except BaseException:
                record(database, box, mark, None)
                raise
            record(database, box, mark, answer)
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
