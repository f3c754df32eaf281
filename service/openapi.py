"""The API's OpenAPI 3.1 document, built from the JSON Schemas the activities publish.

Activity results are ``schema.result_schema`` and errors ``schema.error_schema`` (the
same as ``sagesql schema TABLE --activity X`` prints, with any record); a table's own
record schema is what that command prints for it. OpenAPI 3.1 takes JSON Schema 2020-12
as it is, so nothing is translated.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sagesql.activities import schema
from sagesql.version import __version__

JSON = "application/json"


def _strip(value: Any) -> Any:
    """Without ``$schema`` members: a component is not a document of its own."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "$schema"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if body is not None:
        answer["content"] = {JSON: {"schema": body}}
    return answer


def _errors(*statuses: int) -> dict[str, Any]:
    said = {
        400: "bad input: every problem listed",
        401: "missing or wrong credentials",
        404: "no such instance for this organization",
        413: "the body is over the bound",
        429: "over the organization's rate limit (Retry-After says when to try again)",
        502: "Sage failed or refused",
    }
    headers = {
        401: {"WWW-Authenticate": {"required": True, "schema": {"const": "User, Organization"}}},
        429: {
            "Retry-After": {
                "required": True,
                "description": "seconds",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        },
    }
    answers = {str(s): _answer(said[s], _ref("Error")) for s in statuses}
    for status, named in headers.items():
        if str(status) in answers:
            answers[str(status)]["headers"] = named
    return answers


def _operation(
    summary: str,
    ok: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    errors: tuple[int, ...] = (401, 404, 429),
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**ok, **_errors(*errors)}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    if parameters:
        op["parameters"] = parameters
    return op


def _components() -> dict[str, Any]:
    record = {"type": "object", "description": "a record: the table's columns"}
    key: dict[str, Any] = {"type": ["string", "integer", "null"]}
    text_or_null: dict[str, Any] = {"type": ["string", "null"]}
    records_in = {
        "type": "array",
        "items": {"type": "object"},
        "description": "one input record each: `sagesql schema TABLE --activity X` describes them",
    }
    return {
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string"},
                "hint": {"type": ["string", "null"]},
                "problems": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["error", "hint"],
        },
        "Instance": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "element": {
                    "type": "object",
                    "properties": {"key": {"type": "string"}},
                    "required": ["key"],
                },
                "tags": {"type": "array", "items": {"type": "string"}},
                "configuration": {
                    "type": "object",
                    "description": "as sent, every secret masked as ********",
                },
                "providerData": {"type": "object"},
                "createdDate": {"type": "string"},
                "updatedDate": {"type": "string"},
                "token": {"type": "string", "description": "the Element token (POST only)"},
            },
            "required": ["id", "name", "element", "tags", "configuration"],
        },
        "InstanceBody": {
            "type": "object",
            "description": "a platform's instance body, unchanged: element.key, "
            "configuration (event.* settings and credentials), providerData.code, tags, name",
            "properties": {
                "element": {"type": "object", "properties": {"key": {"type": "string"}}},
                "configuration": {"type": "object"},
                "providerData": {"type": "object"},
                "tags": {"type": "array"},
                "name": {"type": "string"},
            },
            "required": ["configuration"],
        },
        "Event": {
            "type": "object",
            "properties": {
                "messageId": {"type": "string"},
                "resource": {"type": "string"},
                "sink": {"type": "string"},
                "state": {"enum": ["pending", "dead", "delivered"]},
                "attempts": {"type": ["integer", "null"]},
                "time": {"type": ["string", "null"]},
                "error": {"type": ["string", "null"]},
                "events": {"type": "array", "items": {"type": "object"}},
            },
            "required": ["messageId", "resource", "state", "events"],
        },
        "Status": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "polling": {"type": "boolean"},
                "error": {"type": ["string", "null"]},
                "interval_seconds": {"type": "number"},
                "cycles": {
                    "type": "integer",
                    "description": "cycles this service process has run for the instance",
                },
                "last_cycle_seconds": {"type": ["number", "null"]},
                "late_seconds": {
                    "type": ["number", "null"],
                    "description": "how late the last cycle started after it was due",
                },
                "resources": {"type": "array", "items": _ref("ResourceStatus")},
            },
            "required": ["id", "polling", "resources"],
        },
        "ResourceStatus": {
            "type": "object",
            "description": "one polled resource, as `sagesql poll status` shows it",
            "properties": {
                "table": {"type": "string"},
                "watermark": text_or_null,
                "deleted_watermark": text_or_null,
                "last_cycle": text_or_null,
                "last_result": text_or_null,
                "lag": {**text_or_null, "description": "the watermark behind Sage's clock"},
                "lag_seconds": {"type": ["number", "null"]},
                "outbox": {"type": "integer", "description": "notifications waiting"},
                "oldest_pending": text_or_null,
                "dead_letters": {"type": "integer"},
                "delivered": {"type": "integer"},
                "delivery_error": text_or_null,
                "events": {"type": "integer"},
                "cycles": {"type": "integer"},
            },
            "required": ["table", "watermark", "lag", "outbox", "dead_letters"],
        },
        "ActivityError": _strip(schema.error_schema()),
        "ActivityResult": _strip(schema.result_schema("one result per record", record, key)),
        "TargetInput": {
            "type": "object",
            "properties": {
                "table": {"type": "string"},
                "procedure": {"type": "string", "description": "execute only"},
                "records": records_in,
                "stop_on_first_error": {"type": "boolean"},
            },
            "required": ["records"],
        },
        "QueryInput": {
            "type": "object",
            "description": "the Query activity: a statement (with params), or a table with "
            "fields, conditions, order_by, limit and offset",
            "properties": {
                "statement": {"type": "string"},
                "params": {"type": ["array", "object", "null"]},
                "table": {"type": "string"},
                "fields": {"type": "array", "items": {"type": "string"}},
                "conditions": {"type": ["object", "array"]},
                "order_by": {"type": ["array", "string"]},
                "limit": {"type": "integer", "minimum": 0},
                "offset": {"type": "integer", "minimum": 0},
            },
        },
    }


@cache
def document() -> dict[str, Any]:
    instance_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    activity = {
        "name": "activity",
        "in": "path",
        "required": True,
        "schema": {"enum": ["query", "create", "update", "delete", "execute"]},
    }
    results = {
        "type": "object",
        "properties": {"results": {"type": "array", "items": _ref("ActivityResult")}},
    }
    records = {
        "type": "object",
        "properties": {"records": {"type": "array", "items": {"type": "object"}}},
    }
    rows = {"type": "array", "items": {"type": "object"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sagesql instances service",
            "version": __version__,
            "description": "Integration platforms' instances polled for changes, and the "
            "activities, over HTTP. Authorization: User <user_secret>, Organization "
            "<organization_secret> (and Element <token> for an instance).",
        },
        "components": {
            "schemas": _components(),
            "securitySchemes": {
                "platform": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "User <user_secret>, Organization <organization_secret>",
                }
            },
        },
        "security": [{"platform": []}],
        "paths": {
            "/instances": {
                "get": _operation(
                    "the organization's instances",
                    {"200": _answer("instances", {"type": "array", "items": _ref("Instance")})},
                    errors=(401, 429),
                ),
                "post": _operation(
                    "create an instance from a platform's body, unchanged",
                    {"200": _answer("the instance, with its token", _ref("Instance"))},
                    body=_ref("InstanceBody"),
                    errors=(400, 401, 413, 429),
                ),
            },
            "/instances/{id}": {
                "parameters": [instance_id],
                "get": _operation("one instance", {"200": _answer("it", _ref("Instance"))}),
                "patch": _operation(
                    "change an instance (configuration merged; watermarks kept)",
                    {"200": _answer("the instance", _ref("Instance"))},
                    body={"type": "object"},
                    errors=(400, 401, 404, 413, 429),
                ),
                "delete": _operation("stop and forget an instance", {"204": _answer("gone")}),
            },
            "/instances/{id}/events": {
                "parameters": [
                    instance_id,
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {"enum": ["pending", "dead", "delivered"]},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "get": _operation(
                    "recent notifications and their delivery",
                    {"200": _answer("events", {"type": "array", "items": _ref("Event")})},
                    errors=(400, 401, 404, 429),
                ),
            },
            "/instances/{id}/events/replay": {
                "parameters": [instance_id],
                "post": _operation(
                    "dead letters sent again, in order",
                    {
                        "200": _answer(
                            "how many",
                            {
                                "type": "object",
                                "properties": {"replayed": {"type": "integer"}},
                                "required": ["replayed"],
                            },
                        )
                    },
                    body={
                        "type": "object",
                        "properties": {"resource": {"type": ["string", "null"]}},
                    },
                    errors=(400, 401, 404, 413, 429),
                ),
            },
            "/instances/{id}/status": {
                "parameters": [instance_id],
                "get": _operation(
                    "per resource: watermark, last cycle, lag, outbox, dead letters, last error",
                    {"200": _answer("status", _ref("Status"))},
                ),
            },
            "/instances/{id}/activities/{activity}": {
                "parameters": [instance_id, activity],
                "post": _operation(
                    "an activity, as the Python API: query gives records, the others one "
                    "result per record",
                    {
                        "200": _answer(
                            "records (query) or results",
                            {"oneOf": [results, records]},
                        )
                    },
                    body={"oneOf": [_ref("TargetInput"), _ref("QueryInput")]},
                    errors=(400, 401, 404, 413, 429, 502),
                ),
            },
            "/instances/{id}/query": {
                "parameters": [instance_id],
                "post": _operation(
                    "SQL: the rows as a JSON array, streamed (JSON lines with "
                    "Accept: application/x-ndjson)",
                    {"200": _answer("rows", rows)},
                    body={
                        "type": "object",
                        "properties": {
                            "sql": {"type": "string"},
                            "params": {"type": ["array", "object", "null"]},
                        },
                        "required": ["sql"],
                    },
                    errors=(400, 401, 404, 413, 429, 502),
                ),
            },
        },
    }
