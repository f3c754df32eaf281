"""Row writes: one request per row, sent in order or in parallel, each answered on its own.

A multi-row write is many independent API calls: each row gets its own outcome, with
its input position, its key, and success or the API's error (fields and reasons).

- ``created``/``updated``/``deleted``/``voided``/``ok``: the API carried the row out;
- ``failed``: the API refused it (or it was never sent because it was invalid);
- ``unknown``: the request was sent but no answer came (a dropped connection, a
  server error on a POST): Sage may have carried it out. The transport never sends a
  create twice, so this row is reported, not retried;
- ``skipped``: not sent, because an earlier row stopped the run (stop on first error,
  or credentials that were refused, which would fail every row alike).

With ``workers`` > 1 (MaxConcurrency) up to that many requests are in flight at once;
outcomes still come out in input order. Requests are taken lazily from the input, so
a stream of records is written in constant memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import msgspec

from sagesql.connector.seams import Transport
from sagesql.errors import (
    AuthError,
    Error,
    InterfaceError,
    OperationalError,
    RetriableAPIError,
)

SUCCESS = frozenset({"created", "updated", "deleted", "voided", "ok"})
IDEMPOTENT = frozenset({"GET", "PUT", "DELETE"})


class RowError(msgspec.Struct, frozen=True):
    """Why a row was not written: the message, the HTTP status, Sage's (field, reason) list."""

    message: str
    status: int | None = None
    errors: tuple[tuple[str | None, str], ...] = ()
    hint: str | None = None

    @classmethod
    def of(cls, exc: Error) -> RowError:
        return cls(
            exc.message,
            getattr(exc, "status", None),
            tuple((f, m) for f, m in getattr(exc, "errors", None) or ()),
            exc.hint,
        )

    def text(self) -> str:
        return self.message + (f". {self.hint}" if self.hint else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "status": self.status,
            "errors": [{"field": f, "message": m} for f, m in self.errors],
            "hint": self.hint,
        }


class RowOutcome(msgspec.Struct):
    """What happened to one row."""

    index: int  # 0-based input position
    status: str
    key: Any = None
    response: Any = None  # the API's answer (a record), when there is one
    error: RowError | None = None

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS


class RowRequest(msgspec.Struct):
    """One row's call; ``outcome`` set instead when the row is answered without a call."""

    index: int
    method: str = ""
    path: str = ""
    body: Any = None
    key: Any = None
    success: str = "ok"
    params: dict[str, str] | None = None  # query parameters (a void's void_reason)
    outcome: RowOutcome | None = None
    # The key of the API's answer (creates learn their key from it).
    key_of: Callable[[Any], Any] | None = None

    def __repr__(self) -> str:  # without key_of (a function)
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.__struct_fields__ if name != "key_of"
        )
        return f"{self.__class__.__qualname__}({shown})"


def classify(exc: Error, method: str) -> str:
    """``failed`` when Sage refused or never got the request, ``unknown`` when it may have acted."""
    if isinstance(exc, RetriableAPIError | AuthError):
        return "failed"  # throttled, unreachable, or refused: not carried out
    status = getattr(exc, "status", None)
    if isinstance(exc, OperationalError) and status is None:
        return "unknown"  # sent, then the connection was lost
    if status is not None and status >= 500 and method.upper() not in IDEMPOTENT:
        return "unknown"
    return "failed"


def fatal(exc: Error) -> bool:
    """An error that every following row would meet too: stop instead of repeating it."""
    return isinstance(exc, AuthError | InterfaceError)


def send(transport: Transport, request: RowRequest) -> tuple[RowOutcome, bool]:
    """(the row's outcome, whether the error is fatal for the rest)."""
    if request.outcome is not None:
        return request.outcome, False
    try:
        answer = transport.json_request(
            request.method, request.path, params=request.params, json=request.body
        )
    except Error as exc:
        status = classify(exc, request.method)
        return RowOutcome(request.index, status, request.key, None, RowError.of(exc)), fatal(exc)
    key = request.key
    if key is None and request.key_of is not None:
        key = request.key_of(answer)
    return RowOutcome(request.index, request.success, key, answer), False


def _skipped(request: RowRequest, why: RowError | None) -> RowOutcome:
    if request.outcome is not None and not request.outcome.ok:
        return request.outcome  # invalid: it says why itself
    reason = f"not sent: {why.message}" if why else "not sent"
    return RowOutcome(
        request.index,
        "skipped",
        request.key,
        None,
        RowError(reason, None, (), why.hint if why else None),
    )


def send_all(
    transport: Transport,
    requests: Iterable[RowRequest],
    *,
    workers: int = 1,
    stop_on_first_error: bool = False,
) -> Iterator[RowOutcome]:
    """Every row's outcome, in input order."""
    queue = iter(requests)
    if workers <= 1:
        for request in queue:
            outcome, stop = send(transport, request)
            yield outcome
            if stop or (stop_on_first_error and not outcome.ok):
                yield from (_skipped(r, outcome.error) for r in queue)
                return
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sagesql-write")
    pending: deque[tuple[RowRequest, Future[tuple[RowOutcome, bool]]]] = deque()
    stopped: RowError | None = None
    try:
        for request in queue:
            pending.append((request, pool.submit(send, transport, request)))
            if len(pending) >= workers:
                break
        while pending:
            request, future = pending.popleft()
            outcome, stop = future.result()
            yield outcome
            if stop or (stop_on_first_error and not outcome.ok):
                stopped = outcome.error or RowError("an earlier row failed")
                break
            following = next(queue, None)
            if following is not None:
                pending.append((following, pool.submit(send, transport, following)))
        if stopped is not None:
            # Rows already in flight were sent: report what happened to them.
            while pending:
                _, future = pending.popleft()
                yield future.result()[0]
            yield from (_skipped(r, stopped) for r in queue)
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
