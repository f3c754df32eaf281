"""The HTTP API (Starlette): credentials, the rate limit and body bound, then operations.py.

Every API request carries ``Authorization: User <user_secret>, Organization
<organization_secret>`` (and, for an instance, ``Element <token>`` may be added: it
must then be that instance's). Then, in this order: 401 without or with wrong
credentials; 429 with Retry-After past the organization's limit; 413 for a body
over the bound; the operation, run in a worker thread (the library is synchronous).
An instance of another organization is 404, as one that does not exist.

Errors are JSON ``{"error", "hint", "problems"?}``: 400 for bad input (every problem
of an instance body listed), 404, and 502 when Sage failed. ``/openapi.json`` and
``/health`` need no credentials; ``/`` is the operations page (page.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from sagesql.activities.jsontext import to_json
from sagesql.errors import EXIT_BAD_INPUT, Error
from sagesql.service import page
from sagesql.service.instances import BodyProblems
from sagesql.service.openapi import document
from sagesql.service.operations import CodeRefused, NotFound, Operations, Org
from sagesql.service.ratelimit import RateLimiter

log = logging.getLogger("sagesql.service")

MAX_BODY = 1024 * 1024  # bytes of a request body
ACTIVITIES = ("query", "create", "update", "delete", "execute")


class Refused(Exception):
    """An HTTP answer other than success, decided before the operation."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.status, self.message, self.headers = status, message, headers or {}


def credentials(header: str | None) -> dict[str, str]:
    """``User x, Organization y, Element z`` -> {"user": x, "organization": y, "element": z}."""
    found: dict[str, str] = {}
    for part in (header or "").split(","):
        kind, _, value = part.strip().partition(" ")
        if kind.lower() in ("user", "organization", "element") and value.strip():
            found[kind.lower()] = value.strip()
    return found


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(to_json(data), status, headers, media_type="application/json")


def error_response(exc: BaseException) -> Response:
    if isinstance(exc, Refused):
        return json_response({"error": exc.message, "hint": None}, exc.status, exc.headers)
    if isinstance(exc, BodyProblems):
        return json_response(
            {"error": exc.message, "hint": exc.hint, "problems": exc.problems}, 400
        )
    if isinstance(exc, NotFound):
        return json_response({"error": exc.message, "hint": exc.hint}, 404)
    if isinstance(exc, CodeRefused) or (isinstance(exc, Error) and exc.exit_code == EXIT_BAD_INPUT):
        assert isinstance(exc, Error)
        return json_response({"error": exc.message, "hint": exc.hint}, 400)
    if isinstance(exc, Error):
        return json_response({"error": exc.message, "hint": exc.hint}, 502)
    log.exception("unexpected error", exc_info=exc)
    return json_response({"error": "internal error", "hint": "see the service's log"}, 500)


class Api:
    """The routes, bound to one Operations and one rate limiter."""

    def __init__(
        self, operations: Operations, limiter: RateLimiter, *, max_body: int = MAX_BODY
    ) -> None:
        self.operations = operations
        self.limiter = limiter
        self.max_body = max_body

    async def _body(self, request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            raise Refused(413, f"the body is over {self.max_body} bytes")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > self.max_body:
                raise Refused(413, f"the body is over {self.max_body} bytes")
        if not data:
            return {}
        try:
            return json.loads(data)
        except ValueError as exc:
            raise Refused(400, f"the body is not JSON: {exc}") from None

    def _org(self, request: Request) -> Org:
        given = credentials(request.headers.get("authorization"))
        if "user" not in given or "organization" not in given:
            raise Refused(
                401,
                "missing credentials: Authorization: User <user_secret>, "
                "Organization <organization_secret>",
                {"WWW-Authenticate": "User, Organization"},
            )
        org = self.operations.authenticate(given["organization"], given["user"])
        if org is None:
            raise Refused(401, "wrong credentials", {"WWW-Authenticate": "User, Organization"})
        wait = self.limiter.take(org.id)
        if wait:
            raise Refused(
                429,
                f"over the organization's limit of {self.limiter.per_minute} requests a minute",
                {"Retry-After": self.limiter.retry_after(wait)},
            )
        instance_id = request.path_params.get("id")
        if (
            "element" in given
            and instance_id is not None
            and self.operations.instance_of_token(org, given["element"]) != instance_id
        ):
            raise Refused(
                401,
                "the Element token is not this instance's",
                {"WWW-Authenticate": "User, Organization"},
            )
        return org

    def route(
        self,
        handler: Callable[[Org, Request, Any], Any],
        *,
        body: bool = False,
        query: tuple[str, ...] = (),
    ) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint: credentials, the query's parameters (``query`` names the known
        ones: another is a 400, not a silently ignored typo), the body, the handler."""

        async def endpoint(request: Request) -> Response:
            try:
                org = await run_in_threadpool(self._org, request)
                unknown = sorted(set(request.query_params) - set(query))
                if unknown:
                    known = f"use {', '.join(query)}" if query else "it takes none"
                    raise Refused(400, f"unknown query parameter {unknown[0]!r}: {known}")
                data = await self._body(request) if body else None
                result = await run_in_threadpool(handler, org, request, data)
            except Exception as exc:
                return error_response(exc)
            if isinstance(result, Response):
                return result
            return json_response(result)

        return endpoint

    # -- handlers (in worker threads) ------------------------------------------------------

    def create(self, org: Org, request: Request, body: Any) -> Any:
        return self.operations.create(org, body)

    def list(self, org: Org, request: Request, body: Any) -> Any:
        return self.operations.list(org)

    def get(self, org: Org, request: Request, body: Any) -> Any:
        return self.operations.get(org, request.path_params["id"])

    def patch(self, org: Org, request: Request, body: Any) -> Any:
        return self.operations.patch(org, request.path_params["id"], body)

    def delete(self, org: Org, request: Request, body: Any) -> Any:
        self.operations.delete(org, request.path_params["id"])
        return Response(status_code=204)

    def events(self, org: Org, request: Request, body: Any) -> Any:
        limit = request.query_params.get("limit", "100")
        if not limit.isdigit() or not 1 <= int(limit) <= 1000:
            raise Refused(400, "limit must be a whole number from 1 to 1000")
        state = request.query_params.get("state")
        return self.operations.events(org, request.path_params["id"], state, int(limit))

    def replay(self, org: Org, request: Request, body: Any) -> Any:
        if not isinstance(body, dict):
            raise Refused(400, 'the body must be a JSON object: {} or {"resource": "..."}')
        resource = body.get("resource")
        if resource is not None and not isinstance(resource, str):
            raise Refused(400, "resource must be a resource's name (a string) or null")
        return self.operations.replay(org, request.path_params["id"], resource)

    def status(self, org: Org, request: Request, body: Any) -> Any:
        return self.operations.status(org, request.path_params["id"])

    def activity(self, org: Org, request: Request, body: Any) -> Any:
        activity = request.path_params["activity"]
        if activity not in ACTIVITIES:
            raise Refused(404, f"no activity {activity!r}: use one of {', '.join(ACTIVITIES)}")
        if not isinstance(body, dict):
            raise Refused(400, "the body must be a JSON object")
        if activity == "query":
            records = list(self.operations.query(org, request.path_params["id"], body))
            return {"records": records}
        return self.operations.activity(org, request.path_params["id"], activity, body)

    def query(self, org: Org, request: Request, body: Any) -> Any:
        """SQL in, JSON rows out as they come: the first row is read before answering, so
        a bad statement is a 400 rather than a broken stream."""
        if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
            raise Refused(400, 'the body must be {"sql": "SELECT ...", "params": [...]}')
        records = self.operations.query(
            org, request.path_params["id"], {"statement": body["sql"], "params": body.get("params")}
        )
        first = next(records, None)
        lines = request.headers.get("accept", "").startswith("application/x-ndjson")
        return StreamingResponse(
            _stream(first, records, lines),
            media_type="application/x-ndjson" if lines else "application/json",
        )

    # -- without credentials ---------------------------------------------------------------

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(document())

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})


async def _stream(
    first: dict[str, Any] | None, rest: Iterator[dict[str, Any]], lines: bool
) -> AsyncIterator[bytes]:
    def chunks() -> Iterator[bytes]:
        if lines:
            if first is not None:
                yield (to_json(first) + "\n").encode()
                for record in rest:
                    yield (to_json(record) + "\n").encode()
            return
        yield b"["
        if first is not None:
            yield to_json(first).encode()
            for record in rest:
                yield ("," + to_json(record)).encode()
        yield b"]"

    async for chunk in iterate_in_threadpool(chunks()):
        yield chunk


def build_app(
    operations: Operations, limiter: RateLimiter, *, max_body: int = MAX_BODY
) -> Starlette:
    api = Api(operations, limiter, max_body=max_body)
    ui = page.Pages(operations)
    instance = "/instances/{id:str}"
    routes = [
        Route("/", ui.home, methods=["GET"]),
        Route("/login", ui.login, methods=["POST"]),
        Route("/logout", ui.logout, methods=["POST"]),
        Route("/ui/instances/{id:str}/replay", ui.replay, methods=["POST"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Route("/health", api.health, methods=["GET"]),
        Route("/instances", api.route(api.list), methods=["GET"]),
        Route("/instances", api.route(api.create, body=True), methods=["POST"]),
        Route(instance, api.route(api.get), methods=["GET"]),
        Route(instance, api.route(api.patch, body=True), methods=["PATCH"]),
        Route(instance, api.route(api.delete), methods=["DELETE"]),
        Route(
            instance + "/events", api.route(api.events, query=("state", "limit")), methods=["GET"]
        ),
        Route(instance + "/events/replay", api.route(api.replay, body=True), methods=["POST"]),
        Route(instance + "/status", api.route(api.status), methods=["GET"]),
        Route(
            instance + "/activities/{activity:str}",
            api.route(api.activity, body=True),
            methods=["POST"],
        ),
        Route(instance + "/query", api.route(api.query, body=True), methods=["POST"]),
    ]
    return Starlette(routes=routes)
